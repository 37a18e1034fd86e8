"""The stages of thaw, one sub-package per capability. Flows (``flows/``) call the ``@task``
functions listed in each package's catalogue; the plain modules beside them hold the logic
those tasks run, testable without Prefect.

- ``tasks.curation``: read, clean, deduplicate, scrub PII, split, check (Great Expectations);
- ``tasks.versioning``: DVC snapshots of raw and curated data, and their byte-exact restore;
- ``tasks.ladder``: the adaptation ladder, from the scratch baseline and the frozen rung up;
- ``tasks.evaluation``: scoring predictions, and the one read of the test split;
- ``tasks.tracking``: the MLflow client, runs, dataset inputs, identities and links;
- ``tasks.release``: registration, lineage, model card, promotion (gate, ledger, lock, approval);
- ``tasks.serving``: batch prediction with a registered model;
- ``tasks.monitoring``: drift of new rows against what a model version learned from.

Which capability may import which is an import-linter contract in ``pyproject.toml``.
"""
