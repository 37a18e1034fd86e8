"""Shadow and canary as an operator runs them: `thaw serve` started on loopback, requests
over HTTP, the request store read back, labels fed back by endpoint and by file, the
canary report, an approval that shows and records the live evidence, and a breach that
sends all traffic back to the champion by itself, recorded in the ledger."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.projects import altered_version, reverse_labels, ticket_project
from tests.servers import free_port, running
from thaw.config import ThawConfig
from thaw.demo_data import generate_support_tickets

pytestmark = pytest.mark.e2e
MODEL = "tickets"
ROOT = Path(__file__).resolve().parents[3]
# a challenger that disagrees on most rows breaches max_disagreement once it has been
# judged on min_requests rows: never in the shadow server's 30, within the canary's 60
CANARY = {"min_requests": 40, "max_disagreement": 0.25, "max_p95_ratio": None}


@pytest.fixture(scope="module")
def live(tmp_path_factory, tiny_encoder, prefect_harness):
    """v1 champion; v2 challenger with the same scores under other names (it disagrees)."""
    from flows.pipeline import thaw_pipeline
    from tasks.release.promotion import approve

    base = tmp_path_factory.mktemp("canary")
    settings = ticket_project(
        base / "project", tiny_encoder, MODEL, 300, 5, serving={"canary": CANARY, "alias_poll_seconds": 0}
    )
    cfg = ThawConfig.model_validate(settings)
    thaw_pipeline(cfg)
    approve(cfg, MODEL, "1", "first model")
    assert altered_version(cfg, MODEL, "1", reverse_labels) == "2"
    config = base / "thaw.yaml"
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    frame = pd.read_csv(io.StringIO(generate_support_tickets(80, seed=99)[0])).dropna(subset=["message", "intent"])
    yield cfg, config, frame["message"].tolist()[:60], frame["intent"].tolist()[:60]


def _thaw(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "thaw_cli", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


@contextlib.contextmanager
def _serving(config: Path, log: Path, *flags: str):
    port = free_port()
    cmd = [sys.executable, "-m", "thaw_cli", "serve", MODEL, *flags, "--port", str(port), "--config", str(config)]
    with running(cmd, f"http://127.0.0.1:{port}/ping", log, timeout_s=180):
        yield f"http://127.0.0.1:{port}"


def _call(url: str, body: dict | bytes | None = None) -> tuple[int, dict]:
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _predict(url: str, texts: list[str]) -> list[dict]:
    status, body = _call(f"{url}/invocations", {"dataframe_split": {"columns": ["text"], "data": [[t] for t in texts]}})
    assert status == 200, body
    return body["predictions"]


def _stored(cfg: ThawConfig, ids: list[str], timeout_s: float = 60) -> dict[str, dict]:
    """The store's rows of ``ids``, once every one is there."""
    import sqlalchemy as sa

    from thaw.request_store import RequestStore, requests

    store = RequestStore.for_config(cfg)
    deadline = time.monotonic() + timeout_s
    while True:
        with store.engine.connect() as conn:
            rows = {r.id: dict(r._mapping) for r in conn.execute(sa.select(requests).where(requests.c.id.in_(ids)))}
        if len(rows) == len(set(ids)) or time.monotonic() > deadline:
            store.close()
            assert len(rows) == len(set(ids)), f"{len(rows)} of {len(set(ids))} requests stored"
            return rows
        time.sleep(0.5)


def test_shadow_never_changes_the_champions_answers_and_the_store_holds_both(live, tmp_path):
    from tasks.release.stored_model import load_verified_model

    cfg, config, texts, truth = live
    alone = load_verified_model(cfg, MODEL, "1").predict(texts[:30])["label"].tolist()
    with _serving(config, tmp_path / "serve.log", "--shadow") as url:
        assert (
            _call(f"{url}/version")[1] | {"mode": "shadow", "champion": "1", "challenger": "2"}
            == _call(f"{url}/version")[1]
        )
        got = [_predict(url, [t])[0] for t in texts[:20]] + _predict(url, texts[20:30])
        assert [g["label"] for g in got] == alone  # the challenger disagrees, yet nothing changed
        assert {g["model_version"] for g in got} == {"1"}
        ids = [g["request_id"] for g in got]
        rows = _stored(cfg, ids)
        # labels come back by request id: the endpoint joins them, refusing what it cannot
        status, body = _call(
            f"{url}/feedback",
            {"labels": [{"request_id": i, "label": y} for i, y in zip(ids[:10], truth[:10], strict=True)]},
        )
        assert (status, body) == (200, {"recorded": 10})
        assert _call(f"{url}/feedback", {"request_id": "f" * 32, "label": "refund"})[0] == 404
        assert _call(f"{url}/feedback", {"request_id": ids[0], "label": ""})[0] == 400
        assert _call(f"{url}/invocations", {"inputs": [{"not": "text"}]})[0] == 400
        # JSON the parser cannot read past its syntax: nested past Python's recursion limit,
        # an integer past its 4,300 digits. A 400 naming why, not a 500 and a traceback
        for path, body, why in (
            ("invocations", b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
            ("feedback", b"[" * 100_000, "nested too deeply"),
            ("invocations", b'{"inputs": [' + b"7" * 5000 + b"]}", "4300 digits"),
        ):
            status, body = _call(f"{url}/{path}", body)
            assert status == 400 and why in body["message"], (path, status, body)
    assert all(r["answered_by"] == "champion" and r["mode"] == "shadow" for r in rows.values())
    assert None not in [r["challenger_label"] for r in rows.values()]
    assert sum(r["challenger_label"] != r["champion_label"] for r in rows.values()) > 10
    assert all(r["champion_ms"] > 0 and r["challenger_ms"] > 0 for r in rows.values())
    db = b"".join(p.read_bytes() for p in cfg.state_path.glob("requests.db*"))  # the WAL too, if it is still there
    assert texts[0].encode() not in db and all(r["model_input"] is None for r in rows.values())  # digest only


def test_a_canary_answers_its_share_takes_labels_back_and_is_shown_at_approval(live, tmp_path):
    from tasks.release.ledger import ledger_report
    from tasks.tracking.client import client_for
    from thaw.ledger import full_text

    cfg, config, texts, truth = live
    with _serving(config, tmp_path / "serve.log", "--canary", "50%") as url:
        got = [_predict(url, [t])[0] for t in texts[:30]]
        answered = Counter(g["model_version"] for g in got)
        assert answered["2"] >= 5 and answered["1"] >= 5, answered  # 30 draws at 50%
        ids = [g["request_id"] for g in got]
        _stored(cfg, ids)
        # labels arrive later, as a file; one unknown id and nothing is recorded
        bad = tmp_path / "bad.csv"
        pd.DataFrame({"request_id": [ids[0], "0" * 32], "label": truth[:2]}).to_csv(bad, index=False)
        refused = _thaw(config, "feedback", str(bad))
        assert refused.returncode == 2 and "1 request id the store does not hold" in refused.stderr
        labels = tmp_path / "labels.csv"
        pd.DataFrame({"request_id": ids, "label": truth[:30]}).to_csv(labels, index=False)
        fed = _thaw(config, "feedback", str(labels))
        assert fed.returncode == 0 and "recorded 30 labels" in fed.stdout, fed.stderr
        report = _thaw(config, "canary", MODEL)
        assert report.returncode == 0, report.stderr
        assert "champion v1 vs challenger v2" in report.stdout and "requests      60 " in report.stdout
        assert "on 40 labelled" in report.stdout  # 10 by the endpoint, 30 by the file
        # a pair typed wrong is said, not reported as a pair with no requests
        for args, said in (
            (("--champion", "1", "--challenger", "9"), f"no model version {MODEL + '/9'!r}"),
            (("--champion", "2", "--challenger", "2"), "are both v2: a canary compares two versions"),
        ):
            typo = _thaw(config, "canary", MODEL, *args)
            assert typo.returncode == 2 and said in typo.stderr, typo.stderr
        typo = _thaw(config, "canary", MODEL + "s")
        assert typo.returncode == 2 and f"no registered model '{MODEL}s'" in typo.stderr, typo.stderr
        # the approver sees the live evidence, and the ledger keeps what they saw
        approval = _thaw(config, "approve", MODEL, "2", "--reason", "canary looked fine to me")
        assert "live evidence (thaw canary):" in approval.stdout and "agreement" in approval.stdout
        assert approval.returncode == 2 and "does not beat champion v1" in approval.stderr  # it is worse
        client = client_for(cfg)
        intent = [
            e for e in ledger_report(client, MODEL, None).entries if e["action"] == "approve" and e["phase"] == "intent"
        ][-1]
        seen = json.loads(full_text(intent, "details", client.get_registered_model(MODEL).tags)[0])
        assert seen["live_evidence"]["requests"] == 60 and seen["live_evidence"]["accuracy"]["challenger"]["n"] > 0


def test_a_breach_sends_all_traffic_back_to_the_champion_by_itself_and_is_recorded(live, tmp_path):
    cfg, config, texts, _ = live
    with _serving(config, tmp_path / "serve.log", "--canary", "50%") as url:
        # past min_requests the disagreement breaches, and the challenger is taken off
        more = [g for start in range(0, 50, 10) for g in _predict(url, texts[start : start + 10])]
        deadline = time.monotonic() + 60
        while _call(f"{url}/version")[1]["challenger_routed"] and time.monotonic() < deadline:
            time.sleep(0.5)
        state = _call(f"{url}/version")[1]
        assert not state["challenger_routed"] and "disagreement" in state["why_not"], state
        after = [_predict(url, [t])[0] for t in texts[50:60]]
        assert {g["model_version"] for g in after} == {"1"}
        assert len(more) == 50
        # `thaw serve` copies the breach into the ledger by itself, while it serves
        _wait_for_fallback(cfg, timeout_s=90)
    ledger = _thaw(config, "ledger", MODEL, "--verify")
    assert ledger.returncode == 0 and "canary-fallback v2" in ledger.stdout, ledger.stdout + ledger.stderr
    assert "BREACH" in _thaw(config, "canary", MODEL).stdout
    # a restart does not put the breached challenger back, and the gate refuses it
    with _serving(config, tmp_path / "again.log", "--canary", "50%") as url:
        state = _call(f"{url}/version")[1]
        assert not state["challenger_routed"] and "breached the canary" in state["why_not"]
        assert {g["model_version"] for g in _predict(url, texts[:10])} == {"1"}
    refused = _thaw(config, "approve", MODEL, "2", "--reason", "try again")
    assert refused.returncode == 2 and "its canary breached" in refused.stderr, refused.stderr


def _wait_for_fallback(cfg: ThawConfig, timeout_s: float) -> None:
    from tasks.release.ledger import ledger_report
    from tasks.tracking.client import client_for

    deadline = time.monotonic() + timeout_s
    while not any(e["action"] == "canary-fallback" for e in ledger_report(client_for(cfg), MODEL, None).entries):
        assert time.monotonic() < deadline, f"no canary-fallback in the ledger after {timeout_s} s"
        time.sleep(1)


def test_a_breach_recorded_while_no_thaw_serve_ran_reaches_the_ledger_once(live, monkeypatch):
    """What `thaw serve` does on start-up and every two seconds: copy the store's breaches
    that the ledger does not hold, and only those; a write that fails is tried again."""
    import tasks.release.promotion as promotion
    from tasks.release.ledger import ledger_report
    from tasks.serving.fallback import record_breaches
    from tasks.tracking.client import client_for
    from thaw.request_store import RequestStore

    def registry_away(*args, **kwargs):
        raise ConnectionError("the registry is away")

    cfg, _, _, _ = live
    store = RequestStore.for_config(cfg)
    try:
        assert record_breaches(cfg, MODEL, store) == 0  # the breach above is in the ledger already
        store.record_breach(MODEL, "1", "2", "error rate 0.500 on 60 requests", {"mode": "canary"})
        confirmed: set[str] = set()
        with monkeypatch.context() as m:
            m.setattr(promotion, "record_canary_fallback", registry_away)
            with pytest.raises(ConnectionError):
                record_breaches(cfg, MODEL, store, confirmed)
        assert record_breaches(cfg, MODEL, store, confirmed) == 1  # not taken as written
        assert record_breaches(cfg, MODEL, store, confirmed) == 0
        # the store is the credential-less server's: a breach naming no version is not written
        store.record_breach(MODEL, "1", "../2; rm -rf", "error rate 0.900 on 60 requests", {"mode": "canary"})
        assert record_breaches(cfg, MODEL, store, confirmed) == 0
    finally:
        store.close()
    entries = ledger_report(client_for(cfg), MODEL, None).entries
    fallbacks = [e for e in entries if e["action"] == "canary-fallback"]
    assert len(fallbacks) == 2 and fallbacks[-1]["reason"] == "error rate 0.500 on 60 requests"


@pytest.mark.browser
def test_the_approval_form_shows_the_live_evidence_as_it_stands_and_the_ledger_keeps_it(live, tmp_path):
    """A run paused for approval of v2, in a real Prefect server: labels that arrive while it
    waits reach the form the approver opens, and their answer records what the form showed."""
    from tasks.release.ledger import ledger_report
    from tasks.tracking.client import client_for
    from tests.browser import answer_approval_form, browser_page, paused_flow_run, screenshot_dir
    from thaw.ledger import full_text
    from thaw.request_store import RequestStore
    from thaw_cli.services import http_json, prefect_server_command

    cfg, config, _, truth = live
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    settings["promotion"] = {"evidence_refresh_seconds": 1, "approval_timeout_minutes": 10}
    waiting = tmp_path / "waiting.yaml"
    waiting.write_text(yaml.safe_dump(settings), encoding="utf-8")
    run_id = client_for(cfg).get_model_version(MODEL, "2").run_id
    # what someone with edit rights wrote into v2's transfer note: the form shows it as written
    pasted = "[signed off](https://example.invalid/x) ![p](https://example.invalid/p.png) <b>bold</b>"
    client_for(cfg).set_model_version_tag(MODEL, "2", "thaw.transfer.reason", f"fine **{pasted}**")
    script = tmp_path / "approval.py"
    script.write_text(
        "import sys\nfrom pathlib import Path\nfrom prefect import flow\n"
        "from tasks.release.approval_form import final_state, wait_for_approval\n"
        "from tasks.tracking.client import RegisteredVersion\nfrom thaw.config import load_config\n"
        "from thaw.offline import apply_offline_environment\napply_offline_environment()\n"
        "cfg = load_config(Path(sys.argv[1])).resolved()\n"
        "@flow(name='approve-after-canary')\ndef approval():\n"
        f"    outcome = wait_for_approval(cfg, RegisteredVersion('{MODEL}', '2', 'challenger', '{run_id}'))\n"
        "    return final_state(outcome, outcome.outcome)\n"
        "print('OUTCOME', approval())\n",
        encoding="utf-8",
    )
    store = RequestStore.for_config(cfg)
    unlabelled = [r["id"] for r in store.requests_of(MODEL, "1", "2") if r["id"] not in store.labels_for([r["id"]])]
    shots, port = screenshot_dir(tmp_path / "screenshots"), free_port()
    ui, api = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/api"
    env = {"PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_UI_URL": ui}
    with running(prefect_server_command(port), f"{api}/health", tmp_path / "prefect.log", env=env, timeout_s=180):
        log = tmp_path / "run.log"
        with open(log, "w") as out:
            run = subprocess.Popen(
                [sys.executable, str(script), str(waiting)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                cwd=ROOT,
                start_new_session=True,
            )
        try:
            flow_run = paused_flow_run(api, run, 300, log)
            # labels arrive while the run waits: the form the approver opens now counts them
            labels = tmp_path / "late.csv"
            pd.DataFrame({"request_id": unlabelled, "label": (truth * 2)[: len(unlabelled)]}).to_csv(
                labels, index=False
            )
            assert _thaw(config, "feedback", str(labels)).returncode == 0
            time.sleep(3)  # a few refreshes
            with browser_page() as page:
                page.goto(f"{ui}/runs/flow-run/{flow_run['id']}")
                form = _open_resume_form(page)
                form.get_by_text(f"on {40 + len(unlabelled)} labelled").first.wait_for()
                form.get_by_text("agreement").first.wait_for()
                form.get_by_text("BREACH").first.wait_for()  # the breach the canary recorded, beside the figures
                form.get_by_text(f"fine **{pasted}**").first.wait_for()
                assert form.locator('img[src*="example.invalid"]').count() == 0
                assert form.locator("a", has_text="signed off").count() == 0 and form.locator("b").count() == 0
                form.get_by_text("Live evidence").scroll_into_view_if_needed()
                page.screenshot(path=str(shots / "prefect-approval-live-evidence.png"))
                answer_approval_form(form, decision="reject", reason="the canary disagrees too often", approver="ana")
                form.get_by_role("button", name="Submit").click()
                assert run.wait(timeout=300) == 0, log.read_text()[-3000:]
            assert http_json(f"{api}/flow_runs/{flow_run['id']}")["state"]["name"] == "Rejected"
        finally:
            if run.poll() is None:
                run.kill()
                run.wait(timeout=30)
    client = client_for(cfg)
    intent = [
        e for e in ledger_report(client, MODEL, None).entries if e["action"] == "reject" and e["phase"] == "intent"
    ][-1]
    seen = json.loads(full_text(intent, "details", client.get_registered_model(MODEL).tags)[0])["live_evidence"]
    assert seen["accuracy"]["challenger"]["n"] == 40 + len(unlabelled)  # what the form showed, not what was paused on


def _open_resume_form(page, attempts: int = 5):
    """The Resume dialog with its description. Prefect has no update for a run input, so
    a rewrite (after the figures change) deletes the description and creates it again; a
    dialog opened in that gap has none (the UI reads it once): reload and open it again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(attempts):
        page.get_by_role("button", name="Resume").first.click()
        form = page.get_by_role("dialog")
        try:
            form.get_by_text("Live evidence").wait_for(timeout=10_000)
            return form
        except PlaywrightTimeout:  # opened in the gap
            page.reload()
    raise AssertionError(f"the Resume form never showed its live evidence in {attempts} openings")


def test_a_promotion_is_served_without_a_restart(live, tmp_path):
    """`thaw serve` re-reads the aliases: after an approval the new champion answers."""
    from tasks.release.promotion import approve
    from tests.projects import copy_version

    cfg, config, texts, _ = live
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    settings["serving"]["alias_poll_seconds"] = 1
    polling = tmp_path / "polling.yaml"
    polling.write_text(yaml.safe_dump(settings), encoding="utf-8")
    with _serving(polling, tmp_path / "serve.log") as url:
        assert {g["model_version"] for g in _predict(url, texts[:3])} == {"1"}
        version = copy_version(cfg, MODEL, "1")
        approve(cfg, MODEL, version, "the same model again, to move the alias", force=True)
        deadline = time.monotonic() + 60
        while _call(f"{url}/version")[1]["champion"] != version and time.monotonic() < deadline:
            time.sleep(0.5)
        assert {g["model_version"] for g in _predict(url, texts[:3])} == {version}
    assert f"aliases moved: champion v{version}" in (tmp_path / "serve.log").read_text()


def test_a_champion_alias_moved_outside_thaw_is_not_served(live, tmp_path):
    """Anyone with MANAGE can move the champion alias in the MLflow UI. A running `thaw
    serve` keeps answering with the approved champion and says why; a new one refuses to
    start; the alias put back, nothing else is needed."""
    from tasks.tracking.client import CHAMPION, alias_version, client_for
    from tests.projects import copy_version

    cfg, config, texts, _ = live
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    settings["serving"]["alias_poll_seconds"] = 1
    polling = tmp_path / "polling.yaml"
    polling.write_text(yaml.safe_dump(settings), encoding="utf-8")
    client = client_for(cfg)
    approved = alias_version(client, MODEL, CHAMPION)
    unapproved = copy_version(cfg, MODEL, approved)  # registered through thaw, never approved
    log = tmp_path / "serve.log"
    with _serving(polling, log) as url:
        client.set_registered_model_alias(MODEL, CHAMPION, unapproved)
        try:
            deadline = time.monotonic() + 60
            while "keeps serving" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.5)
            answered = {g["model_version"] for g in _predict(url, texts[:3])}
            served = _call(f"{url}/version")[1]["champion"]
            second = _thaw(polling, "serve", MODEL, "--port", str(free_port()))
        finally:
            client.set_registered_model_alias(MODEL, CHAMPION, approved)
    refused = f"the champion alias is on v{unapproved}, which the ledger does not back"
    assert answered == {approved} and served == approved
    assert f"keeps serving v{approved}: {MODEL}: {refused}" in log.read_text()
    assert second.returncode != 0 and refused in second.stderr, second.stderr[-2000:]
    assert f"name a version by number (`thaw serve {MODEL}/N`)" in second.stderr
