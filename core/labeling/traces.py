"""Reading traces: paged lists with label filters, one trace in full, counts.

Lists never load spans: MLflow's trace infos carry the request/response previews, the
tags and the assessments, which is all a list row needs. Filters MLflow can run in the
database (``trace.text ILIKE``, ``feedback.<name> IS NOT NULL``) go into its search
filter; what it cannot express (labels by *human* reviewers only, a given reviewer, a
label value) is checked on the trace infos it returns.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from mlflow.entities import Expectation, Feedback
from mlflow.exceptions import MlflowException
from mlflow.tracing.client import TracingClient

from core.errors import NotFoundError, ValidationError
from core.labeling.criteria import get_criterion, normalize_value
from core.labeling.labels import (
    Label,
    current_from_assessments,
    is_human_feedback,
    iter_trace_infos,
    label_filter,
)
from core.store import config
from core.store import index as store_index

#: Tag holding the ``id`` a trace had in its import file.
SOURCE_ID_TAG = "alignboard.source_id"
#: Tag marking every trace written by one import call (for clean-up after a failure).
IMPORT_BATCH_TAG = "alignboard.import_batch"
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class TraceRow:
    """One trace in a list."""

    trace_id: str
    """MLflow trace id."""
    timestamp_ms: int
    """Start time, epoch milliseconds."""
    request_preview: str
    """MLflow's truncated preview of the inputs."""
    response_preview: str
    """MLflow's truncated preview of the outputs."""
    labels: dict[str, Any]
    """Current human labels for the listed criterion: reviewer -> value."""
    tags: dict[str, str]
    """User tags (MLflow's internal ``mlflow.*`` tags left out)."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class TracePage:
    """One page of a trace list."""

    rows: list[TraceRow]
    """The traces on this page, oldest first."""
    next_page_token: str | None
    """Pass back to get the next page; None on the last page."""
    total: int | None = None
    """Traces in the experiment, when the list is unfiltered (otherwise None)."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "rows": [r.to_dict() for r in self.rows],
            "next_page_token": self.next_page_token,
            "total": self.total,
        }


@dataclass(frozen=True)
class SpanView:
    """One span of a trace, as the detail view shows it."""

    span_id: str
    name: str
    span_type: str | None
    inputs: Any
    outputs: Any
    start_ns: int
    end_ns: int | None
    parent_id: str | None
    status: str = "OK"
    """``OK``, ``ERROR`` or ``UNSET``."""
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    """The span's own attributes (MLflow's ``mlflow.*`` ones left out)."""


@dataclass(frozen=True)
class JudgeFeedback:
    """Feedback on a trace that did not come from a human (an LLM judge or code)."""

    name: str
    value: Any
    rationale: str | None
    source_type: str
    source_id: str | None
    assessment_id: str
    created_ms: int
    error: str | None = None


@dataclass(frozen=True)
class TraceDetail:
    """Everything about one trace."""

    trace_id: str
    experiment_id: str
    inputs: Any
    """The root span's inputs."""
    outputs: Any
    """The root span's outputs."""
    expectations: dict[str, Any]
    """Ground truth attached to the trace: name -> value."""
    spans: list[SpanView]
    """Every span, root first, then by start time."""
    tags: dict[str, str]
    """User tags."""
    labels: list[Label]
    """Current human labels, all criteria and reviewers."""
    judge_feedback: list[JudgeFeedback]
    """Valid non-human feedback (judges, code)."""
    request_time: int
    """Start time, epoch milliseconds."""
    state: str = "OK"
    source_id: str | None = field(default=None)
    """The ``id`` the trace had in its import file, if any."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def _client() -> TracingClient:
    config.configure()
    return TracingClient()


def user_tags(tags: dict[str, str]) -> dict[str, str]:
    """Tags a user set, plus the import id; without MLflow's and the importer's bookkeeping."""
    return {k: v for k, v in tags.items() if not k.startswith("mlflow.") and k != IMPORT_BATCH_TAG}


def _encode_token(mlflow_token: str | bytes | None, skip: int, chunk: int) -> str:
    if isinstance(mlflow_token, bytes):  # the sqlite store hands out bytes
        mlflow_token = mlflow_token.decode()
    raw = json.dumps({"t": mlflow_token, "s": skip, "c": chunk}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(token: str) -> tuple[str | None, int, int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return data["t"], int(data["s"]), int(data["c"])
    except Exception as exc:
        raise ValidationError("Invalid page token: start again from the first page.") from exc


def _text_filter(text: str) -> str:
    # The filter parser has no escape for quotes; '_' (any one character) still matches a
    # single quote, and a double quote is stored JSON-escaped, so '%' stands in for it.
    safe = text.replace("'", "_").replace('"', "%")
    return f"trace.text ILIKE '%{safe}%'"


def list_traces(
    experiment_id: str,
    *,
    criterion: str | None = None,
    labeled: bool | None = None,
    value: Any = None,
    reviewer: str | None = None,
    text: str | None = None,
    page_size: int = 50,
    page_token: str | None = None,
) -> TracePage:
    """List an experiment's traces, oldest first, one page at a time.

    Args:
        experiment_id: The experiment.
        criterion: Criterion whose labels fill ``TraceRow.labels`` and that the label
            filters refer to.
        labeled: True: only traces with a current human label for ``criterion`` (by
            ``reviewer`` if given); False: only traces without one; None: all.
        value: Only traces with a human label of this value (any spelling
            :func:`core.labeling.criteria.normalize_value` accepts), by ``reviewer`` if given.
        reviewer: Scope ``labeled``, ``value`` and ``TraceRow.labels`` to one reviewer.
        text: Only traces whose span contents contain this text (case-insensitive).
        page_size: Rows per page (1-1000).
        page_token: ``next_page_token`` of the previous page.

    Raises:
        ValidationError: a label filter without a criterion, a bad value or token.
        NotFoundError: unknown criterion.
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValidationError(f"page_size must be 1-{MAX_PAGE_SIZE}, got {page_size}.")
    if criterion is None and (labeled is not None or value is not None or reviewer is not None):
        raise ValidationError("Filtering by label, value or reviewer needs a criterion.")
    canonical = None
    if value is not None and criterion is not None:
        canonical = normalize_value(get_criterion(experiment_id, criterion), value)
    filters = []
    post_filter = labeled is not None or value is not None

    def keep(labels: dict[str, Any]) -> bool:
        if labeled is True and not labels:
            return False
        if labeled is False and labels:
            return False
        return canonical is None or any(v == canonical for v in labels.values())

    def row(info: Any) -> TraceRow | None:
        labels = {}
        if criterion is not None:
            labels = {
                lab.reviewer: lab.value
                for lab in current_from_assessments(info.assessments, criterion, reviewer)
            }
        if not keep(labels):
            return None
        return TraceRow(
            trace_id=info.trace_id,
            timestamp_ms=info.request_time,
            request_preview=info.request_preview or "",
            response_preview=info.response_preview or "",
            labels=labels,
            tags=user_tags(info.tags),
        )

    if text and text.strip():
        matched = store_index.text_matching_trace_ids(experiment_id, text.strip())
        if matched is not None:
            return _page_of_ids(experiment_id, matched, row, page_size, page_token)
        filters.append(_text_filter(text.strip()))
    if criterion is not None and (labeled is True or value is not None):
        # In the database: traces with any valid feedback of that name (judges' too);
        # the human-only check in ``keep`` narrows it down.
        filters.append(label_filter(criterion))

    if page_token:
        mlflow_token, skip, chunk = _decode_token(page_token)
    else:
        # Filtering after the fact may discard rows: read ahead in bigger chunks.
        mlflow_token, skip, chunk = None, 0, max(page_size * 2, 200) if post_filter else page_size
    store = _client().store
    rows: list[TraceRow] = []
    next_token = None
    while True:
        infos, next_mlflow = store.search_traces(
            locations=[str(experiment_id)],
            filter_string=" AND ".join(filters) or None,
            max_results=chunk,
            order_by=["timestamp_ms ASC", "request_id ASC"],
            page_token=mlflow_token,
        )
        full = False
        for idx in range(skip, len(infos)):
            r = row(infos[idx])
            if r is None:
                continue
            rows.append(r)
            if len(rows) == page_size:
                full = True
                if idx + 1 < len(infos):
                    next_token = _encode_token(mlflow_token, idx + 1, chunk)
                elif next_mlflow:
                    next_token = _encode_token(next_mlflow, 0, chunk)
                break
        if full or not next_mlflow or not infos:
            break
        mlflow_token, skip = next_mlflow, 0
    total = count_traces(experiment_id) if not filters and not post_filter else None
    return TracePage(rows=rows, next_page_token=next_token, total=total)


def _page_of_ids(
    experiment_id: str,
    ids: list[str],
    row: Callable[[Any], TraceRow | None],
    page_size: int,
    page_token: str | None,
) -> TracePage:
    """One page of rows over an ordered list of candidate ids (``row`` filters and builds)."""
    offset = 0
    if page_token:
        try:
            offset = int(json.loads(base64.urlsafe_b64decode(page_token.encode()))["i"])
        except Exception as exc:
            raise ValidationError("Invalid page token: start again from the first page.") from exc
    store = _client().store
    rows: list[TraceRow] = []
    pos = offset
    while pos < len(ids) and len(rows) < page_size:
        chunk = ids[pos : pos + max(page_size, 100)]
        infos = {
            i.trace_id: i
            for i in store.batch_get_trace_infos(chunk, experiment_ids=[str(experiment_id)])
        }
        for tid in chunk:
            pos += 1
            r = row(infos[tid]) if tid in infos else None
            if r is not None:
                rows.append(r)
                if len(rows) == page_size:
                    break
    more = pos < len(ids)
    token = base64.urlsafe_b64encode(json.dumps({"i": pos}).encode()).decode() if more else None
    return TracePage(rows=rows, next_page_token=token)


def count_traces(experiment_id: str) -> int:
    """Count an experiment's traces with one aggregate query (no rows are fetched)."""
    from mlflow.entities.trace_metrics import AggregationType, MetricAggregation, MetricViewType

    store = _client().store
    try:
        points = store.query_trace_metrics(
            [str(experiment_id)],
            MetricViewType.TRACES,
            "trace_count",
            [MetricAggregation(AggregationType.COUNT)],
        )
        return int(sum(p.values.get("COUNT", 0) for p in points))
    except (MlflowException, NotImplementedError):
        # Older servers lack trace metrics: count by paging through trace infos.
        return sum(1 for _ in iter_trace_infos(experiment_id))


def iter_trace_ids(experiment_id: str) -> Iterator[str]:
    """Yield the experiment's trace ids, oldest first."""
    for info in iter_trace_infos(experiment_id):
        yield info.trace_id


def all_trace_ids(experiment_id: str) -> list[str]:
    """Return the experiment's trace ids, oldest first (import order for imported traces)."""
    return list(iter_trace_ids(experiment_id))


def _span_type(span: Any) -> str | None:
    try:
        return span.span_type
    except Exception:
        return None


def _span_status(span: Any) -> dict[str, Any]:
    """A span's status and its own attributes, for :class:`SpanView`."""
    status = getattr(span, "status", None)
    code = getattr(getattr(status, "status_code", None), "value", None) or "OK"
    try:
        attributes = {
            k: v for k, v in (span.attributes or {}).items() if not str(k).startswith("mlflow.")
        }
    except Exception:
        attributes = {}
    return {
        "status": str(code),
        "status_message": str(getattr(status, "description", "") or ""),
        "attributes": attributes,
    }


def root_span(trace: Any) -> Any | None:
    """A trace's root span (the one without a parent; else its first span), or None."""
    spans = list(trace.data.spans)
    return next((s for s in spans if s.parent_id is None), spans[0] if spans else None)


def root_io(trace: Any) -> tuple[Any, Any]:
    """The root span's ``(inputs, outputs)``: what a judge sees of a trace by default."""
    root = root_span(trace)
    return (root.inputs, root.outputs) if root is not None else (None, None)


def expectations_of(info: Any) -> dict[str, Any]:
    """A trace's ground truth: name -> value of its valid expectations, the newest winning."""
    found = sorted(
        (a for a in info.assessments if isinstance(a, Expectation) and a.valid is not False),
        key=lambda a: a.create_time_ms or 0,
    )
    return {a.name: a.value for a in found}


def get_trace(trace_id: str) -> TraceDetail:
    """Return one trace with its spans, expectations, human labels and judge feedback.

    Raises:
        NotFoundError: no such trace.
    """
    try:
        trace = _client().get_trace(trace_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise NotFoundError(f"No trace with id {trace_id!r}.") from exc
        raise
    info = trace.info
    spans = list(trace.data.spans)
    root = root_span(trace)
    views = [
        SpanView(
            span_id=s.span_id,
            name=s.name,
            span_type=_span_type(s),
            inputs=s.inputs,
            outputs=s.outputs,
            start_ns=s.start_time_ns,
            end_ns=s.end_time_ns,
            parent_id=s.parent_id,
            **_span_status(s),
        )
        for s in spans
    ]
    expectations = expectations_of(info)
    judge = [
        JudgeFeedback(
            name=a.name,
            value=a.value,
            rationale=a.rationale,
            source_type=str(a.source.source_type) if a.source else "UNKNOWN",
            source_id=a.source.source_id if a.source else None,
            # A stored assessment always has both.
            assessment_id=a.assessment_id or "",
            created_ms=a.create_time_ms or 0,
            error=a.error.error_message if a.error else None,
        )
        for a in info.assessments
        if isinstance(a, Feedback) and not is_human_feedback(a) and a.valid is not False
    ]
    return TraceDetail(
        trace_id=info.trace_id,
        experiment_id=str(info.experiment_id),
        inputs=root.inputs if root else None,
        outputs=root.outputs if root else None,
        expectations=expectations,
        spans=views,
        tags=user_tags(info.tags),
        labels=current_from_assessments(info.assessments),
        judge_feedback=judge,
        request_time=info.request_time,
        state=str(info.state.value if hasattr(info.state, "value") else info.state),
        source_id=info.tags.get(SOURCE_ID_TAG),
    )
