"""The promotion lock: one process at a time moves a model's aliases and writes its ledger.

The lock is a registered model, ``<model>.promotion-lock``: MLflow creates a registered
model atomically (a unique name in its database), so of several processes creating it
one succeeds. The holder's owner token, identity and purpose are tags on it.

- **Lease.** The holder renews it every quarter lease by updating the lock's description;
  the registry stamps ``last_updated_timestamp`` with its own clock. A waiter judges a lock
  stale by the registry's clock (the ``Date`` header of the tracking server's reply), never
  by its own, so client clocks do not matter.
- **Owned.** Only the holder (its token) releases the lock. Before every write the holder
  checks that it still holds it (``check``), so a holder that lost its lease stops instead
  of writing over its successor.
- **Recovery without the dead holder's permissions.** Under basic auth only a lock's
  creator may delete it, so a stale lock is not deleted: the lock moves to the next
  *generation* (``<model>.promotion-lock.<n>``), named by the ``thaw.lock_generation`` tag
  of the registered model, which every approver (MANAGE on the model) may set. The
  breaker records the broken holder in the ledger. ``thaw unlock`` does the same by hand.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from thaw.config import ThawConfig
from thaw.errors import UserError

log = logging.getLogger(__name__)

GENERATION_TAG = "thaw.lock_generation"
TOKEN_TAG = "thaw.lock.token"


class LockLost(RuntimeError):
    """The lease ran out (or the lock was broken) while this process held it."""


def lock_model_name(name: str, generation: int) -> str:
    return f"{name}.promotion-lock" + (f".{generation}" if generation else "")


def registry_now(tracking_uri: str) -> float:
    """Seconds since the epoch by the registry's clock: the tracking server's ``Date``
    header; this machine's clock for a local store (the only writer's clock)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return time.time()
    import urllib.request
    from email.utils import parsedate_to_datetime

    with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=10) as resp:
        date = resp.headers.get("Date")
    return parsedate_to_datetime(date).timestamp() if date else time.time()


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or held) a lock, and how long ago it last renewed its lease."""

    lock: str
    generation: int
    token: str
    holder: str
    purpose: str
    host: str
    pid: str
    silent_seconds: float

    def describe(self) -> str:
        """One line; the tags it is read from are anyone's who may edit the registry."""
        from thaw.shown import one_line

        holder, purpose, pid, host = (one_line(v, 80) for v in (self.holder, self.purpose, self.pid, self.host))
        return (
            f"{holder} ({purpose}; pid {pid} on {host}), "
            f"last renewed {self.silent_seconds:.0f} s ago by the registry's clock"
        )


@dataclass
class PromotionLock:
    """A held lock: ``check()`` before each write; released by its owner only."""

    client: object
    model: str
    generation: int
    token: str
    lease_seconds: float
    broken: tuple[LockHolder, ...] = ()
    _lost: str = ""
    _renewed: float = field(default_factory=time.monotonic)
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        return lock_model_name(self.model, self.generation)

    def check(self) -> None:
        """Raise LockLost unless this process still holds the lock."""
        if not self._lost and time.monotonic() - self._renewed > self.lease_seconds:
            self._lost = f"could not renew the lease for {time.monotonic() - self._renewed:.0f} s"
        if not self._lost and _generation(self.client, self.model) != self.generation:
            self._lost = "the lock was broken by another process (its lease had run out)"
        if self._lost:
            raise LockLost(f"{self.name}: {self._lost}; nothing further written")

    def renew(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.update_registered_model(self.name, description=_description(self.model, "held"))
            self._renewed = time.monotonic()
        except MlflowException as exc:
            self._lost = f"renewing the lease failed ({exc.error_code})"

    def _keep_alive(self) -> None:
        while not self._stop.wait(self.lease_seconds / 4):
            self.renew()

    def start(self) -> None:
        threading.Thread(target=self._keep_alive, name=f"lease {self.name}", daemon=True).start()

    def release(self) -> None:
        """Stop renewing and delete the lock if it is still this process's."""
        from mlflow.exceptions import MlflowException

        self._stop.set()
        try:
            if self.client.get_registered_model(self.name).tags.get(TOKEN_TAG) == self.token:
                self.client.delete_registered_model(self.name)
        except MlflowException as exc:
            log.warning("could not release %s (%s): it goes stale after its lease", self.name, exc.error_code)


def _description(model: str, state: str) -> str:
    return f"thaw promotion lock of {model}: {state}; changes of its aliases and ledger wait for it"


def _generation(client, model: str) -> int:
    """The lock's generation, from the registered model's tag; a model name nobody
    registered (a typo in ``thaw approve``) is a UserError, not a traceback."""

    from tasks.tracking.client import registered_model

    rm = registered_model(client, model)
    value = rm.tags.get(GENERATION_TAG, "0")
    return int(value) if value.isdigit() else 0


def _create(client, lock: str, tags: dict[str, str], model: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(lock, tags=tags, description=_description(model, "held"))
        return True
    except MlflowException as exc:
        # Taken; or taken and released while MLflow looked it up to say so (its SQL store
        # answers a duplicate insert by reading the existing row, which may be gone by then).
        if exc.error_code in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
            return False
        raise


def read_holder(client, tracking_uri: str, model: str, generation: int) -> LockHolder | None:
    """The holder of generation ``generation`` of the lock, or None when it is free."""
    from mlflow.exceptions import MlflowException

    from tasks.tracking.client import is_missing

    lock = lock_model_name(model, generation)
    try:
        rm = client.get_registered_model(lock)
    except MlflowException as exc:
        if is_missing(exc):
            return None
        raise
    silent = registry_now(tracking_uri) - rm.last_updated_timestamp / 1000
    t = rm.tags
    return LockHolder(
        lock,
        generation,
        t.get(TOKEN_TAG, ""),
        t.get("thaw.lock.holder", "?"),
        t.get("thaw.lock.purpose", "?"),
        t.get("thaw.lock.host", "?"),
        t.get("thaw.lock.pid", "?"),
        max(0.0, silent),
    )


def current_holder(cfg: ThawConfig, model: str) -> LockHolder | None:
    """Who holds the model's promotion lock now, or None."""
    from tasks.tracking.client import client_for
    from thaw.tracking import tracking_uri

    client = client_for(cfg)
    return read_holder(client, tracking_uri(cfg), model, _generation(client, model))


@contextmanager
def promotion_lock(cfg: ThawConfig, model: str, holder: str, purpose: str) -> Iterator[PromotionLock]:
    """Hold ``model``'s promotion lock for the block (the registered model must exist).

    Waits up to ``promotion.lock_wait_seconds`` for a live holder; takes over a lock whose
    lease ran out (``lock.broken`` lists whom it took over from, for the ledger).
    """
    lock = acquire(cfg, model, holder, purpose)
    lock.start()
    try:
        yield lock
    finally:
        lock.release()


def acquire(cfg: ThawConfig, model: str, holder: str, purpose: str, force: bool = False) -> PromotionLock:
    """Take the lock (see ``promotion_lock``); ``force`` breaks a live one (``thaw unlock``)."""
    from tasks.tracking.client import client_for
    from thaw.tracking import tracking_uri

    client, uri, p = client_for(cfg), tracking_uri(cfg), cfg.promotion
    token = secrets.token_hex(16)
    tags = {
        TOKEN_TAG: token,
        "thaw.lock.holder": holder,
        "thaw.lock.purpose": purpose,
        "thaw.lock.host": socket.gethostname(),
        "thaw.lock.pid": str(os.getpid()),
    }
    deadline, announced = time.monotonic() + p.lock_wait_seconds, False
    while True:
        base = _generation(client, model)
        generation, broken = base, []
        while True:
            if _create(client, lock_model_name(model, generation), tags, model):
                break
            current = read_holder(client, uri, model, generation)
            if current is None:  # released in between: try the same generation again
                continue
            if not force and current.silent_seconds <= p.lock_lease_seconds:
                generation = -1
                break
            broken.append(current)
            generation += 1
        if generation >= 0:
            lock = PromotionLock(client, model, generation, token, p.lock_lease_seconds, tuple(broken))
            if generation > base:
                client.set_registered_model_tag(model, GENERATION_TAG, str(generation))
                return lock
            if _generation(client, model) == generation:
                return lock
            lock.release()  # the lock moved on while we created ours: queue again
            continue
        lease = f"It is taken over once its lease ({p.lock_lease_seconds:.0f} s) runs out"
        if time.monotonic() > deadline:
            raise UserError(
                f"the promotion lock of {model} is held by {current.describe()}; waited "
                f"{p.lock_wait_seconds:.0f} s. {lease}; `thaw unlock {model} --reason ...` breaks it now"
            )
        if not announced:  # a warning, so that a command waiting up to lock_wait_seconds is not silent
            log.warning(
                "waiting up to %.0f s for the promotion lock of %s, held by %s. %s; `thaw unlock %s --reason ...` "
                "breaks it now",
                p.lock_wait_seconds,
                model,
                current.describe(),
                lease,
                model,
            )
            announced = True
        time.sleep(min(1.0, p.lock_lease_seconds / 10) * (0.5 + secrets.randbelow(1000) / 1000))
