"""Peak memory of `thaw curate` as the input grows (a child process per size)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.common import row, run_child

CHILD = """
import json, time, sys
from pathlib import Path
from thaw.demo_data import generate_support_tickets
ws = Path({ws!r}); ws.mkdir(parents=True, exist_ok=True)
src = ws / "tickets.csv"
if not src.exists():
    src.write_text(generate_support_tickets({rows}, seed=21)[0], encoding="utf-8")
import os; os.chdir(ws)
from thaw_cli.main import main
start = time.perf_counter()
code = main(["curate", "--input", "tickets.csv", "--text-column", "message", "--label-column", "intent",
             "--id-column", "ticket_id", "--output", "out", "--workspace", str(ws)])
print(json.dumps({{"code": code, "seconds": time.perf_counter() - start}}))
"""


def run(sizes: tuple[int, ...] = (100_000, 1_000_000)) -> dict:
    out = {}
    print("Curation peak RSS (thaw curate on generated tickets)")
    for rows in sizes:
        ws = Path(tempfile.mkdtemp(prefix=f"thaw-rss-{rows}-"))
        result, peak_mb = run_child(CHILD.format(ws=str(ws), rows=rows))
        tree = result["process_tree_peak_mb"]
        out[rows] = {"peak_rss_mb": peak_mb, "process_tree_peak_mb": tree, "seconds": result["seconds"]}
        goal = "goal < 4096 MB" if rows >= 1_000_000 else ""
        row(
            f"{rows:,} rows: peak RSS of thaw curate / wall time",
            f"{peak_mb:,.0f} MB / {result['seconds'] / 60:.1f} min",
            goal,
        )
        row(f"{rows:,} rows: peak RSS summed over its processes", f"{tree:,.0f} MB", "(forked workers counted in full)")
    return out
