"""The one way in and out for thaw's data files: split names, canonical columns, md5s,
atomic writes, and the reader of a curated split.

Inside thaw every table has the canonical columns ``id``, ``text`` and ``label``; the
user's column names (``ColumnMap``) are used only at the edges: when an input is read
and when a file is written for people to read (``thaw curate --output``, predictions).
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from thaw.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

SPLITS = ("train", "validation", "test")
ID, TEXT, LABEL = "id", "text", "label"
CANONICAL_COLUMNS = (ID, TEXT, LABEL)
SLICE = "slice"  # optional: the user's slice column (data.slice_column), for per-slice metrics
DEFAULT_ID_COLUMN = "row_id"  # the id column's name in outputs when the input had none


def one_spelling(label: str) -> str:
    """A label as one class is written however it was typed or exported: surrounding
    whitespace dropped, runs of any whitespace (a non-breaking space, a tab) one space,
    and Unicode's composed form (NFC: 'é' typed as e and an accent is 'é'). 'billing '
    and 'billing' are never meant as two classes; case is kept (it may be meant)."""
    return unicodedata.normalize("NFC", " ".join(label.split()))


def lone_surrogate(text: str) -> str | None:
    """The first lone surrogate in ``text`` written as its escape (``\\ud800``), or None.
    JSON can carry half of a character (``"\\ud800"``); no UTF-8 can, so the tokenizer,
    pyarrow and SQLite all fail on one: it is refused where text arrives, naming where."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"\\u{ord(text[exc.start]):04x}"
    return None


def case_variants(labels: Iterable[str]) -> list[list[str]]:
    """The groups of labels that are one spelling but for case ('Billing', 'billing',
    'BILLING'), each group sorted, the groups in order. ``one_spelling`` keeps case,
    since it may be meant, so each of these trains as its own class; a caller warns."""
    groups: dict[str, set[str]] = {}
    for label in labels:
        groups.setdefault(label.casefold(), set()).add(label)
    return sorted(sorted(group) for group in groups.values() if len(group) > 1)


@dataclass(frozen=True)
class ColumnMap:
    """The user's column names for the canonical id/text/label columns."""

    text: str
    label: str | None
    id: str | None
    slice: str | None = None

    @property
    def id_name(self) -> str:
        """The id column's name in files people read (``row_id`` when the input had none)."""
        return self.id or DEFAULT_ID_COLUMN

    def to_user(self) -> dict[str, str]:
        """Renaming from canonical to the user's names."""
        names = {ID: self.id_name, TEXT: self.text, LABEL: self.label or LABEL}
        return names | ({SLICE: self.slice} if self.slice else {})


@dataclass(frozen=True)
class TrackedFile:
    """A file DVC tracks: path relative to the workspace and its md5 (DVC's digest)."""

    path: str
    md5: str
    size: int


class DataChanged(UserError):
    """A versioned file no longer has the md5 recorded for it."""


@dataclass(frozen=True)
class DatasetVersion:
    """What a run read or wrote, as DVC recorded it, and where it was pushed."""

    dvc_file: str
    md5: str
    files: dict[str, TrackedFile]
    remote: str

    @classmethod
    def from_dict(cls, data: dict) -> DatasetVersion:
        """The inverse of ``dataclasses.asdict`` (e.g. across a process boundary)."""
        files = {name: TrackedFile(**f) for name, f in data["files"].items()}
        return cls(data["dvc_file"], data["md5"], files, data["remote"])

    def local_path(self, root: Path, split: str) -> Path:
        """Where ``split`` lives in the workspace ``root``, once its bytes are checked
        against the md5 DVC recorded; refuses (DataChanged) a file altered since."""
        path = Path(root) / self.files[split].path
        actual = file_md5(path) if path.is_file() else "missing"
        if actual != self.files[split].md5:
            raise DataChanged(
                f"{path}: md5 {actual} is not the {self.files[split].md5} this run versioned; "
                "the file changed under the run (restore it with `dvc checkout`)"
            )
        return path

    def read(self, root: Path, split: str) -> Split:
        """The curated ``split`` of this version, read from the workspace ``root`` and
        verified against its recorded md5 first."""
        return read_split(self.local_path(root, split))


def file_md5(path: Path) -> str:
    """md5 of the file's bytes: the digest DVC 3 records for a file."""
    with open(path, "rb") as fh:
        return stream_md5(fh)


def tree_sha256(directory: Path, ignore: tuple[str, ...] = ()) -> str:
    """SHA-256 over every file under ``directory`` (but top-level names in ``ignore``):
    sorted relative paths and each file's SHA-256. Equal for byte-identical trees
    wherever they are stored."""
    h = hashlib.sha256()
    files = (p for p in Path(directory).rglob("*") if p.is_file() and p.relative_to(directory).parts[0] not in ignore)
    for path in sorted(files):
        with open(path, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        h.update(f"{path.relative_to(directory).as_posix()}\0{digest}\n".encode())
    return h.hexdigest()


def stream_md5(handle: BinaryIO, chunk: int = 1 << 20) -> str:
    """md5 of everything left in a binary file object, read in chunks."""
    h = hashlib.md5()
    while block := handle.read(chunk):
        h.update(block)
    return h.hexdigest()


@contextmanager
def atomic_output(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; when the block succeeds it replaces
    ``target`` in one rename, when it fails it is removed. Readers never see half a file."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        yield tmp
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomically(target: Path, text: str) -> Path:
    """Write ``text`` (UTF-8, line ends untranslated) to ``target`` all or nothing; return ``target``."""
    with atomic_output(target) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")
    return Path(target)


@dataclass(frozen=True)
class Split:
    """A curated split as parallel lists: ids, texts, labels (all strings), and the slice
    of each row when the data names a slice column."""

    ids: list[str]
    texts: list[str]
    labels: list[str]
    slices: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, positions: Sequence[int]) -> Split:
        """The rows at ``positions``, in that order."""
        pick = lambda values: [values[i] for i in positions]  # noqa: E731
        return Split(pick(self.ids), pick(self.texts), pick(self.labels), pick(self.slices) if self.slices else None)

    @staticmethod
    def concat(parts: Sequence[Split]) -> Split:
        """The rows of ``parts`` one after the other."""
        slices = [s for p in parts for s in p.slices] if all(p.slices is not None for p in parts) else None
        return Split(
            [i for p in parts for i in p.ids],
            [t for p in parts for t in p.texts],
            [y for p in parts for y in p.labels],
            slices,
        )


@dataclass(frozen=True)
class SplitRows:
    """Which rows of a curated version a fit uses: the named splits pooled in order
    (``("train", "validation")`` for a refit), optionally only some positions of that
    pool (one cross-validation fold). Small and serialisable, so it crosses processes."""

    splits: tuple[str, ...]
    positions: tuple[int, ...] | None = None

    def read(self, version: DatasetVersion, root: Path) -> Split:
        pool = Split.concat([version.read(root, s) for s in self.splits])
        return pool if self.positions is None else pool.take(self.positions)


def read_table(path: Path) -> pd.DataFrame:
    """A curated file (CSV or Parquet, canonical columns) as strings, exactly as written."""
    import pandas as pd

    if Path(path).suffix == ".parquet":
        return pd.read_parquet(path).astype(str)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def read_split(path: Path) -> Split:
    """The curated split at ``path`` (CSV or Parquet with canonical columns)."""
    frame = read_table(path)
    missing = [c for c in CANONICAL_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a curated split (no column {missing[0]!r})")
    slices = frame[SLICE].tolist() if SLICE in frame.columns else None
    return Split(frame[ID].tolist(), frame[TEXT].tolist(), frame[LABEL].tolist(), slices)


def _write_frame(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, lineterminator="\n")


def write_table(frame: pd.DataFrame, target: Path, fmt: str = "csv") -> Path:
    """Write ``frame`` as CSV (LF line ends) or Parquet, all or nothing; return ``target``."""
    with atomic_output(target) as tmp:
        _write_frame(frame, tmp, fmt)
    return Path(target)


def write_tables(frames: dict[str, pd.DataFrame], directory: Path, fmt: str = "csv") -> dict[str, Path]:
    """Write each frame to ``directory/<name>.<fmt>``: every file appears, or none does."""
    targets = {name: Path(directory) / f"{name}.{fmt}" for name in frames}
    with ExitStack() as stack:
        staged = {name: stack.enter_context(atomic_output(path)) for name, path in targets.items()}
        for name, frame in frames.items():
            _write_frame(frame, staged[name], fmt)
    return targets
