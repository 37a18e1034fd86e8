"""Evaluation: predictions scored with intervals, and the one place test labels are read.

Tasks:
- ``prediction.predict_test_split``, ``prediction.report_unselected_rungs``;
- ``scoring.evaluate_on_test``: metrics with intervals, per-class report, confusion matrix.
"""
