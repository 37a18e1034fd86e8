"""Truth table of the promotion gate."""

import pytest

from thaw.gate import Comparison
from thaw.promotion_gate import PromotionFacts, promotion_decision

BEATS = Comparison("1", "2", 0.03, 0.01, 0.05, 0.004)
TIES = Comparison("1", "2", 0.002, -0.01, 0.01, 0.4)


def facts(**kw):
    base = {
        "version": "2",
        "is_current_challenger": True,
        "rejected": False,
        "has_champion": True,
        "versus_champion": BEATS,
        "lineage_problems": (),
    }
    return PromotionFacts(**(base | kw))


@pytest.mark.parametrize(
    "kw,promote,forced,needle",
    [
        ({}, True, False, "beats champion"),
        ({"has_champion": False, "versus_champion": None}, True, False, "no champion yet"),
        ({"versus_champion": TIES}, False, False, "does not beat"),
        ({"lineage_problems": ("train md5 abc missing from remote",)}, False, False, "lineage: train md5"),
        ({"is_current_challenger": False}, False, False, "not the current challenger"),
        ({"rejected": True}, False, False, "was rejected"),
        (
            {"versus_champion": TIES, "force": True, "force_reason": "hotfix for incident 42"},
            True,
            True,
            "FORCED: hotfix",
        ),
        ({"versus_champion": TIES, "force": True, "force_reason": "  "}, False, False, "does not beat"),
        ({"rejected": True, "force": True, "force_reason": "x"}, False, False, "was rejected"),
    ],
)
def test_promotion_truth_table(kw, promote, forced, needle):
    d = promotion_decision(facts(**kw), alpha=0.05)
    assert (d.promote, d.forced) == (promote, forced)
    assert any(needle in r for r in d.reasons)
