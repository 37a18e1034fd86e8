"""Release: a trained model registered, traced, and promoted only through the gate and an
approver, with every alias move in the ledger.

Tasks:
- ``registration.register_model``: the pyfunc logged, registered and made ``challenger``;
- ``model_card.publish_model_card``: the version's description;
- ``run_summary.write_run_summary``: what a scheduler or a person reads after a run.

Plain modules: ``lineage`` (what a version records), ``stored_model`` (its files, verified
before any load), ``promotion`` (register, approve, reject, rollback: intent, act,
completion), ``promotion_lock``, ``ledger`` (the ledger's I/O), ``champion_comparison``
and ``approval_form`` (the approver in the Prefect UI).
"""
