"""Tracking in MLflow.

Tasks:
- ``runs.open_tracking_run``, ``runs.log_run_results``, ``runs.tie_metrics_to_model``,
  ``runs.close_tracking_run``;
- ``dataset_inputs.log_datasets``: splits as MLflow datasets (DVC md5, schema, profile, source).

Plain modules: ``client`` (the MLflow client, aliases, model references), ``identity`` (who
is acting, as the registry knows it) and ``links`` (links an auditor can click).
"""
