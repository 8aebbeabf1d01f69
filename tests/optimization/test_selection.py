"""Noise-aware selection: a candidate replaces the seed only by a margin validation supports."""

from __future__ import annotations

import json

import pytest

from core.optimization.selection import (
    SIGN_TEST_ALPHA,
    compare_paired,
    score_interval,
    select_candidate,
    sign_test_p,
)

IDS = [f"t{i}" for i in range(13)]


def _scores(hits: set[int]) -> dict[str, float]:
    return {t: 1.0 if i in hits else 0.0 for i, t in enumerate(IDS)}


SEED = _scores(set(range(8)))  # 8/13 = 0.62, like the incident's seed


def test_a_candidate_that_wins_by_one_example_does_not_replace_the_seed():
    one_more = _scores(set(range(9)))  # 9/13 = 0.69: the incident's margin
    sel = select_candidate({0: SEED, 1: one_more})
    assert sel.highest_mean_id == 1 and sel.chosen_id == 0
    assert sel.kept_seed_over == 1
    c = sel.comparison(1)
    assert c is not None and (c.wins, c.losses, c.ties) == (1, 0, 12)
    assert c.p_value == 0.5 and not c.beats_seed


def test_a_reshuffle_with_one_net_win_does_not_replace_the_seed():
    # Wins 3, loses 2: the same mean gain, no evidence either.
    shuffled = _scores(set(range(2, 8)) | {8, 9, 10})
    c = compare_paired(1, SEED, shuffled)
    assert (c.wins, c.losses) == (3, 2) and c.p_value == 0.5
    assert select_candidate({0: SEED, 1: shuffled}).chosen_id == 0


def test_a_clear_win_replaces_the_seed():
    four_more = _scores(set(range(12)))  # wins 4, loses 0: p = 1/16
    sel = select_candidate({0: SEED, 1: four_more})
    assert sel.chosen_id == 1 and sel.kept_seed_over is None
    assert sel.comparison(1).p_value == pytest.approx(0.0625)
    three_more = _scores(set(range(11)))  # wins 3: p = 1/8 > 0.1
    assert select_candidate({0: SEED, 1: three_more}).chosen_id == 0


def test_the_highest_mean_among_those_that_beat_the_seed_is_chosen():
    strong = _scores(set(range(12)))  # 12/13, beats the seed
    lucky = _scores(set(range(1, 8)) | {8, 9, 10, 11, 12})  # 12/13 too, but loses one
    best_mean_noisy = _scores(set(range(13)))  # 13/13: wins 5, p = 1/32: beats it
    sel = select_candidate({0: SEED, 1: strong, 2: lucky, 3: best_mean_noisy})
    assert sel.chosen_id == 3
    ties = select_candidate({0: SEED, 1: strong, 2: dict(strong)})
    assert ties.chosen_id == 1  # ties on the mean go to the earliest
    assert [c.candidate_id for c in ties.comparisons] == [1, 2]


def test_graded_scores_count_wins_and_losses_by_value():
    seed = {"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.5, "e": 0.5}
    better = {"a": 0.75, "b": 0.75, "c": 0.6, "d": 0.9, "e": 0.5}
    c = compare_paired(1, seed, better)
    assert (c.wins, c.losses, c.ties) == (4, 0, 1)
    assert c.mean_diff == pytest.approx((0.25 + 0.25 + 0.1 + 0.4) / 5)
    assert c.beats_seed


def test_sign_test_p_values():
    assert sign_test_p(0, 0) == 1.0 and sign_test_p(0, 3) == 1.0
    assert sign_test_p(1, 0) == 0.5
    assert sign_test_p(4, 0) == pytest.approx(1 / 16)
    assert sign_test_p(6, 1) == pytest.approx(8 / 128)
    assert sign_test_p(5, 5) == pytest.approx(638 / 1024)
    assert SIGN_TEST_ALPHA == 0.1


def test_the_seed_alone_is_chosen_and_the_record_is_json_ready():
    sel = select_candidate({0: SEED})
    assert sel.chosen_id == 0 and sel.comparisons == ()
    d = json.loads(json.dumps(select_candidate({0: SEED, 1: _scores(set(range(12)))}).to_dict()))
    assert d["chosen_id"] == 1 and d["comparisons"][0]["wins"] == 4
    assert "sign test" in d["rule"] and d["alpha"] == 0.1


def test_score_interval_is_wilson():
    low, high = score_interval(9 / 13, 13)
    assert low == pytest.approx(0.4237, abs=1e-3) and high == pytest.approx(0.8732, abs=1e-3)
    assert score_interval(1.0, 13)[1] == 1.0 and score_interval(0.0, 13)[0] == 0.0
    assert score_interval(0.5, 0) is None
    # Narrower with more examples.
    assert score_interval(0.5, 400)[1] - score_interval(0.5, 400)[0] < 0.1
