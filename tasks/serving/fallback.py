"""Canary breaches into the promotion ledger.

The serving process (``thaw_cli.serving_app``) holds no registry credentials: on a breach
it takes the challenger off and writes the breach to the request store. ``thaw serve``,
which holds them, copies every breach of its model that the ledger does not yet hold into
a ``canary-fallback`` record, so a breach recorded while it was down is written by the
next one that starts.
"""

from __future__ import annotations

import logging
import re

from thaw.config import ThawConfig
from thaw.parse import json_value
from thaw.request_store import RequestStore

log = logging.getLogger(__name__)
VERSION = re.compile(r"[0-9]{1,9}")  # an MLflow model version
MAX_DETAIL = 20_000  # characters of a breach's JSON detail kept whole; longer: its first 500 as text


def record_breaches(cfg: ThawConfig, name: str, store: RequestStore, confirmed: set[str] | None = None) -> int:
    """Write the ledger records missing for ``name``'s breaches in ``store``; how many.
    ``confirmed`` (breach times known to be in the ledger) spares the ledger a read when
    nothing new happened; it is updated."""
    confirmed = set() if confirmed is None else confirmed
    breaches = [b for b in store.breaches_of_model(name) if b["at"] not in confirmed]
    if not breaches:
        return 0
    from tasks.release.ledger import ledger_report
    from tasks.release.promotion import record_canary_fallback
    from tasks.tracking.client import client_for
    from tasks.tracking.identity import team_approvers

    recorded = {
        e.get("breach_at")
        for e in ledger_report(client_for(cfg), name, team_approvers(cfg)).entries
        if e.get("action") == "canary-fallback"
    }
    written = 0
    for b in breaches:
        if not all(VERSION.fullmatch(str(b[k])) for k in ("champion_version", "challenger_version")):
            # the store is written by the server, which holds no credentials: what it says is input
            log.warning("not recorded in the ledger: the breach at %.40s names no registry version", b["at"])
        elif b["at"] not in recorded:
            try:
                detail = json_value(b["detail"]) if len(str(b["detail"])) <= MAX_DETAIL else None
            except ValueError:
                detail = None
            if not isinstance(detail, dict):
                detail = {"detail": str(b["detail"])[:500]}
            record_canary_fallback(
                cfg, name, b["champion_version"], b["challenger_version"], b["reason"], detail, b["at"]
            )
            log.warning(
                "recorded in the ledger: the canary of %s v%s breached at %s", name, b["challenger_version"], b["at"]
            )
            written += 1
        confirmed.add(b["at"])  # written, found or refused; a write that raised is tried again
    return written
