"""The Traces page's table: one row per trace with its text, labels, reviewers and verdict.

A row shows the request and response as the words a person reads (never the
``{"response": ...}`` JSON MLflow previews a dict as), the full trace id, the criterion's
consolidated human label (:mod:`core.labeling.consolidation`, the one rule), who labeled
it, the judge's latest verdict and a link that opens the trace in the Label page.

**Fast on large stores.** On MLflow's SQL store the list is paged over id-level reads
(:mod:`core.store.index`): the experiment's ordered ids (or the text matches), the
(trace, reviewer) keys of the criterion's human labels for the label filters and for the
consolidation's seniority, then one read of the page's own trace infos (assessments, no
spans). Nothing is read per trace beyond the page. Elsewhere (an MLflow server over
REST) it falls back to :func:`core.labeling.traces.list_traces` and reads the page's
infos once more for their assessments.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

from core.errors import ValidationError
from core.labeling.consolidation import consolidate
from core.labeling.criteria import Criterion, display_value, normalize_value
from core.labeling.labels import Label, current_from_assessments
from core.labeling.traces import MAX_PAGE_SIZE, list_traces
from core.store import index as store_index
from core.views.formatting import preview_text, when_ms

#: The Label page's URL path, relative to the dashboard (so a base URL path still works).
LABEL_PATH = "label"
_HUMAN = "HUMAN"
_JUDGE = "LLM_JUDGE"
_ID_CHUNK = 100


@dataclass(frozen=True)
class TraceTableRow:
    """One row of the Traces table."""

    trace_id: str
    """The full MLflow trace id (never shortened)."""
    timestamp_ms: int
    request: str
    """The request as text."""
    response: str
    """The response as text."""
    label: str
    """The consolidated human label for the criterion, as it reads ("Pass"); "" if none."""
    reviewers: str
    """Who labeled the trace for the criterion, sorted: ``"alice, bob"``."""
    labels: str
    """Each reviewer's value: ``"alice: Pass, bob: Fail"``."""
    judge: str
    """The latest judge verdict for the criterion, as it reads; "" if none."""
    judge_source: str
    """Who gave that verdict (``support_quality/v2``)."""
    link: str
    """Relative URL that opens the trace in the Label page."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class TraceTable:
    """One page of the Traces table."""

    rows: list[TraceTableRow]
    next_page_token: str | None
    """Pass back for the next page; None on the last page."""
    total: int | None
    """Traces matching the filters, when known without reading them all."""

    def table(self) -> list[dict[str, Any]]:
        """The rows as the page's dataframe shows them (column order is display order)."""
        return [
            {
                "trace": r.trace_id,
                "open": r.link,
                "label": r.label,
                "reviewers": r.reviewers,
                "judge": r.judge,
                "request": r.request,
                "response": r.response,
                "time": when_ms(r.timestamp_ms, utc=True),
                "labels": r.labels,
                "judge by": r.judge_source,
            }
            for r in self.rows
        ]

    @property
    def trace_ids(self) -> list[str]:
        """The page's trace ids, in row order."""
        return [r.trace_id for r in self.rows]


def label_link(trace_id: str) -> str:
    """The relative URL of the Label page opened on ``trace_id`` (``label?trace=ID``)."""
    return f"{LABEL_PATH}?trace={quote(trace_id, safe='')}"


# ---- text ------------------------------------------------------------------------------


def _message_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            p if isinstance(p, str) else str(p.get("text", ""))
            for p in content
            if isinstance(p, str | Mapping)
        ]
        return "\n".join(p for p in parts if p)
    return "" if content is None else json.dumps(content, ensure_ascii=False, default=str)


def _is_messages(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, Mapping) and "role" in m and "content" in m for m in value)
    )


def value_text(value: Any) -> str:
    """A trace's inputs or outputs as plain text.

    A string is itself; chat messages read as their last message's text; an OpenAI
    completion as its first choice's message; a dict with one text field as that text, and
    with several as ``key: text`` lines; anything else as compact JSON.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if _is_messages(value):
        return _message_text(value[-1])
    if isinstance(value, Mapping):
        choices = value.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
            msg = choices[0].get("message")
            if isinstance(msg, Mapping) and "content" in msg:
                return _message_text(msg)
        for key in ("messages", "input", "output"):
            if _is_messages(value.get(key)):
                return _message_text(value[key][-1])
        if len(value) == 1:
            return value_text(next(iter(value.values())))
        lines = [f"{k}: {value_text(v)}" for k, v in value.items()]
        return "\n".join(lines)
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def preview_as_text(preview: str | None) -> str:
    """MLflow's request/response preview (JSON, maybe truncated) as plain text."""
    text = (preview or "").strip()
    if text.startswith(("{", "[", '"')):
        try:
            return value_text(json.loads(text))
        except ValueError:
            pass  # truncated at MLflow's preview length
    return preview_text(preview)


# ---- label and verdict -----------------------------------------------------------------


def latest_verdict(assessments: Iterable[Any], criterion: Criterion) -> tuple[Any, str] | None:
    """The latest valid LLM-judge verdict for ``criterion``: (canonical value, source id).

    The rule of :func:`core.labeling.session.judge_verdict` on raw assessments: feedback
    of the criterion's name from an ``LLM_JUDGE`` source, not invalidated, without an
    error and with a value the criterion accepts; the newest wins.
    """
    found = []
    for a in assessments or ():
        src = getattr(a, "source", None)
        if (
            getattr(a, "name", None) != criterion.name
            or src is None
            or str(src.source_type) != _JUDGE
            or getattr(a, "valid", None) is False
            or getattr(a, "error", None) is not None
            or not hasattr(a, "value")
        ):
            continue
        found.append(a)
    for a in sorted(found, key=lambda a: a.create_time_ms or 0, reverse=True):
        try:
            return normalize_value(criterion, a.value), a.source.source_id or _JUDGE
        except ValidationError:
            continue
    return None


#: The trace id the seniority placeholders share (no real trace has it).
_SENIORITY = "\x00seniority"


def consolidated(
    page_labels: Sequence[Label], others: Iterable[tuple[str, str]] = ()
) -> dict[str, Label]:
    """The consolidation rule on a page's labels, with seniority counted over the whole
    criterion.

    Args:
        page_labels: Current human labels of the page's traces (one criterion).
        others: (trace id, reviewer) of the criterion's other human labels in the
            experiment; they only count towards each reviewer's number of labels.

    Returns:
        trace id -> the winning label, for the page's traces.
    """
    page_ids = {lab.trace_id for lab in page_labels}
    crit = page_labels[0].criterion if page_labels else ""
    # One placeholder per label off the page, all on one pseudo-trace: each counts towards
    # its reviewer's total (which decides the rule's ties) and is voted on only there, so
    # the rule runs over the page's traces plus one group, not over every labeled trace.
    extra = [
        Label(_SENIORITY, crit, r, None, None, "", 0, 0, None)
        for t, r in others
        if t not in page_ids
    ]
    chosen = consolidate([*page_labels, *extra])
    return {t: lab for t, lab in chosen.items() if t in page_ids}


def build_rows(
    infos: Sequence[Any],
    criterion: Criterion | None,
    others: Iterable[tuple[str, str]] = (),
) -> list[TraceTableRow]:
    """Build the table rows of some trace infos (with assessments), in their order.

    Args:
        infos: MLflow trace infos.
        criterion: Whose labels and verdict to show; None shows none.
        others: (trace id, reviewer) of every human label of the criterion in the
            experiment (see :func:`consolidated`); the page's own may be included.
    """
    per_trace: dict[str, list[Label]] = {}
    if criterion is not None:
        for info in infos:
            per_trace[info.trace_id] = current_from_assessments(info.assessments, criterion.name)
    chosen = consolidated([lab for labs in per_trace.values() for lab in labs], others)
    rows = []
    for info in infos:
        labs = per_trace.get(info.trace_id, [])
        label = reviewers = labels = judge = judge_source = ""
        if criterion is not None:
            win = chosen.get(info.trace_id)
            label = display_value(criterion, win.value) if win else ""
            reviewers = ", ".join(sorted(lab.reviewer for lab in labs))
            labels = ", ".join(
                f"{lab.reviewer}: {display_value(criterion, lab.value)}"
                for lab in sorted(labs, key=lambda lab: lab.reviewer)
            )
            verdict = latest_verdict(info.assessments, criterion)
            if verdict is not None:
                judge, judge_source = display_value(criterion, verdict[0]), verdict[1]
        rows.append(
            TraceTableRow(
                trace_id=info.trace_id,
                timestamp_ms=int(info.request_time or 0),
                request=preview_as_text(info.request_preview),
                response=preview_as_text(info.response_preview),
                label=label,
                reviewers=reviewers,
                labels=labels,
                judge=judge,
                judge_source=judge_source,
                link=label_link(info.trace_id),
            )
        )
    return rows


# ---- paging ----------------------------------------------------------------------------


def label_keys_of(experiment_id: str, criterion: str) -> list[tuple[str, str]] | None:
    """(trace id, reviewer) of every current human label of ``criterion``: one indexed
    read, no values. None without a SQL store."""
    keys = store_index.valid_feedback_keys(experiment_id, [criterion], source_type=_HUMAN)
    return None if keys is None else [(k.trace_id, k.source_id or "") for k in keys]


def _infos(experiment_id: str, ids: list[str]) -> list[Any]:
    """The trace infos of ``ids`` (with assessments), in the order of ``ids``."""
    from mlflow.tracing.client import TracingClient

    from core.store import config

    config.configure()
    store = TracingClient().store
    found: dict[str, Any] = {}
    # ``request_id IN (...)`` measured faster than batch_get_trace_infos on sqlite (see
    # core.io.importer._stored_infos).
    for i in range(0, len(ids), _ID_CHUNK):
        chunk = ids[i : i + _ID_CHUNK]
        quoted = ", ".join(f"'{t}'" for t in chunk)
        infos, _ = store.search_traces(
            locations=[str(experiment_id)],
            filter_string=f"trace.request_id IN ({quoted})",
            max_results=len(chunk),
        )
        found.update((info.trace_id, info) for info in infos)
    return [found[t] for t in ids if t in found]


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(token.encode()))["o"])
    except Exception as exc:
        raise ValidationError("Invalid page token: start again from the first page.") from exc


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def trace_table(
    experiment_id: str,
    criterion: Criterion | None = None,
    *,
    labeled: bool | None = None,
    value: Any = None,
    reviewer: str | None = None,
    text: str | None = None,
    page_size: int = 25,
    page_token: str | None = None,
    label_keys: Sequence[tuple[str, str]] | None = None,
) -> TraceTable:
    """One page of the Traces table, oldest trace first.

    Args:
        experiment_id: The experiment.
        criterion: Whose label, reviewers and verdict columns to fill, and what the label
            filters refer to.
        labeled: True: only traces with a human label for ``criterion`` (by ``reviewer``
            if given); False: only traces without one; None: all.
        value: Only traces with a human label of this value (by ``reviewer`` if given).
        reviewer: Scope ``labeled`` and ``value`` to one reviewer.
        text: Only traces whose span contents contain this text (any case).
        page_size: Rows per page (1-1000).
        page_token: ``next_page_token`` of the previous page.
        label_keys: (trace id, reviewer) of every current human label of ``criterion``,
            when the caller has them (:func:`label_keys`; a page flip need not read them
            again).

    Raises:
        ValidationError: a label filter without a criterion, a bad value or page token.
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValidationError(f"page_size must be 1-{MAX_PAGE_SIZE}, got {page_size}.")
    if criterion is None and (labeled is not None or value is not None or reviewer is not None):
        raise ValidationError("Filtering by label, value or reviewer needs a criterion.")
    text = (text or "").strip() or None
    ids = (
        store_index.text_matching_trace_ids(experiment_id, text)
        if text
        else store_index.experiment_trace_ids(experiment_id)
    )
    others: list[tuple[str, str]] | None = []
    if criterion is not None:
        others = (
            list(label_keys)
            if label_keys is not None
            else label_keys_of(experiment_id, criterion.name)
        )
    if ids is None or others is None:
        return _fallback(
            experiment_id, criterion, labeled, value, reviewer, text, page_size, page_token
        )
    if labeled is not None or value is not None:
        scoped = {t for t, r in others if reviewer is None or r == reviewer}
        # A value filter needs a label first; its values are checked on the page's infos.
        want = True if value is not None else labeled
        ids = [t for t in ids if (t in scoped) == want]
    canonical = normalize_value(criterion, value) if value is not None and criterion else None
    offset = _offset(page_token)
    if canonical is None:
        page_ids = ids[offset : offset + page_size]
        page = build_rows(_infos(experiment_id, page_ids), criterion, others)
        end = offset + len(page_ids)
        return TraceTable(page, _token(end) if end < len(ids) else None, len(ids))
    # Values are not in the index: read ahead in chunks and keep the matching rows.
    assert criterion is not None
    matched: list[Any] = []
    pos = offset
    while pos < len(ids) and len(matched) < page_size:
        chunk = ids[pos : pos + max(page_size * 2, 100)]
        infos = {info.trace_id: info for info in _infos(experiment_id, chunk)}
        for tid in chunk:
            pos += 1
            info = infos.get(tid)
            if info is None:
                continue
            labs = current_from_assessments(info.assessments, criterion.name, reviewer)
            if any(lab.value == canonical for lab in labs):
                matched.append(info)
                if len(matched) == page_size:
                    break
    rows = build_rows(matched, criterion, others)
    return TraceTable(rows, _token(pos) if pos < len(ids) else None, None)


def _fallback(
    experiment_id: str,
    criterion: Criterion | None,
    labeled: bool | None,
    value: Any,
    reviewer: str | None,
    text: str | None,
    page_size: int,
    page_token: str | None,
) -> TraceTable:
    """Without a SQL store: the filtered page from list_traces, then the page's infos."""
    page = list_traces(
        experiment_id,
        criterion=criterion.name if criterion else None,
        labeled=labeled,
        value=value,
        reviewer=reviewer,
        text=text,
        page_size=page_size,
        page_token=page_token,
    )
    infos = _infos(experiment_id, [r.trace_id for r in page.rows])
    # Seniority over the page only: counting every reviewer's labels would mean reading
    # every labeled trace over REST.
    rows = build_rows(infos, criterion)
    return TraceTable(rows, page.next_page_token, page.total)
