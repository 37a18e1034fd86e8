"""Serving: ``batch_prediction`` (``thaw predict MODEL@ALIAS``) with a verified model."""
