"""Id-level reads straight from MLflow's SQL tables, for lists that grow with the store.

MLflow's public APIs return whole entities: ``search_traces`` and
``batch_get_trace_infos`` build every trace info with its tags, metadata and assessments
(three lazy-loaded queries per trace), and review-queue items come back 1,000 per call.
That is right for a page of rows, and far too slow for what the Label page needs on every
submit at 100k traces: the ordered ids of a work list and the set of ids a reviewer has
already labeled. Those are single-column reads that MLflow's own tables answer in
milliseconds, through indexes MLflow already keeps:

- trace ids of an experiment in time order: ``index_trace_info_experiment_id_timestamp_ms``;
- a queue's item ids: ``index_review_queue_items_queue_id_status`` (queue id first), and
  one item's status by its primary key;
- valid feedback by name in an experiment: ``idx_assessments_exp_name_valid``.

The queries go through MLflow's own SQLAlchemy models and session (read-only), so they
follow its schema, and they run only when the tracking store *is* MLflow's SQL store
(sqlite, PostgreSQL, MySQL). Every function returns ``None`` otherwise (an MLflow server
over REST), and callers fall back to the public API. Nothing here ever writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.store import config

if TYPE_CHECKING:
    from sqlalchemy import Select

_HUMAN = "HUMAN"
_FEEDBACK = "feedback"
# SQLite's default limit on bound parameters is 999 (older builds); stay well under it.
_IN_CHUNK = 500


def _sql_store() -> Any | None:
    """MLflow's SqlAlchemyStore behind the current tracking URI, or None (e.g. REST)."""
    config.configure()
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracing.client import TracingClient

    store = TracingClient().store
    return store if isinstance(store, SqlAlchemyStore) else None


def available() -> bool:
    """Whether the fast path applies to the current store."""
    return _sql_store() is not None


def experiment_trace_ids(experiment_id: str) -> list[str] | None:
    """The experiment's trace ids, oldest first (ties by id), or None without a SQL store.

    The same order as :func:`core.labeling.traces.all_trace_ids` (``timestamp_ms ASC, request_id
    ASC``), which is what MLflow's search uses.
    """
    store = _sql_store()
    if store is None:
        return None
    from mlflow.store.tracking.dbmodels.models import SqlTraceInfo
    from sqlalchemy import select

    q: Select[Any] = (
        select(SqlTraceInfo.request_id)
        .where(SqlTraceInfo.experiment_id == int(experiment_id))
        .order_by(SqlTraceInfo.timestamp_ms, SqlTraceInfo.request_id)
    )
    with store.ManagedSessionMaker() as session:
        return list(session.execute(q).scalars())


def queue_item_ids(queue_id: str) -> list[str] | None:
    """A review queue's item ids, oldest attached first (ties by id), or None.

    The order :func:`core.labeling.queues.queue_items` gives.
    """
    store = _sql_store()
    if store is None:
        return None
    from mlflow.store.tracking.dbmodels.models import SqlReviewQueueItem
    from sqlalchemy import select

    q: Select[Any] = (
        select(SqlReviewQueueItem.item_id)
        .where(SqlReviewQueueItem.queue_id == queue_id)
        .order_by(SqlReviewQueueItem.creation_time_ms, SqlReviewQueueItem.item_id)
    )
    with store.ManagedSessionMaker() as session:
        return list(session.execute(q).scalars())


def queue_item_statuses(queue_id: str, item_ids: Iterable[str]) -> dict[str, str] | None:
    """MLflow's pooled status (``pending``/``complete``...) of these items of a review
    queue; an id missing from the answer is not in the queue. None without a SQL store.

    A primary-key lookup per chunk of ids, where ``list_review_queue_items`` builds every
    item of the queue (100 calls of 1,000 at 100k traces) to find one.
    """
    store = _sql_store()
    if store is None:
        return None
    from mlflow.store.tracking.dbmodels.models import SqlReviewQueueItem
    from sqlalchemy import select

    item = SqlReviewQueueItem
    out: dict[str, str] = {}
    with store.ManagedSessionMaker() as session:
        for chunk in _chunks(list(dict.fromkeys(item_ids))):
            q: Select[Any, Any] = select(item.item_id, item.status).where(
                item.queue_id == queue_id, item.item_id.in_(chunk or [])
            )
            out.update((str(i), str(status)) for i, status in session.execute(q))
    return out


def experiment_trace_stamp(experiment_id: str) -> tuple[int, int] | None:
    """(trace count, newest timestamp) of an experiment: changes when traces come or go.

    An index-only aggregate, cheap enough to ask every few seconds, so a cached id list
    can be reused until it is really stale. None without a SQL store.
    """
    store = _sql_store()
    if store is None:
        return None
    from mlflow.store.tracking.dbmodels.models import SqlTraceInfo
    from sqlalchemy import func, select

    q: Select[int, Any] = select(func.count(), func.max(SqlTraceInfo.timestamp_ms)).where(
        SqlTraceInfo.experiment_id == int(experiment_id)
    )
    with store.ManagedSessionMaker() as session:
        count, newest = session.execute(q).one()
    return int(count), int(newest or 0)


def queue_stamp(queue_id: str) -> tuple[int, int] | None:
    """(item count, newest attach time) of a review queue, or None without a SQL store."""
    store = _sql_store()
    if store is None:
        return None
    from mlflow.store.tracking.dbmodels.models import SqlReviewQueueItem
    from sqlalchemy import func, select

    q: Select[int, Any] = select(func.count(), func.max(SqlReviewQueueItem.creation_time_ms)).where(
        SqlReviewQueueItem.queue_id == queue_id
    )
    with store.ManagedSessionMaker() as session:
        count, newest = session.execute(q).one()
    return int(count), int(newest or 0)


def text_matching_trace_ids(experiment_id: str, text: str) -> list[str] | None:
    """Ids of the experiment's traces whose span contents contain ``text`` (any case).

    Oldest first, like every trace list. One scan of the experiment's spans (MLflow's
    ``trace.text ILIKE`` filter took 54 s on 10k traces here, and holds sqlite's read lock
    all that time, which blocks every writer, labels included). The needle is matched as
    stored: span contents are JSON, so it is JSON-escaped first (quotes, backslashes),
    and ``%``/``_`` in it are literal: the text is found exactly, where MLflow's filter
    language can only approximate quotes and wildcards. None without a SQL store.
    """
    store = _sql_store()
    if store is None:
        return None
    import json

    from mlflow.store.tracking.dbmodels.models import SqlSpan, SqlTraceInfo
    from sqlalchemy import or_, select

    def escaped(value: str) -> str:
        return json.dumps(value, ensure_ascii=False)[1:-1]

    def like(needle: str) -> str:
        return "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"

    # Span inputs and outputs sit in attributes whose values are JSON strings inside the
    # span's JSON, so a quote in the text is stored escaped twice; a span name, once.
    once = escaped(text)
    patterns = {like(once), like(escaped(once))}
    t = SqlTraceInfo
    # One pass over the spans, then the matches in list order. (Asked as a correlated
    # EXISTS per trace, sqlite walks the experiment's spans once per trace: quadratic.)
    matching: Select[Any] = (
        select(SqlSpan.trace_id)
        .where(
            SqlSpan.experiment_id == int(experiment_id),
            or_(*(SqlSpan.content.ilike(p, escape="\\") for p in patterns)),
        )
        .distinct()
    )
    q: Select[Any] = (
        select(t.request_id)
        .where(t.experiment_id == int(experiment_id), t.request_id.in_(matching))
        .order_by(t.timestamp_ms, t.request_id)
    )
    with store.ManagedSessionMaker() as session:
        return list(session.execute(q).scalars())


@dataclass(frozen=True)
class FeedbackKey:
    """Who gave valid feedback of which name on which trace (no value, no rationale)."""

    trace_id: str
    name: str
    source_type: str
    source_id: str | None


def valid_feedback_keys(
    experiment_id: str,
    names: Iterable[str] | None = None,
    *,
    source_type: str | None = None,
    source_id: str | None = None,
) -> list[FeedbackKey] | None:
    """Valid feedback in an experiment as (trace, name, source) keys, or None.

    Args:
        experiment_id: The experiment.
        names: Only feedback with these names (criteria); all names when None.
        source_type: Only this source type (e.g. ``"HUMAN"``).
        source_id: Only this source id (a reviewer, a judge version).
    """
    store = _sql_store()
    if store is None:
        return None
    from mlflow.store.tracking.dbmodels.models import SqlAssessments, SqlTraceInfo
    from sqlalchemy import select

    a = SqlAssessments
    cols = (a.trace_id, a.name, a.source_type, a.source_id)
    conds = [a.valid.is_(True), a.assessment_type == _FEEDBACK]
    if source_type is not None:
        conds.append(a.source_type == source_type)
    if source_id is not None:
        conds.append(a.source_id == source_id)
    name_list = None if names is None else list(dict.fromkeys(names))
    if name_list == []:
        return []
    out: list[FeedbackKey] = []
    with store.ManagedSessionMaker() as session:
        for chunk in _chunks(name_list):
            where = list(conds)
            if chunk is not None:
                where.append(a.name.in_(chunk))
            # Rows written by MLflow 3.x carry the experiment id (indexed with name and
            # valid); rows from before that column existed have NULL there and are found
            # through their trace instead.
            q = select(*cols).where(a.experiment_id == int(experiment_id), *where)
            legacy = (
                select(*cols)
                .join(SqlTraceInfo, SqlTraceInfo.request_id == a.trace_id)
                .where(
                    a.experiment_id.is_(None),
                    SqlTraceInfo.experiment_id == int(experiment_id),
                    *where,
                )
            )
            for stmt in (q, legacy):
                out.extend(FeedbackKey(*row) for row in session.execute(stmt))
    return out


def human_reviewers(experiment_id: str) -> list[str] | None:
    """Everyone with a current human label in the experiment, sorted; None without SQL."""
    keys = valid_feedback_keys(experiment_id, source_type=_HUMAN)
    return None if keys is None else sorted({k.source_id for k in keys if k.source_id})


def human_labeled_ids(experiment_id: str, criterion: str, reviewer: str) -> set[str] | None:
    """Trace ids on which ``reviewer`` has a current label for ``criterion``, or None."""
    keys = valid_feedback_keys(experiment_id, [criterion], source_type=_HUMAN, source_id=reviewer)
    return None if keys is None else {k.trace_id for k in keys}


def _chunks(items: list[str] | None) -> Iterable[list[str] | None]:
    if items is None:
        yield None
        return
    for i in range(0, len(items), _IN_CHUNK):
        yield items[i : i + _IN_CHUNK]
