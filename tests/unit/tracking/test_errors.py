"""Registry errors that are the user's situation, not thaw's bug, become one line."""

import pytest
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


def test_a_tracking_url_that_answers_200_with_a_page_is_not_taken_for_a_signed_in_user(tmp_path):
    """A careless paste (a UI's address, a proxy's page) answers "who is signed in" with
    200 and HTML, or with JSON naming nobody: one line, not a traceback."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import pytest

    from tasks.tracking.identity import registry_identity
    from thaw.config import ThawConfig
    from thaw.errors import UserError

    bodies = iter([b"<!doctype html><title>Prefect</title>", b'{"user": {"username": ["x"]}}', b"[" * 5000])

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):
            body = next(bodies)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Page) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        cfg = ThawConfig.model_validate({"workspace": str(tmp_path), "tracking": {"tracking_uri": uri}})
        for _ in range(3):
            with pytest.raises(UserError, match="without naming a user: is it an MLflow tracking server"):
                registry_identity(cfg)
        server.shutdown()


@pytest.mark.parametrize("claimed", ["a" * 20_000, "alice\nbob", "alice\x1b[31m", " alice", "alice bob", "-alice"])
def test_a_claimed_name_the_ledger_cannot_record_is_refused_in_one_line(tmp_path, monkeypatch, claimed):
    """THAW_APPROVER is written into each ledger entry its user makes: 20,000 characters
    overflowed the tag (an AssertionError), a newline or an escape was recorded as a name."""
    from tasks.tracking.identity import registry_identity
    from thaw.config import ThawConfig
    from thaw.errors import UserError

    cfg = ThawConfig.model_validate({"workspace": str(tmp_path)})
    monkeypatch.setenv("THAW_APPROVER", claimed)
    with pytest.raises(UserError) as raised:
        registry_identity(cfg)
    assert str(raised.value).startswith("THAW_APPROVER ") and "is not a name the ledger records" in str(raised.value)
    assert len(str(raised.value)) < 300 and "\n" not in str(raised.value)
    for fine in ("alice", "jane.doe@example.org", "ci-worker_2"):
        monkeypatch.setenv("THAW_APPROVER", fine)
        assert registry_identity(cfg).user == fine
    # without it, the OS user's name, as the system spells it (a service account's too)
    monkeypatch.delenv("THAW_APPROVER")
    for account in ("_svc", "jenkins$", "Ana"):
        monkeypatch.setenv("USER", account)  # getpass reads LOGNAME, then USER
        monkeypatch.setenv("LOGNAME", account)
        assert registry_identity(cfg).user == account
    monkeypatch.setenv("LOGNAME", "ana\nbob")
    with pytest.raises(UserError) as raised:
        registry_identity(cfg)
    assert str(raised.value).endswith("is not one the ledger records; set THAW_APPROVER")
    assert str(raised.value).startswith("the OS user name 'ana") and "\n" not in str(raised.value)
