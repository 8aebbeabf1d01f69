"""Work lists: the ordered trace ids a reviewer labels (a queue, or every trace), at any size.

A work list is read once and reused while it is unchanged: :func:`work_list_stamp` is an
index-only aggregate (count and newest time) that tells a caching caller when the ids
must be read again. On MLflow's SQL store ids come from :mod:`core.store.index` (one
single-column query); elsewhere (an MLflow server) from the public API, page by page.

The ``index`` (trace id -> position) is built once per list, so finding a trace, the next
one or the previous one costs O(1) however long the list is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from core.errors import ValidationError
from core.labeling.labels import current_labels
from core.labeling.queues import Queue, get_queue, queue_items
from core.labeling.traces import all_trace_ids
from core.store import index as store_index

#: Name of the work list that holds every trace of the experiment (no queue).
ALL_TRACES = ""


@dataclass(frozen=True)
class WorkList:
    """The traces of one work list, in working order."""

    experiment_id: str
    queue: str
    """Queue name, or ``ALL_TRACES`` (empty) for every trace of the experiment."""
    trace_ids: tuple[str, ...]
    index: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)
    """trace id -> position in ``trace_ids`` (read-only by convention: lists are shared)."""
    stamp: tuple | None = None
    """:func:`work_list_stamp` when the ids were read (None when unknown)."""

    def __len__(self) -> int:
        return len(self.trace_ids)


def resolve_queue(experiment_id: str, queue: str, criterion: str | None = None) -> Queue | None:
    """The queue called ``queue`` (None for ``ALL_TRACES``), checked to ask for ``criterion``.

    Raises:
        NotFoundError: no such queue.
        ValidationError: the queue does not ask for ``criterion``.
    """
    if not queue:
        return None
    q = get_queue(experiment_id, queue)
    if criterion is not None and criterion not in q.criteria:
        raise ValidationError(
            f"Queue {queue!r} asks for {', '.join(q.criteria)}, not {criterion!r}; "
            "pick one of those criteria."
        )
    return q


def work_list_stamp(experiment_id: str, queue: Queue | None) -> tuple | None:
    """A cheap fingerprint of the list's membership; None when it cannot be had cheaply."""
    if queue is None:
        return store_index.experiment_trace_stamp(experiment_id)
    return store_index.queue_stamp(queue.queue_id)


def load_work_list(experiment_id: str, queue: Queue | None) -> WorkList:
    """Read a work list: a queue's items (oldest attached first) or every trace (oldest first)."""
    stamp = work_list_stamp(experiment_id, queue)
    if queue is None:
        ids = store_index.experiment_trace_ids(experiment_id)
        if ids is None:
            ids = all_trace_ids(experiment_id)
    else:
        ids = store_index.queue_item_ids(queue.queue_id)
        if ids is None:
            ids = [i.trace_id for i in queue_items(queue)]
    ids_t = tuple(ids)
    index = {t: i for i, t in enumerate(ids_t)}
    return WorkList(str(experiment_id), queue.name if queue else ALL_TRACES, ids_t, index, stamp)


def labeled_ids(
    experiment_id: str, criterion: str, reviewer: str, within: Iterable[str] | None = None
) -> set[str]:
    """Trace ids on which ``reviewer`` has a current label for ``criterion``.

    Args:
        within: Only these traces (e.g. a work list's ids, or a ``WorkList.index``).
    """
    found = store_index.human_labeled_ids(experiment_id, criterion, reviewer)
    if found is None:
        ids = None if within is None else list(within)
        found = {
            lab.trace_id
            for lab in current_labels(
                experiment_id, criterion=criterion, reviewer=reviewer, trace_ids=ids
            )
        }
    if within is not None:
        keep = within if isinstance(within, Mapping | set | frozenset) else set(within)
        found = {t for t in found if t in keep}
    return found
