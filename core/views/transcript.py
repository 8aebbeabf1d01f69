"""Turning a trace's inputs and outputs into blocks a non-engineer can read.

A block is a chat (a list of turns with a role and text), a piece of plain text, or a
JSON value. The app renders chats as chat bubbles, text as text and JSON as a collapsed
tree, and **always as text**: nothing here is markup, and the app never passes trace
content to a markdown or HTML element.

Long texts carry a short preview and the full text, so the page shows the preview and
offers the rest on demand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeGuard

#: Characters shown before a text is cut short (the rest is one click away).
DEFAULT_PREVIEW_CHARS = 1500
#: Roles the app shows with a dedicated avatar; anything else is shown as "other".
KNOWN_ROLES = ("user", "assistant", "system", "tool")
_ROLE_ALIASES = {
    "human": "user",
    "ai": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "function": "tool",
    "developer": "system",
}
# A field name safe to show as a heading (it comes from trace data, so anything else is
# shown as plain text by the app).
_SAFE_TITLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,59}$")

BlockKind = Literal["chat", "text", "json"]


@dataclass(frozen=True)
class Text:
    """A possibly long text with its preview."""

    full: str
    """The whole text."""
    preview: str
    """The first ``DEFAULT_PREVIEW_CHARS`` characters (or all of it when short)."""
    truncated: bool
    """Whether ``preview`` is shorter than ``full``."""

    @property
    def hidden_chars(self) -> int:
        """Characters left out of the preview."""
        return len(self.full) - len(self.preview)


@dataclass(frozen=True)
class ChatTurn:
    """One message of a conversation."""

    role: str
    """``user``, ``assistant``, ``system``, ``tool`` or ``other``."""
    original_role: str
    """The role as the trace spelled it (trace data: show it as text only)."""
    text: Text
    """The message content as text."""


@dataclass(frozen=True)
class Block:
    """One readable piece of a trace's inputs or outputs."""

    kind: BlockKind
    """``chat``, ``text`` or ``json``."""
    title: str
    """Field name (e.g. ``messages``, ``response``); empty for a bare value."""
    turns: tuple[ChatTurn, ...] = ()
    """chat: the conversation, oldest first."""
    text: Text | None = None
    """text: the value."""
    data: Any = None
    """json: the value (plain JSON types)."""
    title_is_safe: bool = field(default=True)
    """Whether ``title`` is a plain identifier-like name (else show it as text only)."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class TraceView:
    """A trace's inputs and outputs as display blocks."""

    inputs: tuple[Block, ...]
    outputs: tuple[Block, ...]


def make_text(value: str, limit: int = DEFAULT_PREVIEW_CHARS) -> Text:
    """Wrap ``value`` with a preview of at most ``limit`` characters (cut at a space if near)."""
    if len(value) <= limit:
        return Text(value, value, False)
    cut = value.rfind(" ", int(limit * 0.8), limit)
    preview = value[: cut if cut > 0 else limit].rstrip()
    return Text(value, preview, True)


def normalize_role(role: Any) -> str:
    """Map a message role onto one of ``KNOWN_ROLES`` or ``other``."""
    text = str(role or "").strip().lower()
    text = _ROLE_ALIASES.get(text, text)
    return text if text in KNOWN_ROLES else "other"


def _content_text(content: Any) -> str | None:
    """Text of a message's content (a string, or OpenAI/Anthropic-style parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, str | bytes):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                parts.append(_dumps(part))
        return "\n".join(parts)
    return None


def _is_message(item: Any) -> TypeGuard[Mapping[str, Any]]:
    return isinstance(item, Mapping) and "role" in item and "content" in item


def is_chat(value: Any) -> bool:
    """Whether ``value`` is a non-empty list of ``{"role", "content"}`` messages."""
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str | bytes)
        and len(value) > 0
        and all(_is_message(m) for m in value)
    )


def _chat_block(title: str, messages: Sequence[Mapping[str, Any]], limit: int) -> Block:
    turns = []
    for m in messages:
        text = _content_text(m.get("content"))
        if text is None:
            text = _dumps(m.get("content"))
        turns.append(
            ChatTurn(normalize_role(m.get("role")), str(m.get("role")), make_text(text, limit))
        )
    return Block("chat", title, turns=tuple(turns), title_is_safe=_title_safe(title))


def _title_safe(title: str) -> bool:
    return not title or bool(_SAFE_TITLE.match(title))


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def _jsonable(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return str(value)


def _openai_choices(value: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    """The messages of an OpenAI chat completion response, if ``value`` is one."""
    choices = value.get("choices")
    if not isinstance(choices, list) or not choices:
        return None
    msgs = [c.get("message") for c in choices if isinstance(c, Mapping)]
    messages = [m for m in msgs if _is_message(m)]
    return messages if messages and len(messages) == len(msgs) else None


def blocks_for(value: Any, title: str = "", limit: int = DEFAULT_PREVIEW_CHARS) -> list[Block]:
    """Split one value (a trace's inputs or outputs) into display blocks.

    Rules: a string is text; a list of ``{"role", "content"}`` messages is a chat (also
    under a key such as ``messages``, or as an OpenAI completion's ``choices``); a dict
    is split per key (its string fields as text); anything else is JSON.

    Args:
        value: The inputs or outputs, as MLflow returns them.
        title: Name to show for a bare value.
        limit: Preview length of long texts.
    """
    if value is None:
        return []
    if isinstance(value, str):
        return [
            Block("text", title, text=make_text(value, limit), title_is_safe=_title_safe(title))
        ]
    if is_chat(value):
        return [_chat_block(title or "conversation", value, limit)]
    if isinstance(value, Mapping):
        choices = _openai_choices(value)
        if choices is not None:
            return [_chat_block(title or "response", choices, limit)]
        blocks: list[Block] = []
        rest: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key)
            if isinstance(item, str):
                blocks.append(
                    Block(
                        "text", name, text=make_text(item, limit), title_is_safe=_title_safe(name)
                    )
                )
            elif is_chat(item):
                blocks.append(_chat_block(name, item, limit))
            elif isinstance(item, int | float | bool) or item is None:
                rest[name] = item
            else:
                blocks.append(
                    Block("json", name, data=_jsonable(item), title_is_safe=_title_safe(name))
                )
        if rest:
            # Small scalars (a temperature, a flag) read best together as one JSON object.
            blocks.append(Block("json", "other fields", data=_jsonable(rest)))
        return blocks
    if isinstance(value, int | float | bool):
        return [
            Block(
                "text",
                title,
                text=make_text(_dumps(value), limit),
                title_is_safe=_title_safe(title),
            )
        ]
    return [Block("json", title, data=_jsonable(value), title_is_safe=_title_safe(title))]


def trace_view(inputs: Any, outputs: Any, limit: int = DEFAULT_PREVIEW_CHARS) -> TraceView:
    """Display blocks for a trace's inputs and outputs (see :func:`blocks_for`)."""
    return TraceView(
        inputs=tuple(blocks_for(inputs, "inputs", limit)),
        outputs=tuple(blocks_for(outputs, "outputs", limit)),
    )
