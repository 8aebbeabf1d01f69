"""The spans of an import record: the two shapes a file may use, and their validation.

A record may carry ``spans``, the trace's span tree, in either of two shapes:

* **nested**: one root span (an object, or an array holding exactly one) whose
  ``children`` are spans of the same form::

      {"name": "order_agent", "span_type": "AGENT", "inputs": {...}, "outputs": {...},
       "start_ms": 0, "duration_ms": 1840, "attributes": {"model": "..."},
       "children": [{"name": "get_tracking", "span_type": "TOOL", ...}]}

* **flat**: an array of spans that name their parent, as tracing backends export them::

      [{"span_id": "s1", "parent_id": null, "trace_id": "t-17", "name": "order_agent", ...},
       {"span_id": "s2", "parent_id": "s1", "name": "get_tracking", ...}]

Every span has a ``name``; ``span_type`` is one of MLflow's span types (:data:`SPAN_TYPES`,
any case; default ``UNKNOWN``, ``CHAIN`` for the root); ``inputs``/``outputs`` are any JSON;
``start_ms`` is milliseconds after the trace started (the record's ``timestamp``) and
``duration_ms`` its length, both optional: a span without a start begins where its
previous sibling ended (the first child where its parent starts), a span without a
duration lasts until its last child ends (0 ms for a leaf). ``status`` is ``OK`` (default)
or ``ERROR``, with an optional ``status_message``. ``attributes`` is an object of extra
span attributes (keys starting with ``mlflow.`` are MLflow's own and refused).

Validation reports every problem of a record (with the record's line): several roots,
spans whose parent is missing, cycles, duplicate span ids, a ``trace_id`` that is another
trace's, unknown fields, bad types and sizes. The result is the spans in pre-order (the
root first, each parent before its children), with every time resolved.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: MLflow's span types (``mlflow.entities.SpanType``); a test keeps the two equal.
SPAN_TYPES: tuple[str, ...] = (
    "LLM",
    "CHAIN",
    "AGENT",
    "TOOL",
    "CHAT_MODEL",
    "RETRIEVER",
    "PARSER",
    "EMBEDDING",
    "RERANKER",
    "MEMORY",
    "UNKNOWN",
    "WORKFLOW",
    "TASK",
    "GUARDRAIL",
    "EVALUATOR",
)
#: Fields a span may have (``span_id``, ``parent_id`` and ``trace_id`` only in the flat shape;
#: ``children`` only in the nested one).
SPAN_FIELDS = (
    "span_id",
    "parent_id",
    "trace_id",
    "name",
    "span_type",
    "inputs",
    "outputs",
    "start_ms",
    "duration_ms",
    "attributes",
    "status",
    "status_message",
    "children",
)
_FLAT_ONLY = ("span_id", "parent_id", "trace_id")
STATUSES = ("OK", "ERROR")
#: Most spans one trace may carry in a file.
MAX_SPANS_PER_RECORD = 1_000
#: Deepest nesting of a span tree (the root is depth 0).
MAX_SPAN_DEPTH = 64
#: Largest ``spans`` value of one record, as UTF-8 JSON.
MAX_SPANS_BYTES = 8 * 1024 * 1024
#: Largest inputs, outputs or attributes of one span, as UTF-8 JSON.
MAX_SPAN_FIELD_BYTES = 256 * 1024
MAX_SPAN_NAME_CHARS = 250
MAX_SPAN_ID_CHARS = 250
MAX_ATTRIBUTES = 100
MAX_STATUS_MESSAGE_CHARS = 4_000
#: Longest span start or duration accepted: a year, in milliseconds.
MAX_SPAN_MS = 366 * 24 * 3600 * 1000


@dataclass(frozen=True)
class ImportSpan:
    """One validated span of an import record, its times resolved."""

    key: str
    """How the file names it: its ``span_id`` (flat) or its path (``spans.children[1]``)."""
    parent: int | None
    """Index of its parent in the record's span list; None for the root."""
    name: str
    span_type: str
    """One of :data:`SPAN_TYPES`."""
    inputs: Any
    outputs: Any
    start_ns: int
    """Nanoseconds after the trace's start."""
    duration_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)
    status: str = "OK"
    """``OK`` or ``ERROR``."""
    status_message: str = ""
    has_inputs: bool = True
    """Whether the file gave ``inputs`` (a root without them takes the record's)."""
    has_outputs: bool = True
    """Whether the file gave ``outputs``."""


@dataclass
class _Raw:
    """A span as read, before times are resolved."""

    key: str
    obj: dict[str, Any]
    parent: int | None
    children: list[int] = field(default_factory=list)
    flat: bool = False

    @property
    def where(self) -> str:
        """How a problem names this span: ``span 's2'`` (flat) or ``span spans.children[0]``."""
        return f"span {self.key!r}" if self.flat else f"span {self.key}"


def _type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, int | float) else type(value).__name__
    )


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, default=str).encode("utf-8"))


def check_spans(
    add: Callable[[str], None], record_id: str | None, raw: Any
) -> list[ImportSpan] | None:
    """Validate a record's ``spans`` value; return its spans, root first, or None.

    Args:
        add: ``add(reason)``: records one problem (the caller knows the line).
        record_id: The record's ``id``, which a flat span's ``trace_id`` must match.
        raw: The ``spans`` value as parsed from JSON.

    Returns:
        The spans in pre-order (the root first), or None when anything was wrong (every
        problem has then been passed to ``add``).
    """
    problems: list[str] = []
    if isinstance(raw, dict):
        tops: list[Any] = [raw]
        flat = False
    elif isinstance(raw, list):
        if not raw:
            add("spans is an empty array; leave it out for a trace with one span")
            return None
        tops = raw
        flat = any(isinstance(s, dict) and ("span_id" in s or "parent_id" in s) for s in raw)
    else:
        add(f"spans must be an array of spans or one root span object, got {_type(raw)}")
        return None
    size = _json_size(raw)
    if size > MAX_SPANS_BYTES:
        add(f"spans are {size // 1024} KiB; the limit is {MAX_SPANS_BYTES // 1024} KiB per trace")
        return None
    seen: list[_Raw] = []
    if flat:
        spans = _read_flat(problems, record_id, tops, seen)
    else:
        spans = _read_nested(problems, tops, seen, single_object=isinstance(raw, dict))
    # Every span read is checked, even when the tree itself is bad: one pass fixes a file.
    for s in seen:
        _check_fields(problems, s)
    for p in problems:
        add(p)
    if problems or spans is None:
        return None
    return _resolve(spans)


def _label(key: str) -> str:
    return f"span {key}"


def _read_nested(
    problems: list[str], tops: list[Any], seen: list[_Raw], *, single_object: bool
) -> list[_Raw] | None:
    """Walk a nested tree (iteratively: a deep file must not exhaust Python's stack)."""
    several = len(tops) > 1
    if several:
        names = ", ".join(repr(t.get("name")) if isinstance(t, dict) else _type(t) for t in tops)
        problems.append(
            f"spans has {len(tops)} root spans ({names}); a trace has one root: "
            "nest the others under it as children"
        )
    out: list[_Raw] = []
    # (value, path, parent index, depth); pushed reversed to keep file order. Several
    # roots are all walked, so their own problems are reported too.
    stack: list[tuple[Any, str, int | None, int]] = [
        (tops[i], "spans" if single_object else f"spans[{i}]", None, 0)
        for i in reversed(range(len(tops)))
    ]
    while stack:
        obj, path, parent, depth = stack.pop()
        if not isinstance(obj, dict):
            problems.append(f"{_label(path)} must be an object, got {_type(obj)}")
            continue
        if len(out) >= MAX_SPANS_PER_RECORD:
            problems.append(
                f"more than {MAX_SPANS_PER_RECORD} spans; the limit is "
                f"{MAX_SPANS_PER_RECORD} per trace"
            )
            return None
        if depth > MAX_SPAN_DEPTH:
            problems.append(f"{_label(path)} is nested {depth} deep; the limit is {MAX_SPAN_DEPTH}")
            return None
        misplaced = [k for k in _FLAT_ONLY if k in obj]
        if misplaced:
            problems.append(
                f"{_label(path)} has {', '.join(misplaced)}: nested spans take their parent "
                "from where they sit; use either children (nested) or span_id/parent_id "
                "(flat), not both"
            )
        index = len(out)
        out.append(_Raw(path, obj, parent))
        seen.append(out[-1])
        if parent is not None:
            out[parent].children.append(index)
        children = obj.get("children")
        if children is None:
            continue
        if not isinstance(children, list):
            problems.append(f"{_label(path)}: children must be an array, got {_type(children)}")
            continue
        for i in reversed(range(len(children))):
            stack.append((children[i], f"{path}.children[{i}]", index, depth + 1))
    # The stack visits in pre-order already; children lists follow file order since
    # each child is appended to its parent when it is visited.
    return None if several else out


def _span_id(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text or None


def _read_flat(
    problems: list[str], record_id: str | None, items: list[Any], seen: list[_Raw]
) -> list[_Raw] | None:
    if len(items) > MAX_SPANS_PER_RECORD:
        problems.append(f"{len(items)} spans; the limit is {MAX_SPANS_PER_RECORD} per trace")
        return None
    by_id: dict[str, int] = {}
    rows: list[tuple[str, dict[str, Any], str | None]] = []
    trace_ids: dict[str, str] = {}
    ok = True
    for pos, obj in enumerate(items):
        where = f"spans[{pos}]"
        if not isinstance(obj, dict):
            problems.append(f"{_label(where)} must be an object, got {_type(obj)}")
            ok = False
            continue
        sid = _span_id(obj.get("span_id"))
        if sid is None:
            problems.append(
                f"{_label(where)} has no span_id (a non-empty string): in the flat shape "
                "every span names itself and its parent_id (null for the root)"
            )
            ok = False
            continue
        if len(sid) > MAX_SPAN_ID_CHARS:
            problems.append(
                f"{_label(where)}: span_id is longer than {MAX_SPAN_ID_CHARS} characters"
            )
            ok = False
            continue
        if sid in by_id:
            problems.append(
                f"duplicate span_id {sid!r} (spans[{by_id[sid]}] and {where}); "
                "span ids must be unique within a trace"
            )
            ok = False
            continue
        parent_raw = obj.get("parent_id")
        parent = None if parent_raw is None else _span_id(parent_raw)
        if parent_raw is not None and parent is None:
            problems.append(
                f"span {sid!r}: parent_id must be a span_id or null, got {_type(parent_raw)}"
            )
            ok = False
            continue
        if "children" in obj:
            problems.append(
                f"span {sid!r} has children: flat spans name their parent_id instead; use "
                "either children (nested) or span_id/parent_id (flat), not both"
            )
            ok = False
        tid = obj.get("trace_id")
        if tid is not None:
            if isinstance(tid, bool) or not isinstance(tid, str | int) or not str(tid).strip():
                problems.append(f"span {sid!r}: trace_id must be a string, got {_type(tid)}")
                ok = False
            else:
                trace_ids[sid] = str(tid).strip()
        by_id[sid] = len(rows)
        rows.append((sid, obj, parent))
        seen.append(_Raw(sid, obj, None, flat=True))
    ok = _check_trace_ids(problems, record_id, trace_ids, rows) and ok
    for sid, _obj, parent in rows:
        if parent is not None and parent not in by_id:
            problems.append(f"span {sid!r} names parent_id {parent!r}, which is not in this trace")
            ok = False
    roots = [sid for sid, _obj, parent in rows if parent is None]
    if not ok:
        if len(roots) > 1:
            problems.append(_several_roots(roots))
        return None
    cycles = _cycles(rows, by_id)
    for cycle in cycles:
        problems.append(
            "spans " + " -> ".join(repr(s) for s in [*cycle, cycle[0]]) + " form a cycle"
        )
    if len(roots) > 1:
        problems.append(_several_roots(roots))
    elif not roots and not cycles:
        problems.append("no root span: exactly one span needs parent_id null")
    if problems:
        return None
    children: dict[str, list[str]] = {sid: [] for sid, _o, _p in rows}
    for sid, _obj, parent in rows:
        if parent is not None:
            children[parent].append(sid)
    out: list[_Raw] = []
    index: dict[str, int] = {}
    stack: list[tuple[str, int | None]] = [(roots[0], None)]
    while stack:
        sid, parent_index = stack.pop()
        _, obj, _ = rows[by_id[sid]]
        index[sid] = len(out)
        out.append(_Raw(sid, obj, parent_index, flat=True))
        if parent_index is not None:
            out[parent_index].children.append(index[sid])
        stack.extend((c, index[sid]) for c in reversed(children[sid]))
    depth = _max_depth(out)
    if depth > MAX_SPAN_DEPTH:
        problems.append(f"spans are nested {depth} deep; the limit is {MAX_SPAN_DEPTH}")
        return None
    return out


def _several_roots(roots: list[str]) -> str:
    return (
        f"{len(roots)} root spans ({', '.join(repr(r) for r in roots)}); a trace has one "
        "root (parent_id null): give the others a parent"
    )


def _check_trace_ids(
    problems: list[str],
    record_id: str | None,
    trace_ids: dict[str, str],
    rows: list[tuple[str, dict[str, Any], str | None]],
) -> bool:
    """A flat span's trace_id must be this record's (its ``id``, else the root's)."""
    if not trace_ids:
        return True
    expected = record_id
    if expected is None:
        root = next((sid for sid, _o, parent in rows if parent is None), None)
        expected = trace_ids.get(root) if root is not None else None
    if expected is None:
        expected = next(iter(trace_ids.values()))
    ok = True
    for sid, tid in trace_ids.items():
        if tid != expected:
            whose = "the record's id" if record_id is not None else "its root span's trace_id"
            problems.append(
                f"span {sid!r} belongs to trace {tid!r}, not this one ({whose} is "
                f"{expected!r}); put each trace's spans in its own record"
            )
            ok = False
    return ok


def _cycles(
    rows: list[tuple[str, dict[str, Any], str | None]], by_id: dict[str, int]
) -> list[list[str]]:
    """Each cycle of parent links once, in parent order, starting at its first span in the file."""
    parent_of = {sid: parent for sid, _o, parent in rows}
    state: dict[str, int] = {}  # 1: on the current walk, 2: done
    cycles: list[list[str]] = []
    for start, _o, _p in rows:
        walk: list[str] = []
        node: str | None = start
        while node is not None and node in by_id and state.get(node) is None:
            state[node] = 1
            walk.append(node)
            node = parent_of[node]
        if node is not None and state.get(node) == 1:
            cycle = walk[walk.index(node) :]
            first = min(cycle, key=lambda s: by_id[s])
            at = cycle.index(first)
            cycles.append(cycle[at:] + cycle[:at])
        for n in walk:
            state[n] = 2
    return cycles


def _max_depth(spans: list[_Raw]) -> int:
    depth = [0] * len(spans)
    for i, s in enumerate(spans):  # pre-order: a parent's depth is known before its child's
        if s.parent is not None:
            depth[i] = depth[s.parent] + 1
    return max(depth, default=0)


def _ms(problems: list[str], where: str, name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        problems.append(f"{where}: {name} must be a number of milliseconds, got {_type(value)}")
    elif value < 0:
        problems.append(f"{where}: {name} must not be negative, got {value}")
    elif value > MAX_SPAN_MS:
        problems.append(f"{where}: {name} is {value} ms; the limit is a year ({MAX_SPAN_MS} ms)")


def _check_fields(problems: list[str], span: _Raw) -> None:
    obj, where = span.obj, span.where
    unknown = sorted(set(obj) - set(SPAN_FIELDS))
    if unknown:
        problems.append(f"{where}: unknown field(s) {unknown}; allowed: {', '.join(SPAN_FIELDS)}")
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{where} needs a name (a non-empty string)")
    elif len(name) > MAX_SPAN_NAME_CHARS:
        problems.append(f"{where}: name is longer than {MAX_SPAN_NAME_CHARS} characters")
    span_type = obj.get("span_type")
    if span_type is not None and (
        not isinstance(span_type, str) or span_type.strip().upper() not in SPAN_TYPES
    ):
        shown = repr(span_type) if isinstance(span_type, str) else _type(span_type)
        problems.append(
            f"{where}: span_type {shown} is not a span type; use one of {', '.join(SPAN_TYPES)}"
        )
    for key in ("inputs", "outputs", "attributes"):
        if key in obj:
            size = _json_size(obj[key])
            if size > MAX_SPAN_FIELD_BYTES:
                problems.append(
                    f"{where}: {key} is {size // 1024} KiB; the limit is "
                    f"{MAX_SPAN_FIELD_BYTES // 1024} KiB per span field"
                )
    attributes = obj.get("attributes")
    if attributes is not None:
        if not isinstance(attributes, dict):
            problems.append(f"{where}: attributes must be an object, got {_type(attributes)}")
        elif len(attributes) > MAX_ATTRIBUTES:
            problems.append(
                f"{where}: {len(attributes)} attributes; the limit is {MAX_ATTRIBUTES} per span"
            )
        else:
            reserved = sorted(k for k in attributes if str(k).startswith("mlflow."))
            if reserved:
                problems.append(
                    f"{where}: attribute(s) {reserved} are MLflow's own (keys starting with "
                    "mlflow.); rename them"
                )
    _ms(problems, where, "start_ms", obj.get("start_ms"))
    _ms(problems, where, "duration_ms", obj.get("duration_ms"))
    status = obj.get("status")
    if status is not None and (
        not isinstance(status, str) or status.strip().upper() not in STATUSES
    ):
        problems.append(f"{where}: status must be OK or ERROR, got {status!r}")
    message = obj.get("status_message")
    if message is not None and (
        not isinstance(message, str) or len(message) > MAX_STATUS_MESSAGE_CHARS
    ):
        problems.append(
            f"{where}: status_message must be a string of at most "
            f"{MAX_STATUS_MESSAGE_CHARS} characters"
        )


def _ns(ms: Any) -> int:
    return round(float(ms) * 1_000_000)


def _resolve(spans: list[_Raw]) -> list[ImportSpan]:
    """Give every span its start and duration (see the module docstring for the rules)."""
    start = [0] * len(spans)
    end = [0] * len(spans)

    # Iterative post-order over the tree: a span's end needs its children's, and a child's
    # default start needs its previous sibling's end, so starts are set on the way down.
    root = spans[0]
    start[0] = _ns(root.obj["start_ms"]) if root.obj.get("start_ms") is not None else 0
    stack: list[tuple[int, int]] = [(0, 0)]  # (span, next child position)
    cursor = [start[0]] * len(spans)  # where a span's next default-started child begins
    while stack:
        i, pos = stack[-1]
        kids = spans[i].children
        if pos < len(kids):
            stack[-1] = (i, pos + 1)
            c = kids[pos]
            given = spans[c].obj.get("start_ms")
            start[c] = _ns(given) if given is not None else cursor[i]
            cursor[c] = start[c]
            stack.append((c, 0))
            continue
        stack.pop()
        given = spans[i].obj.get("duration_ms")
        if given is not None:
            end[i] = start[i] + _ns(given)
        else:
            last = max((end[c] for c in kids), default=start[i])
            end[i] = max(last, start[i])
        parent = spans[i].parent
        if parent is not None:
            cursor[parent] = max(cursor[parent], end[i])
    out = []
    for i, s in enumerate(spans):
        obj = s.obj
        default_type = "CHAIN" if i == 0 else "UNKNOWN"
        out.append(
            ImportSpan(
                key=s.key,
                parent=s.parent,
                name=str(obj["name"]).strip(),
                span_type=str(obj.get("span_type") or default_type).strip().upper(),
                inputs=obj.get("inputs"),
                outputs=obj.get("outputs"),
                start_ns=start[i],
                duration_ns=end[i] - start[i],
                attributes=dict(obj.get("attributes") or {}),
                status=str(obj.get("status") or "OK").strip().upper(),
                status_message=str(obj.get("status_message") or ""),
                has_inputs="inputs" in obj,
                has_outputs="outputs" in obj,
            )
        )
    return out


def export_fields(trace: Any) -> dict[str, Any]:
    """What an export line adds for a trace so a re-import rebuilds it: its ``timestamp``
    (ISO-8601, UTC) and, for a trace of more than one span, its ``spans`` (flat shape).

    The root span's inputs and outputs are left out of ``spans``: they are the record's
    own ``inputs``/``outputs``. Only the span attributes that are not MLflow's are kept.

    Args:
        trace: An MLflow ``Trace`` read with its spans.
    """
    from datetime import UTC, datetime

    out: dict[str, Any] = {}
    request_ms = getattr(trace.info, "request_time", None)
    if isinstance(request_ms, int):
        when = datetime.fromtimestamp(request_ms / 1000, tz=UTC)
        out["timestamp"] = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    spans = list(trace.data.spans)
    if len(spans) < 2:
        return out
    t0 = min(s.start_time_ns for s in spans)
    rows = []
    for s in spans:
        row: dict[str, Any] = {"span_id": s.span_id, "parent_id": s.parent_id, "name": s.name}
        if s.span_type:
            row["span_type"] = str(s.span_type)
        if s.parent_id is not None:
            row["inputs"] = s.inputs
            row["outputs"] = s.outputs
        row["start_ms"] = (s.start_time_ns - t0) / 1e6
        if s.end_time_ns is not None:
            row["duration_ms"] = (s.end_time_ns - s.start_time_ns) / 1e6
        attributes = {
            k: v for k, v in (s.attributes or {}).items() if not str(k).startswith("mlflow.")
        }
        if attributes:
            row["attributes"] = attributes
        code = getattr(getattr(s.status, "status_code", None), "value", "OK")
        if code == "ERROR":
            row["status"] = "ERROR"
            if s.status.description:
                row["status_message"] = s.status.description
        rows.append(row)
    out["spans"] = rows
    return out
