"""Versioning with DVC.

Tasks:
- ``snapshots.version_raw_data``, ``snapshots.version_curated_data``: ``dvc add`` and push.
- ``state_budget.keep_state_within_budget``: after a finished run, the least recently used
  caches, checkpoints and run directories removed until they fit ``state_budget_gb``.

Plain modules: ``restore`` (a split fetched from the DVC remote by the md5 a model version
records, byte-identical, and lineage re-verified).
"""
