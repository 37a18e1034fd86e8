"""Champion and challenger behind one endpoint: shadow, canary, the request store and the
automatic fallback (``thaw serve MODEL --shadow`` / ``--canary 10%``).

- **champion only**: the champion answers; requests are still recorded.
- **shadow**: the champion answers every request; the challenger predicts the same rows
  after the answer is sent, so it never changes or delays what the caller gets.
- **canary**: the challenger answers ``share`` of the requests (chosen from the request
  id's digest), the champion the rest; the model that did not answer predicts afterwards,
  so every request holds both labels. A challenger that fails on a request it should have
  answered is replaced by the champion for that request (recorded as its error).

Each row's outcome (both labels, confidences, latencies, which model answered, the text's
keyed digest) goes to the request store (``thaw.request_store``). When the challenger's
recent outcomes breach ``serving.canary`` (``thaw.canary.BreachWatch``) it gets no more
traffic in this process or any later one for the same pair: the breach is written to the
store and, as a ``canary-fallback`` entry, to the model's promotion ledger.

The aliases are re-read every ``serving.alias_poll_seconds``: a promotion or a new
challenger is served without a restart, each model loaded from its verified copy.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from thaw.canary import CHALLENGER, CHAMPION, BreachWatch, Outcome, answers_with_challenger
from thaw.config import ThawConfig
from thaw.errors import UserError
from thaw.request_store import SCRUBBED_CHARS, RequestStore, now_iso

log = logging.getLogger(__name__)
PENDING_WAIT_S = 60.0  # how long feedback waits for a request still being recorded


@dataclass
class ServedModel:
    """A loaded version and the lock that serialises its use (tokenizers are not re-entrant)."""

    version: str
    predictor: Any  # thaw.serving.ThawPredictor
    lock: threading.Lock = field(default_factory=threading.Lock)

    def predict(self, texts: Sequence[str]) -> tuple[list[str], list[float], float]:
        """Labels, confidences and the milliseconds the model took (waiting for it excluded)."""
        with self.lock:
            started = time.perf_counter()
            frame = self.predictor.predict(list(texts))
            took = (time.perf_counter() - started) * 1000
        return frame["label"].tolist(), frame["confidence"].astype(float).tolist(), took

    @property
    def engine(self) -> str:
        return str(getattr(self.predictor, "engine", "pytorch"))


@dataclass
class Pair:
    """What is served now: the champion, the challenger (or None) and whether the
    challenger still gets traffic (False after a breach), with the reason."""

    champion: ServedModel
    challenger: ServedModel | None
    routed: bool
    why_not: str = ""


Loader = Callable[[str], Any]  # version -> predictor


class Router:
    """Routes requests between the champion and the challenger of ``name``."""

    def __init__(
        self,
        cfg: ThawConfig,
        name: str,
        mode: str,
        share: float,
        store: RequestStore,
        load: Loader,
        aliases: Callable[[], tuple[str | None, str | None]],
    ) -> None:
        if mode not in ("champion", "shadow", "canary", "pinned"):
            raise ValueError(mode)
        self.cfg, self.name, self.mode, self.share = cfg, name, mode, share
        self.store, self._load, self._aliases = store, load, aliases
        self._lock = threading.Lock()
        self._pending: dict[str, threading.Event] = {}
        champion, challenger = aliases()
        if champion is None:
            raise UserError(f"{name} has no champion to serve: approve a version first (`thaw approve`)")
        self._seen = (champion, challenger)
        self.pair = self._pair(champion, challenger, previous=None)
        self.watch = BreachWatch(cfg.serving.canary)
        self._stop = threading.Event()

    # -- what is served -------------------------------------------------------------
    def _pair(self, champion: str, challenger: str | None, previous: Pair | None) -> Pair:
        def reuse_or_load(version: str) -> ServedModel:
            if previous is not None:
                for held in (previous.champion, previous.challenger):
                    if held is not None and held.version == version:
                        return held
            return ServedModel(version, self._load(version))

        served_champion = reuse_or_load(champion)
        if self.mode in ("champion", "pinned") or challenger is None or challenger == champion:
            return Pair(served_champion, None, False)
        breached = self.store.breaches_of(self.name, champion, challenger)
        if breached:
            why = f"challenger v{challenger} breached the canary at {breached[-1]['at'][:19]}: {breached[-1]['reason']}"
            return Pair(served_champion, None, False, why)
        return Pair(served_champion, reuse_or_load(challenger), True)

    def describe(self) -> str:
        pair = self.pair
        head = f"{self.name} champion v{pair.champion.version} ({pair.champion.engine})"
        if self.mode == "pinned":
            return f"{self.name} v{pair.champion.version} ({pair.champion.engine}), pinned: no challenger"
        if pair.challenger is None or not pair.routed:
            return head + (f"; {pair.why_not}: the champion answers all" if pair.why_not else "; no challenger waits")
        how = (
            "shadow: mirrored, never answers"
            if self.mode == "shadow"
            else f"canary: answers {self.share:.0%} of requests"
        )
        return head + f", challenger v{pair.challenger.version} ({pair.challenger.engine}) in {how}"

    def state(self) -> dict[str, Any]:
        pair = self.pair
        return {
            "model": self.name,
            "mode": self.mode,
            "share": self.share if self.mode == "canary" else None,
            "champion": pair.champion.version,
            "challenger": pair.challenger.version if pair.challenger else None,
            "challenger_routed": pair.routed,
            "why_not": pair.why_not or None,
        }

    # -- requests -------------------------------------------------------------------
    def answer(self, texts: Sequence[str]) -> tuple[list[dict[str, Any]], Callable[[], None]]:
        """Predictions for ``texts`` (label, confidence, request_id, model_version) and the
        work to run after the response is sent (the other model, the store, the watch)."""
        pair = self.pair  # one consistent pair for the whole request, whatever polling does
        ids = [uuid.uuid4().hex for _ in texts]
        challenger_answers = (
            self.mode == "canary"
            and pair.routed
            and pair.challenger is not None
            and answers_with_challenger(ids[0], self.share)
        )
        results: dict[str, tuple[list[str], list[float], float] | None] = {CHAMPION: None, CHALLENGER: None}
        errors: dict[str, str | None] = {CHAMPION: None, CHALLENGER: None}
        answered_by = CHAMPION
        if challenger_answers:
            try:
                results[CHALLENGER] = pair.challenger.predict(texts)
                answered_by = CHALLENGER
            except Exception as exc:  # the caller gets the champion's answer; the watch counts it
                log.exception("challenger v%s failed on a canary request", pair.challenger.version)
                errors[CHALLENGER] = f"{type(exc).__name__}: {str(exc)[:300]}"
        if answered_by == CHAMPION:
            results[CHAMPION] = pair.champion.predict(texts)  # its failure is the caller's 500
        labels, confidences, _ = results[answered_by]
        served = pair.challenger if answered_by == CHALLENGER else pair.champion
        out = [
            {"label": label, "confidence": conf, "request_id": rid, "model_version": served.version}
            for label, conf, rid in zip(labels, confidences, ids, strict=True)
        ]
        done = threading.Event()
        with self._lock:
            for rid in ids:
                self._pending[rid] = done

        def after() -> None:
            try:
                self._complete(pair, texts, ids, answered_by, results, errors)
            finally:
                done.set()
                with self._lock:
                    for rid in ids:
                        self._pending.pop(rid, None)

        return out, after

    def _complete(self, pair: Pair, texts, ids, answered_by: str, results, errors) -> None:
        """The other model's prediction, the store's rows and the breach watch."""
        other = CHAMPION if answered_by == CHALLENGER or errors[CHALLENGER] else CHALLENGER
        mirrored = pair.challenger is not None and pair.routed
        if results[other] is None and (other == CHAMPION or mirrored):
            model = pair.champion if other == CHAMPION else pair.challenger
            try:
                results[other] = model.predict(texts)
            except Exception as exc:
                log.exception("v%s failed on a mirrored request", model.version)
                errors[other] = f"{type(exc).__name__}: {str(exc)[:300]}"
        rows = self._rows(pair, texts, ids, answered_by, results, errors)
        self.store.record(rows)
        if pair.challenger is not None and pair.routed:
            self._watch(pair, results, errors, len(texts))

    def _rows(self, pair: Pair, texts, ids, answered_by: str, results, errors) -> list[dict[str, Any]]:
        scrubbed = None
        if self.cfg.serving.store_text == "scrubbed":
            scrubbed = [t[:SCRUBBED_CHARS] for t in pair.champion.predictor.model_inputs(list(texts))]
        at, rows = now_iso(), []
        for i, (rid, text) in enumerate(zip(ids, texts, strict=True)):
            row = {
                "id": rid,
                "model": self.name,
                "at": at,
                "mode": self.mode,
                "answered_by": answered_by,
                "champion_version": pair.champion.version,
                # a request the challenger never saw (taken off after a breach) is not the pair's
                "challenger_version": pair.challenger.version if results[CHALLENGER] or errors[CHALLENGER] else None,
                "text_digest": self.store.digest(text),
                "text_chars": len(text),
                "model_input": scrubbed[i] if scrubbed else None,
                "batch_rows": len(texts),
            }
            for who in (CHAMPION, CHALLENGER):
                got = results[who]
                row[f"{who}_label"] = got[0][i] if got else None
                row[f"{who}_confidence"] = got[1][i] if got else None
                row[f"{who}_ms"] = got[2] if got else None
                row[f"{who}_error"] = errors[who]
            rows.append(row)
        return rows

    def _watch(self, pair: Pair, results, errors, rows: int) -> None:
        champion, challenger = results[CHAMPION], results[CHALLENGER]
        reasons: list[str] = []
        with self._lock:
            for i in range(rows):  # a batch counts as its rows, with the batch's latency
                reasons = self.watch.add(
                    Outcome(
                        challenger_failed=errors[CHALLENGER] is not None,
                        agreed=champion[0][i] == challenger[0][i] if champion and challenger else None,
                        champion_ms=champion[2] if champion else None,
                        challenger_ms=challenger[2] if challenger else None,
                    )
                )
            if not reasons or not pair.routed:
                return
            pair.routed, pair.why_not = False, "challenger breached the canary: " + "; ".join(reasons)
        self._fall_back(pair, reasons)

    def _fall_back(self, pair: Pair, reasons: list[str]) -> None:
        reason = "; ".join(reasons)
        champion, challenger = pair.champion.version, pair.challenger.version
        log.warning(
            "CANARY BREACH: %s challenger v%s: %s; all traffic returns to champion v%s",
            self.name,
            challenger,
            reason,
            champion,
        )
        detail = {"mode": self.mode, "share": self.share, "window": len(self.watch.outcomes)}
        self.store.record_breach(
            self.name, champion, challenger, reason, detail
        )  # `thaw serve` copies it to the ledger

    def wait_recorded(self, ids: Sequence[str], timeout_s: float = PENDING_WAIT_S) -> None:
        """Block until requests still being completed are in the store."""
        with self._lock:
            waiting = {id(e): e for rid in ids if (e := self._pending.get(rid)) is not None}
        deadline = time.monotonic() + timeout_s
        for event in waiting.values():
            event.wait(max(0.0, deadline - time.monotonic()))

    # -- aliases ----------------------------------------------------------------------
    def refresh(self) -> bool:
        """Re-read the aliases; load and swap in what changed. True when the pair changed."""
        if self.mode == "pinned":
            return False
        seen = self._aliases()
        if seen == self._seen or seen[0] is None:
            return False  # (a pair taken off after a breach stays off)
        pair = self._pair(*seen, previous=self.pair)
        with self._lock:
            self.pair, self._seen = pair, seen
            self.watch = BreachWatch(self.cfg.serving.canary)
        log.warning("serving changed: %s", self.describe())
        return True

    def poll_aliases(self, every_s: float) -> threading.Thread | None:
        """Re-read the aliases every ``every_s`` seconds in a daemon thread (0: never)."""
        if every_s <= 0 or self.mode == "pinned":
            return None

        def loop() -> None:
            while not self._stop.wait(every_s):
                try:
                    self.refresh()
                except Exception:  # the registry is away or a version fails its checks: keep serving
                    log.exception("re-reading the aliases of %s failed; serving what was loaded", self.name)

        thread = threading.Thread(target=loop, name="thaw-alias-poll", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
