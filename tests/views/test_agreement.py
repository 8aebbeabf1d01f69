"""Agreement from the store: reviewer matrix, any rater against any rater, disagreements."""

from __future__ import annotations

import pytest

from core.agreement import cohen_kappa, fleiss_kappa
from core.errors import ValidationError
from core.labeling.criteria import get_criterion
from core.labeling.labels import current_labels
from core.labeling.splits import assign_split
from core.views.agreement import (
    Rater,
    compare_raters,
    confusion_rows,
    disagreements,
    kappa_grid,
    load_ratings,
    raters,
    ratings_of,
    reviewer_agreement,
)
from tests.support.judges import log_judge_verdict

CRIT = "support_quality"


def _labels(eid, reviewer):
    return {
        lab.trace_id: lab.value for lab in current_labels(eid, criterion=CRIT, reviewer=reviewer)
    }


def test_reviewer_matrix_matches_the_metrics_on_the_same_labels(demo_store):
    ratings = load_ratings(demo_store, get_criterion(demo_store, CRIT))
    assert ratings.reviewers == ["dev.patel", "maria.chen"]
    matrix = reviewer_agreement(ratings)
    maria, dev = _labels(demo_store, "maria.chen"), _labels(demo_store, "dev.patel")
    (pair,) = matrix.pairs
    assert pair.n_overlap == len(set(maria) & set(dev)) == 23
    assert pair.cohen_kappa == pytest.approx(cohen_kappa(maria, dev))
    names, grid = kappa_grid(matrix)
    assert names == ["dev.patel", "maria.chen"]
    assert grid[0][1] == grid[1][0] == pair.cohen_kappa and grid[0][0] is None
    both = [[maria[t], dev[t]] for t in maria if t in dev]
    assert matrix.fleiss_kappa == pytest.approx(fleiss_kappa(both))


def test_splits_partition_the_traces(demo_store):
    ratings = load_ratings(demo_store, get_criterion(demo_store, CRIT))
    parts = [ratings.on_split(s) for s in ("train", "val", "test")]
    assert sum(map(len, parts)) == len(ratings.traces) == 63
    assert all(assign_split(t.trace_id) == "test" for t in parts[2])
    with pytest.raises(ValidationError, match="Unknown split"):
        ratings.on_split("holdout")
    report = compare_raters(
        ratings, Rater.reviewer("maria.chen"), Rater.reviewer("dev.patel"), "test"
    )
    assert report.n == sum(
        1 for t in parts[2] if "maria.chen" in t.humans and "dev.patel" in t.humans
    )


def test_judge_vs_humans_uses_the_judges_feedback(demo_store):
    crit = get_criterion(demo_store, CRIT)
    maria = _labels(demo_store, "maria.chen")
    ids = list(maria)[:10]
    # The judge says Pass everywhere: right where maria passed, wrong where she failed.
    for tid in ids:
        log_judge_verdict(tid, "pass", source_id="judge-v1")
    ratings = load_ratings(demo_store, crit)
    assert Rater.judge("judge-v1") in raters(ratings)
    report = compare_raters(
        ratings, Rater.reviewer("maria.chen"), Rater.judge("judge-v1"), n_bootstrap=200
    )
    passes = sum(maria[t] for t in ids)
    assert report.n == 10 and report.accuracy == pytest.approx(passes / 10)
    assert report.tpr == 1.0 and report.tnr == 0.0
    assert report.accuracy_ci is not None and report.cohen_kappa_ci is not None
    labels, counts = confusion_rows(report, crit)
    assert labels == ["Fail", "Pass"] and counts == [[0, 10 - passes], [0, passes]]
    rows = disagreements(ratings, Rater.reviewer("maria.chen"), Rater.judge("judge-v1"))
    assert {r.trace_id for r in rows} == {t for t in ids if not maria[t]}
    assert all(r.value_a == "Fail" and r.value_b == "Pass" for r in rows)
    assert all(r.rationale_b == "judge's reasoning" and r.rationale_a for r in rows)


def test_humans_majority_breaks_ties_like_the_training_data_and_joins_rationales(demo_store):
    from core.optimization.dataset import load_examples

    ratings = load_ratings(demo_store, get_criterion(demo_store, CRIT))
    humans = Rater.humans()
    assert ratings.primary_order[0] == "maria.chen"  # she labeled the most
    trained_on = {e.trace_id: e.label for e in load_examples(demo_store, CRIT)}
    ties = 0
    for t in ratings.traces:
        values = [h.value for h in t.humans.values()]
        if len(values) == 2 and values[0] != values[1]:
            ties += 1
            assert ratings_of(t, humans) is None  # no order given: no majority
            r = ratings_of(t, humans, ratings.primary_order)
            assert r is not None and r.value == t.humans["maria.chen"].value
        else:
            r = ratings_of(t, humans, ratings.primary_order)
            assert r is not None and r.value == values[0]
        # "The humans" on the Agreement page are the labels alignments use.
        assert r.value == trained_on[t.trace_id]
    assert ties == 4
    disagree = next(
        t
        for t in ratings.traces
        if len({h.value for h in t.humans.values()}) == 1 and len(t.humans) == 2
    )
    r = ratings_of(disagree, humans)
    assert r.who == "dev.patel, maria.chen" and "maria.chen:" in r.rationale


def test_no_overlap_is_explained(demo_store):
    ratings = load_ratings(demo_store, get_criterion(demo_store, CRIT))
    with pytest.raises(ValidationError, match="No trace rated by both"):
        compare_raters(ratings, Rater.humans(), Rater.judge("nobody"))


def test_reviewer_agreement_without_labels_says_what_to_do(experiment):
    from core.labeling.criteria import create_criterion

    crit = create_criterion(experiment.experiment_id, "q", "pass_fail", "x")
    ratings = load_ratings(experiment.experiment_id, crit)
    with pytest.raises(ValidationError, match="label some traces first"):
        reviewer_agreement(ratings)


def test_default_pair_before_any_judge_is_two_reviewers_said_so(demo_store):
    from core.views.agreement import (
        DEFAULT_SPLIT,
        NO_JUDGE_VERDICTS,
        REVIEWER_VS_REVIEWER,
        default_pair,
    )

    assert DEFAULT_SPLIT == "test"
    ratings = load_ratings(demo_store, get_criterion(demo_store, CRIT))
    pair = default_pair(ratings)
    assert pair is not None and not pair.has_judge
    assert (pair.reference, pair.predicted) == (
        Rater.reviewer("dev.patel"),
        Rater.reviewer("maria.chen"),
    )
    assert pair.heading == REVIEWER_VS_REVIEWER and pair.note == NO_JUDGE_VERDICTS


def test_default_pair_with_verdicts_is_the_judge_against_the_consolidated_humans(demo_store):
    from core.views.agreement import JUDGE_VS_HUMANS, default_pair, pair_heading

    labels = current_labels(demo_store, criterion=CRIT, reviewer="maria.chen")
    test_ids = [lab.trace_id for lab in labels if assign_split(lab.trace_id) == "test"]
    train_ids = [lab.trace_id for lab in labels if assign_split(lab.trace_id) == "train"]
    # judge-a judged more traces overall, judge-b more on the test split.
    for tid in train_ids[:6]:
        log_judge_verdict(tid, "pass", source_id="judge-a")
    for tid in test_ids[:3]:
        log_judge_verdict(tid, "pass", source_id="judge-b")
    ratings = load_ratings(demo_store, get_criterion(demo_store, CRIT))
    pair = default_pair(ratings, "test")
    assert pair.has_judge and pair.note is None
    assert (pair.reference, pair.predicted) == (Rater.humans(), Rater.judge("judge-b"))
    assert pair.heading == JUDGE_VS_HUMANS
    assert default_pair(ratings, "train").predicted == Rater.judge("judge-a")
    assert pair_heading(Rater.humans(), Rater.reviewer("dev.patel")) == (
        "dev.patel vs humans (majority)"
    )
