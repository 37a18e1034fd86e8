"""The canary's pure parts: routing share, breach thresholds, intervals, the report, and
the checks on what a request or a feedback body may hold."""

from __future__ import annotations

import random
import uuid

import numpy as np
import pytest

from thaw.canary import (
    BreachWatch,
    Outcome,
    answers_with_challenger,
    canary_report,
    quantile,
    quantile_interval,
)
from thaw.config import CanaryConfig
from thaw.errors import UserError
from thaw_cli.commands_serving import parse_share, serving_mode
from thaw_cli.serving_app import BadRequest, feedback_pairs, request_texts


def test_the_canary_share_is_kept_and_a_request_always_goes_the_same_way():
    ids = [uuid.UUID(int=random.Random(7).getrandbits(128) + i).hex for i in range(20_000)]
    share = sum(answers_with_challenger(i, 0.1) for i in ids) / len(ids)
    assert 0.09 < share < 0.11
    assert all(answers_with_challenger(i, 0.1) == answers_with_challenger(i, 0.1) for i in ids[:100])
    assert not any(answers_with_challenger(i, 0.0) for i in ids[:100])
    assert all(answers_with_challenger(i, 1.0) for i in ids[:100])


def test_a_p95_interval_covers_the_true_p95_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    true_p95 = float(np.quantile(rng.lognormal(1.5, 0.4, 2_000_000), 0.95))
    covered = 0
    for _ in range(400):
        low, high = quantile_interval(rng.lognormal(1.5, 0.4, 300).tolist(), 0.95)
        covered += low <= true_p95 <= high
    assert 0.91 <= covered / 400 <= 0.99


def test_too_few_values_give_no_upper_bound_for_a_p95():
    low, high = quantile_interval([1.0] * 20, 0.95)
    assert np.isnan(high)
    assert quantile([3.0], 0.95) == 3.0 and np.isnan(quantile([], 0.5))


def _watch(**limits) -> BreachWatch:
    return BreachWatch(CanaryConfig(min_requests=20, window=100, **limits))


def test_nothing_breaches_before_min_requests_however_bad():
    watch = _watch()
    for _ in range(19):
        assert watch.add(Outcome(True, False, 1.0, 100.0)) == []
    assert watch.add(Outcome(True, False, 1.0, 100.0))  # the twentieth


def test_an_error_rate_breaches_only_when_its_whole_interval_is_above_the_threshold():
    watch = _watch(max_error_rate=0.05)
    for i in range(100):  # 3% errors: a point estimate under the bar
        assert watch.add(Outcome(i % 33 == 0, True, 1.0, 1.0)) == []
    watch = _watch(max_error_rate=0.05)
    reasons = []
    for i in range(100):  # 30% errors
        reasons = watch.add(Outcome(i % 10 < 3, True, 1.0, 1.0)) or reasons
    assert any("error rate" in r for r in reasons)


def test_disagreement_and_latency_breach_on_their_own_thresholds():
    watch = _watch(max_disagreement=0.2)
    reasons = []
    for i in range(40):
        reasons = watch.add(Outcome(False, i % 2 == 0, 5.0, 5.0))
    assert reasons and "disagreement 0.500" in reasons[0]
    watch = _watch(max_p95_ms=10.0, max_p95_ratio=None)
    for _ in range(20):
        reasons = watch.add(Outcome(False, True, 5.0, 12.0))
    assert reasons == ["p95 latency 12.0 ms on 20 requests > 10 ms"]
    watch = _watch(max_p95_ratio=2.0)
    for _ in range(20):
        reasons = watch.add(Outcome(False, True, 5.0, 11.0))
    assert reasons and "2.2x the champion's 5.0 ms" in reasons[0]


def _row(i: int, champion: str, challenger: str | None, answered_by: str = "champion", error: str | None = None):
    return {
        "id": f"{i:032x}",
        "at": f"2026-12-01T10:00:{i % 60:02d}",
        "answered_by": answered_by,
        "champion_label": champion,
        "champion_ms": 4.0 + i % 5,
        "champion_error": None,
        "challenger_label": challenger,
        "challenger_ms": 6.0 + i % 5 if challenger or error else None,
        "challenger_error": error,
    }


def test_the_report_counts_agreement_accuracy_and_errors_of_each_model():
    rows = [_row(i, "a", "a" if i < 8 else "b", "challenger" if i % 5 == 0 else "champion") for i in range(10)]
    rows.append(_row(10, "a", None, error="RuntimeError: boom"))
    labels = {rows[i]["id"]: "a" for i in range(4)} | {rows[9]["id"]: "b"}
    report = canary_report("m", "1", "2", rows, labels, [{"at": "2026-12-01T11:00:00.123", "reason": "p95"}])
    assert report.requests == 11 and report.answered == {"champion": 9, "challenger": 2}
    assert (report.agreement.hits, report.agreement.total) == (8, 10)
    assert (report.accuracy["champion"].hits, report.accuracy["champion"].total) == (4, 5)
    assert (report.accuracy["challenger"].hits, report.accuracy["challenger"].total) == (5, 5)
    assert (report.errors["challenger"].hits, report.errors["challenger"].total) == (1, 11)
    text = "\n".join(report.lines())
    assert "agreement     0.800 [" in text and "BREACH        2026-12-01T11:00:00: p95" in text
    assert report.as_dict()["accuracy"]["challenger"]["n"] == 5


def test_a_pair_without_requests_says_so():
    assert canary_report("m", "1", "2", [], {}).lines()[1] == "  no live requests recorded for this pair yet"


@pytest.mark.parametrize(
    "payload",
    [
        {"dataframe_split": {"columns": ["id", "text"], "data": [["1", "hello"], ["2", "there"]]}},
        {"dataframe_records": [{"text": "hello"}, {"text": "there"}]},
        {"inputs": ["hello", "there"]},
        {"instances": {"text": ["hello", "there"]}},
    ],
)
def test_every_mlflow_scoring_shape_gives_the_texts(payload):
    assert request_texts(payload) == ["hello", "there"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"inputs": [1, "x"]}, "row 0: the text is int"),
        ({"inputs": ["x" * 100_001]}, "row 0: the text is 100,001 characters"),
        ({"inputs": ["x"] * 1025}, "1,025 rows in one request"),
        ({"inputs": []}, "no rows"),
        ({"code": "import os"}, "unknown input 'code'"),
        ({"dataframe_split": {"columns": ["text"], "data": [["a", "b"]]}}, "row 0 does not have 1 values"),
        ([1, 2], "expected one of"),
        ({"inputs": ["fine \U0001f600", "a\ud800b"]}, r"row 1: the text holds a lone surrogate \(\\ud800"),
    ],
)
def test_a_bad_request_is_refused_naming_what_is_wrong(payload, message):
    with pytest.raises(BadRequest, match=message):
        request_texts(payload)


def test_feedback_bodies_are_checked_item_by_item():
    rid = "a" * 32
    assert feedback_pairs({"request_id": rid, "label": " refund\u00a0"}) == [(rid, "refund")]
    with pytest.raises(BadRequest, match="item 1: '../etc' is not a request id"):
        feedback_pairs({"labels": [{"request_id": rid, "label": "x"}, {"request_id": "../etc", "label": "x"}]})
    with pytest.raises(BadRequest, match="item 0: the label is 201 characters"):
        feedback_pairs({"request_id": rid, "label": "x" * 201})
    with pytest.raises(BadRequest, match="control characters"):
        feedback_pairs({"request_id": rid, "label": "a\x1b[31mb"})
    with pytest.raises(BadRequest, match=r"item 0: the label holds a lone surrogate \(\\udc00"):
        feedback_pairs({"request_id": rid, "label": "refund\udc00"})


def test_a_canary_share_reads_as_a_percentage_or_a_fraction():
    assert parse_share("10%") == pytest.approx(0.1) and parse_share("0.25") == 0.25 and parse_share("100%") == 1.0
    for bad in ("0%", "150%", "ten", "-5%", "1.5"):
        with pytest.raises(UserError, match="--canary"):
            parse_share(bad)


def test_shadow_and_canary_need_the_models_name_not_a_pinned_version():
    class Args:
        shadow, canary = True, None

    Args.model = "tickets"
    assert serving_mode(Args) == ("tickets", "shadow", None)
    Args.model = "tickets@champion"
    assert serving_mode(Args) == ("tickets", "shadow", None)
    Args.model = "tickets/3"
    with pytest.raises(UserError, match="give the model's name"):
        serving_mode(Args)
    Args.shadow = False
    assert serving_mode(Args) == ("tickets", "pinned", "tickets/3")
