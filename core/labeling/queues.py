"""Review queues: who labels which traces against which criteria.

A queue is an MLflow *custom* review queue (``mlflow.genai.review_queues``): a name,
the assigned reviewers, the criteria (label schemas) and the attached traces. MLflow's
own Reviews page and API see exactly what is written here.

MLflow keeps one shared-pool status per item ("done when any assigned user acts").
Agreement needs every assigned reviewer to label every item, so alignboard derives
each reviewer's progress from their labels, and marks MLflow's pooled status
``complete`` only once every assigned reviewer has labeled the item.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from mlflow.exceptions import MlflowException
from mlflow.genai import review_queues as rq

from core.errors import NotFoundError, ValidationError
from core.labeling.criteria import get_criterion, list_criteria
from core.labeling.labels import current_labels
from core.store import config
from core.store import index as store_index

#: MLflow caps the users of one queue at 10.
MAX_REVIEWERS = 10
_PAGE = 1000


@dataclass(frozen=True)
class Queue:
    """A review queue as alignboard sees it."""

    queue_id: str
    """MLflow's id of the queue."""
    experiment_id: str
    """The experiment the queue belongs to."""
    name: str
    """Unique within the experiment."""
    reviewers: tuple[str, ...]
    """Assigned reviewers; each one labels every item."""
    criteria: tuple[str, ...]
    """Names of the criteria (label schemas) reviewers answer for each item."""
    created_ms: int
    """Creation time, epoch milliseconds."""

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class QueueItem:
    """One trace attached to a queue."""

    trace_id: str
    """The attached trace."""
    status: str
    """MLflow's pooled status: pending, complete or declined."""
    attached_ms: int
    """When the trace was attached, epoch milliseconds."""
    completed_by: str | None
    """Who completed (or declined) it, when it is no longer pending."""


@dataclass(frozen=True)
class ReviewerProgress:
    """How far one reviewer is through a queue."""

    reviewer: str
    """The reviewer."""
    done: int
    """Items for which the reviewer has a current label on every queue criterion."""
    total: int
    """Items in the queue."""

    @property
    def pending(self) -> int:
        """Items still to label."""
        return self.total - self.done


def _to_queue(q: rq.ReviewQueue) -> Queue:
    names = {c.schema_id: c.name for c in list_criteria(q.experiment_id)}
    return Queue(
        queue_id=q.queue_id,
        experiment_id=q.experiment_id,
        name=q.name,
        reviewers=tuple(q.users),
        criteria=tuple(names.get(s, s) for s in q.schema_ids),
        created_ms=q.creation_time_ms,
    )


def _clean_reviewers(reviewers: Iterable[str]) -> list[str]:
    out: list[str] = []
    for r in reviewers:
        r = (r or "").strip()
        if not r:
            raise ValidationError("Reviewer names cannot be empty.")
        if r not in out:
            out.append(r)
    if len(out) > MAX_REVIEWERS:
        raise ValidationError(
            f"A queue takes at most {MAX_REVIEWERS} reviewers ({len(out)} given); "
            "split the work into several queues."
        )
    return out


def _require_reviewers(users: list[str]) -> list[str]:
    if not users:
        raise ValidationError(
            "A queue with no reviewers has nobody to label it: assign at least one reviewer."
        )
    return users


def create_queue(
    experiment_id: str, name: str, criteria: Iterable[str], reviewers: Iterable[str] = ()
) -> Queue:
    """Create a review queue.

    Args:
        experiment_id: The experiment whose traces the queue holds.
        name: Unique queue name within the experiment.
        criteria: Names of existing criteria the reviewers answer.
        reviewers: Reviewers assigned to label every item (at least one).

    Raises:
        ValidationError: empty name or criteria, no reviewers or too many, or the name
            is taken.
        NotFoundError: a criterion does not exist.
    """
    config.configure()
    name, schema_ids, users = _check_new_queue(experiment_id, name, criteria, reviewers)
    try:
        q = rq.create_review_queue(
            name,
            queue_type="custom",
            users=users,
            schema_ids=schema_ids,
            experiment_id=experiment_id,
        )
    except MlflowException as exc:
        if "already exists" in str(exc).lower() or "unique" in str(exc).lower():
            raise ValidationError(
                f"A queue named {name!r} already exists in this experiment; pick another name."
            ) from exc
        raise
    return _to_queue(q)


def _check_new_queue(
    experiment_id: str, name: str, criteria: Iterable[str], reviewers: Iterable[str]
) -> tuple[str, list[str], list[str]]:
    """Validate a new queue's definition: (name, schema ids, reviewers)."""
    name = (name or "").strip()
    if not name:
        raise ValidationError("A queue needs a name.")
    crit_names = list(dict.fromkeys(criteria))
    if not crit_names:
        raise ValidationError("A queue needs at least one criterion to label.")
    schema_ids = [str(get_criterion(experiment_id, c).schema_id) for c in crit_names]
    users = _require_reviewers(_clean_reviewers(reviewers))
    return name, schema_ids, users


FilterKind = Literal["all", "unlabeled", "text", "tag", "ids"]
FILTER_KINDS: tuple[str, ...] = get_args(FilterKind)
FILTER_TEXT = {
    "all": "every trace",
    "unlabeled": "traces without a human label for a criterion",
    "text": "traces whose content contains a text",
    "tag": "traces with a tag (key=value)",
    "ids": "a list of trace ids",
}
# Tag keys MLflow's search accepts in backticks, and values without quotes to escape.
_TAG_KEY_RE = re.compile(r"^[A-Za-z0-9_.\-/ ]{1,250}$")


@dataclass(frozen=True)
class TraceFilter:
    """Which traces a new queue starts with."""

    kind: FilterKind = "all"
    """all, unlabeled (for ``criterion``), text (``text``), tag (``tag``) or ids (``trace_ids``)."""
    criterion: str | None = None
    """``unlabeled``: the criterion."""
    text: str | None = None
    """``text``: words in the inputs or outputs; ``tag``: ``key=value``."""
    trace_ids: tuple[str, ...] = ()
    """``ids``: the traces, e.g. pasted from a spreadsheet."""

    def describe(self) -> str:
        """One line for messages: what the filter selects."""
        if self.kind == "unlabeled":
            return f"traces without a label for {self.criterion}"
        if self.kind == "text":
            return f"traces containing {self.text!r}"
        if self.kind == "tag":
            return f"traces tagged {self.text}"
        if self.kind == "ids":
            return f"{len(self.trace_ids)} listed trace(s)"
        return "every trace"


def parse_trace_ids(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """Trace ids from pasted text (one per line, or separated by commas or spaces)."""
    if text is None:
        return ()
    parts = re.split(r"[\s,;]+", text) if isinstance(text, str) else list(text)
    return tuple(dict.fromkeys(p.strip().strip("'\"") for p in parts if p and p.strip()))


def filter_trace_ids(experiment_id: str, flt: TraceFilter) -> list[str]:
    """The experiment's trace ids a filter selects, oldest first (listed ids: as listed).

    Raises:
        ValidationError: an unknown filter, a missing criterion, text or tag, a malformed
            tag, or listed ids that are not traces of this experiment (all named).
        NotFoundError: unknown criterion.
    """
    from core.labeling.labels import iter_trace_infos
    from core.labeling.traces import MAX_PAGE_SIZE, all_trace_ids, list_traces

    config.configure()
    if flt.kind not in FILTER_KINDS:
        raise ValidationError(f"Unknown filter {flt.kind!r}; use one of {', '.join(FILTER_KINDS)}.")
    if flt.kind == "all":
        return all_trace_ids(experiment_id)
    if flt.kind == "ids":
        ids = parse_trace_ids(flt.trace_ids)
        if not ids:
            raise ValidationError("Paste at least one trace id (one per line).")
        found = {i.trace_id for i in iter_trace_infos(experiment_id, trace_ids=ids)}
        missing = [t for t in ids if t not in found]
        if missing:
            shown = ", ".join(missing[:5]) + (
                f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            )
            raise ValidationError(
                f"{len(missing)} id(s) are not traces of this experiment: {shown}. "
                "Copy the ids from the Traces page (they start with tr-)."
            )
        return list(ids)
    if flt.kind == "tag":
        key, sep, value = (flt.text or "").partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ValidationError("Give the tag as key=value, e.g. topic=returns.")
        if not _TAG_KEY_RE.match(key) or "'" in value or "`" in key:
            raise ValidationError(
                f"Tag {key}={value} cannot be searched: use letters, digits, '.', '-', '_' "
                "in the key and no quotes in the value."
            )
        found_ids = [
            i.trace_id
            for i in iter_trace_infos(experiment_id, filter_string=f"tags.`{key}` = '{value}'")
        ]
        return found_ids
    kwargs: dict[str, Any] = {}
    if flt.kind == "unlabeled":
        if not flt.criterion:
            raise ValidationError("Pick the criterion whose unlabeled traces the queue gets.")
        get_criterion(experiment_id, flt.criterion)
        kwargs = {"criterion": flt.criterion, "labeled": False}
    else:
        if not (flt.text or "").strip():
            raise ValidationError("Type the text the traces must contain.")
        kwargs = {"text": (flt.text or "").strip()}
    out: list[str] = []
    token = None
    while True:
        page = list_traces(experiment_id, page_size=MAX_PAGE_SIZE, page_token=token, **kwargs)
        out.extend(r.trace_id for r in page.rows)
        token = page.next_page_token
        if not token:
            return out


def create_queue_from_filter(
    experiment_id: str,
    name: str,
    criteria: Iterable[str],
    reviewers: Iterable[str],
    flt: TraceFilter,
) -> tuple[Queue, int]:
    """Create a queue holding the traces ``flt`` selects: (the queue, traces attached).

    Everything is checked before anything is written: a bad definition or a filter that
    selects nothing creates no queue.

    Raises:
        ValidationError: as :func:`create_queue` and :func:`filter_trace_ids`, or the
            filter selects no trace.
        NotFoundError: a criterion does not exist.
    """
    crit_names = list(dict.fromkeys(criteria))
    _check_new_queue(experiment_id, name, crit_names, reviewers)
    if (name or "").strip() in {q.name for q in list_queues(experiment_id)}:
        raise ValidationError(
            f"A queue named {name.strip()!r} already exists in this experiment; pick another name."
        )
    ids = filter_trace_ids(experiment_id, flt)
    if not ids:
        raise ValidationError(
            f"The filter ({flt.describe()}) selects no trace; no queue was created."
        )
    queue = create_queue(experiment_id, name, crit_names, reviewers)
    return queue, add_traces(queue, ids)


def get_queue(experiment_id: str, name: str) -> Queue:
    """Return the queue called ``name`` in the experiment.

    Raises:
        NotFoundError: no such queue (the message lists the existing ones).
    """
    config.configure()
    try:
        return _to_queue(rq.get_review_queue(name=name, experiment_id=experiment_id))
    except MlflowException as exc:
        existing = ", ".join(q.name for q in list_queues(experiment_id)) or "none"
        raise NotFoundError(f"No queue named {name!r}. Existing queues: {existing}.") from exc


def list_queues(experiment_id: str, reviewer: str | None = None) -> list[Queue]:
    """Return the experiment's custom queues, oldest first; only ``reviewer``'s if given."""
    config.configure()
    out: list[rq.ReviewQueue] = []
    token = None
    while True:
        page = rq.list_review_queues(
            experiment_id=experiment_id, user=reviewer, max_results=100, page_token=token
        )
        out.extend(q for q in page if q.queue_type == rq.ReviewQueueType.CUSTOM)
        token = page.token
        if not token:
            break
    return [_to_queue(q) for q in sorted(out, key=lambda q: (q.creation_time_ms, q.name))]


def assign_reviewers(queue: Queue, reviewers: Iterable[str]) -> Queue:
    """Replace the queue's assigned reviewers; their labels so far are kept.

    MLflow's item statuses follow (:func:`sync_done`): an item complete before is
    pending again while a newly added reviewer has not labeled it.

    Raises:
        ValidationError: no reviewers left, an empty name, or more than the limit.
    """
    users = _require_reviewers(_clean_reviewers(reviewers))
    updated = _to_queue(rq.update_review_queue(queue.queue_id, users=users))
    if set(users) != set(queue.reviewers):
        sync_done(updated)
    return updated


def update_reviewers(queue: Queue, add: Iterable[str] = (), remove: Iterable[str] = ()) -> Queue:
    """Assign ``add`` and unassign ``remove`` (their labels are kept either way).

    Raises:
        ValidationError: removing someone not assigned, leaving the queue with no
            reviewers, nothing to change, or too many; nothing is written.
    """
    added = _clean_reviewers(add) if add else []
    removed = [r.strip() for r in remove if r and r.strip()]
    if not added and not removed:
        raise ValidationError("Name a reviewer to assign or to unassign.")
    strangers = [r for r in removed if r not in queue.reviewers]
    if strangers:
        raise ValidationError(
            f"{', '.join(strangers)} is not assigned to {queue.name!r} "
            f"(assigned: {', '.join(queue.reviewers) or 'nobody'})."
        )
    users = [r for r in queue.reviewers if r not in removed]
    users += [r for r in added if r not in users]
    return assign_reviewers(queue, users)


def add_traces(queue: Queue, trace_ids: Iterable[str], *, check: bool = False) -> int:
    """Attach traces to the queue (idempotent per trace).

    Args:
        queue: The queue.
        trace_ids: The traces.
        check: First make sure every id is a trace of the queue's experiment (ids a
            person pasted); otherwise the caller vouches for them.

    Returns:
        How many trace ids were attached or were already there.

    Raises:
        ValidationError: with ``check``, no id or ids that are not traces of the
            experiment (all named); nothing is written.
    """
    if check:
        trace_ids = filter_trace_ids(
            queue.experiment_id, TraceFilter("ids", trace_ids=tuple(trace_ids))
        )
    ids = list(dict.fromkeys(trace_ids))
    for start in range(0, len(ids), _PAGE):
        rq.add_items_to_review_queue(queue.queue_id, item_ids=ids[start : start + _PAGE])
    return len(ids)


def remove_traces(queue: Queue, trace_ids: Iterable[str]) -> int:
    """Detach traces from the queue (the traces and their labels stay in the experiment).

    Returns:
        How many traces were detached.

    Raises:
        ValidationError: no id given, or ids that are not in the queue (all named);
            nothing is written.
    """
    ids = list(dict.fromkeys(t.strip() for t in trace_ids if t and t.strip()))
    if not ids:
        raise ValidationError("Give at least one trace id to remove.")
    present = set(_item_ids(queue))
    missing = [t for t in ids if t not in present]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise ValidationError(
            f"{len(missing)} id(s) are not in queue {queue.name!r}: {shown}; nothing was removed."
        )
    for start in range(0, len(ids), _PAGE):
        rq.remove_items_from_review_queue(queue.queue_id, item_ids=ids[start : start + _PAGE])
    return len(ids)


def queue_items(queue: Queue, status: str | None = None) -> list[QueueItem]:
    """Return the queue's items in working order: oldest attached first.

    Items attached in one call share a timestamp; among them the order is by trace id,
    which for imported traces is a stable pseudo-random order (a useful default: it
    keeps reviewers from labeling in the order the data was produced).
    """
    items: list[rq.ReviewQueueItem] = []
    token = None
    while True:
        page = rq.list_review_queue_items(
            queue.queue_id, status=status, max_results=_PAGE, page_token=token
        )
        items.extend(page)
        token = page.token
        if not token:
            break
    items.sort(key=lambda i: (i.creation_time_ms, i.item_id))
    return [
        QueueItem(
            trace_id=i.item_id,
            status=str(i.status),
            attached_ms=i.creation_time_ms,
            completed_by=i.completed_by,
        )
        for i in items
    ]


def _item_ids(queue: Queue) -> list[str]:
    """The queue's trace ids in working order (one indexed query on a SQL store)."""
    ids = store_index.queue_item_ids(queue.queue_id)
    return ids if ids is not None else [i.trace_id for i in queue_items(queue)]


def _done_by(queue: Queue, reviewer: str, trace_ids: list[str]) -> set[str]:
    """Trace ids on which ``reviewer`` has a current label for every queue criterion."""
    wanted = set(trace_ids)
    done: set[str] | None = None
    for crit in queue.criteria:
        labeled = store_index.human_labeled_ids(queue.experiment_id, crit, reviewer)
        if labeled is None:
            labeled = {
                lab.trace_id
                for lab in current_labels(
                    queue.experiment_id, criterion=crit, reviewer=reviewer, trace_ids=trace_ids
                )
            }
        labeled &= wanted
        done = labeled if done is None else done & labeled
    return done or set()


def next_pending(queue: Queue, reviewer: str, after: str | None = None) -> str | None:
    """Return the next trace ``reviewer`` still has to label, or None when done.

    Args:
        queue: The queue.
        reviewer: Whose work list to look at.
        after: Start looking after this trace id (wrapping round), so "skip" moves on.
    """
    ids = _item_ids(queue)
    done = _done_by(queue, reviewer, ids)
    if after in ids:
        k = ids.index(after) + 1
        ids = ids[k:] + ids[:k]
    return next((t for t in ids if t not in done), None)


def reviewer_progress(queue: Queue) -> list[ReviewerProgress]:
    """Return each assigned reviewer's progress (done / total) through the queue."""
    ids = _item_ids(queue)
    return [
        ReviewerProgress(reviewer=r, done=len(_done_by(queue, r, ids)), total=len(ids))
        for r in queue.reviewers
    ]


def mark_done(queue: Queue, trace_id: str, reviewer: str) -> str:
    """Record that ``reviewer`` finished ``trace_id``; complete it in MLflow once all have.

    Returns:
        The item's pooled status after the call ("pending" or "complete").

    Raises:
        ValidationError: the reviewer has not labeled every queue criterion on the trace,
            or the trace is not in the queue.
    """
    # One item's status by its key and one trace's labels: this runs after every save, and
    # reading the whole queue (100 pages at 100k items) made each submit wait (B8).
    statuses = store_index.queue_item_statuses(queue.queue_id, [trace_id])
    if statuses is None:  # no SQL store (MLflow over REST)
        statuses = {i.trace_id: i.status for i in queue_items(queue)}
    if trace_id not in statuses:
        raise ValidationError(f"Trace {trace_id} is not in queue {queue.name!r}.")
    finished = _reviewers_done_on(queue, trace_id)
    if reviewer not in finished:
        raise ValidationError(
            f"{reviewer} has not labeled {', '.join(queue.criteria)} on {trace_id} yet; "
            "submit a label first."
        )
    if (set(queue.reviewers) | {reviewer}) <= finished:
        if statuses[trace_id] != "complete":
            rq.set_review_queue_item_status(
                queue.queue_id, item_id=trace_id, status="complete", completed_by=reviewer
            )
        return "complete"
    return "pending"


def _reviewers_done_on(queue: Queue, trace_id: str) -> set[str]:
    """Reviewers with a current label for every queue criterion on ``trace_id``."""
    done: set[str] | None = None
    for crit in queue.criteria:
        who = {
            lab.reviewer
            for lab in current_labels(queue.experiment_id, criterion=crit, trace_ids=[trace_id])
        }
        done = who if done is None else done & who
    return done or set()


def sync_done(queue: Queue) -> int:
    """Make MLflow's item statuses say what the labels say; returns the complete count.

    An item is ``complete`` once every assigned reviewer has a current label for every
    queue criterion on it, and ``pending`` again when someone assigned since has not
    (MLflow's Review tab then shows the queue's progress truthfully). Declined items
    are left as they are; a queue with no reviewers is left as it is.
    """
    items = queue_items(queue)
    if not queue.reviewers:
        return sum(1 for i in items if i.status == "complete")
    ids = [i.trace_id for i in items]
    everyone: set[str] | None = None
    for r in queue.reviewers:
        done = _done_by(queue, r, ids)
        everyone = done if everyone is None else everyone & done
    finished = everyone or set()
    complete = 0
    for item in items:
        if item.status == "declined":
            continue
        if item.trace_id in finished:
            complete += 1
            if item.status != "complete":
                rq.set_review_queue_item_status(
                    queue.queue_id,
                    item_id=item.trace_id,
                    status="complete",
                    completed_by=queue.reviewers[-1],
                )
        elif item.status == "complete":
            rq.set_review_queue_item_status(queue.queue_id, item_id=item.trace_id, status="pending")
    return complete
