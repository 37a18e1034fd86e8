"""Shared measuring helpers: warm medians, the machine's matmul peak, peak RSS of a child."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def shared_datasets() -> Path:
    """The public datasets the benchmarks read: ``$THAW_SHARED_DATASETS`` when set, else
    ``../shared/datasets`` beside the checkout. Most machines have neither: each section
    that needs a set says it is absent and skips it."""
    configured = os.environ.get("THAW_SHARED_DATASETS")
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "shared" / "datasets"


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 2) -> float:
    """Median wall time of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak_gflops(n: int = 2048, dtype=None) -> float:
    """Matmul GFLOP/s on all threads in ``dtype`` (fp32 by default): warm, repeated,
    median (the run's own peak)."""
    import torch

    from thaw.modeling import configure_threads

    configure_threads()
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    seconds = median_seconds(lambda: a @ b, repeats=7, warmup=3)
    return 2 * n**3 / seconds / 1e9


def best_matmul_peak(dtype=None, reads: int = 3) -> float:
    """The best of ``reads`` warm medians (``matmul_peak_gflops``): one low reading on a
    shared host would flatter every fraction of the peak."""
    return max(matmul_peak_gflops(dtype=dtype) for _ in range(reads))


_EPILOGUE = """
import json as _json
_hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(_json.dumps({"self_hwm_kb": _hwm}))
"""


def run_child(code: str, timeout: int = 7200) -> tuple[dict, float]:
    """Run python ``code`` in a child; return (its result JSON line, its peak RSS in MB).

    The peak is the child's own high-water mark (VmHWM, which, unlike ru_maxrss, does not
    inherit the parent's peak). The result also carries ``process_tree_peak_mb``, the
    largest sum of RSS over the child and its subprocesses sampled every 0.2 s (forked
    workers share pages, so that sum overstates them).
    """
    import psutil

    proc = subprocess.Popen(
        [sys.executable, "-c", code + _EPILOGUE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    tree_peak = 0
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            procs = [parent, *parent.children(recursive=True)]
            tree_peak = max(tree_peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.2)
    out, err = proc.communicate(timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(err[-3000:])
    lines = out.strip().splitlines()
    usage = json.loads(lines[-1])
    result = json.loads(lines[-2])
    result["process_tree_peak_mb"] = tree_peak / 2**20
    return result, usage["self_hwm_kb"] / 1024


def row(name: str, value: str, goal: str = "") -> None:
    print(f"  {name:<52} {value:>22}  {goal}", flush=True)
