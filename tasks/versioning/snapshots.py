"""Versioning with DVC: raw inputs under ``data/`` (``data.dvc``), curated splits each
with their own ``.dvc`` file under ``datasets/<model>/``, all pushed to the remote.

DVC runs as a subprocess of the same interpreter (``python -m dvc``): the CLI is DVC's
stable interface, and its import cost stays out of thaw's process.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from prefect import task

from thaw.config import ThawConfig
from thaw.datasets import DatasetVersion, TrackedFile, file_md5
from thaw.errors import UserError, retry_unless_user_error
from thaw.offline import OFFLINE_ENV
from thaw.parse import yaml_value

RAW_DIR = "data"
log = logging.getLogger(__name__)


class DvcError(RuntimeError):
    """A DVC command failed (its stderr is in the message)."""


# DVC's own switches from thaw.offline, passed to every dvc command whoever calls it (a
# notebook calling a task has not applied thaw's environment): without them each command
# writes a usage report and starts a daemon to send it, and another to look for updates.
DVC_OFFLINE = {key: value for key, value in OFFLINE_ENV.items() if key.startswith("DVC_")}


def run_dvc(root: Path, *args: str) -> str:
    """Run ``dvc ARGS`` in ``root``; return stdout or raise DvcError with stderr."""
    env = DVC_OFFLINE | dict(os.environ)  # a value the user set stands, as in apply_offline_environment
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        detail = [line.strip() for line in (proc.stderr or proc.stdout).strip().splitlines() if line.strip()]
        # DVC's verdict comes first ("'./data.dvc' is invalid (possible merge conflicts)."),
        # its detail after: the first line, then the last lines of what it said
        verdict = detail[:1]
        said = verdict + [line for line in detail[-3:] if line not in verdict]
        raise DvcError(f"dvc {' '.join(args)} failed: {' '.join(said)}")
    return proc.stdout


CONFLICT = ("<<<<<<< ", "=======", ">>>>>>> ")  # the lines git writes around a conflict


def check_tracked_files(cfg: ThawConfig) -> None:
    """Refuse, in one line naming the file, the DVC files of the workspace that DVC would
    refuse after the run has begun: ``data.dvc``, ``dvc.yaml`` and the curated splits'
    ``.dvc`` files, all tracked in git, where a merge leaves its conflict markers. (DVC
    reads every one of them for any ``dvc add``.)"""
    root = cfg.root
    curated = root / cfg.versioning.curated_dir
    paths = [root / f"{RAW_DIR}.dvc", root / "dvc.yaml"]
    paths += sorted(curated.rglob("*.dvc")) if curated.is_dir() else []
    for path in paths:
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{path}: not UTF-8 text, so not a file DVC wrote; restore it from git") from None
        marker = next((n for n, line in enumerate(text.splitlines(), 1) if line.startswith(CONFLICT)), None)
        if marker is not None:
            raise UserError(
                f"{path}: holds a merge conflict (line {marker}), which DVC refuses; resolve it in git "
                f"(for {RAW_DIR}.dvc either side will do: this run records {RAW_DIR}/ as it is now), then run again"
            )
        try:
            doc = yaml_value(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise UserError(f"{path}: not valid YAML{where}, which DVC refuses; restore it from git") from None
        if path.suffix == ".dvc" and not (
            isinstance(doc, dict)
            and isinstance(doc.get("outs"), list)
            and doc["outs"]
            and isinstance(doc["outs"][0], dict)
        ):
            raise UserError(f"{path}: not a DVC file (no 'outs' list); restore it from git")
        if path.name == "dvc.yaml" and not isinstance(doc, dict | None):
            raise UserError(
                f"{path}: not a DVC project file (not a mapping of stages, metrics, ...); restore it from git"
            )


def remote_url(cfg: ThawConfig) -> str:
    """The configured DVC remote, or the embedded local one (``<workspace>/.dvcstore``)."""
    return cfg.versioning.remote_url or str(cfg.root / ".dvcstore")


def ensure_dvc_repo(cfg: ThawConfig) -> None:
    """Initialise DVC in the workspace if needed and point the thaw remote at its URL.

    The remote goes into ``.dvc/config.local`` (not committed): the URL is configuration.
    """
    root = cfg.root
    if not (root / ".dvc").is_dir():
        run_dvc(root, "init", *([] if (root / ".git").exists() else ["--no-scm"]))
    url = remote_url(cfg)
    v = cfg.versioning
    _add_remote(root, v.remote_name, url, v.remote_options, "remote_options", default=True)
    if v.raw_policy == "separate_remote":
        _add_remote(root, RAW_REMOTE, v.raw_remote_url, v.raw_remote_options, "raw_remote_options", default=False)


RAW_REMOTE = "thaw-raw"


def _add_remote(root: Path, name: str, url: str, options: dict[str, str], setting: str, default: bool) -> None:
    """Point the DVC remote ``name`` at ``url`` in ``.dvc/config.local``, with ``options``."""
    if "://" not in url:
        try:
            Path(url).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"DVC remote {url}: cannot create it ({exc.strerror or exc}); check {setting}") from None
    run_dvc(root, "remote", "add", "--local", "--force", *(["--default"] if default else []), name, url)
    for option, value in options.items():
        try:
            run_dvc(root, "remote", "modify", "--local", name, option, value)
        except DvcError as exc:
            raise UserError(f"versioning.{setting}.{option}: {exc}") from None


def read_dvc_file(path: Path) -> tuple[str, int]:
    """(md5, size) of the single output recorded in a ``.dvc`` file."""
    out = yaml.safe_load(path.read_text(encoding="utf-8"))["outs"][0]
    return out["md5"], int(out.get("size", 0))


def dvc_tree_md5(entries: list[tuple[str, str]]) -> str:
    """The md5 DVC 3 records for a directory holding ``entries`` (relpath, md5): md5 of the
    listing sorted by path, + '.dir'."""
    import hashlib
    import json

    listing = sorted(({"md5": md5, "relpath": rel} for rel, md5 in entries), key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir"


def demo_tree_md5(csv: Path) -> str:
    """What ``data.dvc`` records after a run reads the demo CSV alone (imported by digest)."""
    md5 = file_md5(csv)
    return dvc_tree_md5([(f"{IMPORTS}/{md5}/{csv.name}", md5)])


def dvc_directory_md5(directory: Path) -> str:
    """The md5 DVC 3 records for ``directory`` with every file in it."""
    files = [p for p in directory.rglob("*") if p.is_file() and p.name != ".gitignore"]
    return dvc_tree_md5([(p.relative_to(directory).as_posix(), file_md5(p)) for p in files])


IMPORTS = "imports"


# data.dvc versions data/imports/ only: what each run read, imported under its digest.
# A file a user keeps elsewhere under data/ (the demo's own CSV, an export) is not in it.
RAW_IGNORE = ("/data/*", "!/data/imports")
RAW_IGNORE_NOTE = "# thaw: data.dvc holds only what each run read, imported under data/imports/<md5>/"


def ensure_raw_ignore(root: Path) -> None:
    """Add thaw's two lines to the workspace's ``.dvcignore`` (keeping the rest of it)."""
    path = root / ".dvcignore"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    lines = text.splitlines()
    if all(rule in lines for rule in RAW_IGNORE):
        return
    block = "\n".join([RAW_IGNORE_NOTE, *(r for r in RAW_IGNORE if r not in lines)])
    path.write_text(text + ("\n" if text and not text.endswith("\n") else "") + block + "\n", encoding="utf-8")


def _raw_location(source: Path, root: Path) -> Path:
    """Where a raw input is versioned: imported by copy under its content digest
    (``data/imports/<md5>/<name>``), wherever it was, so two inputs of one name never
    meet and ``data.dvc`` holds exactly the files the run read."""
    data_dir = root / RAW_DIR
    source = source.resolve()
    if source.is_relative_to(data_dir / IMPORTS):
        return source
    target = data_dir / IMPORTS / file_md5(source) / source.name
    if not target.is_file() or file_md5(target) != file_md5(source):
        from thaw.datasets import atomic_output

        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(target) as tmp:
            shutil.copyfile(source, tmp)
    return target


def _prune_imports(root: Path, keep: set[Path]) -> list[str]:
    """Remove the copies earlier runs imported that this run did not read: each run's
    ``data.dvc`` versions its own inputs, not every raw copy ever made (they stay in the
    earlier ``data.dvc`` versions and the remote until ``dvc gc``). Returns what went."""
    imports = root / RAW_DIR / IMPORTS
    removed = []
    if not imports.is_dir():
        return removed
    for entry in sorted(imports.iterdir()):
        if entry.is_dir() and not entry.is_symlink() and not any(k.is_relative_to(entry) for k in keep):
            shutil.rmtree(entry)
            removed.append(entry.name)
        elif not entry.is_dir() and entry not in keep:  # a copy of an earlier layout (data/imports/<name>)
            entry.unlink()
            removed.append(entry.name)
    return removed


def _push(cfg: ThawConfig, *targets: str, remote: str | None = None, url: str | None = None) -> None:
    remote, url = remote or cfg.versioning.remote_name, url or remote_url(cfg)
    try:
        run_dvc(cfg.root, "push", "--remote", remote, *targets)
    except DvcError as exc:
        raise UserError(f"could not push to the DVC remote {url}: {exc}") from None


def raw_remote_url(cfg: ThawConfig) -> str:
    """Where raw inputs are pushed under the configured policy ('' when they stay local)."""
    policy = cfg.versioning.raw_policy
    return {"same_remote": remote_url(cfg), "separate_remote": cfg.versioning.raw_remote_url or "", "local": ""}[policy]


@task(name="version-raw-data", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_unless_user_error)
def version_raw_data(cfg: ThawConfig) -> DatasetVersion:
    """Track the raw inputs under ``data/`` with ``data.dvc`` and push them as the raw
    policy says: with the curated splits, to their own remote, or not at all (local).

    Inputs are copied to ``data/imports/<md5>/`` first, imports of earlier runs that this
    one did not read are removed, and ``.dvcignore`` keeps the rest of ``data/`` out: so
    ``data.dvc`` holds exactly this run's inputs, and an erased raw file stops being pushed.
    """
    check_tracked_files(cfg)
    ensure_dvc_repo(cfg)
    root = cfg.root
    ensure_raw_ignore(root)
    given = {"train": cfg.data.train, "validation": cfg.data.validation, "test": cfg.data.test}
    with _raw_data_lock(cfg):  # another run's import is never pruned between its copy and its add
        located = {name: _raw_location(Path(p), root) for name, p in given.items() if p is not None}
        pruned = _prune_imports(root, set(located.values()))
        if pruned:
            log.info("removed %d raw imports of earlier runs from %s/%s (still in earlier data.dvc versions)",
                     len(pruned), RAW_DIR, IMPORTS)  # fmt: skip
        run_dvc(root, "add", RAW_DIR)
        files = {n: TrackedFile(str(p.relative_to(root)), file_md5(p), p.stat().st_size) for n, p in located.items()}
        policy = cfg.versioning.raw_policy
        if policy != "local":
            remote = RAW_REMOTE if policy == "separate_remote" else None
            _push(cfg, f"{RAW_DIR}.dvc", remote=remote, url=raw_remote_url(cfg))
        md5, _ = read_dvc_file(root / f"{RAW_DIR}.dvc")
    return DatasetVersion(f"{RAW_DIR}.dvc", md5, files, raw_remote_url(cfg))


@contextmanager
def _raw_data_lock(cfg: ThawConfig) -> Iterator[None]:
    """An exclusive lock on the workspace's ``data/`` for one run's import and ``dvc add``."""
    import fcntl

    cfg.state_path.mkdir(parents=True, exist_ok=True)
    with open(cfg.state_path / "raw-data.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def register_metrics_file(root: Path, relpath: str) -> None:
    """List ``relpath`` under ``metrics:`` in the workspace's dvc.yaml (for ``dvc metrics diff``)."""
    path = root / "dvc.yaml"
    doc = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}
    metrics = doc.setdefault("metrics", [])
    if relpath not in metrics:
        metrics.append(relpath)
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def content_digest(staged: dict[str, Path]) -> str:
    """The name of a curated version's directory: md5 over its splits' names and md5s."""
    import hashlib

    listing = "".join(f"{split}:{file_md5(path)}\n" for split, path in sorted(staged.items()))
    return hashlib.md5(listing.encode()).hexdigest()[:16]


def _place(staged: dict[str, Path], target_dir: Path) -> dict[str, Path]:
    """Copy the staged splits into ``target_dir`` (each file appears whole, by rename);
    files already there with the same bytes are left alone: a directory, once written,
    never changes, so a run training on it is never disturbed."""
    from thaw.datasets import atomic_output

    placed = {}
    for split, path in staged.items():
        placed[split] = target_dir / path.name
        if placed[split].is_file() and file_md5(placed[split]) == file_md5(path):
            continue
        with atomic_output(placed[split]) as tmp:
            shutil.copyfile(path, tmp)
    return placed


@task(name="version-curated-data", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_unless_user_error)
def version_curated_data(staged: dict[str, Path], cfg: ThawConfig, metrics: Path | None = None) -> DatasetVersion:
    """Place validated curated splits in their own content-addressed directory,
    ``datasets/<model>/<digest>/``, ``dvc add`` and push them.

    Two runs of one model never write the same files: each trains on the directory named
    by its own content, and readers check each file's md5 before use. Each split gets its
    own ``.dvc`` file, so each has a plain md5 an auditor can check with ``md5sum``. The
    accounting metrics file sits in ``datasets/<model>/``, listed in dvc.yaml.
    """
    check_tracked_files(cfg)
    ensure_dvc_repo(cfg)
    root = cfg.root
    model_dir = root / cfg.versioning.curated_dir / cfg.model_name
    target_dir = model_dir / content_digest(staged)
    placed = _place(staged, target_dir)
    if metrics is not None and metrics.is_file():  # small, git-tracked: dvc metrics diff compares versions
        shutil.copyfile(metrics, model_dir / metrics.name)
        register_metrics_file(root, str((model_dir / metrics.name).relative_to(root)))
    rel = [str(p.relative_to(root)) for p in placed.values()]
    run_dvc(root, "add", *rel)
    _push(cfg, *(f"{r}.dvc" for r in rel))
    files = {}
    for split, path in placed.items():
        md5, size = read_dvc_file(path.with_name(path.name + ".dvc"))
        if md5 != file_md5(path):
            raise DvcError(f"{path}: DVC recorded md5 {md5} but the file hashes differently")
        files[split] = TrackedFile(str(path.relative_to(root)), md5, size)
    digest = "-".join(files[s].md5[:8] for s in sorted(files))
    return DatasetVersion(str(target_dir.relative_to(root)), digest, files, remote_url(cfg))
