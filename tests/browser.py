"""A real browser for the UI tests: Debian's Chromium driven by Playwright.

Playwright cannot download its own browser here, so the tests drive the system
``chromium`` through ``executable_path``; on a machine without it the setup installs
Debian's package, the way the PostgreSQL tests get their server. The flags keep Chromium
off the network it would otherwise call at start (updates, sync, metrics).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_path() -> str:
    """The system Chromium, installed from Debian's packages when missing."""
    found = shutil.which("chromium")
    if found is None:  # these machines are root, with Debian's registry
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True, capture_output=True)
        found = shutil.which("chromium")
    if found is None:
        raise RuntimeError("chromium is not installed and apt-get did not provide it")
    return found


def screenshot_dir(default: Path) -> Path:
    """Where screenshots go: ``THAW_SCREENSHOTS`` (the README's come from there), else ``default``."""
    directory = Path(os.environ.get("THAW_SCREENSHOTS") or default)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 1000) -> Iterator:
    """A fresh Chromium page (headless) that fails fast: 30 s per action."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def paused_flow_run(api: str, run: subprocess.Popen, timeout_s: float, log: Path) -> dict:
    """The first PAUSED flow run on the Prefect server at ``api``, while ``run`` lives."""
    from thaw_cli.services import http_json

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and run.poll() is None:
        runs = http_json(f"{api}/flow_runs/filter", "POST", {"flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}}})
        if runs:
            return runs[0]
        time.sleep(2)
    raise AssertionError(f"no run paused for approval (exit code {run.poll()}):\n{log.read_text()[-3000:]}")


def answer_approval_form(form, decision: str, reason: str, approver: str) -> None:
    """Fill the form as a person would: pick the decision, type the reason and the name."""

    def field(label: str):
        return form.locator(".schema-form-property").filter(
            has=form.page.locator(".schema-form-property__label", has_text=label)
        )

    field("Decision").locator("button.p-select-button__control").focus()
    form.page.keyboard.press("ArrowDown")  # opens the list (a click on this control only focuses it)
    form.page.get_by_role("option", name=decision, exact=True).click()
    field("Reason").locator("textarea, input").first.fill(reason)
    field("Approver").locator("textarea, input").first.fill(approver)
