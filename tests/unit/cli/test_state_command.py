"""`thaw state`: what the state directory's caches and checkpoints hold, and pruning them."""

import os
import subprocess
import sys

import pytest

from thaw.content_cache import COMPLETE
from thaw_cli.main import main


def _workspace(tmp_path):
    state = tmp_path / ".thaw"
    for kind, key, size, age in (("features", "a", 3000, 300), ("features", "b", 3000, 200), ("heads", "c", 1000, 100)):
        entry = state / "cache" / kind / key
        entry.mkdir(parents=True)
        (entry / "x.bin").write_bytes(b"x" * size)
        (entry / COMPLETE).write_text("{}")
        os.utime(entry / COMPLETE, (1.7e9 - age, 1.7e9 - age))
    return ["--workspace", str(tmp_path)]


def test_state_lists_each_kind_and_prune_keeps_the_most_recently_used(tmp_path, capsys):
    where = _workspace(tmp_path)
    assert main(["state", *where]) == 0
    out = capsys.readouterr().out
    assert "features           2     0.00" in out and "heads              1" in out and "budget 10 GB" in out
    assert main(["state", *where, "--prune", "--budget-gb", "0.000005"]) == 0  # 5,000 bytes
    assert "removed 1 least recently used entries" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / ".thaw" / "cache").glob("*/*")) == ["b", "c"]


def test_prune_leaves_everything_while_a_run_holds_the_state(tmp_path, capsys):
    """Another process holds the state as a run does (``state_in_use``) while the operator
    prunes through the CLI; once that process ends, the prune goes through."""
    where = _workspace(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / ".thaw")], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        assert main(["state", *where, "--prune", "--budget-gb", "0"]) == 1
        assert "another run is using the state directory" in capsys.readouterr().out
        assert len(list((tmp_path / ".thaw" / "cache").glob("*/*"))) == 3
    finally:
        holder.communicate("", timeout=30)  # its stdin closes: it leaves state_in_use and ends
    assert main(["state", *where, "--prune", "--budget-gb", "0"]) == 0
    assert not list((tmp_path / ".thaw" / "cache").glob("*/*"))


HOLD = """
import sys
from pathlib import Path
from thaw.state_budget import state_in_use
with state_in_use(Path(sys.argv[1])):
    print("holding", flush=True)
    sys.stdin.read()
"""


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf"])
def test_a_budget_that_is_not_a_size_gets_one_line(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_:
        main(["state", "--workspace", str(tmp_path), "--prune", "--budget-gb", value])
    assert exit_.value.code == 2
    assert f"{value!r} is not a size in GB" in capsys.readouterr().err
