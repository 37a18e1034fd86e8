"""Values other people wrote, shown to someone deciding: as text, never as instructions.

A tag, a ledger reason or a data path read back from the registry may have been written
by someone who is not the approver. Printed to a terminal it must not move the cursor
or fake a line (``terminal_safe``); placed in Markdown that the Prefect UI or the MLflow
UI renders (the approval form, the approval history) it must not open a heading, a
link, an image, raw HTML or a line of its own (``md_text``, ``md_code``).
"""

from __future__ import annotations

import re
import unicodedata

# Unicode's explicit direction embeddings, overrides and isolates: they reorder how the
# characters after them are shown ("Trojan Source"), so a reason could read otherwise
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# The characters that start inline markup (emphasis, code, links, images, raw HTML and
# angle autolinks, strikethrough, table cells), escaped with a backslash: CommonMark
# honours an escape before any ASCII punctuation, and both UIs that render thaw's Markdown
# honour these (seen in Chromium for [ ] ! < * _ | ~ in the Prefect UI's pause form and the
# MLflow UI's descriptions; ` and \ are in both renderers' escape lists, marked's and
# showdown's). The MLflow UI shows a backslash before ":", "@" or "&", so those stay.
# Left as they are: a bare address, which those UIs link with the address itself as the
# text (nothing is disguised), and "&", which the MLflow UI reads as an entity.
_MARKUP = re.compile(r"([\\`*_\[\]<!|~])")


def named_rows(rows, first: int = 5) -> str:
    """Row numbers as a message names them: the first ``first``, then how many more
    ("2, 7, 9 and 12 more"). Rows, never values: a value may be PII."""
    rows = list(rows)
    named = ", ".join(str(row) for row in rows[:first])
    return named + (f" and {len(rows) - first} more" if len(rows) > first else "")


def _acts(ch: str) -> bool:
    """A character a terminal or a renderer acts on rather than shows."""
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in BIDI_CONTROLS


def _escaped(ch: str) -> str:
    return ch.encode("unicode_escape").decode("ascii")


def terminal_safe(text: str) -> str:
    """``text`` with every character a terminal would act on rather than show written as
    an escape: control characters (ESC and the sequences it starts, carriage returns and
    newlines that could fake or hide a line, tabs), line and paragraph separators, and
    direction controls. For one line of output built from what the registry holds: tags,
    ledger entries and reasons other people wrote."""
    return "".join(_escaped(ch) if _acts(ch) else ch for ch in text)


def one_line(value: object, limit: int) -> str:
    """``value`` as one line: whitespace runs (newlines too) as one space, what would act
    written as an escape, cut to ``limit`` characters with an ellipsis."""
    flat = terminal_safe(" ".join(str("" if value is None else value).split()))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def md_text(value: object, limit: int = 300) -> str:
    """``value`` as literal text inside a line of Markdown, after other text: one line, its
    markup escaped (a ``**`` shows as two stars, ``[x](y)`` as written, ``<img>`` as text)."""
    return _MARKUP.sub(r"\\\1", one_line(value, limit))


def md_code(value: object, limit: int = 300) -> str:
    """``value`` as inline code: one line, in a run of backticks longer than any inside it
    (a backtick in the value cannot close the span early)."""
    text = one_line(value, limit)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def quoted_tag(value: str | None, limit: int = 80) -> str:
    """A tag value as a message shows it: quoted, cut to ``limit`` characters."""
    if value is None:
        return "nothing (no such tag)"
    return repr(value if len(value) <= limit else value[:limit] + "...")
