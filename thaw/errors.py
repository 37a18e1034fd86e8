"""The one error type for user mistakes: the CLI prints it as one line, no traceback."""


class UserError(Exception):
    """Bad input or configuration; the message names the file, column or row."""


class ExpectationsFailed(UserError):
    """The curated data failed its Great Expectations suite; training did not start."""
