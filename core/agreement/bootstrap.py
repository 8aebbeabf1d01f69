"""Percentile bootstrap confidence intervals over paired items."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.agreement._inputs import discover_labels, encode, pair
from core.agreement.metrics import Weights, accuracy, cohen_kappa, kappa_from_confusion
from core.errors import ValidationError

# Resampled indices are drawn in blocks of about this many elements so that memory stays
# bounded however many items there are.
BLOCK_ELEMENTS = 1_000_000

MIN_DEFINED_SHARE = 0.5
"""Below this share of resamples with a defined metric, an interval is not reported."""


@dataclass(frozen=True)
class ConfidenceInterval:
    """A percentile bootstrap confidence interval of one metric."""

    estimate: float | None
    """The metric on all items (None when undefined)."""
    low: float | None
    """Lower bound; None when too few resamples gave a defined metric."""
    high: float | None
    """Upper bound; None when too few resamples gave a defined metric."""
    level: float
    """Coverage, ``1 - alpha`` (0.95 by default)."""
    n_resamples: int
    """Bootstrap resamples drawn."""
    n_undefined: int
    """Resamples on which the metric was undefined (left out of the percentiles)."""
    method: str = "percentile"
    """How the bounds were computed."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "level": self.level,
            "n_resamples": self.n_resamples,
            "n_undefined": self.n_undefined,
            "method": self.method,
        }


def check_bootstrap_args(n: int, alpha: float, seed: int) -> None:
    """Raise ValidationError for a bad resample count, alpha or seed."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValidationError(f"n (bootstrap resamples) must be a positive integer; got {n!r}.")
    if not isinstance(alpha, int | float) or not 0.0 < alpha < 1.0:
        raise ValidationError(f"alpha must be between 0 and 1 (0.05 for 95%); got {alpha!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValidationError(f"seed must be an integer; got {seed!r}.")


def index_blocks(m: int, n: int, seed: int) -> Iterator[np.ndarray]:
    """Yield ``(rows, m)`` arrays of resampled item indices, ``n`` rows in all.

    The block sizes depend only on ``m`` and ``n``, so every caller with the same
    ``(m, n, seed)`` sees exactly the same resamples: the vectorised statistics in
    ``compare`` and the generic ``bootstrap_ci`` agree to the last digit.
    """
    rng = np.random.default_rng(seed)
    rows = max(1, BLOCK_ELEMENTS // m)
    done = 0
    while done < n:
        r = min(rows, n - done)
        yield rng.integers(0, m, size=(r, m))
        done += r


def bootstrap_stat(
    stat: Callable[[np.ndarray], np.ndarray],
    m: int,
    *,
    estimate: float | None,
    n: int,
    alpha: float,
    seed: int,
) -> ConfidenceInterval:
    """Percentile interval of ``stat`` over ``n`` resamples of ``m`` items.

    ``stat`` maps a ``(rows, m)`` index block to one value per row, NaN when undefined.
    Undefined resamples are left out of the percentiles and counted; if fewer than
    ``MIN_DEFINED_SHARE`` of resamples are defined the bounds are ``None`` because an
    interval built from the few survivors would be misleadingly narrow.
    """
    check_bootstrap_args(n, alpha, seed)
    values = np.concatenate(
        [np.asarray(stat(block), dtype=np.float64) for block in index_blocks(m, n, seed)]
    )
    defined = values[~np.isnan(values)]
    n_undefined = int(n - defined.size)
    low = high = None
    if defined.size and defined.size >= MIN_DEFINED_SHARE * n:
        lo, hi = np.quantile(defined, [alpha / 2.0, 1.0 - alpha / 2.0])
        low, high = float(lo), float(hi)
    return ConfidenceInterval(
        estimate=estimate,
        low=low,
        high=high,
        level=1.0 - float(alpha),
        n_resamples=int(n),
        n_undefined=n_undefined,
    )


def mean_stat(x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Statistic for ``bootstrap_stat``: the mean of per-item values ``x`` in each resample."""
    return lambda block: x[block].mean(axis=1)


def kappa_stat(
    ca: np.ndarray, cb: np.ndarray, k: int, weights: Weights = None
) -> Callable[[np.ndarray], np.ndarray]:
    """Statistic for ``bootstrap_stat``: Cohen's kappa of label codes in each resample."""

    def stat(block: np.ndarray) -> np.ndarray:
        rows, m = block.shape
        out = np.empty(rows)
        # One confusion matrix per resample, built with a single bincount by offsetting
        # each resample's cells; sub-blocks keep the (rows, k, k) tensor small.
        step = max(1, BLOCK_ELEMENTS // (k * k + m))
        for s in range(0, rows, step):
            sub = block[s : s + step]
            r = sub.shape[0]
            cells = ca[sub] * k + cb[sub] + (np.arange(r) * k * k)[:, None]
            conf = np.bincount(cells.ravel(), minlength=r * k * k).reshape(r, k, k)
            out[s : s + r] = kappa_from_confusion(conf, weights)
        return out

    return stat


def _as_float(value: Any) -> float:
    if value is None:
        return math.nan
    return float(value)


def bootstrap_ci(
    metric_fn: Callable[[Sequence[Any], Sequence[Any]], float | None],
    a: Any,
    b: Any,
    n: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> ConfidenceInterval:
    """Percentile bootstrap confidence interval of a two-rater metric.

    Items (pairs of labels) are resampled with replacement, keeping each item's two
    labels together. Items missing a label on either side are dropped first. The same
    ``seed`` always gives the same interval. ``accuracy`` and unweighted ``cohen_kappa``
    run vectorised (same resamples, same result); any other ``metric_fn`` is called once
    per resample, which takes seconds for thousands of items.

    A resample where the metric is undefined (``metric_fn`` returns ``None`` or NaN, e.g.
    Cohen's kappa when the resample happens to hold a single class) is left out of the
    percentiles and counted in ``n_undefined``; when more than half of the resamples are
    undefined, ``low`` and ``high`` are ``None``.

    Args:
        metric_fn: ``metric_fn(a_list, b_list) -> float | None``, e.g. ``cohen_kappa``.
        a: First rater's (reference) labels: list in item order, or mapping trace id -> label.
        b: Second rater's labels, same form as ``a``.
        n: Number of resamples.
        alpha: ``1 - coverage``; 0.05 gives a 95% interval.
        seed: Seed of the resampling.

    Returns:
        The interval, with the metric on all items as ``estimate``.

    Raises:
        ValidationError: bad arguments, lengths differ, or no item labeled by both.
    """
    check_bootstrap_args(n, alpha, seed)
    p = pair(a, b)
    if metric_fn is accuracy or metric_fn is cohen_kappa:
        # Same resamples, same numbers, vectorised: these two run on every report.
        labs = discover_labels(p.a, p.b)
        ca, cb = encode(p.a, labs), encode(p.b, labs)
        if metric_fn is accuracy:
            stat = mean_stat((ca == cb).astype(np.float64))
        else:
            stat = kappa_stat(ca, cb, len(labs))
        return bootstrap_stat(
            stat, len(p.a), estimate=metric_fn(p.a, p.b), n=n, alpha=alpha, seed=seed
        )
    arr_a = np.empty(len(p.a), dtype=object)
    arr_a[:] = p.a
    arr_b = np.empty(len(p.b), dtype=object)
    arr_b[:] = p.b

    def generic(block: np.ndarray) -> np.ndarray:
        return np.array([_as_float(metric_fn(arr_a[i].tolist(), arr_b[i].tolist())) for i in block])

    estimate = _as_float(metric_fn(list(p.a), list(p.b)))
    return bootstrap_stat(
        generic,
        len(p.a),
        estimate=None if math.isnan(estimate) else estimate,
        n=n,
        alpha=alpha,
        seed=seed,
    )
