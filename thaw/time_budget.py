"""How ``ladder.time_budget_minutes`` bounds the ladder's fine-tuning.

- Before each adapted rung, the time left is shared among the rungs still planned and,
  when the selected rung will be refit on train + validation after a hold-out fit, the
  refit, weighted by its rows (``rung_share``): a refit of the last rung still fits.
- A hold-out fit gets a deadline at the end of its share. Its first epoch always runs.
  A tenth into it (at its steps' pace), then after each epoch (at the epochs' pace,
  validation included), it plans only the epochs that end before the deadline
  (``epochs_within``) and its learning rate decays to zero over those, so a fit cut
  short is still annealed, not stopped mid-schedule. The cut is recorded on the rung
  (``RungDetails.epochs_within_budget``).
- Cross-validation folds are not cut (every fold of a repeat trains the same recipe); the
  budget bounds their repeats after the first (``tasks.ladder.cross_validation``).
- A rung is never started once the budget is spent (``thaw.gate.escalation_decision``).
- The refit after a hold-out fit trains the selected configuration as scored, never a
  shortened one: when, at the hold-out fit's pace, it would end past the budget
  (``refit_seconds``), the hold-out model is registered instead and the reason recorded.
"""

from __future__ import annotations

import math


def rung_share(seconds_left: float, rungs_left: int, refit_weight: float = 0.0) -> float:
    """Seconds the next rung may take: ``seconds_left`` shared among ``rungs_left`` rungs
    and a refit costing ``refit_weight`` rungs (0: no refit after a hold-out fit)."""
    if rungs_left < 1:
        raise ValueError(f"rungs_left must be at least 1, got {rungs_left}")
    return max(0.0, seconds_left) / (rungs_left + max(0.0, refit_weight))


def refit_weight(train_rows: int, validation_rows: int) -> float:
    """A refit on train + validation costs about this many hold-out fits (its epochs see
    every row of both splits); at most that, since it runs only the epochs chosen."""
    return (train_rows + validation_rows) / max(1, train_rows)


def epochs_within(planned: int, done: float, epoch_seconds: float, seconds_left: float) -> int:
    """How many epochs a fit should run in all, of ``planned``, when ``done`` epochs (a
    fraction while the first is under way) took ``epoch_seconds`` each and ``seconds_left``
    remain to its deadline: the epochs that end in time at that pace, never fewer than the
    one under way or already run, and at least one."""
    started = max(1, math.ceil(done))
    if started >= planned or epoch_seconds <= 0:
        return planned
    return max(started, min(planned, math.floor(done + max(0.0, seconds_left) / epoch_seconds)))


def refit_seconds(fit_seconds: float, epochs_run: int, refit_epochs: int, weight: float) -> float:
    """What a refit of ``refit_epochs`` epochs on ``weight`` times the rows should take,
    at the pace of a hold-out fit that ran ``epochs_run`` epochs in ``fit_seconds``."""
    return fit_seconds / max(1, epochs_run) * refit_epochs * weight
