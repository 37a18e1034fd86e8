"""Monitoring.

Tasks:
- ``drift.restore_reference``, ``drift.read_arrivals``, ``drift.assess_arrivals``,
  ``drift.trigger_retraining``, ``drift.publish_drift_report``: new rows against exactly what
  a model version learned from.
"""
