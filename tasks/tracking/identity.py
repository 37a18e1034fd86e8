"""Who is acting, as the registry knows it.

With a tracking server that authenticates (MLflow's basic-auth app, as ``infra/`` runs
it), the identity is the user the server authenticated for this very process's
credentials (``/api/2.0/mlflow/users/current``), not a name anyone typed. Without
authentication there is nothing to verify: the name is the OS user (or
``THAW_APPROVER``), and every ledger entry says it was not verified.

Where the team keeps an approvers file (``thaw.signing``), the identity that writes to
the ledger is the one its signing key proves (``acting_identity``): every entry is then
signed, and checked against that file by whoever reads it.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from thaw.config import ThawConfig
from thaw.errors import UserError
from thaw.parse import json_value
from thaw.shown import one_line
from thaw.tracking import tracking_uri

if TYPE_CHECKING:
    from thaw.signing import Approvers, Signer


@dataclass(frozen=True)
class Identity:
    """A user name, how much it is worth and, where the team keeps an approvers file,
    the key that signs what this user writes to the ledger."""

    user: str
    verified: bool
    how: str  # said on every ledger entry
    key: Any = None  # an Ed25519 private key (thaw.signing); None: entries are unsigned
    approvers: Approvers | None = None

    @property
    def signer(self) -> Signer | None:
        from thaw.signing import fingerprint, raw_public_key

        if self.key is None or self.approvers is None:
            return None
        return self.approvers.signers.get(fingerprint(raw_public_key(self.key)))

    def may(self, permission: str) -> bool:
        """Whether this identity's key may take ``permission`` (True when nothing is signed)."""
        return self.approvers is None or (self.signer is not None and permission in self.signer.may)


def team_approvers(cfg: ThawConfig) -> Approvers | None:
    """The approvers file of the workspace (``promotion.approvers_file``), or None."""
    from thaw.signing import load_approvers

    path = cfg.promotion.approvers_file
    return load_approvers(path if path.is_absolute() else cfg.root / path)


def acting_identity(cfg: ThawConfig) -> Identity:
    """Who writes to the ledger: the registry's identity and, with an approvers file, the
    signing key (``THAW_SIGNING_KEY``) that file lists. Refuses (UserError) a missing or
    unlisted key, and a key whose name is not the user the tracking server authenticated."""
    from thaw.signing import fingerprint, key_path, load_private_key, raw_public_key

    registry, approvers = registry_identity(cfg), team_approvers(cfg)
    if approvers is None:
        return registry
    path = key_path()
    key = load_private_key(path)
    signer = approvers.signers.get(fingerprint(raw_public_key(key)))
    if signer is None:
        raise UserError(
            f"the signing key {path} ({fingerprint(raw_public_key(key))}) is not in {approvers.path}: "
            "ask for it to be added there (by a commit the team reviews)"
        )
    if registry.verified and registry.user != signer.name:
        raise UserError(
            f"the tracking server authenticated {registry.user!r} but the signing key {path} is {signer.name!r}'s"
        )
    how = f"signed with {signer.name}'s key {signer.fingerprint}; {registry.how}"
    return Identity(signer.name, True, how, key, approvers)


def _claimed() -> str:
    """The name a user claims: ``THAW_APPROVER`` as the approvers file spells names (it is
    typed, and written into every ledger entry that user makes), else the OS user's, which
    the system named: taken when it is one line of at most 64 characters (``_svc`` and
    ``jenkins$`` are account names too; a scheduled run registers under one)."""
    from thaw.signing import NAME

    name = os.environ.get("THAW_APPROVER")
    if name:
        if not NAME.fullmatch(name):
            raise UserError(
                f"THAW_APPROVER {one_line(repr(name), 80)} is not a name the ledger records: letters, digits and "
                ". _ @ -, at most 64, starting with a letter or digit"
            )
        return name
    name = getpass.getuser()
    if not name.strip() or len(name) > 64 or one_line(name, 65) != name:
        raise UserError(f"the OS user name {one_line(repr(name), 80)} is not one the ledger records; set THAW_APPROVER")
    return name


def registry_identity(cfg: ThawConfig) -> Identity:
    """The identity the tracking server authenticated, or a claimed one marked as such.

    Refuses (UserError) credentials the server rejects."""
    uri = tracking_uri(cfg)
    if not uri.startswith(("http://", "https://")):
        return Identity(_claimed(), False, "not verified: local store without authentication")
    status, body = _current_user(uri)
    if status == 200:
        # the answer is input: a URL that is not a tracking server's (a UI, a proxy's
        # page) may answer 200 with anything
        user = body.get("user") if isinstance(body, dict) else None
        name = user.get("username") if isinstance(user, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise UserError(
                f"{uri} answered the question who is signed in without naming a user: is it an MLflow tracking server?"
            )
        if len(name) > 256 or one_line(name, 257) != name:  # written into every ledger entry, on one line
            raise UserError(
                f"{uri} names the signed-in user {one_line(repr(name), 80)}, which the ledger cannot record"
            )
        return Identity(name, True, "authenticated by the MLflow tracking server")
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


def _current_user(uri: str) -> tuple[int, Any]:
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
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except OSError as exc:
        raise UserError(f"cannot reach the MLflow tracking server at {uri} ({exc})") from None
    try:
        return status, json_value(raw or b"{}")
    except ValueError:  # not JSON: not a tracking server's answer
        return status, None
