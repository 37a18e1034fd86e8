"""A fine-tuned rung's cross-validation folds fitted side by side, each in its own process.

A fold's steps are small matmuls (32 or 64 short rows), which one core runs almost as
well as two: measured on this project's 2-core CPU (bf16, MiniLM, CLINC150 queries), a
contrastive step took 0.302 s on 2 threads and 0.478 s on 1 thread with a second process
doing the same beside it (1.26x the work per second); a cross-entropy step 0.165 s
against 0.24 s (1.37x). So a repeat's folds go to a pool of worker processes, spawned
(torch's thread pools do not survive a fork), and the fits running share the cores:
each reads its share when it starts and again after every epoch, so the last fold of a
repeat gets every core back once the others are done. An earlier session's same
measurement read 1.03x and 1.08x, for reasons not established (docs/benchmarks.md, "Folds side by
side"), so it may not pay on every machine; ``ladder.cv_workers: 1`` fits one fold at a
time in the flow's process.

A fit in a worker is the fit the flow's process would run (``fit_adapted_rung``: same
rows, seed, checkpoint key); only its thread count differs, which moves floating-point
sums, not what is trained.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from tasks.ladder.finetuning import AdaptedFit, fit_adapted_rung
from thaw.config import ThawConfig
from thaw.datasets import DatasetVersion
from thaw.rungs import TrainedRung

_running = None  # in a worker: how many fits the pool is running (a shared counter)
_cores = 1


def fold_workers(cfg: ThawConfig, folds: int, rung: str) -> int:
    """Fits of a repeat to run at once: ``ladder.cv_workers``, or by default one per usable
    core on a CPU (at most one per fold) and 1 on CUDA, where the fits would share a GPU.
    Always 1 for a rung registered by the user's code (``register_rung``), which a spawned
    worker does not have."""
    from thaw.modeling import select_device, usable_cores
    from thaw.rung_registry import is_builtin

    ladder = cfg.training.ladder
    if not is_builtin(rung):
        return 1
    if ladder.cv_workers is not None:
        return max(1, min(ladder.cv_workers, folds))
    if select_device(ladder.finetune.device).type != "cpu":
        return 1
    return max(1, min(usable_cores(), folds))


class FoldPool:
    """``workers`` processes fitting folds; use as a context manager (the processes stop
    on leaving it, whatever happened)."""

    def __init__(self, workers: int):
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> FoldPool:
        from thaw.modeling import usable_cores

        context = multiprocessing.get_context("spawn")
        running = context.Value("i", 0)
        self._executor = ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=_start_worker, initargs=(running, usable_cores())
        )
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self._executor is None:
            return
        if exc_type is not None:  # a fit failed, or the run was stopped: end the fits still running
            # (ProcessPoolExecutor has no public way to do so before Python 3.14's terminate_workers)
            for process in list((getattr(self._executor, "_processes", None) or {}).values()):
                process.terminate()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._executor = None

    def start(
        self, fits: Sequence[AdaptedFit], curated: DatasetVersion, labels: tuple[str, ...], cfg: ThawConfig
    ) -> list[Future]:
        """Queue ``fits`` (run in the order queued, as workers come free)."""
        assert self._executor is not None, "FoldPool is used inside a with block"
        return [self._executor.submit(_fit_in_worker, fit, curated, labels, cfg) for fit in fits]

    def fit(
        self, fits: Sequence[AdaptedFit], curated: DatasetVersion, labels: tuple[str, ...], cfg: ThawConfig
    ) -> list[TrainedRung]:
        """Every fit of ``fits``, in that order; a fit's own error is raised as it was."""
        return self.results(self.start(fits, curated, labels, cfg), fits[0].rung)

    @staticmethod
    def results(futures: Sequence[Future], rung: str) -> list[TrainedRung]:
        """What queued fits returned, in their order, once all are done; the first error
        as soon as a fit raises it (the block's exit then ends the others)."""
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in futures if f.done() and f.exception() is not None), None)
            if failed is not None:
                failed.result()
            return [future.result() for future in futures]
        except BrokenProcessPool as exc:
            raise RuntimeError(
                f"a worker process fitting {rung} folds died (out of memory, or killed): "
                "set training.ladder.cv_workers: 1 to fit them one at a time in this process"
            ) from exc


def _start_worker(running, cores: int) -> None:
    from thaw.offline import apply_offline_environment

    global _running, _cores
    apply_offline_environment()
    _running, _cores = running, cores


def _share() -> int:
    """This fit's threads: the usable cores split among the fits running now."""
    return max(1, _cores // max(1, _running.value))


def _fit_in_worker(fit: AdaptedFit, curated: DatasetVersion, labels: tuple[str, ...], cfg: ThawConfig) -> TrainedRung:
    with _running.get_lock():
        _running.value += 1
    try:
        return fit_adapted_rung(fit, curated, labels, cfg, threads=_share)
    finally:
        with _running.get_lock():
            _running.value -= 1
