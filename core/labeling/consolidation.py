"""One human value per trace, however many reviewers labeled it: the consolidation rule.

**Rule**: the value most reviewers gave wins; on a tie, the value of the *primary*
reviewer wins, the primary being whoever (among the reviewers on that trace) has the most
labels overall (ties between reviewers broken by name, so every process picks the same
one). Strings compare case-insensitively. Alignment (its examples), the Score page (each
verdict's human label), the CLI's dataset export and active labeling all use this rule.

Imports nothing heavy, so the pure ranking of :mod:`core.labeling.active` can use it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from core.labeling.labels import Label

T = TypeVar("T")


def vote_key(value: object) -> object:
    """What a value counts as in a vote: strings case-insensitively, others as they are
    (labels of one criterion share a canonical type)."""
    return value.strip().lower() if isinstance(value, str) else value


def majority_choice(
    items: Iterable[T],
    trace: Callable[[T], str],
    reviewer: Callable[[T], str],
    value: Callable[[T], Any],
) -> dict[str, T]:
    """Apply the consolidation rule to any label-like items.

    Args:
        items: The labels (one per reviewer and trace).
        trace, reviewer, value: How to read an item's trace id, reviewer and value.

    Returns:
        trace id -> the item whose value (and rationale) the trace gets.
    """
    rows = list(items)
    per_reviewer = Counter(reviewer(item) for item in rows)
    by_trace: dict[str, list[T]] = defaultdict(list)
    for item in rows:
        by_trace[trace(item)].append(item)

    def seniority(item: T) -> tuple[int, str]:
        return (-per_reviewer[reviewer(item)], reviewer(item))

    chosen: dict[str, T] = {}
    for trace_id, group in by_trace.items():
        votes = Counter(vote_key(value(item)) for item in group)
        top = max(votes.values())
        winners = {v for v, n in votes.items() if n == top}
        # Among the items carrying a winning value, the primary reviewer's decides the tie.
        candidates = sorted((it for it in group if vote_key(value(it)) in winners), key=seniority)
        chosen[trace_id] = candidates[0]
    return chosen


def consolidate(labels: Iterable[Label]) -> dict[str, Label]:
    """Pick one label per trace (the rule above).

    Args:
        labels: Current human labels of one criterion (any reviewers, any traces).

    Returns:
        trace id -> the label whose value (and rationale) the trace gets.
    """
    return majority_choice(
        labels, attrgetter("trace_id"), attrgetter("reviewer"), attrgetter("value")
    )


def consolidate_values(labels: Iterable[tuple[str, str, Any]]) -> dict[str, Any]:
    """The rule on ``(trace_id, reviewer, value)`` triples: trace id -> its value."""
    chosen = majority_choice(labels, itemgetter(0), itemgetter(1), itemgetter(2))
    return {trace_id: item[2] for trace_id, item in chosen.items()}
