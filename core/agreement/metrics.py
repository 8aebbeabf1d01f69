"""Point metrics of agreement between raters (human vs human, or judge vs human).

Conventions shared by every function here:

- Labels are compared by equality, as given: bools (pass/fail), strings (categories) or
  numbers. Normalising ``"pass"``/``"yes"`` to ``True`` is the caller's job. Note that
  Python treats ``True == 1 == 1.0`` as the same label.
- ``None``, NaN, ``pd.NA`` mark an unlabeled item; an item is skipped when either rater
  has no value (pairwise deletion).
- An undefined metric (a kappa when both raters used one and the same class, a recall for
  a class that never occurs) is ``None``, never NaN.
- Two-rater functions take either two lists in item order (equal lengths) or two
  mappings ``trace id -> label`` (joined on the trace ids they share).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from core.agreement._inputs import (
    as_list,
    discover_labels,
    encode,
    is_missing,
    none_if_nan,
    pair,
    plain,
    resolve_labels,
)
from core.errors import ValidationError

Weights = Literal["linear", "quadratic"] | None


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of (reference label, predicted label) pairs."""

    labels: tuple[Any, ...]
    """Label values, in the order of rows and columns."""
    counts: tuple[tuple[int, ...], ...]
    """``counts[i][j]``: items the reference labeled ``labels[i]`` and the other rater ``labels[j]``."""

    @property
    def n(self) -> int:
        """Number of items counted."""
        return sum(map(sum, self.counts))

    def to_array(self) -> np.ndarray:
        """The counts as a square integer array (rows: reference, columns: predicted)."""
        return np.array(self.counts, dtype=np.int64).reshape(len(self.labels), len(self.labels))

    def to_frame(self) -> pd.DataFrame:
        """The counts as a DataFrame indexed by reference label, columns by predicted label."""
        return pd.DataFrame(
            self.to_array(),
            index=pd.Index(self.labels, name="reference"),
            columns=pd.Index(self.labels, name="predicted"),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form: ``{"labels": [...], "counts": [[...], ...]}``."""
        return {"labels": list(self.labels), "counts": [list(r) for r in self.counts]}


@dataclass(frozen=True)
class BinaryRates:
    """Pass/fail agreement with the reference: who got the passes and the fails right."""

    positive: Any
    """The value counted as positive (pass)."""
    tp: int
    """Reference positive, predicted positive."""
    fn: int
    """Reference positive, predicted negative."""
    tn: int
    """Reference negative, predicted negative."""
    fp: int
    """Reference negative, predicted positive."""
    tpr: float | None
    """True positive rate (recall of passes) ``tp / (tp + fn)``; None without reference passes."""
    tnr: float | None
    """True negative rate (recall of fails) ``tn / (tn + fp)``; None without reference fails."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "positive": self.positive,
            "tp": self.tp,
            "fn": self.fn,
            "tn": self.tn,
            "fp": self.fp,
            "tpr": self.tpr,
            "tnr": self.tnr,
        }


@dataclass(frozen=True)
class ClassMetrics:
    """Precision, recall and F1 of one category, treating the reference as truth."""

    label: Any
    """The category."""
    precision: float | None
    """Of items predicted as this label, the share the reference agrees with; None if never predicted."""
    recall: float | None
    """Of items the reference gave this label, the share predicted so; None if the reference never used it."""
    f1: float | None
    """``2tp / (2tp + fp + fn)``; None when the label appears on neither side."""
    support: int
    """Items the reference gave this label."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "label": self.label,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "support": self.support,
        }


# ---------------------------------------------------------------------------- helpers


def _confusion_from_codes(ca: np.ndarray, cb: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(ca * k + cb, minlength=k * k).reshape(k, k)


def _weight_matrix(k: int, weights: Weights) -> np.ndarray:
    i, j = np.indices((k, k))
    if weights is None:
        return (i != j).astype(np.int64)
    if weights == "linear":
        return np.abs(i - j)
    if weights == "quadratic":
        return (i - j) ** 2
    raise ValidationError(f"weights must be None, 'linear' or 'quadratic'; got {weights!r}.")


def kappa_from_confusion(conf: np.ndarray, weights: Weights = None) -> np.ndarray:
    """Cohen's kappa of one ``(k, k)`` or a batch ``(..., k, k)`` of confusion matrices.

    Works in integers until the final division so that "undefined" (no expected
    disagreement: both raters used one and the same class) is detected exactly; those
    entries are NaN.
    """
    conf = np.asarray(conf, dtype=np.int64)
    k = conf.shape[-1]
    w = _weight_matrix(k, weights)
    n = conf.sum(axis=(-2, -1))
    rows = conf.sum(axis=-1)
    cols = conf.sum(axis=-2)
    # Both terms are scaled by n so expected counts (outer(rows, cols) / n) stay integral.
    observed = (w * conf).sum(axis=(-2, -1)) * n
    expected = (w * (rows[..., :, None] * cols[..., None, :])).sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = 1.0 - observed.astype(np.float64) / expected.astype(np.float64)
    return np.where(expected == 0, np.nan, kappa)


# ---------------------------------------------------------------------------- two raters


def accuracy(a: Any, b: Any) -> float:
    """Share of items on which the two raters gave the same label (observed agreement).

    Args:
        a: Reference labels (list in item order, or mapping trace id -> label).
        b: Other rater's labels, same form as ``a``.

    Returns:
        A fraction in [0, 1] over items labeled by both.

    Raises:
        ValidationError: lengths differ, or no item is labeled by both.
    """
    p = pair(a, b)
    return sum(x == y for x, y in zip(p.a, p.b, strict=True)) / len(p.a)


def confusion_matrix(a: Any, b: Any, labels: Iterable[Hashable] | None = None) -> ConfusionMatrix:
    """Confusion matrix of ``a`` (rows, the reference) against ``b`` (columns).

    Args:
        a: Reference labels.
        b: Predicted (or second rater's) labels.
        labels: Row/column order; may include labels nobody used. ``None``: the sorted
            distinct values seen.

    Raises:
        ValidationError: lengths differ, no item labeled by both, or a value is missing
            from ``labels``.
    """
    p = pair(a, b)
    labs = resolve_labels(labels, p.a, p.b)
    conf = _confusion_from_codes(encode(p.a, labs), encode(p.b, labs), len(labs))
    return ConfusionMatrix(labels=labs, counts=tuple(tuple(int(c) for c in r) for r in conf))


def cohen_kappa(
    a: Any, b: Any, labels: Iterable[Hashable] | None = None, *, weights: Weights = None
) -> float | None:
    """Cohen's kappa: agreement between two raters beyond what chance would give.

    Matches ``sklearn.metrics.cohen_kappa_score``. Weighted kappa uses distances between
    label *positions* in ``labels`` (as scikit-learn does), so pass ``labels`` in scale
    order when using ``weights``.

    Args:
        a: First rater's labels.
        b: Second rater's labels.
        labels: Label order (matters only for weighted kappa). ``None``: sorted values seen.
        weights: ``None`` (unweighted), ``"linear"`` or ``"quadratic"``.

    Returns:
        Kappa in [-1, 1], or ``None`` when undefined: both raters gave every item the same
        single label, so chance agreement is already perfect.

    Raises:
        ValidationError: lengths differ, no item labeled by both, or bad ``labels``.
    """
    p = pair(a, b)
    labs = resolve_labels(labels, p.a, p.b)
    conf = _confusion_from_codes(encode(p.a, labs), encode(p.b, labs), len(labs))
    return none_if_nan(float(kappa_from_confusion(conf, weights)))


def tpr_tnr(reference: Any, predicted: Any, *, positive: Any = True) -> BinaryRates:
    """True positive and true negative rates for pass/fail labels.

    Args:
        reference: Reference (human) labels; usually bools.
        predicted: Judge (or second rater) labels, same form.
        positive: The value meaning pass. Every other value is a fail.

    Raises:
        ValidationError: more than two distinct values, or two values of which neither is
            ``positive``; lengths differ; no item labeled by both.
    """
    p = pair(reference, predicted, names=("reference", "predicted"))
    seen = discover_labels(p.a, p.b)
    if len(seen) > 2:
        raise ValidationError(
            f"tpr_tnr needs pass/fail labels; got {len(seen)} values {list(seen)!r}. "
            "Use per_class_metrics for categories."
        )
    if len(seen) == 2 and positive not in seen:
        raise ValidationError(
            f"Neither label {list(seen)!r} is the positive value {positive!r}; "
            "pass positive=<the pass value>."
        )
    tp = fn = tn = fp = 0
    for x, y in zip(p.a, p.b, strict=True):
        if x == positive:
            tp, fn = (tp + 1, fn) if y == positive else (tp, fn + 1)
        else:
            tn, fp = (tn, fp + 1) if y == positive else (tn + 1, fp)
    return BinaryRates(
        positive=positive,
        tp=tp,
        fn=fn,
        tn=tn,
        fp=fp,
        tpr=tp / (tp + fn) if tp + fn else None,
        tnr=tn / (tn + fp) if tn + fp else None,
    )


def class_metrics_from_confusion(
    labels: Sequence[Any], conf: np.ndarray
) -> tuple[ClassMetrics, ...]:
    """Per-class precision/recall/F1 from a confusion matrix (rows: reference)."""
    out = []
    for i, label in enumerate(labels):
        tp = int(conf[i, i])
        support = int(conf[i, :].sum())
        predicted = int(conf[:, i].sum())
        fn, fp = support - tp, predicted - tp
        out.append(
            ClassMetrics(
                label=label,
                precision=tp / predicted if predicted else None,
                recall=tp / support if support else None,
                f1=2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else None,
                support=support,
            )
        )
    return tuple(out)


def per_class_metrics(
    reference: Any, predicted: Any, labels: Iterable[Hashable] | None = None
) -> tuple[ClassMetrics, ...]:
    """Precision, recall, F1 and support of every category, reference as truth.

    Values equal ``sklearn.metrics.precision_recall_fscore_support(average=None)``
    wherever they are defined; where scikit-learn would divide by zero this returns
    ``None``.

    Args:
        reference: Reference (human) labels.
        predicted: Judge (or second rater) labels.
        labels: Classes to report, in order. ``None``: sorted values seen.

    Raises:
        ValidationError: lengths differ, no item labeled by both, or bad ``labels``.
    """
    p = pair(reference, predicted, names=("reference", "predicted"))
    labs = resolve_labels(labels, p.a, p.b)
    conf = _confusion_from_codes(encode(p.a, labs), encode(p.b, labs), len(labs))
    return class_metrics_from_confusion(labs, conf)


# ---------------------------------------------------------------------------- many raters


def aggregate_ratings(
    ratings: Iterable[Iterable[Any]], labels: Iterable[Hashable] | None = None
) -> pd.DataFrame:
    """Count table (items x labels) from per-item lists of ratings.

    The ``statsmodels.stats.inter_rater.aggregate_raters`` equivalent for ragged input:
    each item may have its own number of ratings; ``None``/NaN ratings are dropped.

    Args:
        ratings: One list of ratings per item (one rating per rater who labeled it).
        labels: Column order. ``None``: sorted values seen.

    Returns:
        A DataFrame with one row per item (in input order) and one integer column per label.
    """
    if isinstance(ratings, str | bytes):
        raise ValidationError("ratings must be a list of per-item lists of labels.")
    items = [[plain(v) for v in as_list(item, "each item's ratings")] for item in ratings]
    items = [[v for v in item if not is_missing(v)] for item in items]
    labs = resolve_labels(labels, *items)
    table = np.zeros((len(items), len(labs)), dtype=np.int64)
    for row, item in enumerate(items):
        if item:
            np.add.at(table[row], encode(item, labs), 1)
    return pd.DataFrame(table, columns=pd.Index(labs, name="label"))


def fleiss_from_table(table: np.ndarray) -> float | None:
    n_i = table.sum(axis=1)
    table = table[n_i >= 2]
    n_i = n_i[n_i >= 2]
    if table.shape[0] == 0:
        raise ValidationError(
            "Fleiss' kappa needs items rated by at least two raters; none of the items has "
            "two ratings. Have more reviewers label the same traces."
        )
    if np.count_nonzero(table.sum(axis=0)) <= 1:
        return None  # every rating is the same label: chance agreement is already perfect
    p_items = (table * (table - 1)).sum(axis=1) / (n_i * (n_i - 1))
    p_bar = p_items.mean()
    # Mean of per-item label shares (Gwet 2014), which equals Fleiss' pooled share
    # when every item has the same number of raters.
    pi = (table / n_i[:, None]).mean(axis=0)
    p_e = float((pi**2).sum())
    return none_if_nan((p_bar - p_e) / (1.0 - p_e))


def fleiss_kappa(
    table_or_ratings: Any,
    *,
    kind: Literal["auto", "table", "ratings"] = "auto",
    labels: Iterable[Hashable] | None = None,
) -> float | None:
    """Fleiss' kappa: chance-corrected agreement among many raters.

    Accepts either a count table (items x labels, what ``statsmodels``' ``fleiss_kappa``
    takes) or raw ratings (one list of labels per item). With ``kind="auto"`` a numpy
    array or a DataFrame is a count table and anything else (a list of lists) is raw
    ratings; pass ``kind`` to say so explicitly, for instance for a list-of-lists table.

    Items may have different numbers of raters. Items with fewer than two ratings are
    skipped (they carry no agreement information). The general form for a varying
    number of raters per item is used (Gwet, *Handbook of Inter-Rater Reliability*, 2014):
    observed agreement is the mean over items of ``sum_j n_ij (n_ij - 1) / (n_i (n_i - 1))``
    and chance agreement uses the mean over items of each label's share ``n_ij / n_i``.
    When every item has the same number of raters this is exactly Fleiss (1971), and
    equals ``statsmodels.stats.inter_rater.fleiss_kappa(table, method="fleiss")``.

    Args:
        table_or_ratings: Count table or per-item ratings (``None``/NaN ratings dropped).
        kind: ``"auto"``, ``"table"`` or ``"ratings"``.
        labels: For ratings: the label set (``None``: values seen). Ignored for tables.

    Returns:
        Kappa (at most 1), or ``None`` when every rating is the same label.

    Raises:
        ValidationError: malformed table, or no item with two or more ratings.
    """
    if kind not in ("auto", "table", "ratings"):
        raise ValidationError(f"kind must be 'auto', 'table' or 'ratings'; got {kind!r}.")
    is_table = kind == "table" or (
        kind == "auto" and isinstance(table_or_ratings, np.ndarray | pd.DataFrame)
    )
    if not is_table:
        table = aggregate_ratings(table_or_ratings, labels).to_numpy()
        return fleiss_from_table(table)
    arr = np.asarray(table_or_ratings, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValidationError(
            f"A Fleiss count table must be 2-D (items x labels) and non-empty; got shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr != np.round(arr)):
        raise ValidationError(
            "A Fleiss count table must hold non-negative whole counts; for raw labels pass "
            "a list of per-item lists (or kind='ratings')."
        )
    return fleiss_from_table(arr.astype(np.int64))
