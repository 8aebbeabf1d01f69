"""The reviewer's labeling session: a work list, a position in it, and the rules of a label.

A session is one reviewer working through one criterion, either in a review queue or
over every trace of the experiment. It knows the working order, which traces the
reviewer has labeled, where to go next and back, whether a rationale is required, and
which of the other reviewers' labels may be shown (blind mode). The rules themselves
(rationale policy, blind mode) are the lead's (:mod:`core.labeling.rules`); no rule
depends on the judge's verdict, so nothing before a save can reveal it.

Everything is plain data so the app can cache it and the CLI and tests can use it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import chain, islice
from typing import Any

from core.errors import ValidationError
from core.labeling.criteria import Criterion, normalize_value
from core.labeling.labels import Label, set_label
from core.labeling.queues import list_queues
from core.labeling.rules import RATIONALE_POLICIES as RATIONALE_POLICIES
from core.labeling.rules import RationalePolicy as RationalePolicy
from core.labeling.rules import check_policy
from core.labeling.traces import TraceDetail
from core.labeling.worklists import ALL_TRACES, WorkList, labeled_ids, load_work_list, resolve_queue

_log = logging.getLogger(__name__)


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
    flagged: frozenset[str] = field(default_factory=frozenset)
    """Traces the reviewer flagged (unsure, broken) for the criterion: not labeled, but
    skipped by :meth:`start` and :meth:`next_pending` (the lead looks at them)."""

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

    def _pending(self, trace_id: str) -> bool:
        return trace_id not in self.done and trace_id not in self.flagged

    def first_pending(self) -> str | None:
        """The first trace still to label (not flagged), or None when the list is done."""
        return next((t for t in self.trace_ids if self._pending(t)), None)

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

        ``current`` itself counts as handled (the caller has just labeled, skipped or
        flagged it); traces the reviewer flagged are skipped too.
        """
        pos = self.position(current)
        ids = self.trace_ids
        order = ids if pos is None else chain(islice(ids, pos + 1, None), islice(ids, 0, pos))
        return next((t for t in order if self._pending(t) and t != current), None)

    def with_done(self, trace_id: str) -> Session:
        """A copy with ``trace_id`` counted as labeled (after a successful submit)."""
        done = self.done | {trace_id} if self.position(trace_id) is not None else self.done
        return replace(self, done=done)

    def with_flagged(self, flagged: frozenset[str]) -> Session:
        """A copy whose flagged traces are ``flagged`` (restricted to the list lazily)."""
        return replace(self, flagged=flagged)


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


_MARKER: ThreadPoolExecutor | None = None
_MARKER_LOCK = threading.Lock()


def mark_done_later(queue: Any, trace_id: str, reviewer: str) -> Future[str | None]:
    """:func:`mark_done_quietly` on one background thread, in submit order.

    The queue item's status is bookkeeping for MLflow's own review UI: the reviewer's next
    trace need not wait for it (it reads every reviewer's labels on the item).

    Returns:
        A future of what :func:`mark_done_quietly` returns (None, or a message).
    """
    global _MARKER
    with _MARKER_LOCK:
        if _MARKER is None:
            _MARKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mark-done")
    return _MARKER.submit(mark_done_quietly, queue, trace_id, reviewer)


def flagged_ids(experiment_id: str, criterion: str, reviewer: str) -> frozenset[str]:
    """Traces ``reviewer`` flagged for ``criterion`` (what :attr:`Session.flagged` holds).

    One filtered search on the reviewer's own flag tag (only flagged traces come back),
    not a scan of every trace's tags.
    """
    from core.labeling.flags import flag_key
    from core.labeling.labels import iter_trace_infos

    if not reviewer:
        return frozenset()
    key = flag_key(criterion, reviewer)
    found = iter_trace_infos(experiment_id, filter_string=f"tag.`{key}` LIKE '%'")
    return frozenset(info.trace_id for info in found)


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


def disagreeing(
    labels: Iterable[Label], criterion: Criterion, reviewer: str, value: Any
) -> tuple[Label, ...]:
    """Other reviewers' current labels on ``criterion`` whose value differs from ``value``."""
    try:
        canonical = normalize_value(criterion, value)
    except ValidationError:
        return ()
    return tuple(
        lab
        for lab in labels
        if lab.criterion == criterion.name and lab.reviewer != reviewer and lab.value != canonical
    )


def rationale_required(policy: RationalePolicy, *, disagrees: bool = False) -> bool:
    """Whether a label needs a rationale under ``policy``.

    ``always``: every label; ``optional``: none; ``disagree_humans``: a label that
    ``disagrees`` with another reviewer's (known only after the save in blind mode, see
    :mod:`core.labeling.rules`). The judge's verdict plays no part: requiring a rationale
    when the value differs from it told a blind reviewer what the judge said.

    Raises:
        ValidationError: an unknown policy.
    """
    check_policy(policy)
    if policy == "always":
        return True
    if policy == "optional":
        return False
    return disagrees


@dataclass(frozen=True)
class Submitted:
    """What :func:`submit_label` saved, and whether the rules still ask for a rationale."""

    label: Label
    """The saved label."""
    disagrees_with: tuple[Label, ...]
    """Other reviewers' labels with a different value (shown once the label is saved)."""
    needs_rationale: bool
    """The label is saved, but the policy wants a rationale for it (``disagree_humans``
    and no rationale given): the page stays on the trace and asks for one."""


CHOOSE_A_VALUE = "Choose a value first"


def submit_label(
    trace_id: str,
    criterion: Criterion,
    reviewer: str,
    value: Any,
    rationale: str | None,
    *,
    policy: RationalePolicy = "disagree_humans",
    others: Iterable[Label] = (),
) -> Submitted:
    """Save a reviewer's label, checking the lead's rationale policy.

    Args:
        trace_id: The trace.
        criterion: The criterion.
        reviewer: Who labels.
        value: The value (validated by the criterion).
        rationale: Why (stripped; empty means none).
        policy: The rationale policy in force (``effective_rules(...).rationale_policy``).
        others: The trace's current labels (any reviewers, any criteria); under
            ``disagree_humans`` the saved value is compared with the other reviewers'.

    Returns:
        The saved label and whether a rationale is still wanted (see :class:`Submitted`).

    Raises:
        ValidationError: no value, a bad value, an unknown policy, or no rationale under
            ``always``; nothing is written.
    """
    check_policy(policy)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValidationError(f"{CHOOSE_A_VALUE}.")
    text = (rationale or "").strip()
    if not text and rationale_required(policy):
        raise ValidationError("A rationale is required for every label: say why.")
    label = set_label(trace_id, criterion, reviewer, value, text or None)
    against = disagreeing(others, criterion, reviewer, label.value)
    needs = not text and rationale_required(policy, disagrees=bool(against))
    return Submitted(label, against, needs)


def mark_done_quietly(queue: Any, trace_id: str, reviewer: str) -> str | None:
    """Tell the MLflow review queue ``reviewer`` finished ``trace_id``; never raises.

    The label is already saved when this runs, so a failure here (a queue changed
    meanwhile, the store unreachable) must not look like a lost label: it is logged and
    returned as a message for the page to show.

    Returns:
        None on success, else a short message.
    """
    from core.labeling.queues import mark_done

    try:
        mark_done(queue, trace_id, reviewer)
    except Exception as exc:  # any failure is reported: the label is already saved
        _log.warning("mark_done(%s, %s, %s) failed: %s", queue.name, trace_id, reviewer, exc)
        return f"Saved, but the review queue was not updated: {exc}"
    return None


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
