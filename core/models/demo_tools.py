"""The demo model as a trace judge: it reads the spans through MLflow's tools.

A judge whose instructions use ``{{ trace }}`` is MLflow's agent-as-judge: MLflow sends
the request with ``tools`` (its judge tools: ``list_spans``, ``get_span``, ...), runs the
tool calls the model answers with on the trace, sends the results back as ``tool``
messages, and repeats until the model answers with text. The stand-in (not an LLM) plays
its part in a fixed number of rounds, so MLflow's loop always ends (three model calls,
far below ``MLFLOW_JUDGE_MAX_ITERATIONS``):

1. no tool call made yet: it calls ``list_spans`` (up to :data:`MAX_SPANS` spans);
2. after the listing: one ``get_span`` per listed span, in one answer;
3. after that (or whenever a tool it needs is missing): it judges.

**As a trace judge: reads the spans through MLflow's tools, then applies its rules to all
span text** (every span's inputs and outputs, tool outputs included); the base heuristic
(:func:`core.models.demo_rules.base_verdict`) judges the final response only (the
``outputs`` in the request when the instructions use ``{{ outputs }}``, else the root
span's outputs). :func:`plan_tool_calls` decides step 1 and 2, :func:`spans_seen` reads
what the tools returned; :func:`core.models.demo_judge.answer_trace_judge` judges.
Everything is deterministic: the tool call ids are numbered by round and position.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from core.models.demo_prompts import content_text, decode_text

#: Spans the stand-in reads at most per trace (one ``get_span`` call each).
MAX_SPANS = 50
#: Model calls the stand-in makes per trace judgement (list, get, judge).
TRACE_JUDGE_ROUNDS = 3

LIST_SPANS = "list_spans"
GET_SPAN = "get_span"


def _get(message: Any, key: str) -> Any:
    return message.get(key) if isinstance(message, dict) else getattr(message, key, None)


def _fn(call: Any) -> tuple[str, str]:
    fn = _get(call, "function") or {}
    return str(_get(fn, "name") or ""), str(_get(fn, "arguments") or "")


def tool_names(tools: Any) -> set[str]:
    """The function names a request's ``tools`` offer."""
    names = set()
    for tool in tools or []:
        name, _ = _fn(tool)
        if name:
            names.add(name)
    return names


def _tool_rounds(messages: list[Any]) -> int:
    return sum(
        1 for m in messages or [] if _get(m, "role") == "assistant" and _get(m, "tool_calls")
    )


def tool_results(messages: list[Any]) -> list[tuple[str, str]]:
    """``(tool name, content)`` of every tool message, in order (names from the
    assistant's tool calls when the message does not carry one)."""
    names: dict[str, str] = {}
    out: list[tuple[str, str]] = []
    for m in messages or []:
        role = _get(m, "role")
        if role == "assistant":
            for call in _get(m, "tool_calls") or []:
                names[str(_get(call, "id"))] = _fn(call)[0]
        elif role == "tool":
            name = _get(m, "name") or names.get(str(_get(m, "tool_call_id")), "")
            out.append((str(name), content_text(_get(m, "content"))))
    return out


def has_tool_results(messages: list[Any]) -> bool:
    """Whether the conversation holds results of MLflow's judge tools (a trace judge)."""
    return bool(tool_results(messages))


def _call(round_no: int, k: int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"call_demo_{round_no}_{k}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments, sort_keys=True)},
    }


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _listed(messages: list[Any]) -> list[dict[str, Any]]:
    spans: list[dict[str, Any]] = []
    for name, content in tool_results(messages):
        data = _json(content)
        if name == LIST_SPANS and isinstance(data, dict):
            spans += [s for s in data.get("spans") or [] if isinstance(s, dict)]
    return spans


def plan_tool_calls(messages: list[Any], tools: Any) -> list[dict[str, Any]] | None:
    """The tool calls the stand-in answers with, or None when it is ready to judge.

    Args:
        messages: The conversation so far (MLflow's system and user messages, then the
            earlier tool calls and their results).
        tools: The request's ``tools``.

    Returns:
        OpenAI-style tool calls (``id``, ``type``, ``function.name``/``arguments``).
    """
    names = tool_names(tools)
    done = _tool_rounds(messages)
    if done == 0 and LIST_SPANS in names:
        return [_call(1, 0, LIST_SPANS, {"max_results": MAX_SPANS})]
    if done == 1 and GET_SPAN in names:
        ids = [str(s["span_id"]) for s in _listed(messages) if s.get("span_id")][:MAX_SPANS]
        if ids:
            return [_call(2, k, GET_SPAN, {"span_id": sid}) for k, sid in enumerate(ids)]
    return None


@dataclass(frozen=True)
class SpanSeen:
    """One span as the stand-in read it through the tools."""

    span_id: str
    name: str
    span_type: str
    is_root: bool
    inputs: str
    """The span's inputs as plain text."""
    outputs: str
    """The span's outputs as plain text."""

    @property
    def text(self) -> str:
        """Everything the span said (inputs and outputs)."""
        return f"{self.inputs}\n{self.outputs}"


def _attribute_text(attributes: dict[str, Any], key: str) -> str:
    raw = attributes.get(key)
    if raw is None:
        return ""
    return decode_text(raw if isinstance(raw, str) else json.dumps(raw, default=str))


def spans_seen(messages: list[Any]) -> list[SpanSeen]:
    """The spans ``get_span`` returned in this conversation, in the order asked.

    A span whose content did not parse (paged or cut) keeps its raw content as outputs,
    so its text still counts.
    """
    listed = {str(s.get("span_id")): s for s in _listed(messages)}
    out: list[SpanSeen] = []
    for name, content in tool_results(messages):
        if name != GET_SPAN:
            continue
        result = _json(content)
        if not isinstance(result, dict) or not result.get("content"):
            continue
        span_id = str(result.get("span_id") or "")
        info = listed.get(span_id, {})
        span = _json(result["content"])
        if isinstance(span, dict):
            attributes = span.get("attributes") or {}
            inputs = _attribute_text(attributes, "mlflow.spanInputs")
            outputs = _attribute_text(attributes, "mlflow.spanOutputs")
            kind = decode_text(str(attributes.get("mlflow.spanType") or ""))
            span_name = str(span.get("name") or info.get("name") or "")
            is_root = bool(info.get("is_root", not span.get("parent_span_id")))
        else:
            inputs, outputs = "", str(result["content"])
            kind, span_name = "", str(info.get("name") or "")
            is_root = bool(info.get("is_root"))
        out.append(
            SpanSeen(
                span_id=span_id,
                name=span_name,
                span_type=kind or str(info.get("span_type") or "UNKNOWN"),
                is_root=is_root,
                inputs=inputs,
                outputs=outputs,
            )
        )
    return out
