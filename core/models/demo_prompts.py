"""Reading the prompts MLflow, dspy and gepa send, and writing answers in the format asked.

Formats recognised (checked against MLflow 3.17, dspy 3.4.1, gepa 0.1.4):

* **dspy ChatAdapter**: inputs as ``[[ ## name ## ]]`` sections in the last user message;
  output fields listed in the system message ("Your output fields are: 1. `result` (bool)");
  the answer is the same markers followed by ``[[ ## completed ## ]]``.
* **dspy JSONAdapter**: the same inputs; the user message ends "Respond with a JSON object";
  the answer is a JSON object of the output fields.
* **MLflow judges** (``make_judge``): system message with the instructions and
  "- result (bool): ..." field lines; user message ``outputs: <json>`` / ``inputs: <json>``;
  a ``response_format`` JSON schema in the request; the answer is a JSON object.
* Anything else: plain text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_SECTION = re.compile(r"^\[\[ ## (\w+) ## \]\]\s*$", re.MULTILINE)
_DSPY_FIELD = re.compile(r"^\d+\. `(\w+)` \((.+?)\)(?::|$)", re.MULTILINE)
_MLFLOW_FIELD = re.compile(r"^- (\w+) \((.+?)\): ", re.MULTILINE)
_MLFLOW_VAR = re.compile(r"^(inputs|outputs|expectations|conversation|response): ?", re.MULTILINE)
_TRAILER = re.compile(r"\n\s*\nRespond with (?:the corresponding output fields|a JSON object)")
_RESPONSE_FIELDS = ("outputs", "response", "output", "answer", "completion")
_RATIONALE_NAMES = ("rationale", "reason", "explanation", "justification", "reasoning", "note")
_VERDICT_NAMES = ("result", "value", "verdict", "label", "score", "rating", "answer")


def content_text(content: Any) -> str:
    """Return the text of a message's content (a string or a list of content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else str(content)


def _get(message: Any, key: str) -> Any:
    return message.get(key) if isinstance(message, dict) else getattr(message, key, None)


@dataclass
class Prompt:
    """A chat request split the way the demo model reads it."""

    system: str
    """All system messages, joined."""
    user: str
    """The last user message (the item being asked about)."""
    everything: str
    """Every message's text, joined (for detecting what kind of request this is)."""
    response_format: Any = None
    """The request's ``response_format``, if any."""

    @classmethod
    def from_messages(cls, messages: list[Any], response_format: Any = None) -> Prompt:
        """Build from OpenAI-style messages (dicts or litellm ``Message`` objects)."""
        systems, users, texts = [], [], []
        for m in messages or []:
            text = content_text(_get(m, "content"))
            texts.append(text)
            role = _get(m, "role")
            if role == "system":
                systems.append(text)
            elif role == "user":
                users.append(text)
        user = users[-1] if users else (texts[-1] if texts else "")
        return cls("\n\n".join(systems), user, "\n\n".join(texts), response_format)

    def sections(self) -> dict[str, str]:
        """The ``[[ ## name ## ]]`` sections of the last user message (dspy adapters)."""
        return sections(self.user)

    @property
    def style(self) -> str:
        """How to answer: ``markers`` (dspy chat), ``json``, or ``plain``."""
        if "[[ ## completed ## ]]" in self.user or (
            "[[ ## completed ## ]]" in self.system and "Respond with the corresponding" in self.user
        ):
            return "markers"
        lowered = self.everything.lower()
        if self.response_format or "json object" in lowered or "respond with json" in lowered:
            return "json"
        return "plain"


def sections(text: str) -> dict[str, str]:
    """Split text on dspy's ``[[ ## name ## ]]`` markers into ``{name: value}``."""
    found = list(_SECTION.finditer(text or ""))
    out = {}
    for i, m in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(text)
        value = text[m.end() : end]
        # dspy ends the last user message with its answer instructions, not part of a field.
        value = _TRAILER.split(value, maxsplit=1)[0]
        out[m.group(1)] = value.strip("\n")
    return out


def flatten(value: Any) -> str:
    """All the text in a JSON-like value: strings, numbers and keys' values, one per line."""
    if isinstance(value, dict):
        return "\n".join(flatten(v) for v in value.values())
    if isinstance(value, list | tuple):
        return "\n".join(flatten(v) for v in value)
    return "" if value is None else str(value)


def decode_text(raw: str) -> str:
    """Text of a value that may be JSON-encoded (dspy and MLflow serialise dicts and lists)."""
    stripped = (raw or "").strip()
    if stripped[:1] in '[{"':
        try:
            return flatten(json.JSONDecoder().raw_decode(stripped)[0])
        except ValueError:
            pass
    return stripped


def response_text(prompt: Prompt) -> tuple[str, str]:
    """Find the response being judged.

    Returns:
        ``(response_text, raw_span)`` where ``raw_span`` is the prompt text it came from (so
        callers can leave it out when looking for rules in the rest of the prompt).
    """
    secs = prompt.sections()
    for name in _RESPONSE_FIELDS:
        if name in secs:
            return decode_text(secs[name]), secs[name]
    found = list(_MLFLOW_VAR.finditer(prompt.user))
    for i, m in enumerate(found):
        if m.group(1) in ("outputs", "response"):
            end = found[i + 1].start() if i + 1 < len(found) else len(prompt.user)
            raw = prompt.user[m.end() : end]
            return decode_text(raw), raw
    label = re.search(r"(?im)^(?:response|output|answer)\s*:\s*", prompt.user)
    if label:
        raw = prompt.user[label.end() :]
        return decode_text(raw), raw
    return prompt.user, prompt.user


@dataclass
class OutputField:
    """One field the caller wants in the answer."""

    name: str
    kind: str = "str"
    """``bool``, ``int``, ``float``, ``str``, or ``category``."""
    options: list[str] = field(default_factory=list)
    """Allowed values of a ``category`` field."""

    @property
    def is_rationale(self) -> bool:
        return any(n in self.name.lower() for n in _RATIONALE_NAMES)


def _kind_from_type_text(text: str) -> tuple[str, list[str]]:
    t = text.strip()
    if t.startswith("Literal["):
        return "category", re.findall(r"""['"]([^'"]*)['"]""", t)
    if t in ("bool", "int", "float"):
        return t, []
    return "str", []


def _kind_from_schema(schema: dict) -> tuple[str, list[str]]:
    if "enum" in schema:
        return "category", [str(v) for v in schema["enum"]]
    kind = {"boolean": "bool", "integer": "int", "number": "float"}.get(
        str(schema.get("type")), "str"
    )
    return kind, []


def _schema_properties(response_format: Any) -> dict[str, dict] | None:
    schema = None
    if isinstance(response_format, dict):
        schema = (response_format.get("json_schema") or {}).get("schema")
    elif isinstance(response_format, type) and hasattr(response_format, "model_json_schema"):
        schema = response_format.model_json_schema()
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return None
    defs = schema.get("$defs", {})
    props = {}
    for name, prop in schema["properties"].items():
        ref = prop.get("$ref", "")
        if ref:
            prop = {**defs.get(ref.split("/")[-1], {}), **prop}
        if "anyOf" in prop:
            prop = next((p for p in prop["anyOf"] if p.get("type") != "null"), prop)
        props[name] = prop
    return props


def output_fields(prompt: Prompt) -> list[OutputField]:
    """The fields the caller asks for, in order (empty for a plain-text request)."""
    props = _schema_properties(prompt.response_format)
    if props:
        return [OutputField(n, *_kind_from_schema(p)) for n, p in props.items()]
    _head, sep, tail = prompt.system.partition("Your output fields are:")
    if sep:
        block = tail.split("All interactions will be structured", 1)[0]
        return [OutputField(n, *_kind_from_type_text(t)) for n, t in _DSPY_FIELD.findall(block)]
    m = re.search(r"JSON object with the following fields[^\n]*\n", prompt.everything)
    if m:
        block = prompt.everything[m.end() :]
        return [OutputField(n, *_kind_from_type_text(t)) for n, t in _MLFLOW_FIELD.findall(block)]
    return []


def verdict_field(fields: list[OutputField]) -> OutputField | None:
    """The field that carries the verdict: a verdict-like name, else the first non-rationale."""
    for name in _VERDICT_NAMES:
        for f in fields:
            if f.name.lower() == name:
                return f
    return next((f for f in fields if not f.is_rationale), None)


def render(fields: list[OutputField], values: dict[str, Any], style: str) -> str:
    """Write ``values`` for ``fields`` in the requested style (``json``/``markers``/``plain``)."""
    if style == "markers":
        parts = [f"[[ ## {f.name} ## ]]\n{_marker_value(values.get(f.name, ''))}" for f in fields]
        return "\n\n".join([*parts, "[[ ## completed ## ]]"])
    if style == "json":
        return json.dumps({f.name: values.get(f.name, "") for f in fields}, ensure_ascii=False)
    return "\n\n".join(str(values.get(f.name, "")) for f in fields)


def _marker_value(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
