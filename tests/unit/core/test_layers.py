"""Layers import one way: the edge (thaw_cli) -> flows -> tasks -> the core (thaw), with no
cycles between the modules of a layer. The contracts live in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_layers_import_one_way_and_without_cycles():
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "3 kept, 0 broken" in proc.stdout


def _lint_copy_with(tmp_path: Path, module: str, source: str) -> subprocess.CompletedProcess:
    """lint-imports on a copy of the tree with one extra module."""
    for name in ("thaw_cli", "flows", "tasks", "thaw"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / module).write_text(source, encoding="utf-8")
    return subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(tmp_path), "PATH": ""},
    )


def test_the_contract_catches_the_core_importing_a_task(tmp_path):
    """The check can fail: a copy of the tree whose core imports a task breaks it."""
    proc = _lint_copy_with(tmp_path, "thaw/upward.py", "from tasks.tracking.client import client_for\n")
    assert proc.returncode != 0
    assert "thaw.upward -> tasks.tracking.client" in proc.stdout


def test_the_contract_catches_a_capability_importing_upwards(tmp_path):
    """Tracking sits below release: a tracking module importing promotion breaks the contract."""
    proc = _lint_copy_with(tmp_path, "tasks/tracking/upward.py", "from tasks.release.promotion import approve\n")
    assert proc.returncode != 0
    assert "tasks.tracking.upward -> tasks.release.promotion" in proc.stdout
