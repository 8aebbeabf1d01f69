"""The demo model as the *application* (``demo:/app``): the Northwind support assistant.

It is **not an LLM**. It answers a customer message by following the prompt it is given, in a
fixed, documented way, so that prompt optimization has something real to improve offline:
GEPA reads the judge's rationales, adds rules to the prompt, and the replies change.

**What it reads.** The request is the rendered prompt template (a text template arrives as one
user message; a chat template as its messages). From all of it:

1. **Rules**: lines such as ``- Never say "PHRASE".``, ``Never use the phrase "PHRASE"``,
   ``Do not say "PHRASE"``, ``Always say "PHRASE".`` or ``Always include "PHRASE"``
   (case-insensitive; straight or curly double quotes), see :func:`app_rules`. Rule lines are
   removed before the customer's message is looked for, so rules appended after the message
   (as the demo reflection model may write them) do not become part of it. A rule-shaped
   line inside the customer's own message counts as a rule too: the stand-in cannot tell who
   wrote a line.
2. **The customer message** (:func:`customer_message`): the text after the last marker line
   ``Customer message:`` / ``Customer:`` / ``Message:`` (case-insensitive; the message may
   start on the marker line itself) up to the end; without a marker, the last user message;
   without one, every message's text.

**Default habits.** Each habit has trigger keywords, matched case-insensitively at word starts
in the customer message, a default sentence, and an alternative:

============  ==========================================  ===========================================
Habit         Triggers (examples)                         Default -> alternative
============  ==========================================  ===========================================
apology       any complaint (returns, shipping, billing,  "Sorry about that!" -> (nothing)
              safety) opens with it
returns       return, refund, money back, send it back,   "I've issued a full refund to your card,
              exchange, damaged, wrong size               so you'll see it today." -> "I've started
                                                          a return and emailed you a prepaid label;
                                                          the refund goes back to your original
                                                          payment method 5-7 business days after we
                                                          receive the item."
shipping      deliver, arrive, tracking, package, parcel, "I guarantee it will arrive by Friday."
              shipped, where is my order, late, courier   -> "Tracking shows it is on its way; I
                                                          can't promise an exact delivery date, but
                                                          I'll keep an eye on it."
billing       charge, billing, bill, invoice, payment,    "To look into it, please reply with your
              card, statement                             full card number and the CVV." -> "To
                                                          look into it, please send the order
                                                          number and the last four digits of the
                                                          card."
fees          fee, price match, cheaper, lower price,     "I've waived the shipping fee for you."
              discount, waive, coupon                     -> "I can't waive fees or match prices
                                                          myself, so I'm transferring you to a
                                                          human agent who can review it."
safety        stove, helmet, harness, leak, crack, smoke, "It should be fine to keep using it." ->
              burn, snapped, spark, fire, carabiner,      "Please stop using it right away; I've
              battery, overheat, frayed, fumes            escalated this to our product-safety
                                                          team."
anything      product questions and the rest (used only   "Happy to help: the product page lists
else          when no habit above fires)                  sizes, materials and care instructions,
                                                          and I can answer any follow-up question."
============  ==========================================  ===========================================

Several habits can fire on one message; their sentences follow the order of the table.

**How rules change a reply.** A ``Never`` rule whose phrase occurs (case-insensitively) in a
habit's default sentence switches that habit to its alternative; when the alternative holds a
forbidden phrase too, the habit says nothing (the apology's alternative is always nothing, so
``Never say "sorry"`` drops it). An ``Always`` rule appends its phrase as a sentence when the
reply does not already contain it. The reply is ``"[demo stand-in] "`` followed by the
sentences.

Against the aligned demo judge (rules learned on the demo traces) the returns, shipping,
billing and fees defaults fail by a rule, and every apology fails by the base heuristic when
no rule decides. The safety default ("fine to keep using it") is a **blind spot**: no judge
rule flags it, so once the apology is gone the judge passes a reply that tells a customer to
keep using a leaking stove. Only a human label (whose rationale quotes the phrase) finds it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from core.models.demo_prompts import Prompt
from core.models.demo_rules import STAND_IN

_RULE = re.compile(
    r"""\b(never|do\s+not|don't|always)\s+
        (?:say|use|write|include|mention|add|end\s+with|start\s+with)
        (?:\s+the\s+(?:exact\s+)?(?:phrase|words?|sentence))?
        \s*:?\s*["“]([^"”\n]+)["”]""",
    re.IGNORECASE | re.VERBOSE,
)
_MARKER = re.compile(r"^[ \t]*(?:customer message|customer|message)[ \t]*:[ \t]*", re.I | re.M)


@dataclass(frozen=True)
class AppRules:
    """The explicit rules a prompt gives the demo application."""

    never: tuple[str, ...]
    """Phrases the reply must not contain, as written (first appearance wins)."""
    always: tuple[str, ...]
    """Phrases the reply must contain, as written."""

    def to_dict(self) -> dict[str, list[str]]:
        """Plain dict of both lists."""
        return {k: list(v) for k, v in asdict(self).items()}

    def forbids(self, text: str) -> bool:
        """Whether ``text`` contains a phrase a ``Never`` rule forbids (case-insensitive)."""
        lower = text.lower()
        return any(p.lower() in lower for p in self.never)


@dataclass(frozen=True)
class Habit:
    """One default habit of the demo application."""

    name: str
    """Short name (``returns``, ``shipping``, ...)."""
    triggers: re.Pattern[str]
    """Matches a customer message that calls for this habit."""
    default: str
    """What the application says without rules."""
    alternative: str
    """What it says when a ``Never`` rule forbids a phrase of the default."""
    complaint: bool
    """Whether the message is a complaint (so the reply opens with the apology habit)."""


def _words(*stems: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(stems) + ")", re.IGNORECASE)


APOLOGY = "Sorry about that!"

HABITS: tuple[Habit, ...] = (
    Habit(
        "returns",
        _words(
            "return",
            "refund",
            "money back",
            "send (?:it|them|this) back",
            "exchang",
            "damaged",
            "wrong size",
        ),
        "I've issued a full refund to your card, so you'll see it today.",
        "I've started a return and emailed you a prepaid label; the refund goes back to your "
        "original payment method 5-7 business days after we receive the item.",
        True,
    ),
    Habit(
        "shipping",
        _words(
            "deliver",
            "arriv",
            "tracking",
            "package",
            "parcel",
            "shipped",
            "where is my order",
            r"late\b",
            "courier",
            "in transit",
        ),
        "I guarantee it will arrive by Friday.",
        "Tracking shows it is on its way; I can't promise an exact delivery date, but I'll keep "
        "an eye on it.",
        True,
    ),
    Habit(
        "billing",
        _words("charg", "billing", "bill", "invoice", "payment", "card", "statement"),
        "To look into it, please reply with your full card number and the CVV.",
        "To look into it, please send the order number and the last four digits of the card.",
        True,
    ),
    Habit(
        "fees",
        _words(r"fees?\b", "price.match", "cheaper", "lower price", "discount", "waive", "coupon"),
        "I've waived the shipping fee for you.",
        "I can't waive fees or match prices myself, so I'm transferring you to a human agent "
        "who can review it.",
        False,
    ),
    Habit(
        "safety",
        _words(
            "stove",
            "helmet",
            "harness",
            "leak",
            "crack",
            "smok",
            "burn",
            "snapped",
            "spark",
            "fire",
            "carabiner",
            "battery",
            "overheat",
            "frayed",
            "fumes",
        ),
        "It should be fine to keep using it.",
        "Please stop using it right away; I've escalated this to our product-safety team.",
        True,
    ),
)

#: What the application says when no habit fires (product questions and the rest).
FALLBACK = (
    "Happy to help: the product page lists sizes, materials and care instructions, "
    "and I can answer any follow-up question."
)


def app_rules(text: str) -> AppRules:
    """Parse the ``Never``/``Always`` rules written in a prompt.

    Args:
        text: The prompt text (every message).

    Returns:
        The rules in order of appearance, each phrase once (case-insensitively).
    """
    never: list[str] = []
    always: list[str] = []
    seen: set[tuple[bool, str]] = set()
    for m in _RULE.finditer(text or ""):
        forbid = not m.group(1).lower().startswith("always")
        phrase = m.group(2).strip()
        key = (forbid, phrase.lower())
        if phrase and key not in seen:
            seen.add(key)
            (never if forbid else always).append(phrase)
    return AppRules(tuple(never), tuple(always))


def is_rule_line(line: str) -> bool:
    """Whether a line holds a ``Never``/``Always`` rule."""
    return bool(_RULE.search(line or ""))


def is_marker_line(line: str) -> bool:
    """Whether a line starts the customer's message (``Customer message:`` and the like)."""
    return bool(_MARKER.match(line or ""))


def strip_rules(text: str) -> str:
    """``text`` without its rule lines (lines holding a ``Never``/``Always`` rule)."""
    return "\n".join(line for line in (text or "").splitlines() if not is_rule_line(line))


def customer_message(prompt: Prompt) -> str:
    """The customer's message in a rendered prompt (rule lines removed).

    The text after the last marker line (``Customer message:``, ``Customer:``, ``Message:``);
    else the last user message; else every message's text.
    """
    everything = strip_rules(prompt.everything)
    markers = list(_MARKER.finditer(everything))
    if markers:
        return everything[markers[-1].end() :].strip()
    if prompt.user:
        return strip_rules(prompt.user).strip()
    return everything.strip()


def habits_for(message: str) -> list[Habit]:
    """The habits whose triggers the message contains, in table order."""
    return [h for h in HABITS if h.triggers.search(message or "")]


def _sentence(phrase: str) -> str:
    phrase = phrase.strip()
    return phrase if phrase[-1:] in ".!?" else phrase + "."


def reply_sentences(message: str, rules: AppRules) -> list[str]:
    """The sentences of the reply to ``message`` under ``rules`` (without the prefix)."""
    fired = habits_for(message)
    sentences: list[str] = []
    if any(h.complaint for h in fired) and not rules.forbids(APOLOGY):
        sentences.append(APOLOGY)
    for habit in fired:
        for option in (habit.default, habit.alternative):
            if not rules.forbids(option):
                sentences.append(option)
                break
    if not fired and not rules.forbids(FALLBACK):
        sentences.append(FALLBACK)
    for phrase in rules.always:
        if phrase.lower() not in " ".join(sentences).lower():
            sentences.append(_sentence(phrase))
    if not sentences:
        # Every sentence it knows is forbidden: say as little as possible, still an answer.
        sentences.append("Thanks for reaching out; a teammate will follow up by email.")
    return sentences


def answer_app(prompt: Prompt) -> str:
    """Answer a rendered application prompt the way the ``demo:/app`` stand-in does.

    Args:
        prompt: The request, as read by :class:`core.models.demo_prompts.Prompt`.

    Returns:
        Plain text starting with ``"[demo stand-in] "``. Deterministic: the same prompt
        always gets the same reply.
    """
    rules = app_rules(prompt.everything)
    message = customer_message(prompt)
    return f"{STAND_IN} " + " ".join(reply_sentences(message, rules))
