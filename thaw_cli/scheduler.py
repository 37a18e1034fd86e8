"""`thaw schedule`: the pipeline served as a Prefect deployment with a schedule, in a process
that stops the way systemd and Kubernetes expect.

Prefect's own ``Flow.serve`` blocks inside its SIGTERM handler (the handler waits on the
event loop it interrupted) and turns Ctrl-C into an abrupt exit. Here both signals start
the same bounded shutdown instead: stop polling for new runs, give the run in flight
``grace_seconds`` to finish, then cancel it through the runner (its process is stopped,
its Prefect state becomes Cancelled, and the pipeline closes its MLflow run as KILLED).
Curated data is published by rename into content-addressed directories, so a cancelled
run leaves no half-written dataset behind.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import signal
import time
import zoneinfo
from pathlib import Path
from typing import Any

from thaw.config import ThawConfig
from thaw.errors import UserError
from thaw.shown import one_line
from thaw_cli.common import say

# Prefect's runner gives a cancelled run's process this long to exit after SIGTERM
# before it sends SIGKILL (prefect/runner/_cancellation_manager.py).
PREFECT_KILL_GRACE_SECONDS = 30.0


def local_timezone() -> str:
    """The IANA name of this machine's timezone (``TZ``, then /etc/localtime), else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        return name
    localtime = Path("/etc/localtime")
    if localtime.is_symlink():
        parts = localtime.resolve().parts
        if "zoneinfo" in parts:
            return "/".join(parts[parts.index("zoneinfo") + 1 :])
    return "UTC"


def check_timezone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise UserError(f"unknown timezone {name!r}: give an IANA name such as Europe/Paris or UTC") from None
    return name


def build_schedule(cron: str | None, interval: int | None, timezone: str) -> Any:
    """One Prefect schedule from the CLI's options (exactly one of cron and interval)."""
    from prefect.schedules import Cron, Interval

    if (cron is None) == (interval is None):
        raise UserError("give exactly one of --cron 'MIN HOUR DOM MON DOW' and --interval SECONDS")
    if interval is not None:
        if interval < 10:
            raise UserError(f"--interval {interval}: the shortest interval is 10 seconds")
        return Interval(datetime.timedelta(seconds=interval), timezone=timezone)
    shown = one_line(repr(cron), 80)
    fields = cron.split()
    count = f"{len(fields)} field{'s' * (len(fields) != 1)}"
    if not cron.startswith("@") and len(fields) != 5:
        # Prefect's croniter reads a sixth field as seconds and a seventh as the year: a
        # Quartz expression pasted from elsewhere ("0 0 3 * * ?", seconds first) would mean
        # something else, and "* * * * * *" a run every second
        raise UserError(
            f"--cron {shown} is not a cron expression thaw takes: {count}, where thaw takes five, "
            "'MIN HOUR DOM MON DOW' (e.g. '0 3 * * *'), or @hourly, @daily, @weekly, @monthly, @yearly"
        )
    try:
        from prefect.client.schemas.schedules import CronSchedule

        CronSchedule(cron=cron, timezone=timezone)  # Prefect's own validation, before any server call
        schedule = Cron(cron, timezone=timezone)
    except ValueError:
        raise UserError(f"--cron {shown} is not a cron expression ('MIN HOUR DOM MON DOW', e.g. '0 3 * * *')") from None
    return schedule


class _Shutdown:
    """Turns SIGTERM/SIGINT into one bounded, logged shutdown of the runner."""

    def __init__(self, runner: Any, grace_seconds: float) -> None:
        self.runner = runner
        self.grace_seconds = grace_seconds
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task | None = None

    def request(self, signame: str) -> None:
        """Signal-handler side: schedule the shutdown on the runner's loop, once."""
        if self.loop is not None and self.task is None:
            self.loop.call_soon_threadsafe(self._start, signame)

    def _start(self, signame: str) -> None:
        if self.task is None:
            self.task = asyncio.ensure_future(self._shutdown(signame))

    def _in_flight(self) -> set:
        return set(self.runner._process_manager.flow_run_ids())

    async def _shutdown(self, signame: str) -> None:
        started = time.monotonic()
        while not getattr(self.runner, "_scheduled_run_poller", None) or not self.runner.started:
            await asyncio.sleep(0.2)  # a signal during start-up: let the runner finish starting first
        self.runner._scheduled_run_poller.stopping = True  # no new runs from here on
        running = self._in_flight()
        say(
            f"{signame}: no new runs will start; "
            + (f"waiting up to {self.grace_seconds:.0f}s for {len(running)} run(s) in flight" if running else "idle"),
            flush=True,
        )
        while self._in_flight() and time.monotonic() - started < self.grace_seconds:
            await asyncio.sleep(0.5)
        left = self._in_flight()
        if left:
            say(f"cancelling {len(left)} run(s) still in flight: {', '.join(map(str, sorted(left)))}", flush=True)
        await self.runner.cancel_all_with_message(f"thaw schedule received {signame} and stopped before the run ended")
        await self.runner.astop()
        say(f"stopped in {time.monotonic() - started:.1f}s", flush=True)


def _runner_class() -> type:
    from prefect.runner import Runner

    class GracefulRunner(Runner):
        """Prefect's runner with SIGTERM handed to :class:`_Shutdown` instead of its own handler."""

        shutdown: _Shutdown

        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            self.shutdown.request("SIGTERM")

        async def cancel_all_with_message(self, message: str) -> None:
            await self._cancellation_manager.cancel_all(state_msg=message)

    return GracefulRunner


def serve_pipeline(cfg: ThawConfig, name: str, schedule: Any, grace_seconds: float) -> None:
    """Create (or update) deployment ``thaw-pipeline/<name>`` with ``schedule`` and execute
    its runs here until SIGTERM or SIGINT."""
    from flows.pipeline import thaw_pipeline

    description = f"thaw pipeline for model {cfg.model_name} on {cfg.data.train}"
    serve_flow(thaw_pipeline, name, schedule, {"cfg": cfg.model_dump(mode="json")}, description, cfg, grace_seconds)


def serve_flow(
    flow: Any, name: str, schedule: Any, parameters: dict, description: str, cfg: ThawConfig, grace_seconds: float
) -> None:
    """Deployment ``<flow>/<name>`` with ``schedule``, its runs executed here (one at a
    time) until SIGTERM or SIGINT."""
    runner = _runner_class()(name=name, limit=1)
    runner.shutdown = _Shutdown(runner, grace_seconds)
    runner.add_flow(
        flow,
        name=name,
        schedules=[schedule],
        parameters=parameters,
        description=description,
        tags=["thaw", f"model:{cfg.model_name}"],
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        runner.shutdown.loop = loop
        loop.add_signal_handler(signal.SIGINT, runner.shutdown.request, "SIGINT")
        await runner.start()
        if runner.shutdown.task is not None:
            await runner.shutdown.task

    asyncio.run(main())
