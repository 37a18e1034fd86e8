"""Shared measuring helpers: warm medians, the machine's matmul peak, peak RSS of a child."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Callable


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


def matmul_peak_gflops(n: int = 2048) -> float:
    """fp32 matmul GFLOP/s on all threads: warm, repeated, median (the run's own peak)."""
    import torch

    from thaw.modeling import configure_threads

    configure_threads()
    a, b = torch.randn(n, n), torch.randn(n, n)
    seconds = median_seconds(lambda: a @ b, repeats=7, warmup=3)
    return 2 * n ** 3 / seconds / 1e9


_EPILOGUE = """
import json as _json, resource as _res
print(_json.dumps({"self_kb": _res.getrusage(_res.RUSAGE_SELF).ru_maxrss,
                   "children_kb": _res.getrusage(_res.RUSAGE_CHILDREN).ru_maxrss}))
"""


def run_child(code: str, timeout: int = 7200) -> tuple[dict, float]:
    """Run python ``code`` in a child; return (its result JSON line, its peak RSS in MB).

    The peak is the larger of the child's own and that of any process it waited for.
    """
    proc = subprocess.run([sys.executable, "-c", code + _EPILOGUE], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    lines = proc.stdout.strip().splitlines()
    usage = json.loads(lines[-1])
    return json.loads(lines[-2]), max(usage["self_kb"], usage["children_kb"]) / 1024


def row(name: str, value: str, goal: str = "") -> None:
    print(f"  {name:<52} {value:>22}  {goal}", flush=True)
