"""MLflow "models from code" entry: MLflow runs this file to build the pyfunc.

It is executed by MLflow when a model is logged or loaded, never imported by thaw,
so no pickled Python objects end up in the registry.
"""

import mlflow

from thaw.serving import ThawTextClassifier

mlflow.models.set_model(ThawTextClassifier())
