"""The promotion lock against a real MLflow tracking server on loopback, with real
processes: mutual exclusion that the outcome depends on, takeover of a dead holder by the
registry's clock, and a holder that lost its lease stopping instead of writing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.projects import dead_lock_holder
from tests.servers import mlflow_server
from thaw.config import ThawConfig

MODEL = "locked"
ROOT = Path(__file__).resolve().parents[3]
WORKER = """
import sys, time
from mlflow import MlflowClient
from tasks.release.promotion_lock import promotion_lock
from thaw.config import ThawConfig
cfg = ThawConfig.model_validate_json(sys.argv[1])
client = MlflowClient(cfg.tracking.tracking_uri, registry_uri=cfg.tracking.tracking_uri)
use_lock = sys.argv[2] == "lock"

def increment():
    value = int(client.get_registered_model("locked").tags.get("counter", "0"))
    time.sleep(0.15)  # the read-modify-write window the lock must protect
    client.set_registered_model_tag("locked", "counter", str(value + 1))

for _ in range(3):
    if use_lock:
        with promotion_lock(cfg, "locked", sys.argv[3], "count"):
            increment()
    else:
        increment()
"""


@pytest.fixture
def server(tmp_path):
    from mlflow import MlflowClient

    with mlflow_server(tmp_path / "mlflow") as uri:
        MlflowClient(uri, registry_uri=uri).create_registered_model(MODEL)
        yield uri


def _cfg(tmp_path: Path, uri: str, lease: float = 60.0) -> ThawConfig:
    return ThawConfig.model_validate(
        {
            "workspace": str(tmp_path),
            "tracking": {"tracking_uri": uri},
            "promotion": {"lock_lease_seconds": lease, "lock_wait_seconds": 240},
        }
    )


def _counter_after(cfg: ThawConfig, mode: str, processes: int) -> int:
    from mlflow import MlflowClient

    client = MlflowClient(cfg.tracking.tracking_uri, registry_uri=cfg.tracking.tracking_uri)
    client.set_registered_model_tag(MODEL, "counter", "0")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, cfg.model_dump_json(), mode, f"p{i}"], env=env, cwd=ROOT)
        for i in range(processes)
    ]
    assert all(p.wait(timeout=400) == 0 for p in procs)
    return int(client.get_registered_model(MODEL).tags["counter"])


def test_eight_processes_lose_no_update_with_the_lock_and_lose_some_without(tmp_path, server):
    cfg = _cfg(tmp_path, server)
    assert _counter_after(cfg, "lock", 8) == 24
    assert _counter_after(cfg, "none", 8) < 24  # the same work without the lock loses updates


def test_a_dead_holder_is_taken_over_after_its_lease_by_the_registry_clock(tmp_path, server):
    from mlflow import MlflowClient

    from tasks.release.promotion_lock import GENERATION_TAG, acquire, current_holder

    cfg = _cfg(tmp_path, server, lease=3)
    pid = dead_lock_holder(cfg, MODEL, "ana", "approve v1")
    dead = current_holder(cfg, MODEL)
    assert dead is not None and dead.holder == "ana" and dead.pid == pid
    start = time.monotonic()
    lock = acquire(cfg, MODEL, "ben", "approve v2")
    try:
        assert [b.holder for b in lock.broken] == ["ana"] and lock.generation == 1
        assert time.monotonic() - start <= 3 + 10  # waited for the lease, not for the wait limit
        assert MlflowClient(server, registry_uri=server).get_registered_model(MODEL).tags[GENERATION_TAG] == "1"
        lock.check()
    finally:
        lock.release()
    assert current_holder(cfg, MODEL) is None


def test_a_holder_whose_lease_ran_out_stops_and_cannot_release_its_successor(tmp_path, server):
    from tasks.release.promotion_lock import LockLost, acquire, current_holder

    cfg = _cfg(tmp_path, server, lease=2)
    first = acquire(cfg, MODEL, "ana", "approve v1")  # never started: no renewals, as a hung process
    time.sleep(3.5)
    second = acquire(cfg, MODEL, "ben", "approve v2")
    try:
        with pytest.raises(LockLost, match="could not renew the lease|broken by another process"):
            first.check()
        first.release()
        assert current_holder(cfg, MODEL).holder == "ben"
        second.renew()
        second.check()
    finally:
        second.release()


def test_a_model_nobody_registered_is_named_in_one_line_by_every_locked_command(tmp_path):
    """A typo in ``thaw approve tickts 3`` ended in MLflow's traceback from the lock."""
    from tasks.release.promotion import approve, reject, rollback, unlock
    from thaw.errors import UserError

    cfg = ThawConfig.model_validate(
        {"workspace": str(tmp_path), "tracking": {"tracking_uri": f"sqlite:///{tmp_path}/t.db"}}
    )
    for act in (lambda: approve(cfg, "tickts", "3", "ok"), lambda: reject(cfg, "tickts", "3", "no"),
                lambda: rollback(cfg, "tickts", "back"), lambda: unlock(cfg, "tickts", "hung")):  # fmt: skip
        with pytest.raises(UserError, match=r"^no registered model 'tickts' \(`thaw models` lists them\)$"):
            act()
