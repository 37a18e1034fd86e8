"""One progress counter for every long loop: a single updating line on a terminal,
silent when stderr is not a terminal (scheduled runs, CI, pipes)."""

from __future__ import annotations

import sys


class Progress:
    """Call with the number of items just done; prints ``label: done/total``."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.done, self.label = total, 0, label
        self.enabled = sys.stderr.isatty()

    def __call__(self, n: int = 1) -> None:
        self.done += n
        if self.enabled:
            end = "\n" if self.done >= self.total else ""
            print(f"\r{self.label}: {self.done}/{self.total}", end=end, file=sys.stderr, flush=True)
