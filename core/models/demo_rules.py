"""The demo model's judging logic: rules written in instructions, and the base heuristic.

A rule is an instruction line that quotes a phrase and names the verdict it implies, e.g.
``- If the response contains "refund", the verdict is fail.`` (also "... answer fail",
"... label it fail"). Rules are matched case-insensitively against the response being
judged, in instruction order; the first match wins. Without a match the **base heuristic**
decides: fail when the response contains an apology word, else pass. The heuristic is wrong
on purpose on part of the demo data, so that alignment has something to fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Prefix of every human-readable text the demo model writes: it is not an LLM.
STAND_IN = "[demo stand-in]"

#: Words that make the base heuristic say "fail" (case-insensitive substring match).
BASE_FAIL_WORDS = ("sorry", "apologize", "apologise", "apologies", "unfortunately")

POSITIVE = frozenset({"pass", "passed", "yes", "true", "good", "correct", "ok", "acceptable"})
NEGATIVE = frozenset({"fail", "failed", "no", "false", "bad", "incorrect", "unacceptable"})

_RULE = re.compile(
    r"""(?:contains?|mentions?|includes?|says?|uses?)\s+["“]([^"”\n]+)["”]
        [^\n]*?\b(?:verdict|answer|label|result|rating|score)\b
        (?:\s+(?:it|them|this))?
        (?:\s+(?:is|should\s+be|must\s+be|will\s+be|as|be|to))?
        \s*[:=]?\s*["'`*]*([A-Za-z0-9_+\-.]*[A-Za-z0-9_])""",
    re.IGNORECASE | re.VERBOSE,
)
_QUOTED = re.compile(r'"([^"\n]{1,120})"|“([^”\n]{1,120})”')


@dataclass(frozen=True)
class Rule:
    """One explicit rule found in judge instructions."""

    phrase: str
    """The quoted phrase, as written."""
    verdict: str
    """The verdict word the rule implies, as written (e.g. ``fail``, ``yes``, ``Partial``)."""

    def line(self) -> str:
        """The rule in the canonical form the demo reflection model writes."""
        return f'- If the response contains "{self.phrase}", the verdict is {self.verdict}.'


def parse_rules(text: str) -> list[Rule]:
    """Return the rules written in ``text``, in order of appearance."""
    return [
        Rule(m.group(1), m.group(2)) for line in text.splitlines() for m in _RULE.finditer(line)
    ]


def quoted_phrases(text: str) -> list[str]:
    """Return the phrases quoted in ``text`` (straight or curly double quotes), in order."""
    seen: list[str] = []
    for m in _QUOTED.finditer(text or ""):
        phrase = (m.group(1) or m.group(2) or "").strip()
        if phrase and phrase.lower() not in {p.lower() for p in seen}:
            seen.append(phrase)
    return seen


def polarity(word: str) -> str | None:
    """Map a verdict word to ``pass``/``fail``, or None when it is neither (a category)."""
    w = str(word).strip().strip(".").lower()
    if w in POSITIVE:
        return "pass"
    if w in NEGATIVE:
        return "fail"
    return None


def normalise_label(word: object) -> str:
    """A label in a form two labels can be compared in (``pass``/``fail`` or lowercase)."""
    text = str(word).strip().strip(".").lower()
    return polarity(text) or text


@dataclass(frozen=True)
class Decision:
    """What the demo judge decided about one response, and why."""

    verdict: str
    """The verdict word: ``pass``/``fail`` from the heuristic, or a rule's word."""
    rule: Rule | None
    """The rule that decided, or None when the base heuristic did."""
    rationale: str
    """Human-readable reason, starting with :data:`STAND_IN`."""


def base_verdict(response: str) -> Decision:
    """The base heuristic: fail if the response contains an apology word, else pass."""
    lower = (response or "").lower()
    hits = [w for w in BASE_FAIL_WORDS if w in lower]
    if hits:
        return Decision(
            "fail",
            None,
            f"{STAND_IN} No rule matched; the base heuristic says fail because the response "
            f'contains "{hits[0]}".',
        )
    return Decision(
        "pass",
        None,
        f"{STAND_IN} No rule matched; the base heuristic says pass because the response "
        "contains no apology words.",
    )


def decide(
    instructions: str,
    response: str,
    accept=lambda verdict: True,
    *,
    evidence: str | None = None,
    where: str = "The response",
) -> Decision:
    """Decide a verdict: the first rule whose phrase the response contains, else the heuristic.

    Args:
        instructions: Text holding the judge's instructions (where rules are written).
        response: The response (outputs) being judged.
        accept: Predicate on a rule's verdict word; rules whose word the caller cannot use
            (not a category, not a boolean) are skipped.
        evidence: Text the rules are matched against instead of the response (a trace
            judge: everything the trace's spans said); the heuristic still judges the
            response.
        where: How the rationale names where a rule's phrase was found.
    """
    lower = (response if evidence is None else evidence or "").lower()
    for rule in parse_rules(instructions):
        if rule.phrase.lower() in lower and accept(rule.verdict):
            return Decision(
                rule.verdict,
                rule,
                f'{STAND_IN} {where} contains "{rule.phrase}", and the instructions say '
                f"that means {rule.verdict}.",
            )
    return base_verdict(response)
