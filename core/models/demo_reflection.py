"""The demo model as GEPA's reflection model, MetaPrompt's model, and MemAlign's distiller.

**Judge instructions** (alignment). Reflection and distillation read the examples they are
shown and turn the phrases quoted in human rationales into rules of the one form the demo
judge follows: ``- If the response contains "PHRASE", the verdict is <human label>.``

* Reflection (GEPA): only examples the judge got wrong (``Judge verdict`` differs from
  ``Human label``) contribute; the new instruction is the current one plus one rule line per
  new phrase. Examples without a ``Human rationale`` (MLflow's own GEPA path shows only
  "This trajectory got a score of ...") leave the instruction unchanged.
* Distillation (MemAlign): one guideline per new phrase from the rationales of examples where
  judge and human differ, or of every example when no judge verdict is shown (MLflow shows
  none), with the ids of the examples it came from.

**Application prompts** (prompt optimization, see the section below). Shown application
outputs with the judges' verdicts and rationales, it turns the phrases quoted in the
rationales of failing outputs (and in a failing human label's rationale) into
``- Never say "PHRASE".`` lines, the rule form the ``demo:/app`` stand-in follows
(:mod:`core.models.demo_app`). It answers gepa's reflection (our records and MLflow's
``GepaPromptOptimizer`` records) in gepa's fenced format, and MLflow's ``MetaPromptOptimizer``
with the JSON object it parses.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from core.models.demo_app import app_rules, is_marker_line, is_rule_line
from core.models.demo_prompts import Prompt, decode_text, output_fields, render
from core.models.demo_rules import (
    STAND_IN,
    Rule,
    normalise_label,
    parse_rules,
    polarity,
    quoted_phrases,
)

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


# --- prompt reflection: the application's prompt, from the judges' rationales ----------
#
# Three request formats reach this part, all answered by the same rule learning
# (:func:`phrases_to_avoid`, :func:`add_never_rules`):
#
# * our PromptAdapter's records through gepa (contract of issue 10): ``## Inputs``,
#   ``## Application output``, ``## Feedback`` with ``Score:``, then per judge ``Judge:``,
#   ``Judge verdict:``, ``Judge rationale:`` and, when a human labeled that output,
#   ``Human label:`` / ``Human rationale:``;
# * MLflow's ``GepaPromptOptimizer`` through gepa: ``## score`` (the aggregate over scorers),
#   ``## outputs``, ``## rationales`` (``### <scorer>`` then its rationale) and ``## trace``.
#   It does show the scorers' rationales, but no per-scorer verdict or score and no human
#   label (and each record twice: its trace spans repeat the inputs and outputs). So a
#   rationale counts as failing when the record's aggregate score is below 1 and the
#   rationale itself does not state a passing verdict ("... that means pass");
# * MLflow's ``MetaPromptOptimizer``: ``CURRENT PROMPTS:`` (``Prompt name:``/``Template:``),
#   then ``Example N:`` blocks with ``Output:``, ``Score:`` and ``Rationales:`` lines
#   (``  - <scorer>: <rationale>``); the answer is a JSON object ``{prompt name: template}``.

_APP_OUTPUT_HEADING = "## Application output"
_EXAMPLE = re.compile(r"^# Example \d+[ \t]*$", re.MULTILINE)
_HEADING2 = re.compile(r"^## (\S[^\n]*)$", re.MULTILINE)
_HEADING3 = re.compile(r"^### (\S[^\n]*)$", re.MULTILINE)
_FEEDBACK_KEY = re.compile(
    r"^(Score|Judge|Judge verdict|Judge rationale|Human label|Human rationale)\s*:[ \t]*(.*)$",
    re.IGNORECASE,
)
_STATED = re.compile(r"\b(?:means|says?|verdict is|result is)\s+[\"'`*]*([A-Za-z]+)", re.I)
_META_MARK = "You are an expert prompt engineer"
_META_PROMPTS = re.compile(r"(?:^|\n\n)Prompt name: ([^\n]+)\nTemplate: ")
_META_EXAMPLE = re.compile(r"^Example \d+:[ \t]*$", re.MULTILINE)


@dataclass(frozen=True)
class JudgeFeedback:
    """One judge's (or scorer's) feedback on one application output."""

    judge: str
    """The judge's name as shown (``support_quality v2``), or empty."""
    verdict: str | None
    """The verdict as shown (``fail``, ``yes``, ``3``), or None when only a score is shown."""
    score: float | None
    """The score shown for this judge alone, or None."""
    rationale: str
    """The judge's rationale."""

    def failing(self, record_score: float | None) -> bool:
        """Whether this verdict fails: a failing word, else a score below 1 (its own or the record's)."""
        word = polarity(self.verdict) if self.verdict is not None else None
        if word is not None:
            return word == "fail"
        score = self.score if self.score is not None else record_score
        if score is None:
            return False
        # A rationale that states a passing verdict is not what lowered a mixed score.
        return score < 1.0 and not _states_pass(self.rationale)


@dataclass(frozen=True)
class AppRecord:
    """One application output with its feedback, as the reflection model saw it."""

    output: str | None
    """The application's reply, or None when not shown."""
    score: float | None
    """The record's (aggregate) score, or None."""
    judges: tuple[JudgeFeedback, ...]
    """One entry per judge or scorer, in the order shown."""
    human_label: str | None = None
    """A human's label on this very output, when shown."""
    human_rationale: str = ""
    """That human's rationale."""

    @property
    def failing(self) -> bool:
        """Whether any judge failed this output, or a human did."""
        if polarity(self.human_label or "") == "fail":
            return True
        return any(j.failing(self.score) for j in self.judges)


def _states_pass(text: str) -> bool:
    words = [polarity(w) for w in _STATED.findall(text or "")]
    return "pass" in words and "fail" not in words


def _score(text: str | None) -> float | None:
    m = re.search(r"-?\d+(?:\.\d+)?", text or "")
    return float(m.group()) if m else None


def _split(text: str, pattern: re.Pattern[str]) -> dict[str, str]:
    found = list(pattern.finditer(text))
    out: dict[str, str] = {}
    for i, m in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(text)
        out.setdefault(m.group(1).strip(), text[m.end() : end].strip())
    return out


def _examples(text: str, pattern: re.Pattern[str]) -> list[str]:
    starts = list(pattern.finditer(text))
    return [
        text[m.end() : starts[i + 1].start() if i + 1 < len(starts) else len(text)]
        for i, m in enumerate(starts)
    ]


def _feedback_record(output: str | None, feedback: str) -> AppRecord:
    """Parse a ``Feedback`` section: the record's score, one block per judge, a human label."""
    record_score: float | None = None
    blocks: list[dict[str, str]] = []
    human: dict[str, str] = {}
    current: dict[str, str] | None = None  # where the next unkeyed (continuation) line goes
    key = ""
    for line in feedback.splitlines():
        m = _FEEDBACK_KEY.match(line.strip())
        if not m:
            if current is not None and key:
                current[key] += "\n" + line
            continue
        key, value = m.group(1).lower(), m.group(2).strip()
        if key.startswith("human"):
            current = human
        elif key == "score" and not blocks:
            record_score, current, key = _score(value), None, ""
            continue
        elif key == "judge" or current is None or current is human or key in current:
            # "Judge:" opens a block; so does a verdict shown without one, or a repeated key.
            current = {}
            blocks.append(current)
        current[key] = value
    judges = tuple(
        JudgeFeedback(
            b.get("judge", "").strip(),
            b.get("judge verdict", "").strip() or None,
            _score(b.get("score")),
            b.get("judge rationale", "").strip(),
        )
        for b in blocks
    )
    return AppRecord(
        output,
        record_score,
        judges,
        human.get("human label", "").strip() or None,
        human.get("human rationale", "").strip(),
    )


def parse_prompt_records(text: str) -> list[AppRecord]:
    """Parse gepa-rendered examples of application outputs (ours or MLflow's GEPA format)."""
    records = []
    for example in _examples(text, _EXAMPLE):
        sections = _split(example, _HEADING2)
        if "Application output" in sections:
            records.append(
                _feedback_record(sections["Application output"], sections.get("Feedback", ""))
            )
        elif "rationales" in sections or "score" in sections:
            rationales = _split(sections.get("rationales", ""), _HEADING3)
            judges = tuple(JudgeFeedback(k, None, None, v) for k, v in rationales.items())
            records.append(
                AppRecord(sections.get("outputs"), _score(sections.get("score")), judges)
            )
    return records


def phrases_to_avoid(records: list[AppRecord], template: str) -> list[str]:
    """The phrases a revised prompt should forbid, in order of first appearance.

    For each output a judge failed, the phrases quoted in that judge's rationale; for each
    output a human labeled failing, the phrases quoted in the human's rationale. A human's
    passing label on an output overrules the judges' failing verdicts on it. A phrase counts
    only when the output contains it (so a rationale naming what is *missing*, as MLflow's
    Correctness does, teaches nothing to avoid) and when no ``Never`` rule of ``template``
    already covers it.
    """
    known = [p.lower() for p in app_rules(template).never]
    found: list[str] = []
    for record in records:
        human = polarity(record.human_label or "")
        texts = [record.human_rationale] if human == "fail" else []
        if human != "pass":
            texts += [j.rationale for j in record.judges if j.failing(record.score)]
        output = (record.output or "").lower()
        for text in texts:
            for phrase in quoted_phrases(text):
                lower = phrase.lower()
                if record.output is not None and lower not in output:
                    continue
                if any(k in lower for k in known):
                    continue
                known.append(lower)
                found.append(phrase)
    return found


def never_rule(phrase: str) -> str:
    """A rule line the demo application follows: ``- Never say "PHRASE".``."""
    return f'- Never say "{phrase}".'


def _insert_lines(text: str, new: list[str]) -> str:
    # Rules go with the existing rules, else just before the customer-message marker, so the
    # message stays last in the prompt; else at the end.
    lines = text.split("\n")
    rule_rows = [i for i, line in enumerate(lines) if is_rule_line(line)]
    if rule_rows:
        at = rule_rows[-1] + 1
        return "\n".join(lines[:at] + new + lines[at:])
    markers = [i for i, line in enumerate(lines) if is_marker_line(line)]
    if markers:
        at = markers[-1]
        return "\n".join([*lines[:at], *new, "", *lines[at:]])
    return text.rstrip() + "\n" + "\n".join(new)


def add_never_rules(template: str, phrases: list[str]) -> str:
    """``template`` with one ``Never say`` line per phrase (unchanged when there are none).

    Template variables (``{{ message }}``) and every other line stay as they are. A chat
    template given as a JSON list of messages gets the rules in its system message (else its
    first message), and comes back as JSON.
    """
    if not phrases:
        return template
    lines = [never_rule(p) for p in phrases]
    stripped = template.strip()
    if stripped.startswith("["):
        try:
            messages = json.loads(stripped)
        except ValueError:
            messages = None
        if (
            isinstance(messages, list)
            and messages
            and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages)
        ):
            target = next((m for m in messages if m.get("role") == "system"), messages[0])
            target["content"] = _insert_lines(target["content"], lines)
            return json.dumps(messages, ensure_ascii=False)
    return _insert_lines(template, lines)


def is_prompt_reflection(prompt: Prompt) -> bool:
    """Whether the request is gepa's reflection on application outputs (ours or MLflow's)."""
    text = prompt.everything
    if _GEPA_MARK not in text:
        return False
    if _APP_OUTPUT_HEADING in text:
        return True
    return bool(
        re.search(r"^## rationales$", text, re.M) and re.search(r"^## outputs$", text, re.M)
    )


def _note(records: list[AppRecord], phrases: list[str]) -> str:
    if not records:
        return f"{STAND_IN} No application outputs with feedback were shown; prompt unchanged."
    failing = sum(1 for r in records if r.failing)
    return (
        f"{STAND_IN} Saw {len(records)} application output(s), {failing} failing; added "
        f'{len(phrases)} "Never say" rule(s) for phrases quoted in their rationales.'
    )


def answer_prompt_reflection(prompt: Prompt) -> str:
    """Propose a revised application prompt, in gepa's fenced format."""
    m = _GEPA_CURRENT.search(prompt.user) or _GEPA_CURRENT.search(prompt.everything)
    current = m.group(1) if m else ""
    rest = prompt.everything[m.end() :] if m else prompt.everything
    records = parse_prompt_records(rest)
    phrases = phrases_to_avoid(records, current)
    return f"{_note(records, phrases)}\n```\n{add_never_rules(current, phrases)}\n```"


def is_metaprompt(prompt: Prompt) -> bool:
    """Whether the request is MLflow's ``MetaPromptOptimizer`` meta-prompt."""
    return _META_MARK in prompt.everything and "CURRENT PROMPTS:" in prompt.everything


def _meta_prompts(text: str) -> dict[str, str]:
    block = text.split("CURRENT PROMPTS:\n", 1)[-1]
    # Zero-shot requests have an empty examples section, hence four newlines before the
    # best practices; the template itself keeps any newlines it ends with.
    for end in (
        "\n\nEVALUATION EXAMPLES",
        "\n\n\n\nPROMPT ENGINEERING BEST PRACTICES:",
        "\n\nPROMPT ENGINEERING BEST PRACTICES:",
    ):
        block = block.split(end, 1)[0]
    found = list(_META_PROMPTS.finditer(block))
    return {
        m.group(1).strip(): block[m.end() : found[i + 1].start() if i + 1 < len(found) else None]
        for i, m in enumerate(found)
    }


def _meta_record(example: str) -> AppRecord:
    output = re.search(r"^  Output: (.*?)\n  Expected: ", example, re.S | re.M)
    score = re.search(r"^  Score: (\S+)", example, re.M)
    rationale_block = example.split("  Rationales:\n", 1)[1] if "  Rationales:\n" in example else ""
    rationale_block = rationale_block.split("\nBefore applying best practices", 1)[0]
    judges = []
    for item in re.split(r"^  - ", rationale_block, flags=re.M)[1:]:
        name, _, rationale = item.partition(": ")
        judges.append(JudgeFeedback(name.strip(), None, None, rationale.strip()))
    return AppRecord(
        output.group(1) if output else None,
        _score(score.group(1) if score else None),
        tuple(judges),
    )


def answer_metaprompt(prompt: Prompt) -> str:
    """Answer MetaPrompt as it asks: a JSON object of every prompt name to its revised template.

    Learns from the evaluation examples shown (their scores and scorer rationales) the same
    way as :func:`answer_prompt_reflection`, and adds the rules to every prompt. Without
    examples (MetaPrompt's zero-shot mode) the prompts come back unchanged.
    """
    text = prompt.everything
    current = _meta_prompts(text)
    examples = text.split("EVALUATION EXAMPLES", 1)[1] if "EVALUATION EXAMPLES" in text else ""
    records = [_meta_record(e) for e in _examples(examples, _META_EXAMPLE)]
    revised = {
        name: add_never_rules(template, phrases_to_avoid(records, template))
        for name, template in current.items()
    }
    return json.dumps(revised, ensure_ascii=False)
