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
    with pytest.raises(UserError, match="--interval 0: the shortest interval is 10 seconds"):
        build_schedule(None, 0, "UTC")  # given, and too short: not "give exactly one"


@pytest.mark.parametrize(
    ("cron", "said"),
    [
        ("* * * * * *", "6 fields, where thaw takes five"),  # croniter: every second
        ("0 0 3 * * ?", "6 fields, where thaw takes five"),  # Quartz, seconds first
        ("0 3 * * * 2027", "6 fields, where"),
        ("* * * * * * *", "7 fields, where"),
        ("@reboot", "is not a cron expression"),
        ("", "0 fields, where"),
        ("*" * 1000, "1 field, where"),
    ],
)
def test_a_cron_expression_has_five_fields_or_is_a_named_period(cron, said):
    with pytest.raises(UserError) as raised:
        build_schedule(cron, None, "UTC")
    assert said in str(raised.value) and len(str(raised.value)) < 300


@pytest.mark.parametrize("cron", ["@daily", "@hourly", "0 3 * * MON-FRI", "*/15 * * * *", "0 3 L * *"])
def test_cron_expressions_users_write_are_taken(cron):
    assert build_schedule(cron, None, "UTC").cron == cron


@pytest.mark.parametrize(
    "argv",
    [
        ["schedule", "--cron", "0 0 3 * * ?", "--train", "t.csv"],
        ["schedule", "--interval", "0", "--train", "t.csv"],
        ["monitor", "m@champion", "--input", "new.csv", "--interval", "0"],
    ],
)
def test_schedule_options_are_checked_before_a_server_is_asked_for(tmp_path, monkeypatch, capsys, argv):
    """Told first what is wrong with the schedule, not to start a server and then told."""
    from thaw_cli.main import main

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    (tmp_path / "new.csv").write_text("text\nhello\n", encoding="utf-8")
    (tmp_path / ".thaw").mkdir()
    (tmp_path / ".thaw" / "mlflow.db").touch()  # what marks a workspace; monitor reads nothing from it first
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--workspace", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert ("6 fields, where" in err or "the shortest interval is 10 seconds" in err) and "Prefect server" not in err


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
