"""Challenger against champion on examples neither trained on, with the configured metric.

The challenger's test split never reached its own training (curation removes exact and
near duplicates across splits). The champion may have trained on some of those rows:
a later dataset can hold rows of an earlier one. So the champion's own train and
validation splits are restored from the DVC remote (by the md5s its version records)
and every challenger test row whose normalised text is among them is left out. What
remains is unseen by both; the paired bootstrap runs on those rows with the ladder's
metric, and the record says how many rows were used and how many were left out.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tasks.curation.dedup import normalize_text
from tasks.release.stored_model import load_verified_model
from tasks.tracking.client import client_for
from tasks.versioning.restore import checked_tags, restore_split
from thaw.config import ThawConfig
from thaw.datasets import Split, read_split
from thaw.gate import Comparison, RungScore, paired_comparison

MIN_FAIR_ROWS = 20  # fewer unseen rows than this cannot show a difference


@dataclass(frozen=True)
class ChampionComparison:
    """The challenger minus the champion on the rows unseen by both."""

    champion: str
    challenger: str
    metric: str
    rows: int  # challenger test rows used
    left_out: int  # challenger test rows the champion trained or validated on
    comparison: Comparison | None  # None: too few unseen rows to compare
    champion_score: float | None = None
    challenger_score: float | None = None

    def summary(self) -> str:
        if self.comparison is None:
            return (
                f"no fair comparison with champion v{self.champion}: {self.rows} test rows unseen by both "
                f"(fewer than {MIN_FAIR_ROWS}; {self.left_out} left out as seen by the champion)"
            )
        c = self.comparison
        return (
            f"{self.metric} on {self.rows} test rows unseen by both ({self.left_out} left out): champion "
            f"v{self.champion} {self.champion_score:.4f}, challenger {self.challenger_score:.4f}, delta "
            f"{c.delta:+.4f} [{c.low:+.4f}, {c.high:+.4f}], p={c.p_value:.3f}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "summary": self.summary()}


def unseen_rows(test: Split, seen_texts: set[str]) -> list[int]:
    """Positions of test rows whose normalised text is not among ``seen_texts``."""
    return [i for i, text in enumerate(test.texts) if normalize_text(text) not in seen_texts]


def compare_with_champion(cfg: ThawConfig, name: str, champion: str, challenger: str) -> ChampionComparison:
    """Paired bootstrap of challenger vs champion (configured metric) on the challenger's
    test rows that the champion never trained or validated on."""

    client = client_for(cfg)
    tags = {v: checked_tags(cfg, client.get_model_version(name, v)) for v in (champion, challenger)}
    ladder = cfg.training.ladder
    with tempfile.TemporaryDirectory(prefix="compare-", dir=_scratch(cfg)) as tmp:
        test = read_split(restore_split(cfg, tags[challenger], "test", Path(tmp) / "challenger"))
        seen: set[str] = set()
        for split in ("train", "validation"):
            if tags[champion].get(f"thaw.curated.{split}.md5"):
                path = restore_split(cfg, tags[champion], split, Path(tmp) / "champion")
                seen |= {normalize_text(t) for t in read_split(path).texts}
    keep = unseen_rows(test, seen)
    left_out = len(test) - len(keep)
    if len(keep) < MIN_FAIR_ROWS:
        return ChampionComparison(champion, challenger, ladder.metric, len(keep), left_out, None)
    rows = test.take(keep)
    preds = {}
    for v in (champion, challenger):
        model = load_verified_model(cfg, name, v)
        preds[v] = tuple(model.predict(rows.texts)["label"].astype(str))
    comparison = paired_comparison(
        rows.labels,
        RungScore(champion, 0, preds[champion]),
        RungScore(challenger, 0, preds[challenger]),
        ladder.metric,
        ladder.bootstrap_samples,
        cfg.training.confidence_level,
        cfg.training.seed,
    )
    return ChampionComparison(
        champion,
        challenger,
        ladder.metric,
        len(keep),
        left_out,
        comparison,
        metric_value(ladder.metric, rows.labels, preds[champion]),
        metric_value(ladder.metric, rows.labels, preds[challenger]),
    )


def metric_value(metric: str, y_true: list[str], y_pred: tuple[str, ...]) -> float:
    """Accuracy, or macro-F1 over the classes present in ``y_true`` (as the paired test scores)."""
    from thaw.metrics import accuracy_codes, encode, macro_f1_codes

    t, p, k = encode(y_true, y_pred, sorted(set(y_true)))
    return float(accuracy_codes(t, p) if metric == "accuracy" else macro_f1_codes(t, p, k))


def _scratch(cfg: ThawConfig) -> Path:
    path = cfg.state_path / "restore"
    path.mkdir(parents=True, exist_ok=True)
    return path
