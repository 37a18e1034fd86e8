"""A pickled pyfunc model, as an insider could register one: loading it runs its code."""

from __future__ import annotations

import os
import pathlib

import mlflow.pyfunc


class MarkerModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        pathlib.Path(os.environ.get("INSIDER_MARKER", "/nonexistent/marker")).write_text("ran")

    def predict(self, context, model_input, params=None):
        return model_input
