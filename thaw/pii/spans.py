"""The one span type every PII recognizer returns, and how overlapping finds merge."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


class Span(NamedTuple):
    """Characters ``start:end`` of a text hold an ``entity`` (Presidio's entity names)."""

    start: int
    end: int
    entity: str


def choose_spans(spans: Iterable[Span]) -> list[Span]:
    """Non-overlapping spans: overlapping detections merge into one span covering all of
    them, typed by its longest member (a city found inside a street address must not
    leave the street behind)."""
    merged: list[list[Span]] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if merged and span.start < max(s.end for s in merged[-1]):
            merged[-1].append(span)
        else:
            merged.append([span])
    out = []
    for group in merged:
        lead = max(group, key=lambda s: s.end - s.start)
        out.append(Span(min(s.start for s in group), max(s.end for s in group), lead.entity))
    return out
