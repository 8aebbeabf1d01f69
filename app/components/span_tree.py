"""A trace's spans as a collapsible tree: nested HTML ``<details>``, every text escaped.

Streamlit cannot nest expanders, so the tree is one ``st.html`` block of nested
``<details>`` elements (the browser opens and closes them; no script, no round trip).
**Every piece of text in it goes through** :func:`html.escape` first, names, types and
field titles included: trace content is data, never markup. ``st.html`` also sanitizes
with DOMPurify and runs no script; the escaping does not rely on that.

The markup is built by :func:`tree_html`, a pure function (tested without a browser).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from core.views.spans import Document, Field, SpanNode, ToolCall, span_count, span_duration
from core.views.transcript import Text

_BOX = (
    "border-left:2px solid rgba(128,128,128,.35);margin:.15rem 0 .35rem .45rem;padding-left:.7rem"
)
_PRE = (
    "white-space:pre-wrap;word-break:break-word;margin:.1rem 0 .3rem 0;padding:.35rem .5rem;"
    "background:rgba(128,128,128,.08);border-radius:.3rem;font-size:.82rem"
)
_LABEL = "font-size:.75rem;opacity:.7;margin-top:.3rem"
_SUMMARY = "cursor:pointer;padding:.15rem 0"
_TYPE = "font-size:.7rem;padding:0 .35rem;border-radius:.6rem;background:rgba(128,128,128,.18)"
_ERROR = "color:#d33"


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _text(text: Text) -> str:
    """A text in a ``<pre>``; a long one shows its preview and the rest behind a toggle."""
    if not text.truncated:
        return f'<pre style="{_PRE}">{_e(text.full)}</pre>'
    rest = text.full[len(text.preview) :]
    return (
        f'<pre style="{_PRE}">{_e(text.preview)} ...</pre>'
        f'<details class="ab-more"><summary style="{_SUMMARY};font-size:.8rem">'
        f"Show all ({text.hidden_chars:,} more characters)</summary>"
        f'<pre style="{_PRE}">{_e(text.preview)}{_e(rest)}</pre></details>'
    )


def _label(text: str) -> str:
    return f'<div style="{_LABEL}">{_e(text)}</div>'


def _fields(heading: str, fields: Sequence[Field]) -> str:
    if not fields:
        return ""
    parts = [_label(heading)]
    for f in fields:
        if f.title:
            parts.append(_label(f.title))
        parts.append(_text(f.text))
    return "".join(parts)


def _tool_call(call: ToolCall, span_name: str) -> str:
    parts = []
    if call.result is None or call.name != span_name:
        # A TOOL span's own call is named by its summary already.
        what = "Tool call" if call.result is not None else "Requested tool call"
        parts.append(
            f'<div class="ab-tool" style="{_LABEL}">{_e(what)}: <b>{_e(call.name)}</b></div>'
        )
    if call.arguments is not None:
        parts += [_label("Arguments"), _text(call.arguments)]
    if call.result is not None:
        parts += [_label("Result"), _text(call.result)]
    return "".join(parts)


def _document(i: int, doc: Document) -> str:
    head = f"Document {i}" + (f" · {doc.source}" if doc.source else "")
    parts = [f'<div class="ab-doc" style="{_LABEL}">{_e(head)}</div>', _text(doc.text)]
    if doc.metadata is not None:
        parts += [_label("Metadata"), _text(doc.metadata)]
    return "".join(parts)


def _body(node: SpanNode, *, is_root: bool) -> str:
    parts: list[str] = []
    if node.is_error:
        message = f": {node.status_message}" if node.status_message else ""
        parts.append(f'<div style="{_ERROR}">{_e("Error" + message)}</div>')
    if is_root:
        parts.append(_label("Inputs and outputs: the conversation and reply shown above."))
    else:
        parts.append(_fields("Inputs", node.inputs))
        parts.append(_fields("Outputs", node.outputs))
    parts.extend(_tool_call(c, node.name) for c in node.tool_calls)
    parts.extend(_document(i, d) for i, d in enumerate(node.documents, start=1))
    if node.attributes:
        inner = "".join(_label(f.title) + _text(f.text) for f in node.attributes)
        parts.append(
            f'<details><summary style="{_SUMMARY};font-size:.8rem">'
            f"Attributes ({len(node.attributes)})</summary>{inner}</details>"
        )
    return "".join(parts)


def _summary(node: SpanNode) -> str:
    """``<b>name</b> [TYPE] · 120 ms`` (``· error`` when the span failed)."""
    tail = " · " + span_duration(node.duration_ms) + (" · error" if node.is_error else "")
    color = f";{_ERROR}" if node.is_error else ""
    return (
        f'<summary style="{_SUMMARY}{color}"><b>{_e(node.name)}</b> '
        f'<span style="{_TYPE}">{_e(node.span_type)}</span>{_e(tail)}</summary>'
    )


def tree_html(nodes: Sequence[SpanNode], *, open_roots: bool = True) -> str:
    """The tree as nested ``<details>`` markup; every text in it is escaped.

    Args:
        nodes: The roots (:func:`core.views.spans.span_tree`).
        open_roots: Whether a root starts open (showing its children, closed).
    """
    out: list[str] = ['<div class="ab-spans">']
    # Iterative, so a deep trace cannot exhaust Python's stack: ("open", node) writes a
    # node's head and body and schedules its children and its closing tag.
    stack: list[tuple[str, SpanNode | None]] = [("open", n) for n in reversed(nodes)]
    while stack:
        action, node = stack.pop()
        if action == "close" or node is None:
            out.append("</div></details>")
            continue
        is_root = node.depth == 0
        opened = " open" if is_root and open_roots else ""
        out.append(
            f'<details class="ab-span" data-span-type="{_e(node.span_type)}"'
            f' data-depth="{node.depth}"{opened}>'
            f"{_summary(node)}"
            f'<div style="{_BOX}">{_body(node, is_root=is_root)}'
        )
        stack.append(("close", None))
        stack.extend(("open", c) for c in reversed(node.children))
    out.append("</div>")
    return "".join(out)


def render_span_tree(nodes: Sequence[SpanNode]) -> None:
    """The spans under the conversation: a heading, then the collapsible tree."""
    import streamlit as st

    st.markdown("**Spans**")
    st.caption(
        f"{span_count(nodes)} spans. Open a step to see what it got and returned; tool "
        "calls and retrieved documents are shown as text."
    )
    st.html(tree_html(nodes))
