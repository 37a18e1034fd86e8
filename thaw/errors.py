"""User mistakes and account problems: the CLI prints them as one line, no traceback."""

import os
import re
from collections.abc import Iterator, Sequence

_UNREACHABLE = re.compile(
    r"API request to (\S+?)/(?:api|ajax-api)/.*(?:Max retries exceeded|Connection refused|NewConnectionError)"
)


class UserError(Exception):
    """Bad input or configuration; the message names the file, column or row."""

    def lines(self) -> list[str]:
        """The message as the lines the CLI prints. One: a newline in it came from a value
        quoted (a file's, a tag's) and is shown escaped, never as a line of its own."""
        return [str(self)]


def retry_unless_user_error(task, task_run, state) -> bool:
    """A Prefect task's ``retry_condition_fn``: retries are for what may pass on a second
    try (a remote or a server that blinked), never for bad input, which would fail the same
    way after the delays and then print its line, nor for credentials or permissions an
    MLflow server refused (``tracking_access_problem``); an unreachable server is retried."""
    exc = state.data
    return not isinstance(exc, UserError) and getattr(exc, "error_code", None) not in ACCOUNT_CODES


ACCOUNT_CODES = ("UNAUTHENTICATED", "PERMISSION_DENIED")  # MLflow's answers about who asks


class ExpectationsFailed(UserError):
    """The curated data failed its Great Expectations suite; training did not start.
    One line per failed expectation."""

    HEADLINE = "curated data failed its expectations; training did not start:"

    def __init__(self, failures: Sequence[str], report: str | None = None) -> None:
        super().__init__(tuple(failures), report)  # the arguments it is rebuilt from when unpickled
        self.failures = tuple(failures)
        self.report = report  # where every check, passed and failed, is listed (data_checks.md)

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def lines(self) -> list[str]:
        return [self.HEADLINE, *(f"  - {failure}" for failure in self.failures)]


def tracking_access_problem(exc: BaseException) -> str | None:
    """One line for an MLflow server refusing who we are or what we asked, or one that
    cannot be reached; None otherwise.

    A shared tracking server with authentication (infra/) answers 401 to missing or wrong
    credentials and 403 to an action the user has no permission for (e.g. moving the
    champion alias without MANAGE on the model): a matter of accounts, not a bug.
    """
    code = getattr(exc, "error_code", None)
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if code == "UNAUTHENTICATED":
        who = f"the credentials of {user!r}" if user else "a request without credentials"
        return (
            f"the MLflow tracking server refused {who}: set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD to your account"
        )
    if code == "PERMISSION_DENIED":
        return (
            f"the MLflow tracking server denied {user or 'this user'} the action: an MLflow admin grants "
            "MANAGE on the registered model to those who may promote it"
        )
    unreachable = _UNREACHABLE.search(str(exc))
    if unreachable:
        return f"cannot reach the MLflow tracking server at {unreachable.group(1)} (is it running?)"
    return None


# Exceptions that mean "someone stopped this run", not "this run broke": Ctrl-C, and the
# signals Prefect raises in a flow run's process when the run is cancelled or its worker stops.
_STOPPED = {"KeyboardInterrupt", "TerminationSignal", "CancelledRun", "SystemExit"}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling, most recent first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def run_ending(exc: BaseException) -> tuple[str, str]:
    """The MLflow status (KILLED or FAILED) and a one-line reason for a run that raised ``exc``.

    A stop counts wherever it is in the chain: a SIGTERM that lands while Prefect creates a
    task run surfaces as the ValueError Prefect's own crash handling raises on top of it."""
    for link in _chain(exc):
        if {cls.__name__ for cls in type(link).__mro__} & _STOPPED:
            message = " ".join(str(link).split())
            return "KILLED", f"stopped before the end ({type(link).__name__}{': ' + message if message else ''})"
    message = " ".join(str(exc).split())  # the whole message on one line: which check, file or row
    return "FAILED", f"{type(exc).__name__}: {message}"[:1000]
