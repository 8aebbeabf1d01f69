"""One human value per trace, however many reviewers labeled it: the consolidation rule.

**Precedence** (the one rule; alignment examples, the Score page, the CLI's dataset export
and active labeling all use it):

1. **gold**: an adjudicator's gold label (``Label.adjudication``, see
   :mod:`core.labeling.adjudication`) wins outright. Two adjudicators on one trace: the
   newest gold label wins (a later adjudication revises an earlier one).
2. **majority**: otherwise the value most reviewers gave wins (two or more reviewers,
   one value with the most votes; a unanimous trace counts here).
3. **primary_tiebreak**: on a tie between values, the value of the *primary* reviewer
   wins, the primary being whoever (among the reviewers on that trace) has the most
   labels overall (ties between reviewers broken by name, so every process picks the
   same one).
4. **single**: a trace only one reviewer labeled takes that label.

Strings compare case-insensitively. Gold labels never vote, and never count toward a
reviewer's seniority: the votes and the primary reviewer are about reviewer labels only.

Imports nothing heavy, so the pure ranking of :mod:`core.labeling.active` can use it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args

if TYPE_CHECKING:
    from core.labeling.labels import Label

T = TypeVar("T")

#: How a trace got its value (see the module docstring), in precedence order.
Precedence = Literal["gold", "majority", "primary_tiebreak", "single"]
PRECEDENCE: tuple[str, ...] = get_args(Precedence)
#: What each precedence means, for the record and the pages.
PRECEDENCE_TEXT = {
    "gold": "gold (adjudicated)",
    "majority": "majority of reviewers",
    "primary_tiebreak": "tie, primary reviewer",
    "single": "single reviewer",
}


def vote_key(value: object) -> object:
    """What a value counts as in a vote: strings case-insensitively, others as they are
    (labels of one criterion share a canonical type)."""
    return value.strip().lower() if isinstance(value, str) else value


def _never(_: Any) -> bool:
    return False


def _zero(_: Any) -> int:
    return 0


def choose(
    items: Iterable[T],
    trace: Callable[[T], str],
    reviewer: Callable[[T], str],
    value: Callable[[T], Any],
    *,
    gold: Callable[[T], bool] = _never,
    when: Callable[[T], int] = _zero,
) -> dict[str, tuple[T, Precedence]]:
    """Apply the precedence rule to any label-like items, saying which step decided.

    Args:
        items: The labels (one per reviewer and trace, plus any gold labels).
        trace, reviewer, value: How to read an item's trace id, reviewer and value.
        gold: Whether an item is a gold label (default: none is).
        when: An item's creation time, to pick the newest of several gold labels.

    Returns:
        trace id -> (the item whose value and rationale the trace gets, the precedence
        step that chose it).
    """
    rows = list(items)
    golds = [item for item in rows if gold(item)]
    votes_rows = [item for item in rows if not gold(item)]
    per_reviewer = Counter(reviewer(item) for item in votes_rows)
    by_trace: dict[str, list[T]] = defaultdict(list)
    for item in votes_rows:
        by_trace[trace(item)].append(item)

    def seniority(item: T) -> tuple[int, str]:
        return (-per_reviewer[reviewer(item)], reviewer(item))

    chosen: dict[str, tuple[T, Precedence]] = {}
    for trace_id, group in by_trace.items():
        votes = Counter(vote_key(value(item)) for item in group)
        top = max(votes.values())
        winners = {v for v, n in votes.items() if n == top}
        # Among the items carrying a winning value, the primary reviewer's decides the tie.
        candidates = sorted((it for it in group if vote_key(value(it)) in winners), key=seniority)
        step: Precedence = (
            "single" if len(group) == 1 else "majority" if len(winners) == 1 else "primary_tiebreak"
        )
        chosen[trace_id] = (candidates[0], step)
    newest: dict[str, T] = {}
    for item in golds:
        tid = trace(item)
        if tid not in newest or (when(item), reviewer(item)) > (
            when(newest[tid]),
            reviewer(newest[tid]),
        ):
            newest[tid] = item
    for tid, item in newest.items():
        chosen[tid] = (item, "gold")
    return chosen


def majority_choice(
    items: Iterable[T],
    trace: Callable[[T], str],
    reviewer: Callable[[T], str],
    value: Callable[[T], Any],
    *,
    gold: Callable[[T], bool] = _never,
    when: Callable[[T], int] = _zero,
) -> dict[str, T]:
    """Apply the consolidation rule to any label-like items (:func:`choose` without the
    precedence step).

    Returns:
        trace id -> the item whose value (and rationale) the trace gets.
    """
    chosen = choose(items, trace, reviewer, value, gold=gold, when=when)
    return {trace_id: item for trace_id, (item, _) in chosen.items()}


def _label_args() -> dict[str, Any]:
    return {
        "trace": attrgetter("trace_id"),
        "reviewer": attrgetter("reviewer"),
        "value": attrgetter("value"),
        "gold": lambda lab: bool(getattr(lab, "adjudication", False)),
        "when": lambda lab: int(getattr(lab, "created_ms", 0) or 0),
    }


def consolidate(labels: Iterable[Label]) -> dict[str, Label]:
    """Pick one label per trace (the precedence rule above).

    Args:
        labels: Current human labels of one criterion (any reviewers, any traces), with
            the gold labels when there are any (``current_labels(..., gold=True)``).

    Returns:
        trace id -> the label whose value (and rationale) the trace gets.
    """
    a = _label_args()
    return majority_choice(
        labels, a["trace"], a["reviewer"], a["value"], gold=a["gold"], when=a["when"]
    )


def consolidate_with_precedence(labels: Iterable[Label]) -> dict[str, tuple[Label, Precedence]]:
    """:func:`consolidate`, with the precedence step that chose each trace's label."""
    a = _label_args()
    return choose(labels, a["trace"], a["reviewer"], a["value"], gold=a["gold"], when=a["when"])


def precedence_counts(steps: Iterable[str]) -> dict[str, int]:
    """How many traces each precedence step decided: ``{gold, majority, primary_tiebreak,
    single}`` (every key present, zeros included)."""
    counts = Counter(steps)
    return {step: int(counts.get(step, 0)) for step in PRECEDENCE}


def consolidate_values(labels: Iterable[tuple[Any, ...]]) -> dict[str, Any]:
    """The rule on ``(trace_id, reviewer, value)`` triples: trace id -> its value.

    A fourth element, when present and true, marks the row as a gold label (a fifth, its
    creation time in ms, orders several gold labels).
    """

    def is_gold(row: tuple[Any, ...]) -> bool:
        return len(row) > 3 and bool(row[3])

    def created(row: tuple[Any, ...]) -> int:
        return int(row[4]) if len(row) > 4 and row[4] is not None else 0

    chosen = majority_choice(
        labels, lambda r: r[0], lambda r: r[1], lambda r: r[2], gold=is_gold, when=created
    )
    return {trace_id: item[2] for trace_id, item in chosen.items()}
