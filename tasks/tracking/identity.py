"""Who is acting, as the registry knows it.

With a tracking server that authenticates (MLflow's basic-auth app, as ``infra/`` runs
it), the identity is the user the server authenticated for this very process's
credentials (``/api/2.0/mlflow/users/current``), not a name anyone typed. Without
authentication there is nothing to verify: the name is the OS user (or
``THAW_APPROVER``), and every ledger entry says it was not verified.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass

from thaw.config import ThawConfig
from thaw.errors import UserError
from thaw.tracking import tracking_uri


@dataclass(frozen=True)
class Identity:
    """A user name and how much it is worth."""

    user: str
    verified: bool
    how: str  # said on every ledger entry


def _claimed() -> str:
    return os.environ.get("THAW_APPROVER") or getpass.getuser()


def registry_identity(cfg: ThawConfig) -> Identity:
    """The identity the tracking server authenticated, or a claimed one marked as such.

    Refuses (UserError) credentials the server rejects."""
    uri = tracking_uri(cfg)
    if not uri.startswith(("http://", "https://")):
        return Identity(_claimed(), False, "not verified: local store without authentication")
    status, body = _current_user(uri)
    if status == 200:
        return Identity(body["user"]["username"], True, "authenticated by the MLflow tracking server")
    if status == 404:
        return Identity(_claimed(), False, "not verified: the tracking server has no authentication")
    if status == 401:
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        who = f"the credentials of {user!r}" if user else "a request without credentials"
        raise UserError(
            f"the MLflow tracking server refused {who}: set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD to your account"
        )
    raise UserError(f"the MLflow tracking server at {uri} answered {status} when asked who is signed in")


def _current_user(uri: str) -> tuple[int, dict]:
    import base64
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{uri.rstrip('/')}/api/2.0/mlflow/users/current")
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=15) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except OSError as exc:
        raise UserError(f"cannot reach the MLflow tracking server at {uri} ({exc})") from None
