"""One cache mechanism for every stage that reuses work: key, staging, atomic rename, hit.

- **Key** (``content_key``): a digest of exactly what shapes the output: the settings
  given by the caller, the versions of the libraries that compute it, the numeric
  precision, and thaw's version. Nothing else: a changed tracking URI or run name keeps
  the entry.
- **Staging**: an entry is written into a directory of its own with a name no other
  process uses (``.KEY.<random>.partial``), so two runs on the same data never write into
  each other's files.
- **Atomic rename**: the finished directory, with its ``complete.json`` marker written
  last, is renamed into place whole. A reader sees a whole entry or none; when two
  processes finish the same entry, the first one stays and the second is dropped.
- **Hit**: an entry is used only when its marker is there.

Curation, frozen features, frozen heads and fine-tuning checkpoints all use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

COMPLETE = "complete.json"


def library_versions(names: Sequence[str]) -> dict[str, str]:
    """The installed version of each distribution in ``names`` ("absent" when it is not)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def content_key(kind: str, settings: Mapping[str, Any], libraries: Sequence[str] = (), precision: str = "") -> str:
    """The key of an entry of cache ``kind``: 24 hex digits of a sha256 over ``settings``
    (JSON, keys sorted), the versions of ``libraries``, ``precision`` and thaw's version."""
    import thaw

    blob = {
        "kind": kind,
        "settings": settings,
        "libraries": library_versions(libraries),
        "precision": precision,
        "thaw": thaw.__version__,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:24]


@contextmanager
def directory_written_whole(final: Path) -> Iterator[Path]:
    """Yield a fresh staging directory beside ``final``; when the block ends without an
    error, mark it complete and rename it to ``final`` in one step. Returns without
    replacing when a complete ``final`` is already there (another process finished
    first); an incomplete one (no marker) is replaced."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield staging
        (staging / COMPLETE).write_text(json.dumps({"pid": os.getpid()}), encoding="utf-8")
        try:
            os.rename(staging, final)
        except OSError:
            if is_complete(final):
                return  # the same entry, finished by someone else first
            shutil.rmtree(final, ignore_errors=True)  # a leftover without its marker
            os.rename(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def is_complete(entry: Path) -> bool:
    """True when ``entry`` is a directory whose marker was written (so all of it was)."""
    return (entry / COMPLETE).is_file()


def touch(entry: Path) -> None:
    """Record a use of ``entry`` (a directory with its marker): the marker's mtime."""
    with suppress(OSError):  # read-only state, or removed meanwhile: used all the same
        os.utime(entry / COMPLETE)


@dataclass(frozen=True)
class ContentCache:
    """The entries of one kind of cached work under ``root`` (``<state>/cache/<kind>``)."""

    root: Path

    def get(self, key: str) -> Path | None:
        """The complete entry for ``key``, or None; a hit counts as a use
        (``thaw.state_budget`` keeps the most recently used)."""
        entry = self.root / key
        if not is_complete(entry):
            return None
        touch(entry)
        return entry

    @contextmanager
    def put(self, key: str) -> Iterator[Path]:
        """Yield a staging directory to write the entry for ``key`` into; it becomes the
        entry, whole, when the block ends without an error."""
        with directory_written_whole(self.root / key) as staging:
            yield staging

    def path(self, key: str) -> Path:
        """Where the entry for ``key`` lives once written."""
        return self.root / key
