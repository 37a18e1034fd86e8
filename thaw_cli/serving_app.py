"""`thaw serve`'s HTTP face: MLflow's scoring protocol on ``/invocations``, and the
feedback and canary endpoints, on one uvicorn process (``tasks.serving.router`` decides).

- ``POST /invocations``: ``dataframe_split``, ``dataframe_records``, ``inputs`` or
  ``instances`` as ``mlflow models serve`` takes them (a ``text`` column, else the first);
  answers ``{"predictions": [{"label", "confidence", "request_id", "model_version"}]}``.
- ``POST /feedback``: ``{"request_id": ..., "label": ...}`` or ``{"labels": [...]}``: the
  true labels of earlier requests, joined by request id; all or none are recorded.
- ``GET /canary``: the canary report of the pair served now; ``GET /version``: what is
  served; ``GET /ping``, ``GET /health``.

Every body is input: its size, shape, row count and each text's type and length are
checked before anything runs, and a bad one gets a 4xx naming what is wrong.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from tasks.serving.router import Router
from thaw.datasets import lone_surrogate
from thaw.errors import UserError
from thaw.parse import json_value
from thaw.request_store import RequestStore, check_label, check_request_id
from thaw_cli.common import report_user_error, say

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 16 << 20
MAX_ROWS = 1024
MAX_TEXT_CHARS = 100_000
MAX_FEEDBACK = 10_000
PLAN_POLL_S = 2.0  # how often the plan is re-read


class BadRequest(ValueError):
    """A request thaw refuses; its message is the response's."""


def request_texts(payload: Any) -> list[str]:
    """The texts of an MLflow scoring payload; BadRequest naming what is wrong."""
    if not isinstance(payload, dict) or len(payload) != 1:
        raise BadRequest("expected one of dataframe_split, dataframe_records, inputs or instances")
    ((kind, body),) = payload.items()
    if kind == "dataframe_split":
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise BadRequest("dataframe_split needs 'columns' and 'data'")
        columns = body.get("columns") or ["text"]
        if not isinstance(columns, list) or not columns:
            raise BadRequest("dataframe_split 'columns' must be a list of names")
        at = columns.index("text") if "text" in columns else 0
        texts = []
        for i, row in enumerate(body["data"]):
            if not isinstance(row, list) or len(row) != len(columns):
                raise BadRequest(f"dataframe_split row {i} does not have {len(columns)} values")
            texts.append(row[at])
    elif kind == "dataframe_records":
        if not isinstance(body, list):
            raise BadRequest("dataframe_records must be a list of objects")
        texts = []
        for i, record in enumerate(body):
            if not isinstance(record, dict) or not record:
                raise BadRequest(f"dataframe_records row {i} is not an object with a text")
            texts.append(record["text"] if "text" in record else next(iter(record.values())))
    elif kind in ("inputs", "instances"):
        if isinstance(body, dict):
            body = body.get("text", next(iter(body.values()), None))
        texts = body if isinstance(body, list) else [body]
    else:
        raise BadRequest(
            f"unknown input {kind[:40]!r}: expected dataframe_split, dataframe_records, inputs or instances"
        )
    if not texts:
        raise BadRequest("no rows to predict")
    if len(texts) > MAX_ROWS:
        raise BadRequest(f"{len(texts):,} rows in one request; at most {MAX_ROWS:,} (send batches)")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise BadRequest(f"row {i}: the text is {type(text).__name__}, not a string")
        if len(text) > MAX_TEXT_CHARS:
            raise BadRequest(f"row {i}: the text is {len(text):,} characters; at most {MAX_TEXT_CHARS:,}")
        if escape := lone_surrogate(text):  # the tokenizer fails on one: a 400, not the model's 500
            raise BadRequest(f"row {i}: the text holds a lone surrogate ({escape}, half of a character)")
    return texts


def feedback_pairs(payload: Any) -> list[tuple[str, str]]:
    """(request id, label) pairs of a feedback body; BadRequest naming the item."""
    items = payload.get("labels") if isinstance(payload, dict) and "labels" in payload else [payload]
    if not isinstance(items, list) or not items:
        raise BadRequest("expected {'request_id': ..., 'label': ...} or {'labels': [...]}")
    if len(items) > MAX_FEEDBACK:
        raise BadRequest(f"{len(items):,} labels in one request; at most {MAX_FEEDBACK:,}")
    pairs = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRequest(f"item {i}: expected an object with request_id and label")
        try:
            pairs.append(
                (check_request_id(item.get("request_id"), f"item {i}"), check_label(item.get("label"), f"item {i}"))
            )
        except UserError as exc:
            raise BadRequest(str(exc)) from None
    return pairs


def _finite(value: Any) -> Any:
    """JSON has no NaN: a report's missing figure is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def build_app(router: Router, store: RequestStore):
    """The FastAPI application around ``router``."""
    app = FastAPI(title="thaw serve", docs_url=None, redoc_url=None, openapi_url=None)

    def refuse(status: int, message: str) -> JSONResponse:
        return JSONResponse(
            {"error_code": "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR", "message": message}, status
        )

    async def json_body(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise BadRequest(f"the body is {int(declared):,} bytes; at most {MAX_BODY_BYTES:,}")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise BadRequest(f"the body is {len(body):,} bytes; at most {MAX_BODY_BYTES:,}")
        try:
            return json_value(body)
        except ValueError as exc:  # UnicodeDecodeError is one
            raise BadRequest(f"the body is not JSON: {str(exc)[:120]}") from None

    @app.get("/ping")
    def ping() -> Response:
        return Response(status_code=200)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", **router.state()}

    @app.get("/version")
    def version() -> dict:
        return router.state()

    @app.post("/invocations")
    async def invocations(request: Request) -> JSONResponse:
        try:
            texts = request_texts(await json_body(request))
        except BadRequest as exc:
            return refuse(400, str(exc))
        try:
            predictions, after = await run_in_threadpool(router.answer, texts)
        except Exception:
            log.exception("prediction failed")
            return refuse(500, "the model failed on this request; the server log has the error")
        return JSONResponse({"predictions": predictions}, background=BackgroundTask(after))

    @app.post("/feedback")
    async def post_feedback(request: Request) -> JSONResponse:
        try:
            pairs = feedback_pairs(await json_body(request))
        except BadRequest as exc:
            return refuse(400, str(exc))
        await run_in_threadpool(router.wait_recorded, [rid for rid, _ in pairs])
        try:
            recorded = await run_in_threadpool(store.add_feedback, pairs, "POST /feedback")
        except UserError as exc:
            return refuse(404, str(exc))
        return JSONResponse({"recorded": recorded})

    @app.get("/canary")
    def canary() -> JSONResponse:
        pair = router.pair
        if pair.challenger is None:
            return JSONResponse({**router.state(), "report": None})
        report = store.report(router.name, pair.champion.version, pair.challenger.version)
        return JSONResponse(_finite({**router.state(), "report": report.as_dict(), "lines": report.lines()}))

    return app


class PlanFile:
    """The plan ``thaw serve`` writes for this server (``commands_serving.ServingPlans``):
    the model, the mode and the verified directory of each version. It is input: names,
    versions, the mode and each directory (inside the state directory's verified models)
    are checked on every read, and a plan that fails keeps the last good one serving."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime = None
        self.plan, self.cfg = self._read()

    def _read(self):
        from thaw.config import ThawConfig
        from thaw.ledger import is_version

        plan = json_value(self.path.read_text(encoding="utf-8"))
        if not isinstance(plan, dict) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}", str(plan.get("model"))):
            raise UserError(f"{self.path}: not a serving plan")
        if plan.get("mode") not in ("champion", "shadow", "canary", "pinned"):
            raise UserError(f"{self.path}: unknown mode {str(plan.get('mode'))[:40]!r}")
        if not isinstance(plan.get("share"), int | float) or not 0 <= plan["share"] <= 1:
            raise UserError(f"{self.path}: the share must be between 0 and 1")
        cfg = ThawConfig.model_validate(plan["config"])
        models = (cfg.state_path / "models").resolve()
        for role in ("champion", "challenger"):
            served = plan.get(role)
            if served is None and role == "challenger":
                continue
            if not isinstance(served, dict) or not is_version(served.get("version")):
                raise UserError(f"{self.path}: the {role} has no version number")
            directory = Path(str(served.get("dir"))).resolve()
            if directory.parent != models or not directory.is_dir():
                raise UserError(f"{self.path}: the {role}'s directory is not a verified model in {models}")
        return plan, cfg

    def aliases(self) -> tuple[str | None, str | None]:
        """The pair the plan names now (re-read when the file changed)."""
        mtime = self.path.stat().st_mtime_ns
        if mtime != self._mtime:
            try:
                (self.plan, self.cfg), self._mtime = self._read(), mtime
            except (OSError, ValueError, UserError) as exc:
                log.error("the serving plan %s is unreadable (%s); serving the last good one", self.path, exc)
                self._mtime = mtime
        challenger = self.plan.get("challenger")
        return self.plan["champion"]["version"], challenger["version"] if challenger else None

    def load(self, version: str):
        """The predictor of ``version`` from the directory the plan names for it, once its
        files hash to the digest the directory is named by (what ``thaw serve`` verified
        against the registry) and hold only weights and JSON; the backbones allowed are
        the config's (``allowed_backbone_sources``)."""
        from tasks.release.stored_model import allowed_backbone_sources, check_stored_files, model_files_digest
        from thaw.serving import ThawPredictor

        for role in ("champion", "challenger"):
            served = self.plan.get(role)
            if served and served["version"] == version:
                stored = Path(served["dir"]).resolve()
                if model_files_digest(stored) != stored.name:
                    raise UserError(f"{self.plan['model']} v{version}: {stored} changed after thaw serve verified it")
                weights = check_stored_files(stored, self.plan["model"], version)
                return ThawPredictor(weights, allowed_backbone_sources(self.cfg))
        raise UserError(f"the serving plan names no v{version}")


def main(argv: list[str] | None = None) -> int:
    """The server ``thaw serve`` starts: ``python -m thaw_cli.serving_app PLAN --host H --port P``."""
    import argparse

    import uvicorn

    from thaw.offline import apply_offline_environment

    parser = argparse.ArgumentParser(prog="thaw-serving")
    parser.add_argument("plan")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    args = parser.parse_args(argv)
    apply_offline_environment()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        plan = PlanFile(Path(args.plan))
        plan.aliases()
        store = RequestStore.for_config(plan.cfg)
        router = Router(
            plan.cfg,
            plan.plan["model"],
            plan.plan["mode"],
            float(plan.plan["share"]),
            store,
            plan.load,
            plan.aliases,
        )
    except UserError as exc:
        report_user_error(exc, command="thaw serve")
        return 2
    say(f"serving {router.describe()}", flush=True)
    router.poll_aliases(PLAN_POLL_S)
    try:
        uvicorn.run(build_app(router, store), host=args.host, port=args.port, log_level="warning", access_log=False)
    finally:
        router.stop()
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
