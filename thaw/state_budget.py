"""The run state's reusable work kept within a size budget: least recently used first out.

Every cache (``<state>/cache/<kind>/<key>``, ``thaw.content_cache``) and every fit's
checkpoints (``<state>/checkpoints/<key>-<phase>``, ``thaw.trainer.Checkpoint``) are
keyed by what shaped them, so a new dataset version adds entries and never replaces
one; each run also leaves its working directory (``<state>/runs/<run id>``: its
reports and models, all logged to MLflow). A model trained on a schedule fills the
disk, one run at a time. This module measures them and removes the least recently used
until they fit ``budget_bytes``.

- **An entry** is one cache entry, one fit's checkpoints (all its phases, which a
  re-run resumes together), or one run's directory. A cache entry's or checkpoint's
  last use is its newest marker's mtime: written when the entry is, renewed on every
  hit (``thaw.content_cache.touch``); a run directory's is the newest mtime of it and
  what it holds at its top.
- **Never removed:** entries used at or after ``since`` (the start of the run that
  prunes, whose own run directory is new); the MLflow store and registry, the
  Prefect home and everything else in the state directory, which this module does not
  count.
- **Never while another run works:** each run holds ``state_in_use`` (a shared lock on
  ``<state>/state.lock``) from its start to its end, and ``prune`` needs that lock alone:
  should any other run hold it, nothing is removed and the line says so. A reader never
  loses an entry it was handed (features are read minutes after their lookup).
- **Removed whole:** each directory is first renamed out of its place (``.evicted``),
  so a reader finds the entry or a miss, never half of one, and then deleted. Staging
  directories a killed writer left (``.<key>.<random>.partial``) and earlier evictions
  are deleted once a day old.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from thaw.content_cache import COMPLETE

STALE_SECONDS = 24 * 3600  # a staging directory this old has no writer left
LOCK = "state.lock"


@dataclass(frozen=True)
class StateEntry:
    """One unit of reusable work: its kind (``features``, ``checkpoints``, ...), its
    directories, their size in bytes and its last use (seconds since the epoch)."""

    kind: str
    name: str
    paths: tuple[Path, ...]
    size: int
    used: float


@dataclass(frozen=True)
class Pruned:
    """What ``prune`` found and did."""

    budget: int
    since: float  # entries used at or after this stay
    before: int  # bytes in every entry found
    removed: tuple[StateEntry, ...] = ()
    protected: int = 0  # bytes in entries used since the cut-off, kept whatever the budget
    leftovers: int = 0  # bytes of dead staging directories deleted
    errors: tuple[str, ...] = field(default=())
    busy: bool = False  # another run held the state: nothing was measured or removed

    @property
    def after(self) -> int:
        return self.before - sum(e.size for e in self.removed)

    def describe(self) -> str:
        """One line for the run's log."""
        if self.busy:
            return "caches, checkpoints and runs left as they are: another run is using the state directory"
        line = f"caches, checkpoints and runs: {_gb(self.before)} against a budget of {_gb(self.budget)}"
        if self.removed:
            line += f"; removed {len(self.removed)} least recently used entries ({_gb(self.before - self.after)})"
        line += f"; {_gb(self.after)} kept"
        if self.after > self.budget:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
            line += f", over the budget: {_gb(self.protected)} of it used since {stamp}, so kept"
        if self.leftovers:
            line += f"; {_gb(self.leftovers)} of dead staging directories deleted"
        if self.errors:
            line += f"; not removed ({len(self.errors)}): {self.errors[0]}"
        return line


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


@contextlib.contextmanager
def state_in_use(state: Path) -> Iterator[None]:
    """Within: this run may read and write ``state``'s caches and checkpoints, and no
    ``prune`` elsewhere removes any (a shared lock, released however the run ends)."""
    state.mkdir(parents=True, exist_ok=True)
    with open(state / LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def disk_bytes(path: Path, follow_links: bool = False) -> int:
    """Bytes in the file ``path`` or the files under the directory ``path``; a file that
    goes while it is measured counts nothing. Links are not followed by default: the
    state's budget must never count (or empty) what lives elsewhere. ``follow_links``
    counts the files links point to, for a model directory whose files may be links (the
    Hugging Face cache's snapshots link to its blobs); a link to a directory below
    ``path`` is still not entered, so a model directory written by someone else cannot
    send the walk through the whole disk or round a loop."""
    size = os.stat if follow_links else os.lstat
    if not path.is_dir() or (path.is_symlink() and not follow_links):
        with contextlib.suppress(OSError):
            return size(path).st_size
        return 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += size(os.path.join(root, name)).st_size
    return total


def _mtime(path: Path) -> float | None:
    """``path``'s mtime (of a link itself), or None when it is gone meanwhile."""
    try:
        return path.lstat().st_mtime
    except OSError:
        return None


def _marker_time(directory: Path) -> float | None:
    return _mtime(directory / COMPLETE)


def _own_dir(path: Path) -> bool:
    """A directory of the state's own: not staging (``.name``), not a link to elsewhere,
    which pruning must never empty."""
    return path.is_dir() and not path.is_symlink() and not path.name.startswith(".")


def state_entries(state: Path) -> list[StateEntry]:
    """Every complete cache entry, every fit's checkpoints and every run directory under
    ``state``."""
    entries = []
    cache = state / "cache"
    for kind in sorted(p for p in cache.iterdir() if _own_dir(p)) if cache.is_dir() else []:
        for entry in sorted(kind.iterdir()):
            used = _marker_time(entry) if _own_dir(entry) else None
            if used is not None:
                entries.append(StateEntry(kind.name, entry.name, (entry,), disk_bytes(entry), used))
    fits: dict[str, list[Path]] = {}
    checkpoints = state / "checkpoints"
    for directory in sorted(checkpoints.iterdir()) if checkpoints.is_dir() else []:
        if _own_dir(directory):
            fits.setdefault(directory.name.split("-", 1)[0], []).append(directory)
    for key, paths in fits.items():
        times = [t for p in paths for e in p.glob("epoch-*") if (t := _marker_time(e)) is not None]
        if not times:  # killed before its first epoch
            times = [t for p in paths if (t := _mtime(p)) is not None]
        used = max(times, default=0.0)
        entries.append(StateEntry("checkpoints", key, tuple(paths), sum(disk_bytes(p) for p in paths), used))
    runs = state / "runs"
    for run in sorted(runs.iterdir()) if runs.is_dir() else []:
        if _own_dir(run):
            times = [_mtime(run)] + [_mtime(child) for child in run.iterdir()]  # files come and go as it runs
            used = max((t for t in times if t is not None), default=0.0)
            entries.append(StateEntry("runs", run.name, (run,), disk_bytes(run), used))
    return entries


def _leftovers(state: Path, now: float) -> Iterable[Path]:
    """Staging directories and evictions older than a day, in every cache and fit."""
    parents = [p for p in (state / "cache").glob("*") if p.is_dir()] + [state / "checkpoints", state / "runs"]
    parents += [p for p in (state / "checkpoints").glob("*") if p.is_dir()]
    for parent in parents:
        for path in parent.glob(".*"):
            if path.is_dir() and not path.is_symlink() and (path.name.endswith(".partial") or ".evicted" in path.name):
                try:
                    if now - path.stat().st_mtime > STALE_SECONDS:
                        yield path
                except OSError:
                    pass


def _remove(path: Path) -> None:
    """Rename ``path`` out of its place, then delete it: readers see it whole or gone."""
    gone = path.with_name(f".{path.name}.evicted-{uuid.uuid4().hex[:8]}")
    os.rename(path, gone)
    shutil.rmtree(gone, ignore_errors=True)


def prune(state: Path, budget_bytes: int, since: float, now: float | None = None) -> Pruned:
    """Remove the least recently used entries under ``state`` until those left fit
    ``budget_bytes``; entries used at or after ``since`` stay whatever the budget. Only
    when no run holds ``state_in_use``; else ``busy`` and nothing done."""
    if not state.is_dir():  # no run here yet: nothing to prune, and no state directory made
        return Pruned(budget_bytes, since, 0)
    with open(state / LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return Pruned(budget_bytes, since, 0, busy=True)
        try:
            return _prune(state, budget_bytes, since, time.time() if now is None else now)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _prune(state: Path, budget_bytes: int, since: float, now: float) -> Pruned:
    leftovers = 0
    for path in list(_leftovers(state, now)):
        leftovers += disk_bytes(path)
        shutil.rmtree(path, ignore_errors=True)
    entries = state_entries(state)
    total = sum(e.size for e in entries)
    protected = sum(e.size for e in entries if e.used >= since)
    removed, errors, left = [], [], total
    for entry in sorted((e for e in entries if e.used < since), key=lambda e: e.used):
        if left <= budget_bytes:
            break
        try:
            for path in entry.paths:
                _remove(path)
        except OSError as exc:
            errors.append(f"{entry.paths[0]}: {exc.strerror or exc}")
            continue
        removed.append(entry)
        left -= entry.size
    return Pruned(budget_bytes, since, total, tuple(removed), protected, leftovers, tuple(errors))
