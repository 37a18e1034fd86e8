"""How many folds are fitted at once, and the threads each fit takes (tasks.ladder.fold_pool)."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from tasks.ladder import fold_pool
from tasks.ladder.fold_pool import fold_workers
from thaw.config import ThawConfig


def cfg(**ladder) -> ThawConfig:
    return ThawConfig.model_validate({"training": {"ladder": ladder}})


@pytest.mark.parametrize(
    ("cores", "folds", "setting", "workers"),
    [(2, 5, None, 2), (8, 5, None, 5), (1, 5, None, 1), (16, 2, None, 2), (8, 5, 3, 3), (8, 2, 4, 2), (2, 5, 1, 1)],
)
def test_one_fit_per_usable_core_on_a_cpu_at_most_one_per_fold(monkeypatch, cores, folds, setting, workers):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert fold_workers(cfg(cv_workers=setting, finetune={"device": "cpu"}), folds, "fewshot") == workers


def test_fits_on_one_gpu_run_one_at_a_time(monkeypatch):
    import torch

    from thaw import modeling

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(modeling, "select_device", lambda prefer="auto": torch.device("cuda"))
    assert fold_workers(cfg(), 5, "partial") == 1
    assert fold_workers(cfg(cv_workers=2), 5, "partial") == 2  # asked for: the user knows their GPU


def test_a_rung_registered_by_the_users_code_trains_its_folds_in_this_process(monkeypatch):
    from thaw.rung_registry import REGIMES, RungMethod, register_rung, unregister_rung

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    mine = RungMethod(name="mine", order=99, label="mine", planned_in=frozenset(REGIMES))
    register_rung(mine)
    try:  # a spawned worker would not have it
        assert fold_workers(cfg(cv_workers=4, finetune={"device": "cpu"}), 5, "mine") == 1
        assert fold_workers(cfg(cv_workers=4, finetune={"device": "cpu"}), 5, "fewshot") == 4
    finally:
        unregister_rung("mine")


@pytest.mark.parametrize(("cores", "running", "threads"), [(2, 2, 1), (2, 1, 2), (8, 3, 2), (1, 2, 1), (4, 0, 4)])
def test_the_fits_running_share_the_cores(monkeypatch, cores, running, threads):
    counter = multiprocessing.get_context("spawn").Value("i", running)
    monkeypatch.setattr(fold_pool, "_running", counter)
    monkeypatch.setattr(fold_pool, "_cores", cores)
    assert fold_pool._share() == threads
    counter.value = 1  # the others finished: the next epoch takes every core
    assert fold_pool._share() == cores


@pytest.mark.parametrize(
    ("workers", "folds", "last", "processes", "beside"),
    [
        (2, 5, True, 1, True),
        (2, 4, True, 1, False),
        (2, 5, False, 1, False),
        (1, 5, True, 1, False),
        (5, 5, True, 1, False),
        (2, 5, True, 2, False),
        (4, 10, True, 1, True),
    ],
)
def test_the_refit_trains_beside_the_folds_only_in_an_idle_worker_of_the_last_rung(
    workers, folds, last, processes, beside
):
    from tasks.ladder.rung_training import refit_beside_folds

    settings = cfg(finetune={"processes": processes})
    assert refit_beside_folds(settings, workers, folds, last) is beside
