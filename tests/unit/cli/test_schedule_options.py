"""`thaw schedule` / `thaw monitor` options and `thaw up`'s reading of a server log."""

import pytest

from thaw.errors import UserError, run_ending
from thaw_cli.scheduler import build_schedule, check_timezone, local_timezone
from thaw_cli.services import first_error

SCHEDULER_LOG = """\
16:02:11.250 | INFO    | prefect.server - Starting services
16:02:16.512 | ERROR   | prefect.server.services.scheduler - Unexpected error in: InvalidRequestError
Traceback (most recent call last):
  File "prefect/server/services/scheduler.py", line 188, in _insert_scheduled_flow_runs
sqlalchemy.exc.InvalidRequestError: Can't evaluate bulk DML statement; please supply a bulk_dml decorated function
"""


def test_cron_keeps_the_users_timezone_and_intervals_have_a_floor():
    assert build_schedule("0 3 * * *", None, "Europe/Paris").timezone == "Europe/Paris"
    assert build_schedule(None, 60, "UTC").interval.total_seconds() == 60
    with pytest.raises(UserError, match="not a cron expression"):
        build_schedule("0 3 * *", None, "UTC")
    with pytest.raises(UserError, match="exactly one"):
        build_schedule("0 3 * * *", 60, "UTC")
    with pytest.raises(UserError, match="shortest interval"):
        build_schedule(None, 1, "UTC")


def test_timezones_are_checked_and_default_to_the_machines(monkeypatch):
    with pytest.raises(UserError, match="unknown timezone 'Mars/Olympus'"):
        check_timezone("Mars/Olympus")
    monkeypatch.setenv("TZ", "America/New_York")
    assert local_timezone() == "America/New_York"
    monkeypatch.delenv("TZ")
    check_timezone(local_timezone())


def test_the_first_error_of_a_server_log_names_the_exception(tmp_path):
    log = tmp_path / "prefect-server.log"
    log.write_text(SCHEDULER_LOG, encoding="utf-8")
    line = first_error(log)
    assert "prefect.server.services.scheduler" in line and "Can't evaluate bulk DML statement" in line
    log.write_text("16:02:11 | INFO | all good\n", encoding="utf-8")
    assert first_error(log) is None
    assert first_error(tmp_path / "missing.log") is None


def test_a_stopped_run_is_killed_and_a_broken_one_failed_with_the_reason():
    assert run_ending(KeyboardInterrupt())[0] == "KILLED"
    status, reason = run_ending(ValueError("curated data failed:\n  row 3: column 'text' is empty"))
    assert status == "FAILED" and reason == "ValueError: curated data failed: row 3: column 'text' is empty"
    from prefect.exceptions import TerminationSignal

    assert run_ending(TerminationSignal(15))[0] == "KILLED"


def test_a_stop_under_prefects_own_crash_handling_is_still_a_stop():
    """Seen in a scheduled run: SIGTERM landed while Prefect created a task run, and its crash
    handler raised ValueError('Task run is not set') on top of the TerminationSignal."""
    from prefect.exceptions import TerminationSignal

    try:
        try:
            raise TerminationSignal(15)
        except TerminationSignal:
            raise ValueError("Task run is not set")  # noqa: B904 - as Prefect raises it
    except ValueError as exc:
        chained = exc
    status, reason = run_ending(chained)
    assert status == "KILLED" and reason.startswith("stopped before the end (TerminationSignal")
    try:
        try:
            raise OSError("disk full")
        except OSError:
            raise ValueError("could not write the summary")  # noqa: B904
    except ValueError as exc:
        assert run_ending(exc) == ("FAILED", "ValueError: could not write the summary")


@pytest.mark.parametrize("value", ["nan", "-5", "inf", "twenty"])
@pytest.mark.parametrize("command", [["schedule", "--interval", "60"], ["monitor", "m@champion", "--input", "x.csv"]])
def test_a_stop_grace_that_is_not_a_duration_gets_one_line(tmp_path, capsys, command, value):
    from thaw_cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main([*command, "--workspace", str(tmp_path), "--stop-grace", value])
    assert exit_.value.code == 2
    assert f"{value!r} is not a number of seconds (0 or more)" in capsys.readouterr().err
