"""Showing a trace to a person: chats as chat, text as text, JSON collapsed.

**Trace content is only ever passed to text elements** (``st.text``, ``st.json``), never
to ``st.markdown``, ``st.caption``, ``st.html`` or a label: HTML, scripts and markdown in
a trace show up literally and cannot run or restyle the page. Headings come from our own
strings, or from field names that passed ``Block.title_is_safe``. The one exception is the
span tree (:mod:`app.components.span_tree`): Streamlit cannot nest expanders, so it is
``st.html`` markup in which every text has been through ``html.escape``.
"""

from __future__ import annotations

import streamlit as st

from core.views.transcript import Block, Text, TraceView

_CHAT_NAME = {"user": "user", "assistant": "assistant"}
_CHAT_AVATAR = {
    "system": ":material/settings:",
    "tool": ":material/build:",
    "other": ":material/chat:",
}


def _title(block: Block) -> None:
    if not block.title:
        return
    if block.title_is_safe:
        st.caption(block.title)
    else:
        st.text(block.title)


def render_text(text: Text, key: str) -> None:
    """A text, cut short when long, with a toggle to show all of it."""
    if not text.truncated:
        st.text(text.full)
        return
    full = st.toggle(f"Show all ({text.hidden_chars:,} more characters)", key=key)
    st.text(text.full if full else text.preview + " ...")


def render_block(block: Block, key: str) -> None:
    """One block of a trace."""
    if block.kind == "chat":
        _title(block)
        for i, turn in enumerate(block.turns):
            name = _CHAT_NAME.get(turn.role, "assistant")
            with st.chat_message(name, avatar=_CHAT_AVATAR.get(turn.role)):
                if turn.role not in _CHAT_NAME:
                    # The trace's own role name, shown as text.
                    st.text(f"[{turn.original_role}]")
                render_text(turn.text, key=f"{key}_t{i}")
        return
    _title(block)
    if block.kind == "text" and block.text is not None:
        render_text(block.text, key=key)
    else:
        st.json(block.data, expanded=False)


def render_trace(view: TraceView, key: str) -> None:
    """The conversation (inputs), then the reply under review (outputs)."""
    st.markdown("**Conversation**")
    if not view.inputs:
        st.caption("No inputs recorded.")
    for i, block in enumerate(view.inputs):
        render_block(block, key=f"{key}_in{i}")
    st.markdown("**Reply under review**")
    if not view.outputs:
        st.caption("No outputs recorded.")
    with st.container(border=True):
        for i, block in enumerate(view.outputs):
            render_block(block, key=f"{key}_out{i}")
