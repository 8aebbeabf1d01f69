"""Agreement among human reviewers, and where two raters disagree."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from core.agreement._inputs import (
    discover_labels,
    encode,
    is_keyed,
    is_missing,
    keyed_items,
    none_if_nan,
    pair,
    plain,
)
from core.agreement.metrics import fleiss_from_table, kappa_from_confusion
from core.errors import ValidationError

LABEL_COLUMNS = ("trace_id", "reviewer", "value")
#: Optional column (or fourth row element): true for a gold label, which is left out.
ADJUDICATION_COLUMN = "adjudication"


@dataclass(frozen=True)
class ReviewerPair:
    """Agreement of two reviewers on the traces both labeled."""

    reviewer_a: str
    """First reviewer (alphabetically)."""
    reviewer_b: str
    """Second reviewer."""
    n_overlap: int
    """Traces both labeled; 0 means the other fields are None."""
    agreement: float | None
    """Share of those traces with the same label."""
    cohen_kappa: float | None
    """Cohen's kappa on those traces; None without overlap or when undefined (one shared class)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "reviewer_a": self.reviewer_a,
            "reviewer_b": self.reviewer_b,
            "n_overlap": self.n_overlap,
            "agreement": self.agreement,
            "cohen_kappa": self.cohen_kappa,
        }


@dataclass(frozen=True)
class ReviewerMatrix:
    """Pairwise and overall agreement among the reviewers of one criterion."""

    reviewers: tuple[str, ...]
    """Every reviewer with at least one label, sorted."""
    n_labeled: tuple[int, ...]
    """Traces each reviewer labeled, aligned with ``reviewers``."""
    pairs: tuple[ReviewerPair, ...]
    """One entry per unordered pair of reviewers, including pairs with no overlap."""
    fleiss_kappa: float | None
    """Fleiss' kappa over traces with two or more labels (varying-raters form, see
    ``fleiss_kappa``); None when no trace has two labels or all labels are the same."""
    fleiss_n_traces: int
    """Traces that entered Fleiss' kappa (those with two or more labels)."""
    n_traces: int
    """Traces with at least one label."""

    def pairs_frame(self) -> pd.DataFrame:
        """One row per reviewer pair: reviewer_a, reviewer_b, n_overlap, agreement, cohen_kappa.

        Undefined values are NaN here (pandas' missing value).
        """
        cols = ["reviewer_a", "reviewer_b", "n_overlap", "agreement", "cohen_kappa"]
        frame = pd.DataFrame([p.to_dict() for p in self.pairs], columns=cols)
        return frame.astype(
            {"n_overlap": "int64", "agreement": "float64", "cohen_kappa": "float64"}
        )

    def _square(self, value: str, diagonal: list[float]) -> pd.DataFrame:
        idx = pd.Index(self.reviewers, name="reviewer")
        table = pd.DataFrame(np.nan, index=idx, columns=idx.rename(None), dtype="float64")
        for r, d in zip(self.reviewers, diagonal, strict=True):
            table.loc[r, r] = d
        for p in self.pairs:
            v = getattr(p, value)
            v = math.nan if v is None else float(v)
            table.loc[p.reviewer_a, p.reviewer_b] = v
            table.loc[p.reviewer_b, p.reviewer_a] = v
        return table

    def kappa_table(self) -> pd.DataFrame:
        """Square reviewer x reviewer table of Cohen's kappa (NaN: undefined, no overlap, or diagonal)."""
        return self._square("cohen_kappa", [math.nan] * len(self.reviewers))

    def overlap_table(self) -> pd.DataFrame:
        """Square table of traces labeled by both; the diagonal is each reviewer's own count."""
        return self._square("n_overlap", [float(n) for n in self.n_labeled]).astype("int64")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "reviewers": list(self.reviewers),
            "n_labeled": list(self.n_labeled),
            "pairs": [p.to_dict() for p in self.pairs],
            "fleiss_kappa": self.fleiss_kappa,
            "fleiss_n_traces": self.fleiss_n_traces,
            "n_traces": self.n_traces,
        }


def _label_rows(labels: Any) -> list[tuple[Any, Any, Any]]:
    if isinstance(labels, pd.DataFrame):
        missing = [c for c in LABEL_COLUMNS if c not in labels.columns]
        if missing:
            raise ValidationError(
                f"The labels table lacks column(s) {missing}; it needs {list(LABEL_COLUMNS)}."
            )
        frame = labels
        if ADJUDICATION_COLUMN in frame.columns:
            frame = frame[~frame[ADJUDICATION_COLUMN].fillna(False).astype(bool)]
        return list(frame[list(LABEL_COLUMNS)].itertuples(index=False, name=None))
    rows = []
    for i, row in enumerate(labels):
        try:
            if isinstance(row, tuple | list) and len(row) == 4:
                trace_id, reviewer, value, gold = row
                if gold:
                    continue  # a gold label is the adjudicator's decision, not a rating
            else:
                trace_id, reviewer, value = row
        except (TypeError, ValueError):
            raise ValidationError(
                f"Label row {i} is {row!r}; each row must be (trace_id, reviewer, value)."
            ) from None
        rows.append((trace_id, reviewer, value))
    return rows


def reviewer_matrix(labels: Iterable[tuple[Any, Any, Any]] | pd.DataFrame) -> ReviewerMatrix:
    """Pairwise and overall agreement among reviewers.

    For every pair of reviewers: Cohen's kappa and raw agreement on the traces both
    labeled. Overall: Fleiss' kappa over every trace with at least two labels, using the
    form for a varying number of raters per trace (traces with one label carry no
    agreement information and are left out; see ``fleiss_kappa``).

    ``None``/NaN values are skipped. If a reviewer labeled a trace more than once, the
    later row wins (a relabel replaces the earlier label). Gold labels (adjudications)
    are left out: they settle a disagreement, they are not one reviewer's rating, and
    counting them would make reviewers look more consistent than they are.

    Args:
        labels: Rows ``(trace_id, reviewer, value)`` or ``(trace_id, reviewer, value,
            is_gold)``, or a DataFrame with those columns (``adjudication`` optional).

    Returns:
        A ``ReviewerMatrix``; ``pairs_frame()``, ``kappa_table()`` and ``overlap_table()``
        give pandas tables for display.

    Raises:
        ValidationError: no labels, a row without a trace id or reviewer, or a malformed row.
    """
    by_trace: dict[Any, dict[str, Any]] = {}
    for i, (trace_id, reviewer, value) in enumerate(_label_rows(labels)):
        if is_missing(trace_id) or is_missing(reviewer):
            raise ValidationError(f"Label row {i} has no trace id or no reviewer.")
        if is_missing(value):
            continue
        by_trace.setdefault(plain(trace_id), {})[str(reviewer)] = plain(value)
    if not by_trace:
        raise ValidationError("No labels to compare; label some traces first.")
    labs = discover_labels(*(list(v.values()) for v in by_trace.values()))
    index = {v: i for i, v in enumerate(labs)}
    k = len(labs)
    reviewers = tuple(sorted({r for v in by_trace.values() for r in v}))
    n_labeled = tuple(sum(r in v for v in by_trace.values()) for r in reviewers)

    pairs = []
    for ra, rb in combinations(reviewers, 2):
        shared = [(v[ra], v[rb]) for v in by_trace.values() if ra in v and rb in v]
        if not shared:
            pairs.append(ReviewerPair(ra, rb, 0, None, None))
            continue
        ca = np.array([index[x] for x, _ in shared])
        cb = np.array([index[y] for _, y in shared])
        conf = np.bincount(ca * k + cb, minlength=k * k).reshape(k, k)
        pairs.append(
            ReviewerPair(
                ra,
                rb,
                len(shared),
                float(np.mean(ca == cb)),
                none_if_nan(float(kappa_from_confusion(conf))),
            )
        )

    multi = [list(v.values()) for v in by_trace.values() if len(v) >= 2]
    fleiss = None
    if multi:
        table = np.zeros((len(multi), k), dtype=np.int64)
        for row, values in enumerate(multi):
            np.add.at(table[row], encode(values, labs), 1)
        fleiss = fleiss_from_table(table)
    return ReviewerMatrix(
        reviewers=reviewers,
        n_labeled=n_labeled,
        pairs=tuple(pairs),
        fleiss_kappa=fleiss,
        fleiss_n_traces=len(multi),
        n_traces=len(by_trace),
    )


def disagreements(
    labels_a: Any,
    labels_b: Any,
    *,
    name_a: str = "rater A",
    name_b: str = "rater B",
    tolerance: float | None = None,
) -> list[Any]:
    """Trace ids that both raters labeled, differently.

    Args:
        labels_a: Mapping (or pandas Series) trace id -> label, e.g. a human's labels.
        labels_b: Same for the other rater, e.g. a judge's verdicts.
        name_a: Name of the first rater, used in messages.
        name_b: Name of the second rater.
        tolerance: For numeric labels: differences up to this much are not disagreements.
            ``None``: any difference counts.

    Returns:
        Trace ids in the order of ``labels_a``. Traces missing from either side, or with a
        ``None``/NaN label, are not included.

    Raises:
        ValidationError: inputs are not mappings, or no trace is labeled by both.
    """
    if not (is_keyed(labels_a) and is_keyed(labels_b)):
        raise ValidationError(
            "disagreements needs two mappings trace id -> label (dicts or pandas Series)."
        )
    if tolerance is not None and (not isinstance(tolerance, int | float) or tolerance < 0):
        raise ValidationError(f"tolerance must be a number >= 0 or None; got {tolerance!r}.")
    # Validates overlap and gives a consistent message when there is none.
    p = pair(dict(keyed_items(labels_a)), dict(keyed_items(labels_b)), names=(name_a, name_b))
    assert p.keys is not None
    out = []
    for key, x, y in zip(p.keys, p.a, p.b, strict=True):
        if tolerance is not None and _is_number(x) and _is_number(y):
            if abs(float(x) - float(y)) > tolerance + 1e-9 * max(1.0, tolerance):
                out.append(key)
        elif x != y:
            out.append(key)
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
