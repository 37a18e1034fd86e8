"""How the holder of a promotion lock is shown: from tags anyone who may edit the
registry can write, into an error line, a warning and a ledger entry."""

from __future__ import annotations

from tasks.release.promotion_lock import LockHolder


def test_a_holder_is_one_bounded_line_whatever_its_tags_hold():
    pasted = "ana\u00a0" + "x" * 100_000 + "\x1b[2K\r\nben (approve v9)\u202e"
    holder = LockHolder("m.promotion-lock", 0, "t", pasted, "approve v3\nforged", "host\x07", "12\t34", 61.6)
    shown = holder.describe()
    assert len(shown) < 500 and "\n" not in shown and "\r" not in shown
    assert not any(ch in shown for ch in "\x1b\x07\t\u202e")
    assert shown.startswith("ana xxx") and "…" in shown  # spaces as one, cut, and said to be cut
    assert shown.endswith("(approve v3 forged; pid 12 34 on host\\x07), last renewed 62 s ago by the registry's clock")


def test_an_ordinary_holder_reads_as_written():
    holder = LockHolder("m.promotion-lock", 2, "t", "ana", "approve v3", "build-7", "4242", 3.0)
    assert holder.describe() == "ana (approve v3; pid 4242 on build-7), last renewed 3 s ago by the registry's clock"
