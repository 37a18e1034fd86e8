"""One training at a time per model name, through a Prefect global concurrency limit
(``thaw-train-<model>``, limit 1) on whatever Prefect server the run talks to."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress

from thaw.config import ThawConfig

log = logging.getLogger(__name__)


def limit_name(cfg: ThawConfig) -> str:
    return f"thaw-train-{cfg.model_name}"


def ensure_training_limit(cfg: ThawConfig) -> None:
    """Create the model's limit (1 slot) if the server does not have it yet."""
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(limit_name(cfg))
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another run created it first
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=limit_name(cfg), limit=1))


@contextmanager
def training_slot(cfg: ThawConfig) -> Iterator[bool]:
    """Yield True while holding the model's training slot, or False when the config says
    to skip and another run holds it."""
    from prefect.concurrency.sync import concurrency

    ensure_training_limit(cfg)
    skip = cfg.scheduling.on_concurrent_run == "skip"
    with ExitStack() as stack:
        try:
            stack.enter_context(
                concurrency(limit_name(cfg), occupy=1, timeout_seconds=2.0 if skip else None, strict=True)
            )
        except TimeoutError:
            log.warning(
                "another run is training %s: this run is skipped (scheduling.on_concurrent_run=skip)", cfg.model_name
            )
            yield False
            return
        log.info("training slot %s acquired", limit_name(cfg))
        yield True
