"""Registry errors that are the user's situation, not thaw's bug, become one line."""

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INTERNAL_ERROR,
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
    UNAUTHENTICATED,
)

from tasks.tracking.client import is_missing
from thaw.errors import tracking_access_problem


def test_an_unreachable_server_is_named_and_not_taken_for_a_missing_model():
    exc = MlflowException(
        "API request to http://127.0.0.1:5999/api/2.0/mlflow/registered-models/get failed with exception "
        "HTTPConnectionPool(host='127.0.0.1', port=5999): Max retries exceeded with url: ...",
        error_code=INTERNAL_ERROR,
    )
    assert (
        tracking_access_problem(exc)
        == "cannot reach the MLflow tracking server at http://127.0.0.1:5999 (is it running?)"
    )
    assert not is_missing(exc)


def test_only_not_found_counts_as_missing():
    assert is_missing(MlflowException("Registered Model with name=x not found", error_code=RESOURCE_DOES_NOT_EXIST))
    assert is_missing(MlflowException("Registered model alias champion not found.", error_code=INVALID_PARAMETER_VALUE))
    assert not is_missing(MlflowException("Unauthenticated", error_code=UNAUTHENTICATED))
    assert not is_missing(MlflowException("bad value for 'name'", error_code=INVALID_PARAMETER_VALUE))
