"""Deterministic train/validation/test assignment of traces.

A trace's split is a pure function of its id and the salt: ``sha256(salt + ":" + trace_id)``
is read as a number ``u`` uniform in [0, 1) and compared with the cumulative fractions.
So a trace never changes split when more labels arrive or other traces are added, and
every process (app, CLI, alignment worker) computes the same split without storing it.

Changing ``SPLIT_SALT`` (or passing another salt) reshuffles every trace: results
computed on the old held-out set are then no longer held out. Bump the version suffix
only on purpose.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from core.errors import ValidationError

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
SPLIT_SALT = "alignboard-split-v1"
"""Salt of the split hash. Changing it reassigns every trace to a new split."""
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.6, 0.2, 0.2)
"""Shares of train, val and test."""

_TOLERANCE = 1e-6


def _check_fractions(fractions: Any) -> tuple[float, float, float]:
    if isinstance(fractions, Mapping):
        unknown = set(fractions) - set(SPLITS)
        if unknown:
            raise ValidationError(
                f"Unknown split name(s) {sorted(map(str, unknown))}; use train, val and test."
            )
        values = [fractions.get(s, 0.0) for s in SPLITS]
    elif isinstance(fractions, Sequence) and not isinstance(fractions, str | bytes):
        values = list(fractions)
    else:
        raise ValidationError(
            f"fractions must be (train, val, test) or a dict of them; got {fractions!r}."
        )
    if len(values) != 3:
        raise ValidationError(
            f"fractions needs three values (train, val, test); got {len(values)}: {values!r}."
        )
    out = []
    for name, v in zip(SPLITS, values, strict=True):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise ValidationError(f"The {name} fraction must be a number >= 0; got {v!r}.")
        out.append(float(v))
    total = sum(out)
    if abs(total - 1.0) > _TOLERANCE:
        raise ValidationError(
            f"Split fractions must add up to 1; {out[0]} + {out[1]} + {out[2]} = {total:g}."
        )
    return out[0], out[1], out[2]


@dataclass(frozen=True)
class SplitSpec:
    """How traces are divided into train, validation and test sets."""

    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    """Shares of train, val and test; each >= 0, summing to 1."""
    salt: str = SPLIT_SALT
    """Hash salt; another salt gives an unrelated assignment of every trace."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "fractions", _check_fractions(self.fractions))
        if not isinstance(self.salt, str) or not self.salt:
            raise ValidationError("The split salt must be a non-empty string.")

    def unit(self, trace_id: str) -> float:
        """The trace's hash position, uniform in [0, 1)."""
        if not isinstance(trace_id, str) or not trace_id:
            raise ValidationError(f"A trace id must be a non-empty string; got {trace_id!r}.")
        digest = hashlib.sha256(f"{self.salt}:{trace_id}".encode()).digest()
        # 53 bits fit a float exactly, so u is never rounded up to 1.0.
        return (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)

    def assign(self, trace_id: str) -> Split:
        """The split of one trace."""
        u = self.unit(trace_id)
        train, val, test = self.fractions
        if u < train:
            return "train"
        # Rounding in the cumulative sum must not leak traces into an empty split.
        if test == 0 or u < train + val:
            return "val" if val > 0 else "train"
        return "test"

    def split(self, trace_ids: Iterable[str]) -> dict[str, list[str]]:
        """Group trace ids by split; see ``split_ids``."""
        if isinstance(trace_ids, str):
            raise ValidationError("trace_ids must be a list of ids, not a single string.")
        out: dict[str, list[str]] = {s: [] for s in SPLITS}
        for tid in dict.fromkeys(trace_ids):
            out[self.assign(tid)].append(tid)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, e.g. to record with an alignment run."""
        return {"fractions": dict(zip(SPLITS, self.fractions, strict=True)), "salt": self.salt}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SplitSpec:
        """Inverse of ``to_dict``."""
        if not isinstance(data, Mapping) or "fractions" not in data:
            raise ValidationError("A split spec needs 'fractions' (and optionally 'salt').")
        return cls(fractions=_check_fractions(data["fractions"]), salt=data.get("salt", SPLIT_SALT))


DEFAULT_SPEC = SplitSpec()


def _spec(fractions: SplitSpec | Sequence[float] | Mapping[str, float]) -> SplitSpec:
    if isinstance(fractions, SplitSpec):
        return fractions
    return SplitSpec(fractions=_check_fractions(fractions))


def assign_split(
    trace_id: str,
    fractions: SplitSpec | Sequence[float] | Mapping[str, float] = DEFAULT_FRACTIONS,
) -> Split:
    """The split a trace belongs to, from a hash of its id.

    Args:
        trace_id: The MLflow trace id.
        fractions: ``(train, val, test)`` shares, a dict with those keys, or a
            ``SplitSpec`` (to use another salt). Defaults to 0.6 / 0.2 / 0.2.

    Returns:
        ``"train"``, ``"val"`` or ``"test"``; always the same for the same id and spec.

    Raises:
        ValidationError: empty trace id, or fractions that are negative, not three, or do
            not add up to 1.
    """
    return _spec(fractions).assign(trace_id)


def split_ids(
    trace_ids: Iterable[str],
    fractions: SplitSpec | Sequence[float] | Mapping[str, float] = DEFAULT_FRACTIONS,
) -> dict[str, list[str]]:
    """Group trace ids into train, val and test.

    Args:
        trace_ids: Trace ids; duplicates are kept once.
        fractions: As for ``assign_split``.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, all three keys always present,
        ids in input order.

    Raises:
        ValidationError: as for ``assign_split``.
    """
    return _spec(fractions).split(trace_ids)
