"""A trace's spans as the tree the Label page shows: what each step got, did and returned.

Pure: built from :class:`core.labeling.traces.TraceDetail` (imported traces and traces an
application logged with MLflow's tracing API read the same), tested without a browser.

Every node carries its name, type, duration and status; its inputs and outputs as
readable text (:mod:`core.views.transcript` helpers: chats as ``[role] text`` turns,
objects of plain values as ``key: value`` lines, anything else as indented JSON), each cut
to a preview with the rest on demand; the tool calls it holds (an LLM span's requested
``tool_calls``, a TOOL span's arguments and result); and the documents a RETRIEVER span
returned (each document's text and source). All of it is trace data: the app shows it
as text only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from core.labeling.traces import SpanView, TraceDetail
from core.views.transcript import (
    DEFAULT_PREVIEW_CHARS,
    Block,
    Text,
    blocks_for,
    is_chat,
    make_text,
)

#: Metadata keys that name where a retrieved document came from, best first.
SOURCE_KEYS = ("doc_uri", "source", "url", "uri", "path", "title", "id", "chunk_id")
#: Keys holding a document's text.
_DOC_TEXT_KEYS = ("page_content", "content", "text")


@dataclass(frozen=True)
class Field:
    """One readable piece of a span's inputs or outputs."""

    title: str
    """Field name (trace data: show as text), empty for a bare value."""
    text: Text


@dataclass(frozen=True)
class ToolCall:
    """A tool call: requested by an LLM span, or made by a TOOL span."""

    name: str
    arguments: Text | None
    """The arguments, readable (``key: value`` lines when they are plain values)."""
    result: Text | None = None
    """What the tool returned (TOOL spans); None for a call an LLM only requested."""
    call_id: str | None = None


@dataclass(frozen=True)
class Document:
    """One document a RETRIEVER span returned."""

    text: Text
    source: str | None
    """Where it came from (``metadata.doc_uri``, ``source``, ``url``, ... or its id)."""
    metadata: Text | None = None
    """The rest of its metadata, readable."""


@dataclass(frozen=True)
class SpanNode:
    """One span in the tree."""

    span_id: str
    name: str
    span_type: str
    """MLflow span type (``LLM``, ``TOOL``, ...); ``UNKNOWN`` when the span has none."""
    depth: int
    """0 for a root."""
    start_ms: float
    """Milliseconds after the trace started."""
    duration_ms: float | None
    """None when the span never ended."""
    status: str
    """``OK``, ``ERROR`` or ``UNSET``."""
    status_message: str
    inputs: tuple[Field, ...]
    outputs: tuple[Field, ...]
    tool_calls: tuple[ToolCall, ...]
    documents: tuple[Document, ...]
    attributes: tuple[Field, ...]
    """The span's own attributes (not MLflow's), readable."""
    children: tuple[SpanNode, ...]

    @property
    def is_error(self) -> bool:
        """Whether the span failed."""
        return self.status == "ERROR"

    def walk(self) -> Iterator[SpanNode]:
        """This node and its descendants, parents first (the order the page lists them)."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def readable(value: Any) -> str:
    """A value as text a person reads.

    A string is itself; an object of plain values is ``key: value`` lines; anything else
    is indented JSON.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and value and all(_plain(v) for v in value.values()):
        return "\n".join(f"{k}: {_scalar(v)}" for k, v in value.items())
    try:
        return json.dumps(value, ensure_ascii=False, indent=2, default=str)
    except (TypeError, ValueError):
        return str(value)


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def span_duration(ms: float | None) -> str:
    """A span's duration: ``"< 1 ms"``, ``"120 ms"``, ``"1.84 s"``; ``"running"`` if unended."""
    if ms is None:
        return "running"
    if ms < 1:
        return "< 1 ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.2f} s"


def _block_text(block: Block) -> str:
    if block.kind == "chat":
        return "\n\n".join(f"[{t.original_role}] {t.text.full}" for t in block.turns)
    if block.kind == "text" and block.text is not None:
        return block.text.full
    return readable(block.data)


def _message_with_calls(message: Any) -> Any:
    """A chat message whose tool calls are written into its text (``-> get_tracking(...)``)."""
    if not isinstance(message, Mapping) or not isinstance(message.get("tool_calls"), list):
        return message
    calls = [c for c in (_call(raw, DEFAULT_PREVIEW_CHARS) for raw in message["tool_calls"]) if c]
    if not calls:
        return message
    lines = [
        f"-> {c.name}({' '.join(c.arguments.full.splitlines()) if c.arguments else ''})"
        for c in calls
    ]
    content = message.get("content")
    text = content if isinstance(content, str) and content.strip() else ""
    return {**message, "content": "\n".join([text, *lines] if text else lines)}


def _calls_as_text(value: Any) -> Any:
    """``value`` with every chat message's tool calls readable (a chat, or one under a key)."""
    if is_chat(value):
        return [_message_with_calls(m) for m in value]
    if isinstance(value, Mapping):
        if isinstance(value.get("choices"), list):
            return {
                **value,
                "choices": [
                    {**c, "message": _message_with_calls(c.get("message"))}
                    if isinstance(c, Mapping)
                    else c
                    for c in value["choices"]
                ],
            }
        return {k: _calls_as_text(v) if is_chat(v) else v for k, v in value.items()}
    return value


def fields(value: Any, limit: int = DEFAULT_PREVIEW_CHARS) -> tuple[Field, ...]:
    """A span's inputs or outputs as readable fields (one per top-level key).

    Chat messages read as ``[role] text``; a message's tool calls as ``-> name(args)``.
    """
    if value is None:
        return ()
    value = _calls_as_text(value)
    if isinstance(value, Mapping) and value and all(_plain(v) for v in value.values()):
        # A few plain values read best together.
        return (Field("", make_text(readable(value), limit)),)
    return tuple(
        Field(b.title, make_text(_block_text(b), limit)) for b in blocks_for(value, "", limit)
    )


def _arguments(raw: Any, limit: int) -> Text | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        # OpenAI sends a call's arguments as a JSON string.
        try:
            raw = json.loads(raw)
        except ValueError:
            return make_text(raw, limit)
    return make_text(readable(raw), limit)


def _call(raw: Any, limit: int) -> ToolCall | None:
    if not isinstance(raw, Mapping):
        return None
    inner = raw.get("function")
    fn: Mapping[str, Any] = inner if isinstance(inner, Mapping) else raw
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        return None
    args = fn.get("arguments", fn.get("args", fn.get("input")))
    call_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    return ToolCall(name, _arguments(args, limit), None, call_id)


def tool_calls_requested(value: Any, limit: int = DEFAULT_PREVIEW_CHARS) -> list[ToolCall]:
    """The tool calls an LLM's output asks for.

    Understands an OpenAI chat completion (``choices[].message.tool_calls``), a message
    or a list of messages with ``tool_calls``, and Anthropic ``tool_use`` content parts.
    """
    out: list[ToolCall] = []
    stack: list[Any] = [value]
    seen = 0
    while stack and seen < 1000:  # a bound, since trace data can be anything
        seen += 1
        item = stack.pop()
        if isinstance(item, Sequence) and not isinstance(item, str | bytes):
            stack.extend(reversed(list(item)))
            continue
        if not isinstance(item, Mapping):
            continue
        if isinstance(item.get("choices"), list):
            stack.extend(
                reversed([c.get("message") for c in item["choices"] if isinstance(c, Mapping)])
            )
        if isinstance(item.get("message"), Mapping):
            stack.append(item["message"])
        calls = item.get("tool_calls")
        if isinstance(calls, list):
            out.extend(c for c in (_call(raw, limit) for raw in calls) if c is not None)
        content = item.get("content")
        if isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and part.get("type") == "tool_use":
                    call = _call(part, limit)
                    if call is not None:
                        out.append(call)
        if isinstance(item.get("messages"), list):
            stack.extend(reversed(item["messages"]))
    return out


def _source(doc: Mapping[str, Any], meta: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(source text, the metadata key it came from, None when top-level)."""
    for key in SOURCE_KEYS:
        value = meta.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value), key
    for key in SOURCE_KEYS:
        value = doc.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value), None
    return None, None


def documents(value: Any, limit: int = DEFAULT_PREVIEW_CHARS) -> list[Document]:
    """The documents a retriever returned: a list of ``{"page_content", "metadata"}``
    (MLflow's and LangChain's shape; ``content``/``text`` also work), bare or under a
    ``documents`` key. Empty when ``value`` is not that.
    """
    if isinstance(value, Mapping) and isinstance(value.get("documents"), list):
        value = value["documents"]
    if not isinstance(value, list) or not value:
        return []
    out = []
    for doc in value:
        if not isinstance(doc, Mapping):
            return []
        text = next((doc[k] for k in _DOC_TEXT_KEYS if isinstance(doc.get(k), str)), None)
        if text is None:
            return []
        raw_meta = doc.get("metadata")
        meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
        source, key = _source(doc, meta)
        rest = {k: v for k, v in meta.items() if k != key}
        out.append(
            Document(
                make_text(text, limit),
                source,
                make_text(readable(rest), limit) if rest else None,
            )
        )
    return out


def _node(span: SpanView, depth: int, t0: int, kids: tuple[SpanNode, ...], limit: int) -> SpanNode:
    span_type = (span.span_type or "UNKNOWN").upper()
    inputs, outputs = fields(span.inputs, limit), fields(span.outputs, limit)
    calls: list[ToolCall] = []
    docs: list[Document] = []
    if span_type == "TOOL":
        # A tool span is one call: its inputs are the arguments, its outputs the result.
        calls.append(
            ToolCall(
                span.name,
                None if span.inputs is None else make_text(readable(span.inputs), limit),
                None if span.outputs is None else make_text(readable(span.outputs), limit),
            )
        )
        inputs = outputs = ()
    else:
        if span_type in ("LLM", "CHAT_MODEL", "AGENT", "CHAIN", "UNKNOWN"):
            calls = tool_calls_requested(span.outputs, limit)
        docs = documents(span.outputs, limit)
        if docs:
            outputs = ()
    duration = None if span.end_ns is None else max(span.end_ns - span.start_ns, 0) / 1e6
    return SpanNode(
        span_id=span.span_id,
        name=span.name,
        span_type=span_type,
        depth=depth,
        start_ms=max(span.start_ns - t0, 0) / 1e6,
        duration_ms=duration,
        status=(span.status or "OK").upper(),
        status_message=span.status_message or "",
        inputs=inputs,
        outputs=outputs,
        tool_calls=tuple(calls),
        documents=tuple(docs),
        attributes=tuple(
            Field(str(k), make_text(readable(v), limit)) for k, v in span.attributes.items()
        ),
        children=kids,
    )


def span_tree(detail: TraceDetail, limit: int = DEFAULT_PREVIEW_CHARS) -> list[SpanNode]:
    """The trace's spans as a tree: its root(s), each with its children by start time.

    A span whose parent is not in the trace (a partial export) is shown as a root, so
    nothing a trace holds is hidden.
    """
    spans = list(detail.spans)
    if not spans:
        return []
    ids = {s.span_id for s in spans}
    kids: dict[str | None, list[SpanView]] = {}
    for s in spans:
        parent = s.parent_id if s.parent_id in ids and s.parent_id != s.span_id else None
        kids.setdefault(parent, []).append(s)
    for group in kids.values():
        group.sort(key=lambda s: s.start_ns)
    t0 = min(s.start_ns for s in spans)
    depth: dict[str, int] = {}
    order: list[SpanView] = []
    stack = [(s, 0) for s in reversed(kids.get(None, []))]
    while stack:
        s, d = stack.pop()
        if s.span_id in depth:
            continue  # a cycle in a malformed trace: show each span once
        depth[s.span_id] = d
        order.append(s)
        stack.extend((c, d + 1) for c in reversed(kids.get(s.span_id, [])))
    built: dict[str, SpanNode] = {}
    for s in reversed(order):  # children before their parents
        children = tuple(
            built[c.span_id]
            for c in kids.get(s.span_id, [])
            if c.span_id in built and depth.get(c.span_id) == depth[s.span_id] + 1
        )
        built[s.span_id] = _node(s, depth[s.span_id], t0, children, limit)
    return [built[s.span_id] for s in kids.get(None, []) if s.span_id in built]


def shows_tree(nodes: Sequence[SpanNode]) -> bool:
    """Whether a tree adds anything: more than one span (a single span is the conversation)."""
    return sum(1 for root in nodes for _ in root.walk()) > 1


def span_count(nodes: Sequence[SpanNode]) -> int:
    """Spans in the tree."""
    return sum(1 for root in nodes for _ in root.walk())


def summary(node: SpanNode) -> str:
    """One line naming a span: ``get_tracking · TOOL · 120 ms`` (``· error`` when it failed)."""
    parts = [node.name, node.span_type, span_duration(node.duration_ms)]
    if node.is_error:
        parts.append("error")
    return " · ".join(parts)
