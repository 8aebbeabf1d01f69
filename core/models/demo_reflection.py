"""The demo model as GEPA's reflection model and as MemAlign's distillation model.

Both read the examples they are shown and turn the phrases quoted in human rationales into
rules of the one form the demo judge follows:
``- If the response contains "PHRASE", the verdict is <human label>.``

* Reflection (GEPA): only examples the judge got wrong (``Judge verdict`` differs from
  ``Human label``) contribute; the new instruction is the current one plus one rule line per
  new phrase. Examples without a ``Human rationale`` (MLflow's own GEPA path shows only
  "This trajectory got a score of ...") leave the instruction unchanged.
* Distillation (MemAlign): one guideline per new phrase from the rationales of examples where
  judge and human differ, or of every example when no judge verdict is shown (MLflow shows
  none), with the ids of the examples it came from.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from core.models.demo_prompts import Prompt, decode_text, output_fields, render
from core.models.demo_rules import STAND_IN, Rule, normalise_label, parse_rules, quoted_phrases

_KEYS = re.compile(r"(Judge verdict|Human label|Human rationale)\s*:[ \t]*", re.IGNORECASE)
_GEPA_MARK = "Provide the new instructions within ``` blocks"
_GEPA_CURRENT = re.compile(r"task for me:\s*```\n(.*?)\n```", re.DOTALL)
_DISTILL_MARK = "distill a set of guidelines"


@dataclass(frozen=True)
class Shown:
    """One example as the reflection model saw it."""

    judge: str | None
    label: str | None
    rationale: str

    @property
    def wrong(self) -> bool:
        """Whether the judge disagreed with the human (unknown counts as not wrong)."""
        if self.judge is None or self.label is None:
            return False
        return normalise_label(self.judge) != normalise_label(self.label)


def parse_feedback(text: str) -> list[Shown]:
    """Find every ``Judge verdict`` / ``Human label`` / ``Human rationale`` record in text."""
    records: list[dict[str, str]] = []
    matches = list(_KEYS.finditer(text))
    for i, m in enumerate(matches):
        key = m.group(1).lower()
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        value = re.split(r"\n\s*\n|\n#", text[m.end() : end], maxsplit=1)[0].strip()
        if not records or key in records[-1]:
            records.append({})
        records[-1][key] = value
    return [
        Shown(r.get("judge verdict"), r.get("human label"), r.get("human rationale", ""))
        for r in records
    ]


def _clean_label(label: str) -> str:
    return label.strip().strip(".").strip("'\"`*").strip()


def new_rules(current: str, shown: list[Shown]) -> list[Rule]:
    """Rules to add: one per phrase quoted in the rationale of each wrongly judged example."""
    known = {r.phrase.lower() for r in parse_rules(current)}
    added: list[Rule] = []
    for example in shown:
        if not example.wrong or not example.rationale:
            continue
        for phrase in quoted_phrases(example.rationale):
            if phrase.lower() not in known:
                known.add(phrase.lower())
                added.append(Rule(phrase, _clean_label(example.label or "")))
    return added


def revise(current: str, shown: list[Shown]) -> tuple[str, list[Rule]]:
    """Return the revised instruction (unchanged when there is nothing to learn)."""
    rules = new_rules(current, shown)
    if not rules:
        return current, []
    return current.rstrip() + "\n" + "\n".join(r.line() for r in rules), rules


def is_reflection(prompt: Prompt) -> bool:
    """Whether the request asks for a new instruction (gepa or dspy GEPA proposer)."""
    if _GEPA_MARK in prompt.everything:
        return True
    return any(f.name == "new_instruction" for f in output_fields(prompt))


def answer_reflection(prompt: Prompt) -> str:
    """Propose a new instruction, in gepa's fenced format or dspy's JSON/marker format."""
    secs = prompt.sections()
    if "current_instruction" in secs:
        current = secs["current_instruction"]
        shown = parse_feedback(decode_text(secs.get("examples_with_feedback", "")))
    else:
        m = _GEPA_CURRENT.search(prompt.user) or _GEPA_CURRENT.search(prompt.everything)
        current = m.group(1) if m else ""
        rest = prompt.everything[m.end() :] if m else prompt.everything
        shown = parse_feedback(rest)
    revised, rules = revise(current, shown)
    wrong = sum(1 for s in shown if s.wrong)
    note = (
        f"{STAND_IN} Saw {len(shown)} example(s) with human feedback, {wrong} judged wrong; "
        f"added {len(rules)} rule(s) from phrases quoted in their rationales."
        if shown
        else f"{STAND_IN} No human rationale was shown, so the instruction is unchanged."
    )
    fields = output_fields(prompt)
    if any(f.name == "new_instruction" for f in fields):
        values = {f.name: note for f in fields}
        values["new_instruction"] = revised
        return render(fields, values, prompt.style)
    return f"{note}\n```\n{revised}\n```"


# --- MemAlign distillation ------------------------------------------------------------

_RECORD = re.compile(r'\{\s*"id":\s*(\d+),')
_FIELD = re.compile(r'^[ \t]*"(\w+)": "', re.MULTILINE)
_JUDGE_FIELDS = ("judge_result", "judge_verdict", "judge_value", "predicted_result")


def is_distillation(prompt: Prompt) -> bool:
    """Whether the request is MemAlign's guideline distillation prompt."""
    return _DISTILL_MARK in prompt.everything


def parse_records(text: str) -> list[tuple[int, dict[str, str]]]:
    """Parse MemAlign's example records: ``{"id": N, "field": "value", ...}`` (values raw)."""
    starts = list(_RECORD.finditer(text))
    out = []
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        block = text[m.end() : end]
        block = block.split("\nNow, distill", 1)[0]
        fields = list(_FIELD.finditer(block))
        record = {}
        for j, f in enumerate(fields):
            stop = fields[j + 1].start() if j + 1 < len(fields) else block.rfind("}")
            value = block[f.end() : stop if stop > f.end() else len(block)].rstrip()
            record[f.group(1)] = re.sub(r'",?\s*$', "", value)
        out.append((int(m.group(1)), record))
    return out


def answer_distillation(prompt: Prompt) -> str:
    """Distill guidelines as MemAlign asks: ``{"guidelines": [{guideline_text, source_trace_ids}]}``."""
    text = prompt.everything
    instructions = text.split("Given a set of examples", 1)[0]
    existing = text.split("Here are the existing guidelines", 1)[-1].split("Here are the user", 1)[
        0
    ]
    known = {r.phrase.lower() for r in parse_rules(instructions + "\n" + existing)}
    records = parse_records(text.split("Here are the user judgement examples:", 1)[-1])
    any_judge = any(any(k in r for k in _JUDGE_FIELDS) for _, r in records)
    guidelines: dict[str, dict] = {}
    for rid, record in records:
        label = _clean_label(record.get("result", record.get("value", "")))
        judge = next((record[k] for k in _JUDGE_FIELDS if k in record), None)
        if any_judge and (judge is None or normalise_label(judge) == normalise_label(label)):
            continue
        for phrase in quoted_phrases(record.get("rationale", "")):
            key = phrase.lower()
            if key in known:
                continue
            entry = guidelines.setdefault(
                key,
                {"guideline_text": Rule(phrase, label).line()[2:], "source_trace_ids": []},
            )
            entry["source_trace_ids"].append(rid)
    return json.dumps(
        {
            "guidelines": list(guidelines.values()),
            "note": f"{STAND_IN} Guidelines are the phrases quoted in human rationales; "
            "this is not an LLM.",
        },
        ensure_ascii=False,
    )
