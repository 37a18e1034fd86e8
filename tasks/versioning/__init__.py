"""Versioning with DVC.

Tasks:
- ``snapshots.version_raw_data``, ``snapshots.version_curated_data``: ``dvc add`` and push.

Plain modules: ``restore`` (a split fetched from the DVC remote by the md5 a model version
records, byte-identical, and lineage re-verified).
"""
