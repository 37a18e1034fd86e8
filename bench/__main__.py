"""`make bench`: every benchmark, ratios measured in this one run on this machine.

python -m bench [--only pii,dedup,encoder,serving,canary,cache,rerun,rss,drift,ladder] [--rss-sizes 100000,1000000]
                [--smoke] [--json FILE]

``--smoke`` runs each section that has a size at its smallest (canary, rerun and ladder
have none and run in full): it checks that the sections still run, and its figures are
not evidence. ``tests/e2e/cli/test_bench_smoke.py`` runs it so.
"""

from __future__ import annotations

import argparse
import importlib
import json
import tempfile
import time
from pathlib import Path

from thaw.offline import apply_offline_environment

SECTIONS = ("pii", "dedup", "encoder", "serving", "canary", "cache", "rerun", "rss", "drift", "ladder")
MODULES = {"rss": "curation_rss"}  # a section's module where it is not named after it
SMOKE = {
    "pii": {"rows": 40},
    "dedup": {"rows": 500},
    "encoder": {"texts": 100, "lora_examples": 64},
    "serving": {"single_rows": 10, "batch_rows": 64},
    "cache": {"rows": 300},
    "rss": {"sizes": (300,)},
    "drift": {"repeats": 2},
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--rss-sizes", default="100000,1000000")
    parser.add_argument("--smoke", action="store_true", help="the smallest sizes: checks the sections run")
    parser.add_argument("--json", help="also write all figures to this file")
    args = parser.parse_args()
    chosen = [s for s in args.only.split(",") if s]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}")
    apply_offline_environment()
    import os

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    results = {}
    started = time.perf_counter()
    for section in chosen:
        print()
        kwargs = dict(SMOKE.get(section, {})) if args.smoke else {}
        if section == "rss" and not args.smoke:
            kwargs["sizes"] = tuple(int(x) for x in args.rss_sizes.split(","))
        if section == "ladder":
            kwargs["workspace"] = Path(tempfile.mkdtemp(prefix="thaw-ladder-"))
        module = importlib.import_module(f"bench.{MODULES.get(section, section)}")
        results[section] = module.run(**kwargs)
    print(f"\nbench finished in {(time.perf_counter() - started) / 60:.1f} min")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
