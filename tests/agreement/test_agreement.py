"""Agreement metrics, checked against scikit-learn and statsmodels on the same data."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from statsmodels.stats import inter_rater

from core.agreement import (
    AgreementReport,
    ConfusionMatrix,
    accuracy,
    aggregate_ratings,
    bootstrap_ci,
    cohen_kappa,
    compare,
    confusion_matrix,
    disagreements,
    fleiss_kappa,
    per_class_metrics,
    reviewer_matrix,
    tpr_tnr,
)
from core.errors import ValidationError


def _noisy_copy(rng: np.random.Generator, truth: list, classes: list, p_keep: float) -> list:
    """A second rater who agrees with ``truth`` with probability ``p_keep``, else guesses."""
    return [t if rng.random() < p_keep else classes[rng.integers(len(classes))] for t in truth]


def _datasets() -> list[tuple[str, list, list]]:
    """Pairs of raters: booleans, 3+ string classes, integer scores, random and hand-made."""
    out = [
        (
            "hand-bool",
            [True, True, False, True, False, False],
            [True, False, False, True, True, False],
        ),
        ("hand-cat", ["a", "b", "c", "a", "b", "c", "a"], ["a", "b", "b", "a", "c", "c", "b"]),
    ]
    for seed, n in [(0, 40), (1, 200), (2, 1000)]:
        rng = np.random.default_rng(seed)
        truth = [bool(x) for x in rng.random(n) < 0.4]
        out.append((f"bool-{seed}", truth, _noisy_copy(rng, truth, [True, False], 0.7)))
        classes = ["good", "bad", "unsure", "off-topic"]
        truth = [classes[i] for i in rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1])]
        out.append((f"cat-{seed}", truth, _noisy_copy(rng, truth, classes, 0.6)))
        truth = [int(x) for x in rng.integers(1, 6, n)]
        out.append((f"score-{seed}", truth, _noisy_copy(rng, truth, [1, 2, 3, 4, 5], 0.5)))
    return out


DATASETS = _datasets()
IDS = [d[0] for d in DATASETS]


@pytest.mark.parametrize(("name", "a", "b"), DATASETS, ids=IDS)
def test_pairwise_metrics_match_sklearn(name: str, a: list, b: list) -> None:
    labels = sorted(set(a) | set(b))
    assert cohen_kappa(a, b) == pytest.approx(skm.cohen_kappa_score(a, b), abs=1e-12)
    assert accuracy(a, b) == pytest.approx(skm.accuracy_score(a, b), abs=1e-12)
    cm = confusion_matrix(a, b)
    assert list(cm.labels) == labels
    np.testing.assert_array_equal(cm.to_array(), skm.confusion_matrix(a, b, labels=labels))
    assert cm.n == len(a)


@pytest.mark.parametrize(("name", "a", "b"), [d for d in DATASETS if "score" in d[0]])
@pytest.mark.parametrize("weights", ["linear", "quadratic"])
def test_weighted_kappa_matches_sklearn(name: str, a: list, b: list, weights: str) -> None:
    ours = cohen_kappa(a, b, labels=[1, 2, 3, 4, 5], weights=weights)
    theirs = skm.cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5], weights=weights)
    assert ours == pytest.approx(theirs, abs=1e-12)


@pytest.mark.parametrize(("name", "a", "b"), DATASETS, ids=IDS)
def test_per_class_metrics_match_sklearn_where_defined(name: str, a: list, b: list) -> None:
    labels = sorted(set(a) | set(b))
    ours = per_class_metrics(a, b)
    p, r, f, s = skm.precision_recall_fscore_support(
        a, b, labels=labels, average=None, zero_division=np.nan
    )
    assert [m.label for m in ours] == labels
    for m, pi, ri, fi, si in zip(ours, p, r, f, s, strict=True):
        assert m.support == si
        for got, want in ((m.precision, pi), (m.recall, ri), (m.f1, fi)):
            if math.isnan(want):
                assert got is None
            else:
                assert got == pytest.approx(want, abs=1e-12)


def test_per_class_metrics_undefined_precision_is_none() -> None:
    # "c" is never predicted: precision undefined; f1 is still 0 (sklearn agrees).
    out = {m.label: m for m in per_class_metrics(["a", "b", "c"], ["a", "b", "a"])}
    assert out["c"].precision is None
    assert out["c"].recall == 0.0
    assert out["c"].f1 == 0.0
    out = {m.label: m for m in per_class_metrics(["a", "b"], ["a", "b"], labels=["a", "b", "z"])}
    assert out["z"] == out["z"].__class__("z", None, None, None, 0)


@pytest.mark.parametrize(("name", "a", "b"), [d for d in DATASETS if "bool" in d[0]])
def test_tpr_tnr_match_sklearn_recall(name: str, a: list, b: list) -> None:
    rates = tpr_tnr(a, b)
    assert rates.tpr == pytest.approx(skm.recall_score(a, b, pos_label=True))
    assert rates.tnr == pytest.approx(skm.recall_score(a, b, pos_label=False))
    (tn, fp), (fn, tp) = skm.confusion_matrix(a, b, labels=[False, True])
    assert (rates.tp, rates.fn, rates.tn, rates.fp) == (tp, fn, tn, fp)


def test_tpr_tnr_edge_cases() -> None:
    only_pass = tpr_tnr([True, True], [True, False])
    assert only_pass.tpr == 0.5 and only_pass.tnr is None
    assert tpr_tnr(["pass", "fail"], ["pass", "pass"], positive="pass").tnr == 0.0
    with pytest.raises(ValidationError, match="positive"):
        tpr_tnr(["pass", "fail"], ["pass", "pass"])
    with pytest.raises(ValidationError, match="per_class_metrics"):
        tpr_tnr(["a", "b", "c"], ["a", "b", "b"])


def test_kappa_is_none_when_both_raters_use_one_class() -> None:
    assert cohen_kappa([True] * 5, [True] * 5) is None
    assert cohen_kappa(["x"] * 3, ["x"] * 3, weights="quadratic") is None
    # One rater constant, the other not: defined (and 0, no agreement beyond chance).
    assert cohen_kappa([True] * 4, [True, True, False, True]) == 0.0
    assert fleiss_kappa([["a", "a", "a"], ["a", "a"]]) is None


def test_missing_values_are_skipped_pairwise() -> None:
    a = [True, None, False, True, float("nan"), False, True]
    b = [True, False, None, False, True, False, pd.NA]
    assert cohen_kappa(a, b) == cohen_kappa([True, True, False], [True, False, False])
    assert accuracy(a, b) == pytest.approx(2 / 3)
    report = compare(a, b, "pass_fail", n_bootstrap=0)
    assert (report.n, report.n_skipped) == (3, 4)


def test_mapping_inputs_join_on_trace_ids() -> None:
    human = {"t1": "a", "t2": "b", "t3": "c", "t4": "a"}
    judge = pd.Series({"t4": "a", "t3": "b", "t1": "a", "t9": "c"})
    assert accuracy(human, judge) == pytest.approx(2 / 3)
    assert confusion_matrix(human, judge).n == 3
    with pytest.raises(ValidationError, match="must both be mappings"):
        accuracy(human, ["a", "b"])


def test_numpy_inputs_give_plain_python_labels() -> None:
    cm = confusion_matrix(np.array([True, False, True]), np.array([True, True, True]))
    assert cm.labels == (False, True)
    assert all(type(x) is bool for x in cm.labels)
    json.dumps(cm.to_dict())


def test_bad_inputs_raise_validation_errors_with_next_steps() -> None:
    with pytest.raises(ValidationError, match="3 labels but b has 2"):
        cohen_kappa([1, 2, 3], [1, 2])
    with pytest.raises(ValidationError, match="No traces labeled by both"):
        accuracy([], [])
    with pytest.raises(ValidationError, match="No traces labeled by both"):
        cohen_kappa([None, 1], [1, None])
    with pytest.raises(ValidationError, match="No traces labeled by both alice and judge-v2"):
        compare(
            {"t1": True},
            {"t2": True},
            "pass_fail",
            reference_name="alice",
            predicted_name="judge-v2",
        )
    with pytest.raises(ValidationError, match="not one of the labels"):
        confusion_matrix(["a", "b"], ["a", "c"], labels=["a", "b"])
    with pytest.raises(ValidationError, match="duplicates"):
        confusion_matrix(["a"], ["a"], labels=["a", "a"])
    with pytest.raises(ValidationError, match="single string"):
        accuracy("abc", "abd")
    with pytest.raises(ValidationError, match="weights"):
        cohen_kappa([1, 2], [1, 2], weights="cubic")  # type: ignore[arg-type]


def test_confusion_matrix_to_dict_and_frame() -> None:
    cm = confusion_matrix(["a", "b", "a"], ["a", "a", "a"], labels=["b", "a", "c"])
    assert cm == ConfusionMatrix(("b", "a", "c"), ((0, 1, 0), (0, 2, 0), (0, 0, 0)))
    assert cm.to_dict() == {"labels": ["b", "a", "c"], "counts": [[0, 1, 0], [0, 2, 0], [0, 0, 0]]}
    frame = cm.to_frame()
    assert frame.loc["b", "a"] == 1 and frame.index.name == "reference"


# --------------------------------------------------------------------------- Fleiss


def _random_ratings(seed: int, n_items: int, n_raters: int, n_classes: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_classes, n_items)
    noise = rng.integers(0, n_classes, (n_items, n_raters))
    keep = rng.random((n_items, n_raters)) < 0.6
    return np.where(keep, truth[:, None], noise)


@pytest.mark.parametrize(
    ("seed", "n_items", "n_raters", "n_classes"),
    [(0, 30, 3, 2), (1, 100, 4, 3), (2, 500, 5, 4), (3, 12, 3, 5)],
)
def test_fleiss_matches_statsmodels_for_fixed_rater_count(
    seed: int, n_items: int, n_raters: int, n_classes: int
) -> None:
    ratings = _random_ratings(seed, n_items, n_raters, n_classes)
    table, _ = inter_rater.aggregate_raters(ratings)
    want = inter_rater.fleiss_kappa(table, method="fleiss")
    assert fleiss_kappa(table) == pytest.approx(want, abs=1e-12)
    as_lists = [[f"c{v}" for v in row] for row in ratings.tolist()]
    assert fleiss_kappa(as_lists) == pytest.approx(want, abs=1e-12)
    assert fleiss_kappa(ratings, kind="ratings") == pytest.approx(want, abs=1e-12)
    np.testing.assert_array_equal(aggregate_ratings(ratings.tolist()).to_numpy(), table)


def test_fleiss_textbook_example() -> None:
    # Fleiss (1971) / Wikipedia worked example: 10 items, 14 raters, 5 categories, kappa 0.210.
    table = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-5)


def test_fleiss_with_varying_rater_counts_uses_the_general_form() -> None:
    ratings = [["a", "a", "b"], ["b", "b"], ["a", "b", "b", "b"], ["a"], ["a", None, "a"]]
    # By hand (Gwet 2014): item ["a"] has one rating and is skipped; None is dropped.
    items = [[2, 1], [0, 2], [1, 3], [2, 0]]
    p_obs = np.mean([sum(c * (c - 1) for c in it) / (sum(it) * (sum(it) - 1)) for it in items])
    pi = np.mean([[c / sum(it) for c in it] for it in items], axis=0)
    p_exp = float((pi**2).sum())
    assert fleiss_kappa(ratings) == pytest.approx((p_obs - p_exp) / (1 - p_exp), abs=1e-12)
    # The count table route gives the same answer.
    assert fleiss_kappa(aggregate_ratings(ratings)) == pytest.approx(fleiss_kappa(ratings))


def test_fleiss_bad_input() -> None:
    with pytest.raises(ValidationError, match="at least two raters"):
        fleiss_kappa([["a"], ["b"], []])
    with pytest.raises(ValidationError, match="whole counts"):
        fleiss_kappa(np.array([[0.5, 1.5]]))
    with pytest.raises(ValidationError, match="2-D"):
        fleiss_kappa(np.array([1, 2, 3]))
    assert fleiss_kappa([[1, 2], [0, 3]], kind="table") == fleiss_kappa(np.array([[1, 2], [0, 3]]))


# --------------------------------------------------------------------------- bootstrap


def _pair(seed: int, n: int) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    a = [bool(x) for x in rng.random(n) < 0.5]
    return a, _noisy_copy(rng, a, [True, False], 0.7)


def test_bootstrap_is_deterministic_given_seed() -> None:
    a, b = _pair(0, 80)
    first = bootstrap_ci(cohen_kappa, a, b, n=300, seed=7)
    assert bootstrap_ci(cohen_kappa, a, b, n=300, seed=7) == first
    assert bootstrap_ci(cohen_kappa, a, b, n=300, seed=8) != first
    generic = bootstrap_ci(lambda x, y: cohen_kappa(x, y), a, b, n=300, seed=7)
    assert generic == first


def test_bootstrap_contains_the_estimate_and_narrows_with_more_items() -> None:
    widths = []
    for n in (50, 400, 3000):
        a, b = _pair(1, n)
        ci = bootstrap_ci(accuracy, a, b, n=400, seed=0)
        assert ci.estimate == pytest.approx(accuracy(a, b))
        assert ci.low <= ci.estimate <= ci.high
        assert ci.level == pytest.approx(0.95) and ci.n_undefined == 0
        widths.append(ci.high - ci.low)
    assert widths[0] > widths[1] > widths[2]
    narrow = bootstrap_ci(accuracy, *_pair(1, 400), n=400, alpha=0.5, seed=0)
    assert narrow.high - narrow.low < widths[1]


def test_bootstrap_degenerate_resamples_are_left_out_and_counted() -> None:
    # One disagreement among agreeing passes: resamples without it hold only True, where
    # kappa is undefined (about e^-1 of them). They are counted, not scored.
    a = [True] * 29 + [False]
    b = [True] * 30
    ci = bootstrap_ci(cohen_kappa, a, b, n=200, seed=0)
    assert ci.estimate == 0.0
    assert 40 < ci.n_undefined < 100
    assert (ci.low, ci.high) == (0.0, 0.0)
    assert bootstrap_ci(lambda x, y: cohen_kappa(x, y), a, b, n=200, seed=0) == ci
    # When most resamples are undefined the interval is not reported.
    labels = ["rare"] * 2 + ["common"] * 8

    def needs_three_rare(x: list, y: list) -> float | None:
        return None if x.count("rare") < 3 else accuracy(x, y)

    sparse = bootstrap_ci(needs_three_rare, labels, labels, n=200, seed=0)
    assert sparse.n_undefined > 100
    assert sparse.low is None and sparse.high is None
    # An estimate that is undefined on the full data is None too.
    assert bootstrap_ci(cohen_kappa, [True] * 5, [True] * 5, n=50).estimate is None


def test_bootstrap_bad_arguments() -> None:
    with pytest.raises(ValidationError, match="alpha"):
        bootstrap_ci(accuracy, [1], [1], alpha=1.5)
    with pytest.raises(ValidationError, match="positive integer"):
        bootstrap_ci(accuracy, [1], [1], n=0)


# --------------------------------------------------------------------------- compare


def test_compare_pass_fail() -> None:
    a, b = _pair(2, 150)
    report = compare(
        a, b, "pass_fail", n_bootstrap=300, reference_name="human", predicted_name="judge"
    )
    assert isinstance(report, AgreementReport)
    assert report.n == 150 and report.n_skipped == 0
    assert report.accuracy == pytest.approx(skm.accuracy_score(a, b))
    assert report.cohen_kappa == pytest.approx(skm.cohen_kappa_score(a, b))
    assert report.tpr == pytest.approx(skm.recall_score(a, b, pos_label=True))
    assert report.tnr == pytest.approx(skm.recall_score(a, b, pos_label=False))
    assert report.confusion == confusion_matrix(a, b, labels=[False, True])
    assert report.per_class is None and report.mean_absolute_error is None
    assert report.accuracy_ci.low <= report.accuracy <= report.accuracy_ci.high
    # The vectorised intervals equal the generic per-resample bootstrap exactly (a lambda
    # wrapper bypasses bootstrap_ci's own fast path for the two built-in metrics).
    assert report.cohen_kappa_ci == bootstrap_ci(cohen_kappa, a, b, n=300, seed=0)
    assert report.cohen_kappa_ci == bootstrap_ci(lambda x, y: cohen_kappa(x, y), a, b, n=300)
    assert report.accuracy_ci == bootstrap_ci(accuracy, a, b, n=300, seed=0)
    assert report.accuracy_ci == bootstrap_ci(lambda x, y: accuracy(x, y), a, b, n=300)
    json.dumps(report.to_dict())
    with pytest.raises(ValidationError, match="True \\(pass\\) or"):
        compare(["pass", "fail"], ["pass", "pass"], "pass_fail")


def test_compare_categorical() -> None:
    _, a, b = next(d for d in DATASETS if d[0] == "cat-1")
    report = compare(a, b, "categorical", n_bootstrap=200, seed=3)
    assert report.cohen_kappa == pytest.approx(skm.cohen_kappa_score(a, b))
    assert report.per_class == per_class_metrics(a, b)
    assert report.tpr is None and report.tnr is None
    assert report.cohen_kappa_ci == bootstrap_ci(cohen_kappa, a, b, n=200, seed=3)
    order = ["unsure", "good", "bad", "off-topic", "never-used"]
    ordered = compare(a, b, "categorical", labels=order, n_bootstrap=0)
    assert ordered.confusion.labels == tuple(order)
    assert ordered.accuracy_ci is None and ordered.cohen_kappa_ci is None
    assert json.loads(json.dumps(ordered.to_dict()))["per_class"][4]["recall"] is None


def test_compare_numeric_scores() -> None:
    ref = [1, 2, 3, 4, 5, 3, None, 2.5]
    pred = [1, 3, 3, 2, 5, 4, 4, None]
    report = compare(ref, pred, "numeric", tolerance=1.0, n_bootstrap=200)
    assert report.n == 6 and report.n_skipped == 2
    assert report.mean_absolute_error == pytest.approx((0 + 1 + 0 + 2 + 0 + 1) / 6)
    assert report.within_tolerance == pytest.approx(5 / 6)
    assert report.accuracy == pytest.approx(3 / 6)
    a6, b6 = [1, 2, 3, 4, 5, 3], [1, 3, 3, 2, 5, 4]
    assert report.cohen_kappa == pytest.approx(skm.cohen_kappa_score(a6, b6))
    assert report.weighted_kappa == pytest.approx(
        skm.cohen_kappa_score(a6, b6, weights="quadratic")
    )
    ci = report.mean_absolute_error_ci
    assert ci.low <= report.mean_absolute_error <= ci.high
    # Float rounding must not push a difference of exactly the tolerance out.
    assert compare([0.3], [0.1], "numeric", tolerance=0.2, n_bootstrap=0).within_tolerance == 1.0


def test_compare_continuous_numeric_has_no_confusion_or_kappa() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(100).tolist()
    b = (np.array(a) + rng.normal(0, 0.05, 100)).tolist()
    report = compare(a, b, "numeric", tolerance=0.1, n_bootstrap=100)
    assert report.confusion is None and report.cohen_kappa is None and report.cohen_kappa_ci is None
    assert report.mean_absolute_error == pytest.approx(np.mean(np.abs(np.array(a) - b)))
    assert 0.9 < report.within_tolerance <= 1.0


def test_compare_validation() -> None:
    with pytest.raises(ValidationError, match="Unknown value type"):
        compare([1], [1], "ordinal")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="non-numeric"):
        compare(["a"], [1], "numeric")
    with pytest.raises(ValidationError, match="tolerance"):
        compare([1], [1], "numeric", tolerance=-1)
    single = compare([True] * 4, [True] * 4, "pass_fail", n_bootstrap=50)
    assert single.cohen_kappa is None
    assert single.cohen_kappa_ci.low is None and single.cohen_kappa_ci.n_undefined == 50
    assert single.tnr is None and single.tpr == 1.0


# --------------------------------------------------------------------------- reviewers


def test_reviewer_matrix_pairwise_kappas_match_sklearn_and_fleiss_matches_statsmodels() -> None:
    ratings = _random_ratings(5, 60, 3, 3)
    rows = [
        (f"t{i}", name, int(ratings[i, j]))
        for i in range(60)
        for j, name in enumerate(["carol", "alice", "bob"])
    ]
    m = reviewer_matrix(rows)
    assert m.reviewers == ("alice", "bob", "carol")
    assert m.n_traces == 60 and m.fleiss_n_traces == 60 and m.n_labeled == (60, 60, 60)
    cols = {"carol": 0, "alice": 1, "bob": 2}
    for p in m.pairs:
        want = skm.cohen_kappa_score(ratings[:, cols[p.reviewer_a]], ratings[:, cols[p.reviewer_b]])
        assert p.cohen_kappa == pytest.approx(want)
        assert p.n_overlap == 60
    table, _ = inter_rater.aggregate_raters(ratings)
    assert m.fleiss_kappa == pytest.approx(inter_rater.fleiss_kappa(table))
    kt = m.kappa_table()
    assert kt.loc["alice", "bob"] == kt.loc["bob", "alice"] == pytest.approx(m.pairs[0].cohen_kappa)
    assert math.isnan(kt.loc["alice", "alice"])


def test_reviewer_matrix_partial_overlap() -> None:
    rows = pd.DataFrame(
        [
            ("t1", "a", "x"),
            ("t1", "b", "x"),
            ("t2", "a", "y"),
            ("t2", "b", "x"),
            ("t2", "b", "y"),  # b relabels t2: the later row wins
            ("t3", "a", "x"),
            ("t3", "c", "x"),
            ("t4", "c", "y"),
            ("t5", "b", None),  # skipped
        ],
        columns=["trace_id", "reviewer", "value"],
    )
    m = reviewer_matrix(rows)
    by = {(p.reviewer_a, p.reviewer_b): p for p in m.pairs}
    assert by["a", "b"].n_overlap == 2 and by["a", "b"].agreement == 1.0
    assert by["a", "b"].cohen_kappa == pytest.approx(1.0)
    assert by["a", "c"].n_overlap == 1 and by["a", "c"].cohen_kappa is None
    assert by["b", "c"] == by["b", "c"].__class__("b", "c", 0, None, None)
    assert m.n_traces == 4 and m.fleiss_n_traces == 3
    assert m.fleiss_kappa == pytest.approx(fleiss_kappa([["x", "x"], ["y", "y"], ["x", "x"]]))
    frame = m.pairs_frame()
    assert list(frame.columns) == [
        "reviewer_a",
        "reviewer_b",
        "n_overlap",
        "agreement",
        "cohen_kappa",
    ]
    assert len(frame) == 3 and frame["cohen_kappa"].isna().sum() == 2
    overlap = m.overlap_table()
    assert overlap.loc["a", "b"] == 2 and overlap.loc["a", "a"] == 3 and overlap.loc["b", "c"] == 0
    json.dumps(m.to_dict())


def test_reviewer_matrix_without_shared_traces_has_no_fleiss() -> None:
    m = reviewer_matrix([("t1", "a", True), ("t2", "b", False)])
    assert m.fleiss_kappa is None and m.fleiss_n_traces == 0
    assert m.pairs[0].n_overlap == 0


def test_reviewer_matrix_bad_input() -> None:
    with pytest.raises(ValidationError, match="No labels"):
        reviewer_matrix([])
    with pytest.raises(ValidationError, match="No labels"):
        reviewer_matrix([("t1", "a", None)])
    with pytest.raises(ValidationError, match="trace_id, reviewer, value"):
        reviewer_matrix([("t1", "a")])
    with pytest.raises(ValidationError, match="lacks column"):
        reviewer_matrix(pd.DataFrame({"trace_id": ["t1"], "value": [1]}))


def test_disagreements() -> None:
    human = {"t1": True, "t2": False, "t3": True, "t4": None, "t5": False}
    judge = {"t3": False, "t1": True, "t2": True, "t4": True, "t6": True}
    assert disagreements(human, judge) == ["t2", "t3"]
    assert disagreements({"a": 1.0, "b": 3.0}, {"a": 1.4, "b": 4.0}, tolerance=0.5) == ["b"]
    assert disagreements(pd.Series({"a": "x"}), pd.Series({"a": "x"})) == []
    with pytest.raises(ValidationError, match="No traces labeled by both alice and judge"):
        disagreements({"t1": 1}, {"t2": 1}, name_a="alice", name_b="judge")
    with pytest.raises(ValidationError, match="mappings"):
        disagreements([1], [2])
