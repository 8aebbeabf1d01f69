"""Proposal guard: reject degenerate proposed instructions before they are evaluated.

A reflection model sometimes answers with something that is not a revision of the text it
was shown: the reflection prompt echoed back, a short generic paraphrase that drops the
policy, or a rewrite without the template variables. Such a proposal can still win a
small validation set by chance (the incident of issue 9: an echo of gepa's reflection
prompt won 0.69 vs 0.62 on 13 examples and scored 0.36 against the seed's 0.50 on test).
:func:`check_proposal` decides, from the texts alone and before any judge call, whether a
proposal is degenerate. The rules, in the order they are checked (the first that fires is
the reason; every measure is kept):

``echoes_reflection_prompt``
    (a) The proposal repeats the reflection prompt's own boilerplate. Either it shares a
    run of at least :data:`ECHO_RUN_WORDS` consecutive words with a reflection template
    (gepa's default, dspy's ``ProposeInstruction`` which MLflow's GEPA uses, or the
    template passed in) that the parent does not contain, or at least
    :data:`ECHO_SHARE` of its word trigrams occur in the reflection prompt actually sent
    (template, examples and feedback) but not in the parent.
``dropped_template_variable``
    (c) It lacks a template variable of the seed (``{{ inputs }}``, ``{{ outputs }}``,
    ``{{ expectations }}``, ``{{ trace }}``; spacing inside the braces does not matter). A
    ``{{ trace }}`` judge that lost the variable would silently stop reading the spans.
``lost_parent_content``
    (b) It keeps fewer than :data:`MIN_PARENT_KEPT` (40%) of the parent's distinct
    content words (words of 3+ letters outside a stop-word list). Revisions that add rules
    keep all of them; rewording a sentence keeps most.
``dropped_criterion_terms``
    (c) It keeps fewer than :data:`MIN_KEY_TERMS_KEPT` (50%) of the criterion's key terms:
    the seed's content words used at least twice, the :data:`KEY_TERMS` most frequent
    (for the demo criterion: reply, assistant, policy, conversation, customer...).

Measures are word-level on lowercased text (template variables count as one word each),
so the check needs no model and costs a few milliseconds (4.7 ms on the demo criterion
with a 5,600-character reflection prompt). It is part of the engine: the gepa runner
applies it to every reflection proposal (see
:class:`core.optimization.gepa_adapter.GuardedReflection`), and prompt optimization will
apply it to prompt proposals with the prompt as the seed.

In short (ARCHITECTURE.md): *a proposal that echoes the reflection prompt, keeps under 40%
of its parent's content words, drops a template variable, or keeps under half of the
criterion's key terms is rejected as degenerate before any judge call, and recorded with
its reason and the reflection output.*
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from difflib import SequenceMatcher
from typing import Any

#: A run of this many consecutive words shared with a reflection template is an echo.
ECHO_RUN_WORDS = 8
#: This share of a proposal's word trigrams found only in the reflection prompt is an echo.
ECHO_SHARE = 0.5
#: A proposal must keep at least this share of the parent's distinct content words.
MIN_PARENT_KEPT = 0.4
#: A proposal must keep at least this share of the criterion's key terms.
MIN_KEY_TERMS_KEPT = 0.5
#: How many of the seed's most frequent repeated content words are its key terms.
KEY_TERMS = 10

#: gepa 0.1.4's default reflection template (``InstructionProposalSignature``), without
#: its ``<curr_param>``/``<side_info>`` placeholders. Copied so the guard stays import-light;
#: a test checks it against the installed gepa.
GEPA_REFLECTION_TEMPLATE = (
    "I provided an assistant with the following instructions to perform a task for me:\n"
    "The following are examples of different task inputs provided to the assistant along "
    "with the assistant's response for each of them, and some feedback on how the "
    "assistant's response could be better:\n"
    "Your task is to write a new instruction for the assistant.\n"
    "Read the inputs carefully and identify the input format and infer detailed task "
    "description about the task I wish to solve with the assistant.\n"
    "Read all the assistant responses and the corresponding feedback. Identify all niche "
    "and domain specific factual information about the task and include it in the "
    "instruction, as a lot of it may not be available to the assistant in the future. The "
    "assistant may have utilized a generalizable strategy to solve the task, if so, include "
    "that in the instruction as well.\n"
    "Provide the new instructions within ``` blocks."
)
#: dspy 3.4.1's ``ProposeInstruction`` docstring (MLflow's GEPA optimizer reflects with it).
DSPY_REFLECTION_TEMPLATE = (
    "I provided an assistant with instructions to perform a task for me. You are given "
    "those instructions, along with examples of different task inputs provided to the "
    "assistant, the assistant's response for each of them, and some feedback on how the "
    "assistant's response could be better."
)
REFLECTION_TEMPLATES: tuple[str, ...] = (GEPA_REFLECTION_TEMPLATE, DSPY_REFLECTION_TEMPLATE)

_WORD = re.compile(r"\{\{\s*\w+\s*\}\}|[a-z0-9]+(?:'[a-z]+)?")
_VARIABLE = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_STOP_WORDS = """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can cannot could did do does doing down during
    each either else few for from further had has have having here how if in into is it its
    itself just may might more most must no nor not now of off on once only or other our
    out over own same shall should so some such than that the their them then there these
    they this those through to too under until up upon very was we were what when where
    which while who whom why will with within without would you your yours
"""
_STOP = frozenset(_STOP_WORDS.split())

REASON_MESSAGES = {
    "echoes_reflection_prompt": "it repeats the reflection prompt instead of revising the "
    "instructions",
    "dropped_template_variable": "it drops the template variable(s) {missing}",
    "lost_parent_content": "it keeps only {kept:.0%} of the parent's content words "
    "(at least {need:.0%} needed)",
    "dropped_criterion_terms": "it keeps only {kept:.0%} of the criterion's key terms "
    "(at least {need:.0%} needed; missing: {missing})",
}


@dataclass(frozen=True)
class GuardVerdict:
    """The guard's decision on one proposed text."""

    ok: bool
    """True when the proposal may be evaluated."""
    reason: str | None = None
    """Reason code of the first rule that fired (see the module docstring); None when ok."""
    message: str = ""
    """A sentence for humans ("Rejected before evaluation: it ...")."""
    failed: tuple[str, ...] = ()
    """Every rule that fired, in checking order."""
    measures: dict[str, Any] = field(default_factory=dict)
    """The numbers the rules looked at (echo run and share, kept shares, missing terms)."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        d = asdict(self)
        d["failed"] = list(self.failed)
        return d


def words(text: str) -> list[str]:
    """Lowercased words of ``text``; a template variable is one word (``{{ inputs }}``)."""
    return [
        _VARIABLE.sub(lambda m: "{{ " + m.group(1) + " }}", w)
        for w in _WORD.findall((text or "").lower())
    ]


def content_words(text: str) -> set[str]:
    """Distinct words of 3+ characters that are not stop words or template variables."""
    return {w for w in words(text) if len(w) >= 3 and w not in _STOP and not w.startswith("{{")}


def template_variables(text: str) -> set[str]:
    """The template variables ``text`` uses, in canonical spelling (``{{ inputs }}``)."""
    return {w for w in words(text) if w.startswith("{{")}


def key_terms(seed: str, limit: int = KEY_TERMS) -> tuple[str, ...]:
    """The criterion's key terms: its most frequent content words used at least twice."""
    counts = Counter(
        w for w in words(seed) if len(w) >= 3 and w not in _STOP and not w.startswith("{{")
    )
    repeated = [(n, w) for w, n in counts.items() if n >= 2]
    return tuple(w for _, w in sorted(repeated, key=lambda x: (-x[0], x[1]))[:limit])


def _ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def longest_shared_run(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest run of consecutive words ``a`` and ``b`` have in common."""
    if not a or not b:
        return 0
    m = SequenceMatcher(None, list(a), list(b), autojunk=False)
    return m.find_longest_match(0, len(a), 0, len(b)).size


def echo_measures(
    proposal: str,
    parent: str,
    reflection_prompt: str = "",
    templates: Sequence[str] = REFLECTION_TEMPLATES,
) -> dict[str, float]:
    """How much of ``proposal`` repeats the reflection prompt rather than the parent.

    Returns:
        ``echo_run``: the longest run of consecutive words shared with a template and absent
        from the parent; ``echo_share``: the share of the proposal's word trigrams that
        occur in the reflection prompt or a template but not in the parent.
    """
    prop = words(proposal)
    parent_words = words(parent)
    run = 0
    for template in templates:
        t = words(template)
        size = longest_shared_run(prop, t)
        # A run no longer than the parent's own is the parent's text, not an echo.
        if size > longest_shared_run(parent_words, t):
            run = max(run, size)
    grams = _ngrams(prop, 3)
    prompt_grams: set[tuple[str, ...]] = set()
    for text in (reflection_prompt, *templates):
        prompt_grams |= _ngrams(words(text), 3)
    only_prompt = prompt_grams - _ngrams(parent_words, 3)
    share = len(grams & only_prompt) / len(grams) if grams else 0.0
    return {"echo_run": float(run), "echo_share": share}


def check_proposal(
    proposal: str,
    *,
    parent: str,
    seed: str,
    reflection_prompt: str = "",
    templates: Sequence[str] = REFLECTION_TEMPLATES,
) -> GuardVerdict:
    """Decide whether a proposed text may be evaluated (see the module docstring's rules).

    Args:
        proposal: The text the reflection model proposed.
        parent: The candidate text it revises.
        seed: The criterion's own instructions (the run's seed): where the template
            variables and the key terms come from.
        reflection_prompt: The prompt sent to the reflection model, when known.
        templates: Reflection templates whose boilerplate must not come back.

    Returns:
        ``ok`` with the measures, or the reason code and a sentence of the first rule that
        fired.
    """
    measures: dict[str, Any] = dict(echo_measures(proposal, parent, reflection_prompt, templates))
    failed: list[str] = []
    details: dict[str, dict[str, Any]] = {}
    if measures["echo_run"] >= ECHO_RUN_WORDS or measures["echo_share"] >= ECHO_SHARE:
        failed.append("echoes_reflection_prompt")
        details["echoes_reflection_prompt"] = {}

    missing_vars = sorted(template_variables(seed) - template_variables(proposal))
    measures["missing_variables"] = missing_vars
    if missing_vars:
        failed.append("dropped_template_variable")
        details["dropped_template_variable"] = {"missing": ", ".join(missing_vars)}

    parent_words = content_words(parent)
    kept_parent = (
        len(parent_words & content_words(proposal)) / len(parent_words) if parent_words else 1.0
    )
    measures["parent_kept"] = kept_parent
    if kept_parent < MIN_PARENT_KEPT:
        failed.append("lost_parent_content")
        details["lost_parent_content"] = {"kept": kept_parent, "need": MIN_PARENT_KEPT}

    terms = key_terms(seed)
    have = set(words(proposal))
    missing_terms = [t for t in terms if t not in have]
    kept_terms = 1 - len(missing_terms) / len(terms) if terms else 1.0
    measures["key_terms_kept"] = kept_terms
    measures["missing_key_terms"] = missing_terms
    if kept_terms < MIN_KEY_TERMS_KEPT:
        failed.append("dropped_criterion_terms")
        details["dropped_criterion_terms"] = {
            "kept": kept_terms,
            "need": MIN_KEY_TERMS_KEPT,
            "missing": ", ".join(missing_terms),
        }

    if not failed:
        return GuardVerdict(True, measures=measures)
    reason = failed[0]
    message = "Rejected before evaluation: " + REASON_MESSAGES[reason].format(**details[reason])
    return GuardVerdict(False, reason, message + ".", tuple(failed), measures)
