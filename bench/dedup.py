"""Deduplication throughput on 100k generated rows: exact and near (MinHash LSH)."""

from __future__ import annotations

import csv
import io
import time

from bench.common import row


def run(rows: int = 100_000) -> dict:
    from tasks.curation.dedup import exact_duplicate_positions, minhash_signatures, near_duplicate_positions
    from thaw.config import DedupConfig
    from thaw.demo_data import generate_support_tickets

    text, _ = generate_support_tickets(rows, seed=11)
    texts = [r["message"] for r in csv.DictReader(io.StringIO(text))]
    start = time.perf_counter()
    exact = exact_duplicate_positions(texts)
    exact_rate = len(texts) / (time.perf_counter() - start)
    start = time.perf_counter()
    near = near_duplicate_positions(minhash_signatures(texts, DedupConfig()), DedupConfig())
    near_rate = len(texts) / (time.perf_counter() - start)
    print(f"Deduplication ({len(texts):,} generated rows)")
    row("exact (normalised text)", f"{exact_rate:,.0f} rows/s", f"{len(exact):,} found")
    row("near (MinHash LSH, 128 perms, 5-char shingles, 0.85)", f"{near_rate:,.0f} rows/s", f"{len(near):,} found")
    return {"rows": len(texts), "exact_rows_per_s": exact_rate, "near_rows_per_s": near_rate}
