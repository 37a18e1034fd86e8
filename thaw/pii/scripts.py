"""Which writing systems the PII detector covers, and which rows fall outside them.

thaw's detector reads names and places with an English NER model and rules built on
capital letters; a name in Han, Arabic or Devanagari script (no case) or in a script
its rules were not written for passes through it unseen. Rather than let such rows
through silently, curation finds every row holding letters outside
``curation.pii.covered_scripts`` (default Latin) and applies ``uncovered_scripts``:
``refuse`` (default; the rows are named by position), ``drop`` (counted in the report),
or ``keep`` (counted, with a warning in the report and the model card).

Letters are read through the detection view (NFKC), so mathematical or full-width Latin
letters count as Latin. Digits, punctuation, symbols, emoji and the letters Unicode
shares between scripts (Common, Inherited: modifier letters such as IPA's stress mark)
belong to no script here.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence

import regex

from thaw.pii.view import detection_view
from thaw.shown import named_rows

# Named in counts and messages; letters of any other script are counted as "other".
KNOWN_SCRIPTS = (
    "Latin", "Cyrillic", "Greek", "Han", "Hiragana", "Katakana", "Hangul", "Arabic", "Hebrew",
    "Devanagari", "Bengali", "Tamil", "Telugu", "Gujarati", "Gurmukhi", "Thai", "Lao", "Khmer",
    "Myanmar", "Georgian", "Armenian", "Ethiopic", "Sinhala", "Tibetan", "Mongolian", "Syriac",
    "Thaana", "Kannada", "Malayalam", "Oriya",
)  # fmt: skip


@functools.lru_cache(maxsize=8)
def _outside(covered: tuple[str, ...]) -> regex.Pattern:
    inside = "".join(rf"\p{{Script={name}}}" for name in (*covered, "Common", "Inherited"))
    return regex.compile(rf"(?V1)[\p{{L}}--[{inside}]]")


@functools.lru_cache(maxsize=256)
def script_of(letter: str) -> str:
    """The script of one letter, among ``KNOWN_SCRIPTS``, else "other"."""
    return next((s for s in KNOWN_SCRIPTS if regex.match(rf"\p{{Script={s}}}", letter)), "other")


def uncovered_script(text: str, covered: tuple[str, ...]) -> str | None:
    """The script of the first letter of ``text`` outside ``covered``; None if there is none."""
    if text.isascii() and "Latin" in covered:
        return None
    m = _outside(covered).search(detection_view(text).text)
    return script_of(m.group()) if m else None


def uncovered_rows(texts: Sequence[str], covered: tuple[str, ...]) -> tuple[list[int], Counter]:
    """Positions of the texts holding letters outside ``covered``, and their count by script."""
    positions, scripts = [], Counter()
    for i, text in enumerate(texts):
        script = uncovered_script(text, covered)
        if script is not None:
            positions.append(i)
            scripts[script] += 1
    return positions, scripts


def refusal(where: object, column: str, rows: Sequence[int], scripts: Counter, covered: Sequence[str]) -> str:
    """The one-line refusal of rows (positions) in uncovered scripts, named by row number."""
    named = named_rows(p + 1 for p in rows)
    found = ", ".join(f"{script} {n}" for script, n in sorted(scripts.items()))
    return (
        f"{where}: column {column!r}, rows {named}: letters of scripts the PII detector does not cover "
        f"({found}; it covers {', '.join(covered)}); set curation.pii.uncovered_scripts to drop or keep, "
        "or add the script to covered_scripts"
    )
