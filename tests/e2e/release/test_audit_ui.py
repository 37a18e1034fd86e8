"""The auditor in the MLflow UI and the approver in the Prefect UI, in a real browser.

Chromium (Debian's, driven by Playwright) opens the UIs as their users do: the MLflow UI
that `thaw ui` serves, from the champion's version page to the data, the code and the
approval history; and the Prefect UI of a run paused for approval, whose form the
approver answers. Both save screenshots (``THAW_SCREENSHOTS`` keeps them, for the README).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.browser import answer_approval_form, browser_page, paused_flow_run, screenshot_dir
from tests.projects import ticket_project
from tests.servers import free_port, running
from thaw_cli.services import http_json, prefect_server_command

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
MODEL = "tickets"


def _thaw(*args: str) -> list[str]:
    return [sys.executable, "-m", "thaw_cli", *args]


def _run(cmd: list[str], env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def _project(tmp_path: Path, encoder: Path, **sections) -> Path:
    workspace = tmp_path / "project"
    settings = ticket_project(workspace, encoder, MODEL, 300, 9, **sections)
    subprocess.run(  # a commit for the run to record (the data is DVC's, not git's)
        ["git", "-C", str(workspace), "-c", "user.email=t@example.com", "-c", "user.name=t"]
        + ["commit", "--allow-empty", "-qm", "start"],
        check=True,
    )
    config = workspace / "thaw.yaml"
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return config


def test_from_the_champion_page_an_auditor_reaches_data_code_config_and_approvals(tmp_path, tiny_encoder):
    from thaw.config import load_config
    from thaw.ledger import KEY_PREFIX

    config = _project(tmp_path, tiny_encoder, tracking={"repo_url": "https://git.example.com/team/tickets"})
    import pandas as pd

    tickets = config.parent / "data" / "tickets.csv"  # labels exported with markup: the card shows them as text
    frame = pd.read_csv(tickets, dtype=str, keep_default_na=False)
    frame["intent"] = [f"{v} [help](#top) <b>bold</b>" if v.strip() else v for v in frame["intent"]]
    frame.to_csv(tickets, index=False)
    _run(_thaw("run", "--config", str(config)))
    # pasted with markup: the history shows it as written, with no link and no image fetched
    pasted = "[ok](https://example.invalid/x) ![p](https://example.invalid/p.png) <b>bold</b>"
    reason = f"reviewed the card and the data checks {pasted}"
    _run(_thaw("approve", MODEL, "1", "--config", str(config), "--reason", reason))
    cfg = load_config(config)
    from tasks.tracking.client import client_for

    client = client_for(cfg)
    mv = client.get_model_version(MODEL, "1")
    train_md5, commit = mv.tags["thaw.curated.train.md5"], mv.tags["thaw.git_commit"]
    shots = screenshot_dir(tmp_path / "screenshots")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ui = _thaw("ui", "--config", str(config), "--port", str(port))
    with running(ui, f"{base}/health", tmp_path / "ui.log"), browser_page() as page:
        # the champion's version page: the card (data md5s, commit link, config digest) and its approvals
        page.goto(f"{base}/#/models/{MODEL}/versions/1")
        page.get_by_text("@ champion", exact=False).first.wait_for()
        _close_assistant(page)
        page.get_by_text(train_md5).first.wait_for()
        assert page.get_by_role("link", name=commit[:12]).first.get_attribute("href") == (
            f"https://git.example.com/team/tickets/commit/{commit}"
        )
        page.get_by_text(f"config digest {cfg.digest()[:16]}").first.wait_for()
        page.get_by_text(re.compile(r"[a-z]_[a-z]+ \[help\]\(#top\) <b>bold</b> \(")).first.wait_for()  # as written
        assert page.locator('a[href="#top"]').count() == 0 and page.locator("b", has_text="bold").count() == 0
        page.screenshot(path=str(shots / "mlflow-champion-version.png"))
        page.get_by_text("Approval history of this version").scroll_into_view_if_needed()
        page.get_by_text("reviewed the card and the data checks").first.wait_for()
        page.get_by_text(pasted).first.wait_for()
        _shows_no_markup_from(page, "example.invalid")
        page.screenshot(path=str(shots / "mlflow-champion-approvals.png"))

        # the registered model: the whole history as a table, not JSON
        page.goto(f"{base}/#/models/{MODEL}")
        page.get_by_role("heading", name=f"{MODEL}: approval history").wait_for()
        table = page.locator("table").filter(has_text="outcome").first
        assert "approve" in table.inner_text() and "register" in table.inner_text()
        assert pasted in table.inner_text()
        _shows_no_markup_from(page, "example.invalid")
        page.screenshot(path=str(shots / "mlflow-approval-history.png"))

        # the run the card links to: source commit, who, description, datasets with schema and profile
        page.goto(f"{base}/#/models/{MODEL}/versions/1")
        with page.context.expect_page() as opened:
            page.get_by_role("link", name=mv.run_id).first.click()
        run_page = opened.value
        run_page.get_by_text("About this run").wait_for()
        run_page.get_by_text(commit[:7]).first.wait_for()  # Source: the commit MLflow shows
        run_page.get_by_text(f"registered **{MODEL} v1**".replace("**", "")).first.wait_for()
        run_page.get_by_text(f"{MODEL}-raw-train").first.click()  # the run lists one; the drawer has all
        drawer = run_page.get_by_role("dialog")
        drawer.get_by_text(f"{MODEL}-curated-train").first.click()
        drawer.get_by_text("num rows").first.wait_for()
        for column in ("id", "text", "label"):
            drawer.get_by_text(column, exact=True).first.wait_for()
        text = drawer.inner_text()
        assert "No profile available" not in text
        assert f"files/md5/{train_md5[:2]}/{train_md5[2:]}" in text  # where the bytes live in the DVC remote
        run_page.screenshot(path=str(shots / "mlflow-dataset-drawer.png"))
    # the ledger entries are also read-only artifacts of the run
    artifacts = [a.path for a in client.list_artifacts(mv.run_id, f"ledger/{MODEL}")]
    assert len(artifacts) == len([k for k in client.get_registered_model(MODEL).tags if k.startswith(KEY_PREFIX)])


def _shows_no_markup_from(page, host: str) -> None:
    """No image from ``host``, no link to it but a bare address shown as itself (the UI
    links those), and no <b> the page's own text did not put there."""
    links = page.locator(f'a[href*="{host}"]')
    assert all(links.nth(i).inner_text() == links.nth(i).get_attribute("href") for i in range(links.count()))
    assert page.locator(f'img[src*="{host}"]').count() == 0
    assert page.locator("b", has_text="bold").count() == 0


def _close_assistant(page) -> None:
    """MLflow 3 opens its chat assistant beside every page; the auditor closes it."""
    close = page.get_by_role("button", name="Close", exact=True)
    if close.count():
        close.first.click()


def _scroll_to(page, text: str, tries: int = 40) -> None:
    """Scroll down until ``text`` is rendered (the Prefect UI renders logs as they come into view)."""
    found = page.get_by_text(text).first
    for _ in range(tries):
        if found.count():
            break
        page.mouse.move(700, 800)
        page.mouse.wheel(0, 2000)
        time.sleep(0.5)
    found.scroll_into_view_if_needed()
    found.wait_for()


def test_the_approver_answers_the_form_in_the_prefect_ui_and_sees_the_decision(tmp_path, tiny_encoder):
    from thaw.config import load_config

    config = _project(tmp_path, tiny_encoder, promotion={"wait_for_approval": True, "approval_timeout_minutes": 15})
    shots = screenshot_dir(tmp_path / "screenshots")
    port = free_port()
    ui, api = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/api"
    env = {
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_URL": ui,
        "PREFECT_LOGGING_LEVEL": "INFO",  # as a user runs it (the test session's default is WARNING)
    }
    server_log, run_log = tmp_path / "prefect-server.log", tmp_path / "run.log"
    with running(prefect_server_command(port), f"{api}/health", server_log, env=env, timeout_s=180):
        with open(run_log, "w") as out:
            run = subprocess.Popen(
                _thaw("run", "--config", str(config)),
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
                start_new_session=True,
            )
        try:
            flow_run = paused_flow_run(api, run, 600, run_log)
            with browser_page() as page:
                page.goto(f"{ui}/runs/flow-run/{flow_run['id']}")
                page.get_by_text("WAITING FOR APPROVAL").first.wait_for()  # the run says what it waits for
                page.screenshot(path=str(shots / "prefect-paused-run.png"))
                page.get_by_role("button", name="Resume").first.click()
                form = page.get_by_role("dialog")
                form.get_by_text(f"Approve {MODEL} v1 as champion?").wait_for()
                form.get_by_text("The gate would PROMOTE it now").wait_for()
                form.get_by_text("serving cost (measured in the run").wait_for()
                assert "\\" not in form.inner_text()  # the values thaw escaped render as written
                answer_approval_form(
                    form, decision="approve", reason="checked the card and the data checks", approver="ana"
                )
                page.screenshot(path=str(shots / "prefect-approval-form.png"))
                form.get_by_role("button", name="Submit").click()
                assert run.wait(timeout=300) == 0, run_log.read_text()[-3000:]
                state = http_json(f"{api}/flow_runs/{flow_run['id']}")["state"]
                assert (state["type"], state["name"]) == ("COMPLETED", "Approved")
                page.reload()
                page.get_by_text("Approved").first.wait_for()
                page.screenshot(path=str(shots / "prefect-approved-run.png"))
                _scroll_to(page, "approval of tickets v1: APPROVED")  # in the run's logs, after the task runs' lines
                page.screenshot(path=str(shots / "prefect-decision-log.png"))
        finally:
            if run.poll() is None:
                run.kill()
                run.wait(timeout=30)
    from tasks.release.ledger import ledger_report
    from tasks.tracking.client import client_for

    client = client_for(load_config(config))
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    intent = [e for e in ledger_report(client, MODEL, None).entries if e["action"] == "approve"][0]
    assert intent["by"] == "ana"
    assert intent["identity"] == "not verified: name typed into the Prefect form; unsigned: no approvers file"
    output = run_log.read_text()
    assert "APPROVED" in output and "now 'champion'" in output
