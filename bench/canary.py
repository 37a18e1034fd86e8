"""A canary as an operator runs one, on public data: two versions trained by `thaw run` in
a fresh checkout, the first approved, `thaw serve --canary 10%` on loopback, CLINC150 test
queries sent one request each, the true labels of half of them fed back with `thaw
feedback`, then `thaw canary` and `thaw approve` (which shows and records the evidence).

Data: 20 CLINC150 intents (the first 20 by name). v1 learns from 10 training rows per
intent, v2 from all 100: the champion and the better-informed challenger a team would
have after more labelling. The config is the shipped one with the frozen rung only, so the
walk-through takes minutes; the serving path does not depend on the rung.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.common import row, shared_datasets
from bench.ladder import _write, checkout, few_per_class

SHARED = shared_datasets()
MODEL = "canary-demo"
INTENTS = 20


def _thaw(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "thaw_cli", *args], cwd=repo, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"thaw {' '.join(args)}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, server: subprocess.Popen, log: Path, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"thaw serve did not come up:\n{log.read_text()[-3000:]}")


def run(workspace: Path | None = None) -> dict:
    import yaml

    path = SHARED / "clinc150" / "data_full.json"
    if not path.is_file():
        print("canary: ../shared/datasets/clinc150 is absent; skipped")
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    intents = sorted({label for _, label in data["train"]})[:INTENTS]
    train = [(t, label) for t, label in data["train"] if label in intents]
    test = [(t, label) for t, label in data["test"] if label in intents]
    repo = checkout(workspace or Path(tempfile.mkdtemp(prefix="thaw-canary-")))
    cfg = yaml.safe_load((repo / "configs" / "default.yaml").read_text(encoding="utf-8"))
    cfg["training"]["ladder"]["rungs"] = ["frozen"]
    (repo / "configs" / "canary.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    common = ["--config", "configs/canary.yaml", "--text-column", "text", "--label-column", "label"]
    common += ["--id-column", "id", "--model-name", MODEL]
    data_dir = repo / "data" / "canary"
    test_file = _write(data_dir / "test.csv", test, "test")
    started = time.perf_counter()
    _thaw(
        repo,
        "run",
        *common,
        "--train",
        str(_write(data_dir / "v1.csv", few_per_class(train, 10), "a")),
        "--test",
        str(test_file),
    )
    _thaw(repo, "approve", MODEL, "1", "--config", "configs/canary.yaml", "--reason", "first model")
    _thaw(repo, "run", *common, "--train", str(_write(data_dir / "v2.csv", train, "b")), "--test", str(test_file))
    trained = time.perf_counter() - started
    port = _free_port()
    log = repo / "serve.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "thaw_cli", "serve", MODEL, "--canary", "10%", "--port", str(port)]
            + ["--config", "configs/canary.yaml"],
            cwd=repo,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ},
            start_new_session=True,
        )
    try:
        _wait(f"http://127.0.0.1:{port}/ping", server, log)
        sent = time.perf_counter()
        answers = []
        for text, label in test:
            got = _post(f"http://127.0.0.1:{port}/invocations", {"inputs": [text]})["predictions"][0]
            answers.append((got["request_id"], label, got["model_version"]))
        traffic = time.perf_counter() - sent
        time.sleep(2)  # the last requests' second model and the store
        labels = data_dir / "labels.csv"
        with open(labels, "w", encoding="utf-8") as fh:
            fh.write("request_id,label\n")
            fh.writelines(f"{rid},{label}\n" for rid, label, _ in answers[::2])  # half the labels come back
        _thaw(repo, "feedback", str(labels), "--config", "configs/canary.yaml")
        report = _thaw(repo, "canary", MODEL, "--config", "configs/canary.yaml").stdout
        figures = json.loads(_thaw(repo, "canary", MODEL, "--json", "--config", "configs/canary.yaml").stdout)
        approval = _thaw(
            repo,
            "approve",
            MODEL,
            "2",
            "--config",
            "configs/canary.yaml",
            "--reason",
            "beats v1 on test and on live traffic",
            check=False,
        )
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(f"\n## Canary ({len(test)} CLINC150 test queries of {INTENTS} intents, one request each)\n")
    print("$ thaw canary canary-demo\n" + report)
    print("$ thaw approve canary-demo 2 --reason ...\n" + approval.stdout + approval.stderr)
    row("two `thaw run`s and an approval", f"{trained / 60:.1f} min")
    row("requests sent one at a time", f"{len(answers)} in {traffic:.1f} s ({len(answers) / traffic:.0f}/s)")
    return {"report": figures, "approve_exit": approval.returncode, "requests_per_s": len(answers) / traffic}
