"""The run state's caches, checkpoints and run directories kept within ``state_budget_gb``."""

from __future__ import annotations

from prefect import task

from thaw.config import ThawConfig
from thaw.state_budget import Pruned, prune


@task(name="keep-state-within-budget")
def keep_state_within_budget(cfg: ThawConfig, since: float) -> Pruned | None:
    """After a finished run: the least recently used caches, checkpoints and run
    directories removed until they fit the budget, none this run used (used at or after
    ``since``, its start).
    Failed runs keep everything: their checkpoints are what a retry resumes from."""
    if cfg.state_budget_gb is None:
        return None
    # a file's time is the kernel's coarse clock, up to a tick behind time.time(): a second's margin
    pruned = prune(cfg.state_path, int(cfg.state_budget_gb * 1e9), since - 1.0)
    print(f"  {pruned.describe()}")
    return pruned
