"""CLI commands around live traffic: serve (with shadow or canary), feedback, canary."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import re
from pathlib import Path

from thaw.errors import UserError
from thaw_cli.common import config_from_args


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


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the champion (and the challenger in shadow or canary) on thaw's own server."""
    import uvicorn

    from tasks.release.promotion import record_canary_fallback
    from tasks.release.stored_model import load_verified_model
    from tasks.serving.router import Router
    from tasks.tracking.client import CHALLENGER, CHAMPION, alias_version, client_for, resolve_version
    from thaw.request_store import RequestStore, shown_url
    from thaw_cli.serving_app import build_app

    cfg = config_from_args(args)
    name, mode, pinned = serving_mode(args)
    share = (cfg.serving.canary.share if args.canary == "config" else parse_share(args.canary)) if args.canary else 0.0
    os.environ.pop(cfg.curation.pii.secret_env, None)  # the server never holds the PII key
    client = client_for(cfg)
    if pinned:
        version = str(resolve_version(cfg, pinned).version)

        def aliases() -> tuple[str | None, str | None]:
            return version, None
    else:

        def aliases() -> tuple[str | None, str | None]:
            return alias_version(client, name, CHAMPION), alias_version(client, name, CHALLENGER)

    store = RequestStore.for_config(cfg)
    router = Router(
        cfg,
        name,
        mode,
        share,
        store,
        lambda version: load_verified_model(cfg, name, version),
        aliases,
        lambda champion, challenger, reason, detail: record_canary_fallback(
            cfg, name, champion, challenger, reason, detail
        ),
    )
    logging.getLogger("tasks.serving").setLevel(logging.INFO)
    if not _loopback(args.host):
        print(f"note: {args.host} is not loopback; thaw serve has no authentication: put it behind your gateway")
    print(f"serving {router.describe()}", flush=True)
    print(f"  on http://{args.host}:{args.port}/invocations; requests recorded in {shown_url(store.url)}", flush=True)
    router.poll_aliases(cfg.serving.alias_poll_seconds)
    try:
        uvicorn.run(build_app(router, store), host=args.host, port=args.port, log_level="warning", access_log=False)
    finally:
        router.stop()
        store.close()
    return 0


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
    print(f"recorded {recorded} labels from {path} in {shown_url(store.url)}")
    return 0


def cmd_canary(args: argparse.Namespace) -> int:
    """The canary report of a model's current (or a named) champion/challenger pair."""
    from tasks.tracking.client import CHALLENGER, CHAMPION, alias_version, client_for
    from thaw.ledger import is_version
    from thaw.request_store import RequestStore, shown_url

    cfg = config_from_args(args)
    client = client_for(cfg)
    champion = args.champion or alias_version(client, args.model, CHAMPION)
    challenger = args.challenger or alias_version(client, args.model, CHALLENGER)
    for what, version in (("champion", champion), ("challenger", challenger)):
        if version is None:
            raise UserError(f"{args.model} has no {what}; name a pair with --champion N --challenger M")
        if not is_version(version):
            raise UserError(f"--{what} {str(version)[:40]!r}: expected a version number")
    store = RequestStore.for_config(cfg)
    report = store.report(args.model, str(champion), str(challenger))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print("\n".join(report.lines()))
        print(f"  store         {shown_url(store.url)}")
    return 0
