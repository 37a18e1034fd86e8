"""Where served requests, the labels that arrive later and canary breaches are kept.

One SQLAlchemy store (``serving.store``): SQLite in the state directory by default,
PostgreSQL on a team setup, so the server, ``thaw feedback``, ``thaw canary``, ``thaw
approve`` and the approval form read the same rows. Tables are prefixed ``thaw_`` so a
shared database can hold them beside others.

A request's text is never stored: only its digest, keyed by a random salt the store keeps
(so the digest of a guessed text cannot be computed without the store), its length and,
with ``serving.store_text: scrubbed``, the form the model saw (PII replaced by entity
types), cut to ``SCRUBBED_CHARS``. Everything read back is input: request ids and labels
are checked before they are written and again where they are shown.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from thaw.config import ThawConfig
from thaw.datasets import lone_surrogate, one_spelling
from thaw.errors import UserError

SCRUBBED_CHARS = 2000
MAX_LABEL_CHARS = 200
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")  # what the server hands out (uuid4 hex)

metadata = sa.MetaData()
_version = sa.String(32)
requests = sa.Table(
    "thaw_requests",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("at", sa.String(32), nullable=False),  # ISO 8601 UTC: sorts as text on every backend
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("answered_by", sa.String(16), nullable=False),
    sa.Column("champion_version", _version, nullable=False),
    sa.Column("challenger_version", _version),
    sa.Column("text_digest", sa.String(64), nullable=False),
    sa.Column("text_chars", sa.Integer, nullable=False),
    sa.Column("model_input", sa.Text),
    sa.Column("batch_rows", sa.Integer, nullable=False),
    *[
        column
        for who in ("champion", "challenger")
        for column in (
            sa.Column(f"{who}_label", sa.Text),
            sa.Column(f"{who}_confidence", sa.Float),
            sa.Column(f"{who}_ms", sa.Float),
            sa.Column(f"{who}_error", sa.Text),
        )
    ],
    sa.Index("thaw_requests_pair", "model", "champion_version", "challenger_version"),
)
feedback = sa.Table(
    "thaw_feedback",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(32), nullable=False, index=True),
    sa.Column("label", sa.String(MAX_LABEL_CHARS), nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("source", sa.String(300), nullable=False),
)
events = sa.Table(
    "thaw_events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("champion_version", _version, nullable=False),
    sa.Column("challenger_version", _version, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Index("thaw_events_pair", "model", "champion_version", "challenger_version"),
)
meta = sa.Table(
    "thaw_store_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
REQUEST_COLUMNS = tuple(c.name for c in requests.columns)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def store_url(cfg: ThawConfig) -> str:
    return cfg.serving.store or f"sqlite:///{cfg.state_path / 'requests.db'}"


def store_exists(cfg: ThawConfig) -> bool:
    """Whether the store may hold anything: a server's database is asked; a SQLite file
    that is not there holds nothing (and is not created by asking)."""
    url = store_url(cfg)
    if not url.startswith("sqlite"):
        return True
    path = sa.engine.make_url(url).database
    return bool(path) and Path(path).is_file()


def shown_url(url: str) -> str:
    """The store's URL as it may be printed (a password, were one there, hidden)."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(an unreadable URL)"


def check_label(value: object, where: str) -> str:
    """A label as given: text, 1-200 characters, no control characters; UserError naming ``where``."""
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: the label is empty")
    label = one_spelling(value)  # as training files' labels are read
    if len(label) > MAX_LABEL_CHARS:
        raise UserError(f"{where}: the label is {len(label):,} characters; at most {MAX_LABEL_CHARS}")
    if any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 for ch in label):
        raise UserError(f"{where}: the label holds control characters")
    if escape := lone_surrogate(label):
        raise UserError(f"{where}: the label holds a lone surrogate ({escape}, half of a character)")
    return label


def check_request_id(value: object, where: str) -> str:
    text = str(value).strip() if value is not None else ""
    if not REQUEST_ID.match(text):
        raise UserError(f"{where}: {text[:60]!r} is not a request id thaw serve hands out (32 hex digits)")
    return text


class RequestStore:
    """The store at ``url``; tables are created on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            path = sa.engine.make_url(url).database
            if path:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(url, connect_args={"timeout": 30})
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True)
        try:
            metadata.create_all(self.engine)
        except sa.exc.OperationalError as exc:
            raise UserError(f"the request store {shown_url(url)} cannot be opened: {str(exc.orig)[:300]}") from None
        self._salt = self._digest_salt()

    @classmethod
    def for_config(cls, cfg: ThawConfig) -> RequestStore:
        return cls(store_url(cfg))

    def _digest_salt(self) -> bytes:
        query = sa.select(meta.c.value).where(meta.c.key == "digest_salt")
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar()
        if found is None:
            with contextlib.suppress(sa.exc.IntegrityError), self.engine.begin() as conn:
                conn.execute(meta.insert().values(key="digest_salt", value=secrets.token_hex(32)))
            with self.engine.connect() as conn:  # ours, or another process's that came first
                found = conn.execute(query).scalar_one()
        return bytes.fromhex(found)

    def digest(self, text: str) -> str:
        """The text's keyed digest (HMAC-SHA256 with this store's salt)."""
        return hmac.new(self._salt, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def record(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write served requests (``REQUEST_COLUMNS``), in one transaction."""
        if rows:
            with self.engine.begin() as conn:
                conn.execute(requests.insert(), [dict(r) for r in rows])

    def requests_of(self, model: str, champion: str, challenger: str) -> list[dict[str, Any]]:
        """Every request of ``model`` served while ``champion`` and ``challenger`` were the pair."""
        query = sa.select(requests).where(
            requests.c.model == model,
            requests.c.champion_version == champion,
            requests.c.challenger_version == challenger,
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query.order_by(requests.c.at))]

    def existing_ids(self, ids: Iterable[str]) -> set[str]:
        wanted, found = list(dict.fromkeys(ids)), set()
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                found |= set(conn.execute(sa.select(requests.c.id).where(requests.c.id.in_(chunk))).scalars())
        return found

    def add_feedback(self, labels: Sequence[tuple[str, str]], source: str) -> int:
        """Record labels by request id, all or none; a later label for an id supersedes an
        earlier one (both are kept). Ids the store does not hold are refused (UserError)."""
        held = self.existing_ids(rid for rid, _ in labels)
        unknown = [rid for rid, _ in labels if rid not in held]
        if unknown:
            raise UserError(
                f"{source}: {len(unknown)} request id{'s' if len(unknown) > 1 else ''} the store does not hold "
                f"(first {unknown[0]}); nothing recorded"
            )
        at = now_iso()
        with self.engine.begin() as conn:
            conn.execute(
                feedback.insert(),
                [{"request_id": r, "label": lab, "at": at, "source": source[:300]} for r, lab in labels],
            )
        return len(labels)

    def labels_for(self, ids: Iterable[str]) -> dict[str, str]:
        """The latest label that arrived for each of ``ids`` that has one."""
        wanted, out = list(dict.fromkeys(ids)), {}
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                query = sa.select(feedback.c.request_id, feedback.c.label).where(feedback.c.request_id.in_(chunk))
                for rid, label in conn.execute(query.order_by(feedback.c.seq)):
                    out[rid] = label
        return out

    def record_breach(self, model: str, champion: str, challenger: str, reason: str, detail: Mapping) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                events.insert().values(
                    model=model,
                    at=now_iso(),
                    kind="breach",
                    champion_version=champion,
                    challenger_version=challenger,
                    reason=reason,
                    detail=json.dumps(dict(detail), sort_keys=True, default=str),
                )
            )

    def breaches_of(self, model: str, champion: str, challenger: str) -> list[dict[str, Any]]:
        query = sa.select(events).where(
            events.c.model == model,
            events.c.kind == "breach",
            events.c.champion_version == champion,
            events.c.challenger_version == challenger,
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query.order_by(events.c.seq))]

    def breaches_of_model(self, model: str) -> list[dict[str, Any]]:
        """Every breach recorded for ``model``, oldest first."""
        query = sa.select(events).where(events.c.model == model, events.c.kind == "breach")
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query.order_by(events.c.seq))]

    def report(self, model: str, champion: str, challenger: str):
        """The canary report (``thaw.canary.CanaryReport``) of this pair, from what is stored."""
        from thaw.canary import canary_report

        rows = self.requests_of(model, champion, challenger)
        return canary_report(
            model,
            champion,
            challenger,
            rows,
            self.labels_for(r["id"] for r in rows),
            self.breaches_of(model, champion, challenger),
        )

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL: the server writes while `thaw canary` and `thaw feedback` read and write."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
