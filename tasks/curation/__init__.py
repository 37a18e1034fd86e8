"""Curation: labelled text in, clean and PII-free splits out, every removed row counted.

Tasks:
- ``curate.curate_dataset``, ``curate.publish_curated``: clean, dedup, scrub, split;
- ``expectations.validate_curated_data``: Great Expectations and the residual-PII check;
- ``scaleout.detect_chunk``, ``scaleout.minhash_chunk``: the same work on a Dask cluster.

Plain module: ``dedup`` (exact, label conflicts, MinHash near duplicates). The PII
detector is core (``thaw.pii``): the served model runs it on its input too.
"""
