"""Who may act on a model, and proof that they did: the approvers file and signed entries.

The approvers file (``configs/approvers.yaml`` by default) is kept under version control
beside the configuration, where MANAGE on a registered model does not reach. It names
each signer, their Ed25519 public key and what that key may do::

    signers:
      alice:
        key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... alice@laptop
        may: [approve, reject, force, rollback, acknowledge]
      scheduler:                    # the scheduled worker: registers, never approves
        key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI...
        may: [register]

Any listed key may write notes (a broken lock, an unlock, an approval requested in the
Prefect form, the completion of an interrupted operation); the rest needs its permission.

Every ledger entry is then signed by its actor's private key (``THAW_SIGNING_KEY``, a
file only its owner can read): the signature covers the entry's digest, which covers
the digest of the entry before it, so an entry cannot be edited, forged, or re-linked
around a removed one without the key of the person it names.

Without an approvers file there is nothing to check a signature against: entries are
written unsigned and every record says so.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thaw.errors import UserError

PERMISSIONS = ("register", "approve", "reject", "force", "rollback", "acknowledge")
NOTE = "note"  # a lock note, a form's request, a completion after an interruption: any listed key
KEY_ENV = "THAW_SIGNING_KEY"
PASSPHRASE_ENV = "THAW_SIGNING_KEY_PASSPHRASE"
DEFAULT_KEY = Path("~/.config/thaw/signing_key")
SIGNED_CONTEXT = b"thaw-ledger-entry-v1:"  # a thaw signature can never pass for another protocol's
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MAX_FILE_BYTES = 1_000_000


@dataclass(frozen=True)
class Signer:
    """One person or service account of the approvers file."""

    name: str
    public_key: bytes  # raw Ed25519, 32 bytes
    may: frozenset[str]

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)


@dataclass(frozen=True)
class Approvers:
    """The parsed approvers file: signers by fingerprint, and the unsigned history it adopts."""

    path: Path
    signers: Mapping[str, Signer]
    unsigned_history: Mapping[str, str] = field(default_factory=dict)  # model name -> last unsigned entry digest

    def named(self, name: str) -> Signer | None:
        return next((s for s in self.signers.values() if s.name == name), None)


def fingerprint(public_key: bytes) -> str:
    """The key's fingerprint as ``ssh-keygen -l`` prints it (``SHA256:`` + unpadded base64)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(_ssh_wire(public_key)).digest()).decode().rstrip("=")


def _ssh_wire(public_key: bytes) -> bytes:
    kind = b"ssh-ed25519"
    return len(kind).to_bytes(4, "big") + kind + len(public_key).to_bytes(4, "big") + public_key


def public_key_line(public_key: bytes, comment: str = "") -> str:
    """The OpenSSH one-line form of a public key, as the approvers file takes it."""
    line = "ssh-ed25519 " + base64.b64encode(_ssh_wire(public_key)).decode()
    return f"{line} {comment}".strip()


def parse_public_key(text: str, where: str) -> bytes:
    """Raw Ed25519 public key from an OpenSSH ``ssh-ed25519 AAAA...`` line; UserError otherwise."""
    parts = str(text).split()
    if len(parts) < 2 or parts[0] != "ssh-ed25519":
        raise UserError(f"{where}: key is not an OpenSSH ed25519 public key ('ssh-ed25519 AAAA...')")
    try:
        wire = base64.b64decode(parts[1], validate=True)
    except ValueError:
        raise UserError(f"{where}: key is not valid base64") from None
    if len(wire) != 51 or wire[:15] != _ssh_wire(b"\0" * 32)[:15]:
        raise UserError(f"{where}: key is not an ed25519 public key")
    return wire[-32:]


def load_approvers(path: Path) -> Approvers | None:
    """The approvers file at ``path``, or None when there is none (entries are then unsigned).

    Refuses (UserError, naming the file and the signer) a file that is not a mapping,
    unknown fields, a bad name or key, a key listed twice, an unknown permission."""
    if not path.is_file():
        return None
    from thaw.config import load_yaml_strict

    if path.stat().st_size > MAX_FILE_BYTES:
        raise UserError(f"{path}: larger than {MAX_FILE_BYTES} bytes; not an approvers file")
    data = load_yaml_strict(path)
    if not isinstance(data, dict) or set(data) - {"signers", "unsigned_history"}:
        raise UserError(f"{path}: expected the fields 'signers' and optionally 'unsigned_history'")
    signers: dict[str, Signer] = {}
    raw = data.get("signers") or {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: 'signers' must map each name to its key and permissions")
    for name, entry in raw.items():
        signer = _signer(path, str(name), entry)
        if signer.fingerprint in signers:
            raise UserError(f"{path}: signer {name!r} has the same key as {signers[signer.fingerprint].name!r}")
        signers[signer.fingerprint] = signer
    history = data.get("unsigned_history") or {}
    if not isinstance(history, dict) or not all(
        isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) for v in history.values()
    ):
        raise UserError(f"{path}: 'unsigned_history' maps a model name to the 64-hex digest of its last unsigned entry")
    return Approvers(path, signers, {str(k): v for k, v in history.items()})


def _signer(path: Path, name: str, entry: Any) -> Signer:
    where = f"{path}: signer {name!r}"
    if not NAME.fullmatch(name):  # not match: its "$" allows a newline at the end
        raise UserError(f"{where}: a name is letters, digits and . _ @ - (at most 64)")
    if not isinstance(entry, dict) or set(entry) != {"key", "may"}:
        raise UserError(f"{where}: expected exactly the fields 'key' and 'may'")
    may = entry["may"]
    if not isinstance(may, list) or not may or any(p not in PERMISSIONS for p in may):
        raise UserError(f"{where}: 'may' lists some of {', '.join(PERMISSIONS)}")
    return Signer(name, parse_public_key(entry["key"], where), frozenset(may))


# -- private keys ----------------------------------------------------------------------


def key_path() -> Path:
    return Path(os.environ.get(KEY_ENV) or DEFAULT_KEY).expanduser()


def load_private_key(path: Path):
    """The Ed25519 private key at ``path`` (OpenSSH or PKCS#8 PEM). Refuses, like ssh, a
    file others may read, and anything that is not an Ed25519 key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_ssh_private_key

    if not path.is_file():
        raise UserError(
            f"no signing key at {path}: set {KEY_ENV} to your private key file (`thaw keys new NAME` makes one)"
        )
    if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise UserError(f"{path}: a signing key others can read is refused; chmod 600 {path}")
    data = path.read_bytes()[:MAX_FILE_BYTES]
    passphrase = os.environ.get(PASSPHRASE_ENV, "").encode() or None
    loader = load_ssh_private_key if b"OPENSSH PRIVATE KEY" in data else load_pem_private_key
    try:
        key = loader(data, password=passphrase)
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path}: cannot read the signing key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"{path}: the signing key must be ed25519")
    return key


def raw_public_key(private_key) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def new_key(path: Path) -> bytes:
    """Write a new Ed25519 private key (OpenSSH format, mode 600) at ``path``; returns
    its raw public key. Never overwrites."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UserError(f"{path} exists: a signing key is never overwritten") from None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return raw_public_key(key)


# -- signatures ------------------------------------------------------------------------


def sign(private_key, digest: str) -> str:
    """Base64 Ed25519 signature of an entry digest."""
    return base64.b64encode(private_key.sign(SIGNED_CONTEXT + digest.encode())).decode()


def signature_matches(public_key: bytes, digest: str, signature: str) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            base64.b64decode(signature, validate=True), SIGNED_CONTEXT + digest.encode()
        )
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def required_permission(entry: Mapping[str, Any]) -> str:
    """What a key must be allowed to sign ``entry``: its action (an approval with
    ``force`` needs ``force`` as well, checked by ``entry_problems``); a co-signature
    needs ``force``; anything else is a note (``NOTE``), which any listed key may write."""
    action = str(entry.get("action"))
    if entry.get("phase") == "completion" and entry.get("recovered"):
        return NOTE
    if action == "cosign":
        return "force"
    return action if action in PERMISSIONS else NOTE


def entry_problems(entry: Mapping[str, Any], approvers: Approvers) -> list[str]:
    """What is wrong with the signature of one entry (empty: signed by a listed key
    allowed to take its action, and ``by`` is that key's name)."""
    key, by = entry.get("key", "?"), entry.get("by")
    signer_fp, signature = entry.get("signer"), entry.get("signature")
    if not signer_fp or not signature:
        return [f"{key} ({entry.get('action')} by {by}) is unsigned: written without a key, or stripped"]
    signer = approvers.signers.get(str(signer_fp))
    if signer is None:
        return [f"{key} is signed by a key not in {approvers.path} ({str(signer_fp)[:60]})"]
    if not signature_matches(signer.public_key, str(entry.get("digest")), str(signature)):
        return [f"{key}: its signature by {signer.name} does not match: edited, or re-linked around a removed entry"]
    problems = []
    if by != signer.name:
        problems.append(f"{key} says it is by {str(by)[:60]!r} but is signed by {signer.name}'s key")
    needed = {required_permission(entry)} | (
        {"force"} if entry.get("force") and entry.get("phase") == "intent" else set()
    )
    for permission in sorted(needed - signer.may - {NOTE}):
        problems.append(f"{key}: {signer.name}'s key may not {permission} ({approvers.path})")
    return problems
