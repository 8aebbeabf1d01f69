"""``compare``: everything about how well one rater (a judge) agrees with a reference."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, get_args

import numpy as np

from core.agreement._inputs import encode, pair, resolve_labels
from core.agreement.bootstrap import (
    ConfidenceInterval,
    bootstrap_stat,
    check_bootstrap_args,
    kappa_stat,
    mean_stat,
)
from core.agreement.metrics import (
    ClassMetrics,
    ConfusionMatrix,
    class_metrics_from_confusion,
    kappa_from_confusion,
)
from core.errors import ValidationError

ValueType = Literal["pass_fail", "categorical", "numeric"]
VALUE_TYPES: tuple[str, ...] = get_args(ValueType)

MAX_NUMERIC_CLASSES = 20
"""Numeric labels with at most this many distinct values are also treated as classes
(a 1-5 score, say): they get a confusion matrix and kappas. Beyond it (continuous scores)
those are ``None``."""

DEFAULT_TOLERANCE = 1.0
"""Default ``tolerance`` of numeric comparisons: "within one point" on a 1-5 or 1-10 scale."""


class _Common(TypedDict):
    """The fields of an ``AgreementReport`` every value type fills the same way."""

    value_type: str
    reference_name: str
    predicted_name: str
    n: int
    n_skipped: int


@dataclass(frozen=True)
class AgreementReport:
    """Agreement of ``predicted`` (a judge or a second rater) with ``reference`` (a human).

    Fields that do not apply to the value type are ``None``. Every undefined metric is
    ``None`` (never NaN).
    """

    value_type: str
    """``"pass_fail"``, ``"categorical"`` or ``"numeric"``."""
    reference_name: str
    """Who the reference labels come from (for messages and display)."""
    predicted_name: str
    """Who the compared labels come from."""
    n: int
    """Items with a label from both sides; every metric is computed on these."""
    n_skipped: int
    """Items left out because one side had no label."""
    accuracy: float
    """Share of items with exactly the same label."""
    accuracy_ci: ConfidenceInterval | None
    """Bootstrap interval of ``accuracy`` (None when ``n_bootstrap=0``)."""
    cohen_kappa: float | None
    """Unweighted Cohen's kappa; None if undefined (one shared class) or continuous numerics."""
    cohen_kappa_ci: ConfidenceInterval | None
    """Bootstrap interval of ``cohen_kappa``; None when kappa is not computed for this data."""
    confusion: ConfusionMatrix | None
    """Rows: reference label, columns: predicted label; None for continuous numerics."""
    tpr: float | None = None
    """pass_fail: share of reference passes the other side also passed."""
    tnr: float | None = None
    """pass_fail: share of reference fails the other side also failed."""
    per_class: tuple[ClassMetrics, ...] | None = None
    """categorical: precision/recall/F1 per label, reference as truth."""
    weighted_kappa: float | None = None
    """numeric with few distinct values: quadratic-weighted kappa over the sorted values."""
    mean_absolute_error: float | None = None
    """numeric: mean of ``|reference - predicted|``."""
    mean_absolute_error_ci: ConfidenceInterval | None = None
    """numeric: bootstrap interval of the mean absolute error."""
    within_tolerance: float | None = None
    """numeric: share of items with ``|reference - predicted| <= tolerance``."""
    within_tolerance_ci: ConfidenceInterval | None = None
    """numeric: bootstrap interval of ``within_tolerance``."""
    tolerance: float | None = None
    """numeric: the tolerance used for ``within_tolerance``."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly nested form (intervals and matrices as dicts)."""

        def conv(v: Any) -> Any:
            if hasattr(v, "to_dict"):
                return v.to_dict()
            if isinstance(v, tuple):
                return [conv(x) for x in v]
            return v

        return {name: conv(getattr(self, name)) for name in self.__dataclass_fields__}


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _to_floats(values: list[Any], name: str) -> np.ndarray:
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValidationError(
                f"{name} has the non-numeric label {v!r}; numeric criteria need numbers "
                "(use value_type='pass_fail' or 'categorical' otherwise)."
            )
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValidationError(f"{name} has an infinite label; numeric labels must be finite.")
    return arr


def compare(
    reference: Any,
    predicted: Any,
    value_type: ValueType,
    *,
    labels: Iterable[Hashable] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    reference_name: str = "reference",
    predicted_name: str = "predicted",
) -> AgreementReport:
    """Measure how well ``predicted`` agrees with ``reference``.

    Args:
        reference: Reference (usually human) labels: a list in item order, or a mapping
            trace id -> label. ``None``/NaN means unlabeled; such items are skipped.
        predicted: Judge (or second rater) labels, same form as ``reference``.
        value_type: ``"pass_fail"`` (labels are bools, pass = True), ``"categorical"``
            (any hashable labels) or ``"numeric"`` (numbers).
        labels: categorical only: label order for the confusion matrix and per-class
            metrics, may include unused labels. ``None``: sorted values seen.
        tolerance: numeric only: largest absolute difference that still counts as close.
        n_bootstrap: Resamples for the confidence intervals; 0 skips them.
        alpha: ``1 - coverage`` of the intervals.
        seed: Resampling seed; the same inputs and seed give the same report.
        reference_name: Names used in messages, e.g. ``"human"``.
        predicted_name: e.g. the judge's name.

    Returns:
        An ``AgreementReport``; see its fields for what is filled per value type.

    Raises:
        ValidationError: unknown value type, labels of the wrong kind, lengths differ, or
            no item labeled by both sides ("No traces labeled by both X and Y").
    """
    if value_type not in VALUE_TYPES:
        raise ValidationError(
            f"Unknown value type {value_type!r}; use one of {', '.join(VALUE_TYPES)}."
        )
    if n_bootstrap != 0:
        check_bootstrap_args(n_bootstrap, alpha, seed)
    p = pair(reference, predicted, names=(reference_name, predicted_name))
    m = len(p.a)

    def ci(
        stat: Callable[[np.ndarray], np.ndarray], estimate: float | None
    ) -> ConfidenceInterval | None:
        if n_bootstrap == 0:
            return None
        return bootstrap_stat(stat, m, estimate=estimate, n=n_bootstrap, alpha=alpha, seed=seed)

    common: _Common = {
        "value_type": value_type,
        "reference_name": reference_name,
        "predicted_name": predicted_name,
        "n": m,
        "n_skipped": p.n_skipped,
    }

    if value_type == "numeric":
        if (
            isinstance(tolerance, bool)
            or not isinstance(tolerance, int | float)
            or not math.isfinite(tolerance)
            or tolerance < 0
        ):
            raise ValidationError(f"tolerance must be a number >= 0; got {tolerance!r}.")
        xa = _to_floats(p.a, reference_name)
        xb = _to_floats(p.b, predicted_name)
        diff = np.abs(xa - xb)
        # A small slack so that 0.3 vs 0.1 with tolerance 0.2 counts as close.
        close = (diff <= tolerance + 1e-9 * max(1.0, tolerance)).astype(np.float64)
        equal = (xa == xb).astype(np.float64)
        mae = float(diff.mean())
        within = float(close.mean())
        acc = float(equal.mean())
        kappa = wkappa = None
        kappa_ci = None
        confusion = None
        distinct = np.unique(np.concatenate([xa, xb]))
        if distinct.size <= MAX_NUMERIC_CLASSES:
            classes = tuple(float(v) for v in distinct)
            ca, cb = encode(xa.tolist(), classes), encode(xb.tolist(), classes)
            k = len(classes)
            conf = np.bincount(ca * k + cb, minlength=k * k).reshape(k, k)
            confusion = ConfusionMatrix(classes, tuple(tuple(int(c) for c in r) for r in conf))
            kappa = _none_if_nan(float(kappa_from_confusion(conf)))
            wkappa = _none_if_nan(float(kappa_from_confusion(conf, "quadratic")))
            kappa_ci = ci(kappa_stat(ca, cb, k), kappa)
        return AgreementReport(
            **common,
            accuracy=acc,
            accuracy_ci=ci(mean_stat(equal), acc),
            cohen_kappa=kappa,
            cohen_kappa_ci=kappa_ci,
            confusion=confusion,
            weighted_kappa=wkappa,
            mean_absolute_error=mae,
            mean_absolute_error_ci=ci(mean_stat(diff), mae),
            within_tolerance=within,
            within_tolerance_ci=ci(mean_stat(close), within),
            tolerance=float(tolerance),
        )

    if value_type == "pass_fail":
        for name, values in ((reference_name, p.a), (predicted_name, p.b)):
            bad = next((v for v in values if not isinstance(v, bool)), None)
            if bad is not None:
                raise ValidationError(
                    f"{name} has the label {bad!r}; pass/fail labels must be True (pass) or "
                    "False (fail). Convert values like 'yes'/'pass' before comparing."
                )
        labs: tuple[Any, ...] = (False, True)
    else:
        labs = resolve_labels(labels, p.a, p.b)

    ca, cb = encode(p.a, labs), encode(p.b, labs)
    k = len(labs)
    conf = np.bincount(ca * k + cb, minlength=k * k).reshape(k, k)
    equal = (ca == cb).astype(np.float64)
    acc = float(equal.mean())
    kappa = _none_if_nan(float(kappa_from_confusion(conf)))
    extra: dict[str, Any] = {}
    if value_type == "pass_fail":
        tn, fp, fn, tp = (int(c) for c in conf.ravel())
        extra["tpr"] = tp / (tp + fn) if tp + fn else None
        extra["tnr"] = tn / (tn + fp) if tn + fp else None
    else:
        extra["per_class"] = class_metrics_from_confusion(labs, conf)
    return AgreementReport(
        **common,
        accuracy=acc,
        accuracy_ci=ci(mean_stat(equal), acc),
        cohen_kappa=kappa,
        cohen_kappa_ci=ci(kappa_stat(ca, cb, k), kappa),
        confusion=ConfusionMatrix(labs, tuple(tuple(int(c) for c in r) for r in conf)),
        **extra,
    )
