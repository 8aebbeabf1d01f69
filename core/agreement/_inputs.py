"""Input handling shared by the agreement metrics: missing values, pairing, label codes.

Kept private: the public functions accept plain Python data and call these so every
metric treats ``None``/NaN, mismatched lengths and label order the same way.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.errors import ValidationError


def is_missing(value: Any) -> bool:
    """True for ``None``, float NaN (Python or numpy), ``pd.NA`` and ``pd.NaT``."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    # np.float32 is not a subclass of float, so check numpy floats separately.
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    return False


def plain(value: Any) -> Any:
    """Turn numpy scalars into the equivalent Python value (for hashing and JSON)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def is_keyed(x: Any) -> bool:
    return isinstance(x, Mapping | pd.Series)


def keyed_items(x: Any) -> list[tuple[Any, Any]]:
    """Items of a keyed input in its own order."""
    if isinstance(x, pd.Series):
        return list(zip(x.index.tolist(), x.tolist(), strict=True))
    return list(x.items())


def as_list(x: Any, what: str) -> list[Any]:
    """A positional input as a list of plain values.

    Raises:
        ValidationError: ``x`` is a string or not iterable, or a multi-dimensional array.
    """
    if isinstance(x, str | bytes):
        raise ValidationError(f"{what} must be a list of labels, not a single string {x!r}.")
    if isinstance(x, np.ndarray):
        if x.ndim != 1:
            raise ValidationError(f"{what} must be one-dimensional; got shape {x.shape}.")
        return [plain(v) for v in x.tolist()]
    if not isinstance(x, Iterable):
        raise ValidationError(f"{what} must be a list of labels; got {type(x).__name__}.")
    return [plain(v) for v in x]


@dataclass(frozen=True)
class Paired:
    """Values two raters gave to the same items, with missing ones removed."""

    a: list[Any]
    b: list[Any]
    keys: list[Any] | None
    """Item keys (trace ids) when the inputs were keyed; ``None`` for positional input."""
    n_skipped: int
    """Items dropped because one side had no value (None/NaN, or key present on one side)."""


def pair(a: Any, b: Any, *, names: tuple[str, str] = ("a", "b")) -> Paired:
    """Line up two raters' labels and drop items without a value from both.

    Positional inputs (lists, tuples, 1-D arrays) are matched by position and must have
    equal length. Keyed inputs (mappings or pandas Series, trace id -> value) are joined
    on their keys, in the order of ``a``.

    Raises:
        ValidationError: mixed keyed/positional input, lengths differ, or no item has a
            value from both raters.
    """
    name_a, name_b = names
    if is_keyed(a) or is_keyed(b):
        if not (is_keyed(a) and is_keyed(b)):
            raise ValidationError(
                f"{name_a} and {name_b} must both be mappings (trace id -> label) or both "
                "lists of labels in the same order."
            )
        items_b = dict(keyed_items(b))
        items_a = keyed_items(a)
        keys, va, vb = [], [], []
        for k, v in items_a:
            if k in items_b:
                keys.append(k)
                va.append(plain(v))
                vb.append(plain(items_b[k]))
        n_total = len(set(k for k, _ in items_a) | set(items_b))
    else:
        va = as_list(a, name_a)
        vb = as_list(b, name_b)
        if len(va) != len(vb):
            raise ValidationError(
                f"{name_a} has {len(va)} labels but {name_b} has {len(vb)}; pass one label "
                "per item from each, in the same order (None where an item is unlabeled)."
            )
        keys = None
        n_total = len(va)
    keep = [i for i in range(len(va)) if not is_missing(va[i]) and not is_missing(vb[i])]
    if not keep:
        raise ValidationError(
            f"No traces labeled by both {name_a} and {name_b} "
            f"({n_total} item(s) given); label some of the same traces with both to compare them."
        )
    return Paired(
        a=[va[i] for i in keep],
        b=[vb[i] for i in keep],
        keys=None if keys is None else [keys[i] for i in keep],
        n_skipped=n_total - len(keep),
    )


def _sort_key(value: Any) -> tuple[str, Any]:
    return (type(value).__name__, str(value))


def discover_labels(*groups: Sequence[Any]) -> tuple[Any, ...]:
    """Distinct values over all groups, sorted (mixed types: by type name, then text)."""
    seen: dict[Any, None] = {}
    for group in groups:
        for v in group:
            try:
                seen.setdefault(v, None)
            except TypeError as exc:
                raise ValidationError(
                    f"Label {v!r} is not a bool, string or number; labels must be one of those."
                ) from exc
    values = list(seen)
    try:
        return tuple(sorted(values))
    except TypeError:
        # Mixed kinds (say str and float) cannot be ordered; any fixed order will do.
        return tuple(sorted(values, key=_sort_key))


def check_labels(labels: Iterable[Hashable]) -> tuple[Any, ...]:
    """Validate a caller-given label list: non-empty, hashable, no duplicates."""
    out = tuple(plain(v) for v in as_list(labels, "labels"))
    if not out:
        raise ValidationError("labels is empty; pass the possible label values or None.")
    if any(is_missing(v) for v in out):
        raise ValidationError("labels must not contain None or NaN (missing values are skipped).")
    if len(discover_labels(out)) != len(out):
        raise ValidationError(f"labels contains duplicates: {list(out)!r}.")
    return out


def encode(values: Sequence[Any], labels: Sequence[Any]) -> np.ndarray:
    """Integer codes of ``values`` (index into ``labels``).

    Raises:
        ValidationError: a value is not among ``labels``.
    """
    index = {v: i for i, v in enumerate(labels)}
    try:
        return np.fromiter((index[v] for v in values), dtype=np.int64, count=len(values))
    except KeyError as exc:
        raise ValidationError(
            f"Label {exc.args[0]!r} is not one of the labels {list(labels)!r}; "
            "add it to labels (or pass labels=None to use every value seen)."
        ) from None
    except TypeError as exc:
        raise ValidationError(
            "Labels must be bools, strings or numbers; found an unhashable value."
        ) from exc


def resolve_labels(labels: Iterable[Hashable] | None, *groups: Sequence[Any]) -> tuple[Any, ...]:
    """Caller-given labels (validated) or the sorted distinct values of ``groups``."""
    return discover_labels(*groups) if labels is None else check_labels(labels)


def none_if_nan(x: float) -> float | None:
    """Undefined metrics are ``None`` in every public result (never NaN)."""
    return None if x is None or math.isnan(x) else float(x)
