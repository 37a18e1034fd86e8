"""Shadow and canary as an operator runs them: `thaw serve` started on loopback, requests
over HTTP, the request store read back, labels fed back by endpoint and by file, the
canary report, an approval that shows and records the live evidence, and a breach that
sends all traffic back to the champion by itself, recorded in the ledger."""

from __future__ import annotations

import contextlib
import io
import json
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


def _call(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
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
    assert all(r["answered_by"] == "champion" and r["mode"] == "shadow" for r in rows.values())
    assert None not in [r["challenger_label"] for r in rows.values()]
    assert sum(r["challenger_label"] != r["champion_label"] for r in rows.values()) > 10
    assert all(r["champion_ms"] > 0 and r["challenger_ms"] > 0 for r in rows.values())
    db = (cfg.state_path / "requests.db").read_bytes() + (cfg.state_path / "requests.db-wal").read_bytes()
    assert texts[0].encode() not in db and all(r["model_input"] is None for r in rows.values())  # digest only


def test_a_canary_is_reported_shown_at_approval_and_falls_back_by_itself_on_a_breach(live, tmp_path):
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
        assert refused.returncode == 2 and "1 request ids the store does not hold" in refused.stderr
        labels = tmp_path / "labels.csv"
        pd.DataFrame({"request_id": ids, "label": truth[:30]}).to_csv(labels, index=False)
        fed = _thaw(config, "feedback", str(labels))
        assert fed.returncode == 0 and "recorded 30 labels" in fed.stdout, fed.stderr
        report = _thaw(config, "canary", MODEL)
        assert report.returncode == 0, report.stderr
        assert "champion v1 vs challenger v2" in report.stdout and "requests      60 " in report.stdout
        assert "on 40 labelled" in report.stdout  # 10 by the endpoint, 30 by the file
        # the approver sees the live evidence, and the ledger keeps what they saw
        approval = _thaw(config, "approve", MODEL, "2", "--reason", "canary looked fine to me")
        assert "live evidence (thaw canary):" in approval.stdout and "agreement" in approval.stdout
        assert approval.returncode == 2 and "does not beat champion v1" in approval.stderr  # it is worse
        client = client_for(cfg)
        intent = [e for e in ledger_report(client, MODEL, None).entries if e["action"] == "approve"][-1]
        seen = json.loads(full_text(intent, "details", client.get_registered_model(MODEL).tags)[0])
        assert seen["live_evidence"]["requests"] == 60 and seen["live_evidence"]["accuracy"]["challenger"]["n"] > 0
        # more traffic: past min_requests the disagreement breaches, and the challenger is taken off
        more = [_predict(url, [t])[0] for t in texts[30:50]]
        deadline = time.monotonic() + 60
        while _call(f"{url}/version")[1]["challenger_routed"] and time.monotonic() < deadline:
            time.sleep(0.5)
        state = _call(f"{url}/version")[1]
        assert not state["challenger_routed"] and "disagreement" in state["why_not"], state
        after = [_predict(url, [t])[0] for t in texts[50:60]]
        assert {g["model_version"] for g in after} == {"1"}
        assert len(more) == 20
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
