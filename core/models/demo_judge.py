"""The demo model answering as a judge, in whatever format the judge asked for.

As a trace judge (instructions with ``{{ trace }}``, see :mod:`core.models.demo_tools`): reads
the spans through MLflow's tools, then applies its rules to all span text; the base
heuristic judges the final response (:func:`answer_trace_judge`).

Besides judges with instructions (rules, else the base heuristic), it answers MLflow's
built-in ``Correctness`` scorer (``mlflow.genai.judges.is_correct``), whose request holds the
question, a ``<claim>`` (the expected facts as ``- fact`` lines, or the expected response) and a
``<document>`` (``<question> - <response>``): ``yes`` when every expected fact occurs in the
response, ignoring case and spacing (an expected response: when the response contains it),
``no`` otherwise, with a rationale naming the missing facts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from core.models.demo_prompts import (
    OutputField,
    Prompt,
    output_fields,
    render,
    response_text,
    verdict_field,
)
from core.models.demo_rules import STAND_IN, Decision, decide, polarity
from core.models.demo_tools import SpanSeen, spans_seen

_RANGE = re.compile(
    r"(?:from|between|scale of|range of|score of)\s+(-?\d+(?:\.\d+)?)\s*(?:-|–|to|and)\s*(-?\d+(?:\.\d+)?)"
    r"|(-?\d+(?:\.\d+)?)\s*(?:-|–|to)\s*(-?\d+(?:\.\d+)?)\s*(?:scale|points?|stars?)",
    re.IGNORECASE,
)


def _numeric_range(text: str, kind: str) -> tuple[float, float]:
    m = _RANGE.search(text)
    if m:
        lo, hi = (float(g) for g in m.groups() if g is not None)
        return (min(lo, hi), max(lo, hi))
    return (1.0, 5.0) if kind == "int" else (0.0, 1.0)


def _as_number(word: str) -> float | None:
    try:
        return float(word)
    except ValueError:
        return None


def _category_for(word: str, options: list[str]) -> str | None:
    for option in options:
        if option.lower() == word.strip().lower():
            return option
    wanted = polarity(word)
    if wanted:
        return next((o for o in options if polarity(o) == wanted), None)
    return None


def typed_value(decision: Decision, target: OutputField | None, instructions: str) -> Any:
    """Convert a decision's verdict word into the value type the caller asked for.

    bool: pass -> True, fail -> False. Category: the option named by the rule, or the option
    with the verdict's polarity (``yes`` for pass), else the first option when the base
    heuristic decided. Numbers: a rule's number, else the midpoint of the scale the
    instructions mention (default 1-5 for int, 0-1 for float). Strings: the verdict word.
    """
    word = decision.verdict
    kind = target.kind if target else "str"
    if kind == "bool":
        return polarity(word) != "fail"
    if kind == "category":
        options = target.options if target else []
        if not options:
            return word
        return _category_for(word, options) or options[0]
    if kind in ("int", "float"):
        lo, hi = _numeric_range(instructions, kind)
        number = _as_number(word) if decision.rule else None
        if number is None:
            number = (lo + hi) / 2
        return int(number) if kind == "int" else float(number)
    return word


def _acceptor(target: OutputField | None):
    # A rule whose verdict the caller's type cannot hold is skipped, so a later rule (or
    # the heuristic) decides instead of a nonsense value.
    if target is None or target.kind == "str":
        return lambda word: True
    if target.kind == "bool":
        return lambda word: polarity(word) is not None
    if target.kind == "category":
        return lambda word: _category_for(word, target.options) is not None
    return lambda word: _as_number(word) is not None or polarity(word) is not None


_CORRECTNESS_MARK = "You must determine whether the claim is supported by the document"
_CORRECTNESS = re.compile(
    r"<question>(?P<question>.*?)</question>\s*<claim>(?P<claim>.*?)</claim>\s*"
    r"<document>(?P<document>.*)</document>",
    re.DOTALL,
)


def _norm(text: str) -> str:
    return " ".join(text.lower().split()).strip(" .!?")


@dataclass(frozen=True)
class CorrectnessCheck:
    """What the stand-in found for one ``Correctness`` request."""

    expected: tuple[str, ...]
    """The expected facts (or the one expected response)."""
    missing: tuple[str, ...]
    """The expected items the response does not contain."""
    response: str
    """The response that was checked."""

    @property
    def correct(self) -> bool:
        """Whether nothing expected is missing."""
        return not self.missing

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``correct`` included)."""
        return {
            "expected": list(self.expected),
            "missing": list(self.missing),
            "response": self.response,
            "correct": self.correct,
        }


def check_correctness(prompt: Prompt) -> CorrectnessCheck | None:
    """Read a ``Correctness`` request and check it; None when the request is not one."""
    if _CORRECTNESS_MARK not in prompt.everything:
        return None
    m = _CORRECTNESS.search(prompt.everything)
    if not m:
        return None
    question, claim, document = m.group("question"), m.group("claim"), m.group("document")
    # MLflow's document is "<question> - <response>": judge the response alone, so a fact the
    # customer wrote cannot count as one the reply stated.
    response = document[len(question) + 3 :] if document.startswith(question + " - ") else document
    lines = claim.strip("\n").split("\n")
    if claim.startswith("\n- ") and all(line.startswith("- ") for line in lines):
        expected = tuple(line[2:].strip() for line in lines if line[2:].strip())
    else:
        expected = (claim.strip(),)
    haystack = _norm(response)
    missing = tuple(e for e in expected if _norm(e) not in haystack)
    return CorrectnessCheck(expected, missing, response)


def answer_correctness(prompt: Prompt, check: CorrectnessCheck) -> str:
    """Answer a ``Correctness`` request in the format it asks for (``result``, ``rationale``)."""
    if check.correct:
        rationale = (
            f"{STAND_IN} The response is correct: it states every expected fact "
            f"({len(check.expected)})."
        )
    else:
        names = ", ".join(f'"{e}"' for e in check.missing)
        rationale = f"{STAND_IN} The response is not correct: it is missing {names}."
    verdict = "yes" if check.correct else "no"
    fields = output_fields(prompt) or [OutputField("rationale"), OutputField("result")]
    values: dict[str, Any] = {f.name: rationale for f in fields if f.is_rationale}
    for f in fields:
        if not f.is_rationale:
            values[f.name] = check.correct if f.kind == "bool" else verdict
    style = prompt.style if prompt.style != "plain" else "json"
    return render(fields, values, style)


def answer_judge(prompt: Prompt) -> str:
    """Answer a judging request: verdict by rules or base heuristic, in the asked format."""
    check = check_correctness(prompt)
    if check is not None:
        return answer_correctness(prompt, check)
    response, raw_span = response_text(prompt)
    # Rules live in the instructions: everything except the response itself, so a response
    # that happens to quote a rule cannot rewrite its own verdict.
    text = prompt.everything
    cut = text.rfind(raw_span) if raw_span else -1
    instructions = text[:cut] + "\n" + text[cut + len(raw_span) :] if cut >= 0 else text
    fields = output_fields(prompt)
    target = verdict_field(fields)
    decision = decide(instructions, response, accept=_acceptor(target))
    value = typed_value(decision, target, instructions)
    if not fields:
        return _plain(prompt, decision)
    values = {f.name: decision.rationale for f in fields if f is not target}
    if target is not None:
        values[target.name] = value
    return render(fields, values, prompt.style)


def _plain(prompt: Prompt, decision: Decision) -> str:
    lowered = prompt.everything.lower()
    word = decision.verdict
    if re.search(r"\byes\b.{0,12}\bno\b", lowered) and polarity(word):
        word = "yes" if polarity(word) == "pass" else "no"
    if re.search(r"\bonly\b|single word|one word", lowered):
        return word
    return f"{word}\n\n{decision.rationale}"


def _final_response(prompt: Prompt, spans: list[SpanSeen]) -> tuple[str, str]:
    """The response a trace judge's heuristic judges, and the raw text it came from: the
    request's ``outputs`` when it has them, else the root span's outputs."""
    user_only = Prompt(system="", user=prompt.user, everything=prompt.user)
    response, raw = response_text(user_only)
    if raw != prompt.user:
        return response, raw
    root = next((s for s in spans if s.is_root), None)
    return (root.outputs if root else ""), ""


def answer_trace_judge(prompt: Prompt, messages: list[Any]) -> str:
    """Answer a ``{{ trace }}`` judge once the tools' results are in ``messages``.

    Rules (from the system and user messages, never from tool results, so a span cannot
    write its own verdict) are matched against everything the spans said; without a match
    the base heuristic judges the final response.
    """
    spans = spans_seen(messages)
    response, raw = _final_response(prompt, spans)
    user = prompt.user.replace(raw, "\n") if raw else prompt.user
    instructions = f"{prompt.system}\n{user}"
    evidence = "\n".join(s.text for s in spans)
    fields = output_fields(prompt)
    target = verdict_field(fields)
    decision = decide(instructions, response, accept=_acceptor(target), evidence=evidence)
    read = f"{STAND_IN} As a trace judge, it read {len(spans)} span(s) through MLflow's tools."
    if decision.rule is not None:
        phrase = decision.rule.phrase.lower()
        span = next((s for s in spans if phrase in s.text.lower()), None)
        named = f'Span "{span.name}" ({span.span_type})' if span else "The trace"
        rationale = (
            f'{read} {named} contains "{decision.rule.phrase}", and the instructions say '
            f"that means {decision.rule.verdict}."
        )
    else:
        rationale = f"{read} {decision.rationale.removeprefix(STAND_IN).strip()}"
    decision = Decision(decision.verdict, decision.rule, rationale)
    value = typed_value(decision, target, instructions)
    if not fields:
        fields = [OutputField("result", "str"), OutputField("rationale")]
        target = fields[0]
    values: dict[str, Any] = {f.name: decision.rationale for f in fields if f is not target}
    if target is not None:
        values[target.name] = value
    # MLflow parses the final answer of its tool loop as JSON, whatever the request said.
    return render(fields, values, "json" if prompt.style == "plain" else prompt.style)
