"""The held-out verdict: worse / no_change / improved, and whether a gain is significant."""

from __future__ import annotations

import pytest

from core.optimization.record import Prediction
from core.optimization.verdict import (
    IMPROVED,
    NO_CHANGE,
    WORSE,
    Verdict,
    correctness,
    decide,
    describe,
    judge_verdict,
    paired_difference_ci,
)


def test_lower_accuracy_or_lower_kappa_is_worse():
    assert decide(0.50, 0.36, -0.04, -0.15) == WORSE  # the incident of issue 9
    assert decide(0.50, 0.60, 0.30, 0.20) == WORSE  # kappa alone dropped
    assert decide(0.50, 0.40, 0.10, 0.30) == WORSE  # accuracy alone dropped


def test_equal_scores_are_no_change_and_any_gain_without_a_loss_is_improved():
    assert decide(0.5, 0.5, 0.1, 0.1) == NO_CHANGE
    assert decide(0.5, 0.5) == NO_CHANGE
    assert decide(None, None) == NO_CHANGE  # no evidence either way
    assert decide(0.5, 0.6, 0.1, 0.1) == IMPROVED
    assert decide(0.5, 0.6, None, 0.3) == IMPROVED  # kappa unknown on one side: ignored


def _preds(pairs):
    """(seed right?, aligned right?) per example -> predictions against label 'pass'."""
    return [
        Prediction(f"t{i}", "pass", "pass" if s else "fail", "pass" if a else "fail")
        for i, (s, a) in enumerate(pairs)
    ]


def test_a_large_paired_gain_is_significant_and_a_one_example_gain_is_not():
    big = _preds([(False, True)] * 8 + [(True, True)] * 6)  # 8 of 14 fixed, none broken
    v = judge_verdict({"accuracy": 6 / 14}, {"accuracy": 1.0}, big)
    assert v.verdict == IMPROVED and v.significant
    assert v.diff == pytest.approx(8 / 14) and v.diff_low > 0 and v.n == 14

    small = _preds([(False, True)] + [(True, True)] * 6 + [(False, False)] * 7)
    v = judge_verdict({"accuracy": 6 / 14}, {"accuracy": 7 / 14}, small)
    assert v.verdict == IMPROVED and not v.significant
    assert v.diff_low <= 0 <= v.diff_high


def test_a_significant_loss_is_worse_and_significant():
    preds = _preds([(True, False)] * 7 + [(True, True)] * 7)
    v = judge_verdict({"accuracy": 1.0}, {"accuracy": 0.5}, preds)
    assert v.verdict == WORSE and v.significant and v.diff_high < 0
    assert v.blocks_registration


def test_failed_calls_count_as_disagreement_and_unlabeled_examples_are_left_out():
    preds = [
        Prediction("a", "pass", "pass", None),
        Prediction("b", None, "pass", "pass"),
        Prediction("c", "fail", None, "fail"),
    ]
    assert correctness(preds) == ([1.0, 0.0], [0.0, 1.0])


def test_paired_interval_needs_pairs_and_is_empty_without_examples():
    assert paired_difference_ci([], []) == (None, None, None)
    with pytest.raises(ValueError):
        paired_difference_ci([1.0], [1.0, 0.0])
    diff, low, high = paired_difference_ci([1.0, 0.0, 1.0], [1.0, 0.0, 1.0])
    assert diff == low == high == 0.0


def test_descriptions_say_what_happened_and_how_to_override():
    worse = Verdict(WORSE, False, 0.50, 0.36, -0.04, -0.15, -0.14, -0.36, 0.07, 14)
    text = describe(worse)
    assert text.startswith("Worse on held-out traces (accuracy 0.36 vs 0.50")
    assert "not registered" in text and "--register-worse" in text
    forced = describe({**worse.to_dict(), "registered": True, "override": True})
    assert "registered anyway" in forced
    good = Verdict(IMPROVED, True, 0.5, 0.8, 0.0, 0.6, 0.3, 0.05, 0.30, 14)
    assert describe(good).startswith("Improved, significant (CI +0.05..+0.30")
    same = Verdict(NO_CHANGE, False, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 14)
    assert describe(same).startswith("No significant change")
    assert Verdict.from_dict(good.to_dict()) == good
    assert describe(None) == ""
