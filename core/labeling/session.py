"""The reviewer's labeling session: a work list, a position in it, and the rules of a label.

A session is one reviewer working through one criterion, either in a review queue or
over every trace of the experiment. It knows the working order, which traces the
reviewer has labeled, where to go next and back, whether a rationale is required, and
which of the other reviewers' labels may be shown (blind mode).

Everything is plain data so the app can cache it and the CLI and tests can use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import Any, Literal

from core.errors import ValidationError
from core.labeling.criteria import Criterion, normalize_value
from core.labeling.labels import Label, set_label
from core.labeling.queues import list_queues
from core.labeling.traces import TraceDetail
from core.labeling.worklists import ALL_TRACES, WorkList, labeled_ids, load_work_list, resolve_queue

RationalePolicy = Literal["disagree", "always", "never"]
RATIONALE_POLICIES: tuple[str, ...] = ("disagree", "always", "never")
"""``disagree``: required when the value disagrees with the judge's verdict on the trace
(the default); ``always``: required for every label; ``never``: always optional."""


@dataclass(frozen=True)
class Session:
    """One reviewer's work list for one criterion, and what they have labeled in it.

    Lookups are O(1) in the list's length (``index``), and moving on never copies the
    list, so a session over 100k traces costs what one over 100 does.
    """

    experiment_id: str
    criterion: str
    """The criterion being labeled."""
    reviewer: str
    queue: str
    """Queue name, or ``ALL_TRACES`` (empty) for every trace of the experiment."""
    trace_ids: tuple[str, ...]
    """The work list in working order."""
    done: frozenset[str] = field(default_factory=frozenset)
    """Traces of the work list on which the reviewer has a current label for the criterion
    (a subset of ``trace_ids``: :meth:`of` and :func:`load_session` keep it so)."""
    index: Mapping[str, int] | None = field(default=None, compare=False, repr=False)
    """trace id -> position (built on first use when not given)."""

    @classmethod
    def of(cls, work: WorkList, criterion: str, reviewer: str, done: frozenset[str]) -> Session:
        """A session over a loaded work list (shares its ids and index, copies nothing).

        ``done`` must already be restricted to the list (see :func:`within`).
        """
        return cls(
            work.experiment_id, criterion, reviewer, work.queue, work.trace_ids, done, work.index
        )

    def _index(self) -> Mapping[str, int]:
        if self.index is None:
            object.__setattr__(self, "index", {t: i for i, t in enumerate(self.trace_ids)})
        return self.index  # type: ignore[return-value]

    @property
    def total(self) -> int:
        """Traces in the work list."""
        return len(self.trace_ids)

    @property
    def done_count(self) -> int:
        """Traces in the work list the reviewer has labeled."""
        return len(self.done)

    @property
    def complete(self) -> bool:
        """Whether every trace of the work list is labeled."""
        return self.done_count == self.total

    def position(self, trace_id: str | None) -> int | None:
        """0-based position of ``trace_id`` in the work list, or None."""
        return None if trace_id is None else self._index().get(trace_id)

    def first_pending(self) -> str | None:
        """The first trace still to label, or None when the list is done."""
        return next((t for t in self.trace_ids if t not in self.done), None)

    def start(self) -> str | None:
        """Where a session opens: the first pending trace, else the first trace."""
        return self.first_pending() or (self.trace_ids[0] if self.trace_ids else None)

    def next_id(self, current: str | None) -> str | None:
        """The trace after ``current`` (None at the end)."""
        pos = self.position(current)
        if pos is None:
            return self.start()
        return self.trace_ids[pos + 1] if pos + 1 < self.total else None

    def previous_id(self, current: str | None) -> str | None:
        """The trace before ``current`` (None at the start)."""
        pos = self.position(current)
        if pos is None or pos == 0:
            return None
        return self.trace_ids[pos - 1]

    def next_pending(self, current: str | None) -> str | None:
        """The next trace still to label after ``current``, wrapping round; None when done.

        ``current`` itself counts as handled (the caller has just labeled it).
        """
        pos = self.position(current)
        ids = self.trace_ids
        order = ids if pos is None else chain(islice(ids, pos + 1, None), islice(ids, 0, pos))
        return next((t for t in order if t not in self.done and t != current), None)

    def with_done(self, trace_id: str) -> Session:
        """A copy with ``trace_id`` counted as labeled (after a successful submit)."""
        done = self.done | {trace_id} if self.position(trace_id) is not None else self.done
        return Session(
            self.experiment_id,
            self.criterion,
            self.reviewer,
            self.queue,
            self.trace_ids,
            done,
            self.index,
        )


def within(work: WorkList, ids: frozenset[str] | set[str]) -> frozenset[str]:
    """The ids that are on the work list (what a :class:`Session`'s ``done`` holds)."""
    index = work.index
    return frozenset(t for t in ids if t in index)


def work_lists(experiment_id: str, reviewer: str | None) -> list[str]:
    """Queue names to offer ``reviewer``: their assigned queues first, then the others.

    ``ALL_TRACES`` is not included; the app adds it as the last choice.
    """
    mine = [q.name for q in list_queues(experiment_id, reviewer)] if reviewer else []
    others = [q.name for q in list_queues(experiment_id) if q.name not in mine]
    return mine + others


def load_session(
    experiment_id: str, criterion: str, reviewer: str, queue: str = ALL_TRACES
) -> Session:
    """Build ``reviewer``'s session for ``criterion`` over a queue or every trace.

    Args:
        experiment_id: The experiment.
        criterion: The criterion to label.
        reviewer: Who labels.
        queue: Queue name; ``ALL_TRACES`` for every trace of the experiment (oldest first).

    Raises:
        NotFoundError: no such queue.
        ValidationError: the queue does not ask for ``criterion``.
    """
    work = load_work_list(experiment_id, resolve_queue(experiment_id, queue, criterion))
    done: frozenset[str] = frozenset()
    if reviewer and work.trace_ids:
        done = frozenset(labeled_ids(experiment_id, criterion, reviewer, within=work.index))
    return Session.of(work, criterion, reviewer, done)


@dataclass(frozen=True)
class Verdict:
    """The judge's current verdict on a trace for a criterion."""

    value: Any
    """Canonical value (as :func:`core.labeling.criteria.normalize_value` gives it)."""
    rationale: str | None
    source: str
    """Who gave it: the feedback's source id (or type)."""


def judge_verdict(detail: TraceDetail, criterion: Criterion) -> Verdict | None:
    """The latest valid non-human verdict on the trace for ``criterion``, if any.

    Verdicts whose value the criterion does not accept (or that carry an error) are
    ignored.
    """
    candidates = sorted(
        (f for f in detail.judge_feedback if f.name == criterion.name and not f.error),
        key=lambda f: f.created_ms or 0,
        reverse=True,
    )
    for fb in candidates:
        try:
            value = normalize_value(criterion, fb.value)
        except ValidationError:
            continue
        return Verdict(value, fb.rationale, fb.source_id or fb.source_type)
    return None


def rationale_required(
    criterion: Criterion,
    value: Any,
    verdict: Verdict | None,
    policy: RationalePolicy = "disagree",
) -> bool:
    """Whether a label with ``value`` needs a rationale.

    Under ``disagree``, a value that differs from the judge's verdict needs one (that is
    exactly the case an alignment learns from); with no verdict it is optional.
    An invalid ``value`` never "requires" anything: validation reports it instead.
    """
    if policy not in RATIONALE_POLICIES:
        raise ValidationError(
            f"Unknown rationale policy {policy!r}; use one of {RATIONALE_POLICIES}."
        )
    if policy == "always":
        return True
    if policy == "never" or verdict is None or value is None:
        return False
    try:
        canonical = normalize_value(criterion, value)
    except ValidationError:
        return False
    return canonical != verdict.value


def submit_label(
    trace_id: str,
    criterion: Criterion,
    reviewer: str,
    value: Any,
    rationale: str | None,
    *,
    verdict: Verdict | None = None,
    policy: RationalePolicy = "disagree",
) -> Label:
    """Save a reviewer's label after checking the session's rules.

    Raises:
        ValidationError: no value, a bad value, or a missing rationale the policy
            requires (the message says why).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValidationError("Pick a value first.")
    text = (rationale or "").strip()
    if not text and rationale_required(criterion, value, verdict, policy):
        if policy == "always":
            raise ValidationError("A rationale is required for every label: say why.")
        raise ValidationError(
            "Your value disagrees with the judge's verdict: write a rationale saying why "
            "(quote the phrase that decided it). The alignment learns from exactly these."
        )
    return set_label(trace_id, criterion, reviewer, value, text or None)


def own_label(detail: TraceDetail, criterion: str, reviewer: str) -> Label | None:
    """The reviewer's current label on the trace, or None."""
    return next(
        (lab for lab in detail.labels if lab.criterion == criterion and lab.reviewer == reviewer),
        None,
    )


@dataclass(frozen=True)
class OthersView:
    """What a reviewer may see of the other reviewers' labels on a trace."""

    labels: tuple[Label, ...]
    """The other reviewers' labels that may be shown (empty while hidden)."""
    hidden: int
    """How many labels are hidden by blind mode."""


def others_labels(
    detail: TraceDetail, criterion: str, reviewer: str, blind: bool = True
) -> OthersView:
    """The other reviewers' labels on a trace, as blind mode allows.

    In blind mode a reviewer sees nobody else's label until they have labeled the trace
    themselves, so their judgment is their own.
    """
    others = tuple(
        lab for lab in detail.labels if lab.criterion == criterion and lab.reviewer != reviewer
    )
    if blind and own_label(detail, criterion, reviewer) is None:
        return OthersView((), len(others))
    return OthersView(others, 0)


def value_options(criterion: Criterion) -> list[tuple[Any, str]]:
    """The values a reviewer picks from, as (canonical value, display text); [] for numeric."""
    if criterion.kind == "pass_fail":
        return [(True, criterion.positive_label), (False, criterion.negative_label)]
    if criterion.kind == "categorical":
        return [(o, o) for o in criterion.options]
    return []
