"""Every import of thaw's own code names something that exists, including the imports
made inside functions (thaw imports where it uses, to keep start-up fast): a rename
would otherwise surface only when that function first runs. ``bench.pii`` imported
``one_blas_thread`` from the PII detector for a session after it was renamed, and the
PII bench failed at its two-process timing."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("thaw", "tasks", "flows", "thaw_cli", "bench", "tests")
OWN = ("thaw", "tasks", "flows", "thaw_cli", "bench")


def _own(module: str | None) -> bool:
    return module is not None and module.split(".")[0] in OWN


def _imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name or None) of each import of thaw's own code in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and _own(node.module):
            found += [(node.lineno, node.module, alias.name) for alias in node.names if alias.name != "*"]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names if _own(alias.name)]
    return found


def _missing(module: str, name: str | None) -> str | None:
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError:
        return f"no module {module}"
    if name is None or hasattr(imported, name):
        return None
    if hasattr(imported, "__path__") and importlib.util.find_spec(f"{module}.{name}") is not None:
        return None  # a submodule not imported yet
    return f"{module} has no {name}"


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def test_every_import_of_thaw_code_resolves():
    broken = [
        f"{path.relative_to(ROOT)}:{line}: {why}"
        for path in _sources()
        for line, module, name in _imports(path)
        if (why := _missing(module, name))
    ]
    assert not broken, "\n".join(broken)


def test_a_renamed_name_imported_inside_a_function_is_caught(tmp_path):
    source = tmp_path / "stale.py"
    source.write_text("def run():\n    from thaw.pii.detector import one_blas_thread\n", encoding="utf-8")
    [(line, module, name)] = _imports(source)
    assert (line, _missing(module, name)) == (2, "thaw.pii.detector has no one_blas_thread")


@pytest.mark.parametrize(("module", "name"), [("thaw.pii", "detector"), ("thaw.pii.detector", "start_worker")])
def test_submodules_and_attributes_both_count(module, name):
    assert _missing(module, name) is None
