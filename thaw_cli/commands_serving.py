"""CLI commands around live traffic: serve (with shadow or canary), feedback, canary."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import re
import time
from pathlib import Path

from thaw.errors import UserError
from thaw_cli.common import config_from_args, say, say_json


def parse_share(text: str) -> float:
    """``10%`` or ``0.1`` as a share in (0, 1]; UserError otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(%?)\s*", text)
    if not match:
        raise UserError(f"--canary {text[:40]!r}: expected a share such as 10% or 0.1")
    value = float(match.group(1)) / (100 if match.group(2) else 1)
    if not 0 < value <= 1:
        raise UserError(f"--canary {text[:40]!r}: the share must be above 0% and at most 100%")
    return value


def serving_mode(args: argparse.Namespace) -> tuple[str, str, str | None]:
    """(model name, mode, pinned version ref) of ``thaw serve``'s arguments."""
    ref = args.model
    if "/" in ref or ("@" in ref and not ref.endswith("@champion")):
        if args.shadow or args.canary:
            raise UserError(
                f"{ref}: --shadow and --canary route between the champion and the challenger; give the model's name"
            )
        return ref.split("@")[0].rsplit("/", 1)[0], "pinned", ref
    name = ref.removesuffix("@champion")
    return name, "shadow" if args.shadow else "canary" if args.canary else "champion", None


BREACH_POLL_S = 2.0  # how often the store's breaches are copied into the ledger


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the champion (and the challenger in shadow or canary) on thaw's own server.

    Two processes. This one holds the registry's credentials: it resolves the aliases,
    fetches and verifies each version's files, writes the server's plan (which verified
    model directories to serve, how) and records every canary breach in the ledger. The
    server it starts (``thaw_cli.serving_app``) answers HTTP with an environment that holds
    no PII key, no tracking password or token and no signing key: it reads the plan, loads
    the directories it names and writes only to the request store."""
    import signal
    import subprocess
    import sys
    import threading

    from tasks.serving.fallback import record_breaches
    from thaw.offline import service_environment
    from thaw.request_store import RequestStore, shown_url
    from thaw_cli.services import stop_process

    cfg = config_from_args(args)
    name, mode, pinned = serving_mode(args)
    _require_free(args.host, args.port)
    share = (cfg.serving.canary.share if args.canary == "config" else parse_share(args.canary)) if args.canary else 0.0
    plans = ServingPlans(cfg, name, mode, share, pinned)
    plans.write(plans.current())
    store = RequestStore.for_config(cfg)  # its tables and digest key exist before the server starts
    confirmed: set[str] = set()
    record_breaches(cfg, name, store, confirmed)  # a breach an earlier `thaw serve` could not record
    store_env = (
        {k: v for k, v in os.environ.items() if k.startswith("PG")} if not store.url.startswith("sqlite") else {}
    )
    env = service_environment((cfg.curation.pii.secret_env,), **store_env)
    if not _loopback(args.host):
        say(f"note: {args.host} is not loopback; thaw serve has no authentication: put it behind your gateway")
    say(f"http://{args.host}:{args.port}/invocations; requests recorded in {shown_url(store.url)}", flush=True)
    cmd = [sys.executable, "-m", "thaw_cli.serving_app", str(plans.path), "--host", args.host, "--port", str(args.port)]
    server = subprocess.Popen(cmd, env=env)

    stopping = threading.Event()

    def stop(signum, frame):
        # a service manager's stop or Ctrl-C: a ledger write under way finishes first (the
        # server goes with us); a second signal does not wait
        if stopping.is_set():
            raise KeyboardInterrupt
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    last_poll = time.monotonic()
    try:
        while server.poll() is None and not stopping.wait(BREACH_POLL_S):
            _record(cfg, name, store, confirmed)
            every = cfg.serving.alias_poll_seconds
            if every and time.monotonic() - last_poll >= every:
                last_poll = time.monotonic()
                plans.refresh()
        return 0 if stopping.is_set() else server.returncode
    except KeyboardInterrupt:
        return 0
    finally:
        try:
            _record(cfg, name, store, confirmed)  # before a slow stop of the server can cost it
        finally:
            stop_process(server)  # even after a second Ctrl-C
        _record(cfg, name, store, confirmed)  # one written while it stopped (confirmed: a store read)
        store.close()
        plans.path.unlink(missing_ok=True)


def _record(cfg, name: str, store, confirmed: set[str]) -> None:
    """Copy new breaches into the ledger; a registry that is away is tried again later."""
    from tasks.serving.fallback import record_breaches

    try:
        record_breaches(cfg, name, store, confirmed)
    except Exception as exc:
        say(f"thaw serve: a canary breach is not in the ledger yet ({exc}); trying again", flush=True)


class ServingPlans:
    """The server's plan: the model, the mode and the verified directory of each version it
    serves, rewritten (atomically, generation counted) when the aliases move."""

    def __init__(self, cfg, name: str, mode: str, share: float, pinned: str | None) -> None:
        from tasks.tracking.client import client_for, resolve_version

        self.cfg, self.name, self.mode, self.share = cfg, name, mode, share
        self.client = client_for(cfg)
        self.pinned = str(resolve_version(cfg, pinned).version) if pinned else None
        self.generation = 0
        directory = cfg.state_path / "serving"
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"plan-{os.getpid()}.json"
        self.pair: tuple[str | None, str | None] = (None, None)

    def current(self) -> tuple[str | None, str | None]:
        from tasks.tracking.client import CHALLENGER, CHAMPION, alias_version

        if self.pinned:
            return self.pinned, None
        champion = alias_version(self.client, self.name, CHAMPION)
        if champion is None:
            raise UserError(f"{self.name} has no champion to serve: approve a version first (`thaw approve`)")
        challenger = alias_version(self.client, self.name, CHALLENGER) if self.mode in ("shadow", "canary") else None
        self._require_backed(champion, challenger)
        return champion, challenger

    def _require_backed(self, champion: str, challenger: str | None) -> None:
        """What is served is what was approved: UserError at start (nothing is served) and
        on a refresh (the pair being served stays) when an alias is not where the ledger
        puts it."""
        from tasks.release.ledger import require_backed
        from tasks.tracking.identity import team_approvers

        aliases = {"champion": champion} | ({"challenger": challenger} if challenger else {})
        require_backed(self.client, self.name, team_approvers(self.cfg), aliases, f"thaw serve {self.name}/N")

    def write(self, pair: tuple[str | None, str | None]) -> None:
        from tasks.release.stored_model import check_stored_files, verified_model_dir
        from thaw.datasets import write_text_atomically

        def served(version: str | None) -> dict | None:
            if version is None:
                return None
            stored = verified_model_dir(self.cfg, self.name, version)  # named by its files' digest
            check_stored_files(stored, self.name, version)
            return {"version": version, "dir": str(stored)}

        plan = {
            "generation": self.generation + 1,
            "model": self.name,
            "mode": "pinned" if self.pinned else self.mode,
            "share": self.share,
            "champion": served(pair[0]),
            "challenger": served(pair[1]),
            "config": self.cfg.model_dump(mode="json"),
        }
        write_text_atomically(self.path, json.dumps(plan, indent=2))
        self.generation, self.pair = plan["generation"], pair

    def refresh(self) -> None:
        """Re-read the aliases; a moved one is fetched, verified and handed to the server."""
        try:
            pair = self.current()
            if pair != self.pair:
                self.write(pair)
                say(f"aliases moved: champion v{pair[0]}, challenger {'v' + pair[1] if pair[1] else 'none'}")
        except UserError as exc:  # a version that fails its checks is never served; the old pair stays
            say(f"thaw serve: keeps serving v{self.pair[0]}: {exc}", flush=True)  # quotes the ledger
        except Exception as exc:  # the registry is away: keep serving what was verified
            logging.getLogger(__name__).warning("re-reading the aliases of %s failed: %s", self.name, exc)


def _require_free(host: str, port: int) -> None:
    """Refuse a port something already listens on, before any model is fetched."""
    import socket

    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1" if host in ("0.0.0.0", "::") else host, port)) == 0:
            raise UserError(f"port {port} on {host} is in use; choose another with --port")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def cmd_feedback(args: argparse.Namespace) -> int:
    """Record the true labels of served requests from a file, all rows or none."""
    from thaw.ingest import read_columns
    from thaw.request_store import RequestStore, check_label, check_request_id, shown_url

    cfg = config_from_args(args)
    path = Path(args.input)
    columns = read_columns(path, [args.id_column, args.label_column], "feedback")
    pairs, seen = [], {}
    for row, (rid, label) in enumerate(zip(columns[args.id_column], columns[args.label_column], strict=True), 1):
        where = f"{path}: row {row}"
        rid = check_request_id(rid, f"{where}, column {args.id_column!r}")
        label = check_label(label, f"{where}, column {args.label_column!r}")
        if rid in seen and seen[rid][1] != label:
            raise UserError(
                f"{where}: request {rid} was labelled {seen[rid][1]!r} in row {seen[rid][0]}, now {label!r}"
            )
        seen[rid] = (row, label)
        pairs.append((rid, label))
    if not pairs:
        raise UserError(f"{path}: no rows")
    store = RequestStore.for_config(cfg)
    recorded = store.add_feedback(pairs, f"file {path.name}"[:300])
    say(f"recorded {recorded} labels from {path} in {shown_url(store.url)}")
    return 0


def cmd_canary(args: argparse.Namespace) -> int:
    """The canary report of a model's current (or a named) champion/challenger pair."""
    from tasks.tracking.client import (
        CHALLENGER,
        CHAMPION,
        alias_version,
        client_for,
        registered_model,
        resolve_version,
    )
    from thaw.ledger import is_version
    from thaw.request_store import RequestStore, shown_url

    cfg = config_from_args(args)
    client = client_for(cfg)
    registered_model(client, args.model)  # a name typed wrong is said as such, not as a missing alias
    champion = args.champion or alias_version(client, args.model, CHAMPION)
    challenger = args.challenger or alias_version(client, args.model, CHALLENGER)
    for what, version in (("champion", champion), ("challenger", challenger)):
        if version is None:
            raise UserError(f"{args.model} has no {what}; name a pair with --champion N --challenger M")
        if not is_version(version):
            raise UserError(f"--{what} {str(version)[:40]!r}: expected a version number")
        resolve_version(cfg, f"{args.model}/{version}")  # a version typed wrong: no empty report of it
    if str(champion) == str(challenger):
        raise UserError(f"--champion and --challenger are both v{champion}: a canary compares two versions")
    store = RequestStore.for_config(cfg)
    report = store.report(args.model, str(champion), str(challenger))
    if args.json:
        say_json(report.as_dict())
    else:
        for line in report.lines():  # versions, labels and figures from the serving store
            say(line)
        say(f"  store         {shown_url(store.url)}")
    return 0
