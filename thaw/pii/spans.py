"""The one span type every PII recognizer returns, and how overlapping finds merge."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from typing import NamedTuple


class Span(NamedTuple):
    """Characters ``start:end`` of a text hold an ``entity`` (Presidio's entity names)."""

    start: int
    end: int
    entity: str


def covered(spans: Iterable[Span]) -> Callable[[int], bool]:
    """A test of whether a character position falls inside any of ``spans``, in
    logarithmic time (a text's spans may number in the tens of thousands)."""
    merged = choose_spans(spans)
    starts = [s.start for s in merged]

    def inside(position: int) -> bool:
        i = bisect_right(starts, position) - 1
        return i >= 0 and position < merged[i].end

    return inside


def choose_spans(spans: Iterable[Span]) -> list[Span]:
    """Non-overlapping spans: overlapping detections merge into one span covering all of
    them, typed by its longest member (a city found inside a street address must not
    leave the street behind)."""
    out: list[Span] = []
    lead: Span | None = None  # the longest member of the group being merged
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if out and span.start < out[-1].end:  # the group's end so far: linear however long it grows
            if span.end - span.start > lead.end - lead.start:
                lead = span
            out[-1] = Span(out[-1].start, max(out[-1].end, span.end), lead.entity)
        else:
            lead = span
            out.append(span)
    return out
