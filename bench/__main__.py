"""`make bench`: every benchmark, ratios measured in this one run on this machine.

python -m bench [--only pii,dedup,encoder,serving,canary,cache,rerun,rss,drift,ladder] [--rss-sizes 100000,1000000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from thaw.offline import apply_offline_environment

SECTIONS = ("pii", "dedup", "encoder", "serving", "canary", "cache", "rerun", "rss", "drift", "ladder")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--rss-sizes", default="100000,1000000")
    parser.add_argument("--json", help="also write all figures to this file")
    args = parser.parse_args()
    apply_offline_environment()
    import os

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    chosen = [s for s in args.only.split(",") if s]
    results = {}
    started = time.perf_counter()
    for section in chosen:
        print()
        if section == "pii":
            from bench import pii

            results[section] = pii.run()
        elif section == "dedup":
            from bench import dedup

            results[section] = dedup.run()
        elif section == "encoder":
            from bench import encoder

            results[section] = encoder.run()
        elif section == "serving":
            from bench import serving

            results[section] = serving.run()
        elif section == "canary":
            from bench import canary

            results[section] = canary.run()
        elif section == "cache":
            from bench import cache

            results[section] = cache.run()
        elif section == "rerun":
            from bench import rerun

            results[section] = rerun.run()
        elif section == "rss":
            from bench import curation_rss

            results[section] = curation_rss.run(tuple(int(x) for x in args.rss_sizes.split(",")))
        elif section == "drift":
            from bench import drift

            results[section] = drift.run()
        elif section == "ladder":
            from bench import ladder

            results[section] = ladder.run(Path(tempfile.mkdtemp(prefix="thaw-ladder-")))
        else:
            raise SystemExit(f"unknown section {section!r}; choose from {', '.join(SECTIONS)}")
    print(f"\nbench finished in {(time.perf_counter() - started) / 60:.1f} min")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
