"""JSON and YAML that someone else wrote: a registry tag, a request body, a user's file,
a record another process left.

The parsers raise more than their documented errors on such text. ``json.loads`` raises
``RecursionError`` on arrays or objects nested past the interpreter's recursion limit
(about 1,000 levels: ``[[[[`` 3,000 deep fits in one MLflow tag) and a plain
``ValueError`` on an integer of more than 4,300 digits; PyYAML's pure-Python loader
raises ``RecursionError`` on deep nesting too. Caught where they are parsed, as the
error a caller already handles (``ValueError``; ``yaml.YAMLError``), a tag written that
way is reported like any other unreadable one rather than ending the command in a
traceback.
"""

from __future__ import annotations

import json
from typing import Any


class UnreadableJson(ValueError):
    """Text that ``json.loads`` cannot turn into a value for a reason other than its syntax."""


def json_value(text: str | bytes) -> Any:
    """``json.loads(text)``; every way the text can fail is a ``ValueError``
    (``json.JSONDecodeError`` for its syntax, with the line and column)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise UnreadableJson("arrays or objects nested too deeply to read") from None
    except ValueError as exc:  # an integer past sys.get_int_max_str_digits()
        raise UnreadableJson(str(exc).split(":")[0]) from None


def json_problem(exc: ValueError) -> str:
    """What is wrong with the text, for a one-line error that names the place itself:
    the parser's own words, with the line where it knows it."""
    if isinstance(exc, json.JSONDecodeError):
        return f"line {exc.lineno}: {exc.msg}"
    return str(exc)


def yaml_value(text: str, loader=None) -> Any:
    """The YAML document in ``text`` (``yaml.safe_load`` unless ``loader`` is given); a
    document nested past the recursion limit is a ``yaml.YAMLError`` like any other."""
    import yaml

    try:
        return yaml.load(text, Loader=loader or yaml.SafeLoader)
    except RecursionError:
        raise yaml.MarkedYAMLError(problem="nested too deeply to read") from None
