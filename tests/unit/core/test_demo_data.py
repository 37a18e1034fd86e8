from pathlib import Path

import yaml

from thaw.demo_data import generate_support_tickets, write_demo_data

REPO = Path(__file__).resolve().parents[3]


def test_generation_is_deterministic():
    assert generate_support_tickets(300, seed=5)[0] == generate_support_tickets(300, seed=5)[0]
    assert generate_support_tickets(300, seed=5)[0] != generate_support_tickets(300, seed=6)[0]


def test_regenerated_demo_matches_the_md5_pinned_by_data_dvc(tmp_path: Path):
    """data.dvc pins what a demo run versions: the demo CSV imported under its digest, the
    only file (.dvcignore keeps the rest of data/ out)."""
    from tasks.versioning.snapshots import RAW_IGNORE, demo_tree_md5

    path = write_demo_data(tmp_path)
    out = yaml.safe_load((REPO / "data.dvc").read_text())["outs"][0]
    assert out["nfiles"] == 1 and out["size"] == path.stat().st_size
    assert demo_tree_md5(path) == out["md5"]
    assert set(RAW_IGNORE) <= set((REPO / ".dvcignore").read_text().splitlines())


def test_demo_carries_pii_duplicates_and_invalid_rows():
    text, injected = generate_support_tickets(1000)
    rows = text.splitlines()[1:]
    assert len(rows) == 1000
    assert len(rows) - len(set(rows)) == 0  # ids differ, so compare message,intent pairs
    bodies = [r.split(",", 1)[1] for r in rows]
    assert len(bodies) - len(set(bodies)) > 10
    assert {"PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "ADDRESS"} <= set(injected.values)
    assert any(b.startswith(",") or b.startswith('"",') for b in bodies)
