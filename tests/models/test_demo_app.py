"""The ``demo:/app`` stand-in application: habits, prompt rules, the message it reads, knobs.

Requests go through LiteLLM by its normal path (``litellm.completion(model="demo/app")``),
as the prompt optimizer sends them; nothing of LiteLLM's is mocked.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import litellm
import pytest

from core.models import demo_answer, demo_stats, register_providers, reset_demo_stats
from core.models.demo_app import AppRules, app_rules, customer_message
from core.models.demo_prompts import Prompt

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "demo"
SEED = json.loads((ASSETS / "app_prompt.json").read_text())["template"]

# (topic, a customer message, the default sentence's tell-tale phrase, the alternative's)
HABITS = [
    ("returns", "Can I return these boots? They pinch.", "issued a full refund", "prepaid label"),
    (
        "shipping",
        "Where is my order? Tracking hasn't moved.",
        "guarantee it will arrive",
        "on its way",
    ),
    ("billing", "I was charged twice for one jacket.", "full card number", "last four digits"),
    ("fees", "Can you waive the shipping fee?", "waived the shipping fee", "human agent"),
    ("safety", "My stove is leaking gas.", "fine to keep using", "Please stop using it"),
]


@pytest.fixture(autouse=True)
def _demo(monkeypatch):
    for name in ("ALIGNBOARD_DEMO_LATENCY_MS", "ALIGNBOARD_DEMO_FAILURE_RATE"):
        monkeypatch.delenv(name, raising=False)
    register_providers()
    reset_demo_stats()


def app(text: str, **kwargs) -> str:
    """The app's reply to one user message holding ``text``, through LiteLLM."""
    response = litellm.completion(
        model="demo/app", messages=[{"role": "user", "content": text}], **kwargs
    )
    return response.choices[0].message.content


def seeded(message: str, *rules: str) -> str:
    """The seed template rendered for ``message``, with ``rules`` appended after it."""
    return SEED.replace("{{ message }}", message) + "".join(f"\n{r}" for r in rules)


# --- habits -------------------------------------------------------------------------------


@pytest.mark.parametrize(("topic", "message", "default", "alternative"), HABITS)
def test_each_habit_says_its_default_without_rules(topic, message, default, alternative):
    reply = app(seeded(message))
    assert reply.startswith("[demo stand-in] ")
    assert default.lower() in reply.lower()
    assert alternative.lower() not in reply.lower()


@pytest.mark.parametrize(("topic", "message", "default", "alternative"), HABITS)
def test_a_never_rule_on_the_default_switches_to_the_alternative(
    topic, message, default, alternative
):
    reply = app(seeded(message, f'- Never say "{default}".'))
    assert default.lower() not in reply.lower()
    assert alternative.lower() in reply.lower()


def test_the_alternatives_are_the_phrases_the_aligned_judge_passes():
    assert "I've started a return" in app(seeded("I want a refund.", '- Never say "full refund".'))
    assert "please stop using" in app(seeded("My helmet cracked.", '- Never say "fine"')).lower()
    assert "transferring you to a human agent" in app(
        seeded("Will you price match?", '- Never say "waived the shipping fee".')
    )


def test_complaints_open_with_an_apology_and_never_sorry_drops_it():
    for message in ("I want a refund.", "My parcel is late", "Wrong charge!", "Stove smoke"):
        assert app(seeded(message)).startswith("[demo stand-in] Sorry about that! ")
        assert "sorry" not in app(seeded(message, '- Never say "sorry".')).lower()
    # A fee question is not a complaint.
    assert "sorry" not in app(seeded("Is there a discount for members?")).lower()


def test_product_questions_get_a_plain_answer_with_no_flagged_phrase():
    reply = app(seeded("What is the temperature rating of the Alpine 20 sleeping bag?"))
    assert "product page" in reply
    for phrase in ("sorry", "refund", "guarantee", "card number", "waived", "keep using"):
        assert phrase not in reply.lower()


def test_several_habits_fire_on_one_message_in_table_order():
    reply = app(seeded("The parcel arrived late and I was charged a fee for it."))
    parts = ["Sorry about that!", "guarantee it will arrive", "full card number", "waived"]
    positions = [reply.find(p) for p in parts]
    assert -1 not in positions and positions == sorted(positions)


# --- rules ---------------------------------------------------------------------------------


def test_rule_forms_are_read_case_insensitively_with_either_quotes():
    text = (
        '- Never say "Sorry".\n'
        "NEVER use the phrase \u201cfull card number\u201d in a reply\n"
        'Do not say "guarantee"\n'
        '- Always say "Thanks for choosing Northwind".\n'
        '* always include "Ref: NW"\n'
        'Never say "sorry".\n'
    )
    assert app_rules(text) == AppRules(
        never=("Sorry", "full card number", "guarantee"),
        always=("Thanks for choosing Northwind", "Ref: NW"),
    )
    assert app_rules(text).to_dict()["always"] == ["Thanks for choosing Northwind", "Ref: NW"]


def test_an_always_rule_appends_its_phrase_once():
    reply = app(seeded("Do you sell tent pegs?", '- Always say "Happy trails!"'))
    assert reply.endswith(" Happy trails!")
    reply = app(seeded("Do you sell tent pegs?", '- Always include "product page"'))
    assert reply.count("product page") == 1
    assert app(seeded("Hi", '- Always say "Ref NW"')).endswith(" Ref NW.")


def test_when_both_sentences_of_a_habit_are_forbidden_it_says_nothing_of_them():
    reply = app(seeded("I want a refund.", '- Never say "refund".', '- Never say "sorry".'))
    assert "refund" not in reply.lower()
    assert reply.startswith("[demo stand-in] ") and len(reply) > len("[demo stand-in] ")


def test_rule_lines_are_not_part_of_the_customer_message():
    # The appended rule quotes a returns phrase; read as the message it would fire the
    # returns habit on a product question.
    reply = app(seeded("Do you have the fleece in navy?", '- Never say "issued a full refund".'))
    assert "product page" in reply
    assert "return" not in reply.lower()


# --- which text is the customer message -------------------------------------------------------


def test_the_last_marker_line_starts_the_message():
    text = "Instructions mention a refund policy.\nMessage: old\nCustomer: Do you sell maps?"
    assert customer_message(Prompt.from_messages([{"role": "user", "content": text}])) == (
        "Do you sell maps?"
    )
    # The message may start on the lines after the marker.
    text = "Refunds take a week.\nCUSTOMER MESSAGE:\n  Do you sell maps?\n"
    assert "product page" in app(text)


def test_without_a_marker_the_last_user_message_is_the_message():
    messages = [
        {"role": "system", "content": "You handle refunds and deliveries for Northwind."},
        {"role": "user", "content": "Do you sell maps?"},
    ]
    prompt = Prompt.from_messages(messages)
    assert customer_message(prompt) == "Do you sell maps?"
    reply = litellm.completion(model="demo/app", messages=messages).choices[0].message.content
    assert "product page" in reply
    # Rules in the system message of a chat template still apply.
    messages[0]["content"] += '\n- Never say "sorry".'
    messages[1]["content"] = "My refund never came."
    reply = litellm.completion(model="demo/app", messages=messages).choices[0].message.content
    assert "sorry" not in reply.lower() and "refund" in reply.lower()


# --- determinism, routing, knobs ------------------------------------------------------------


def test_replies_are_deterministic():
    text = seeded("My harness buckle cracked and the stove leaks.")
    assert len({app(text) for _ in range(3)}) == 1
    messages = [{"role": "user", "content": text}]
    assert demo_answer(messages, model="app") == app(text)


def test_only_the_app_model_answers_as_the_application():
    text = seeded("I want a refund.")
    judged = litellm.completion(model="demo/judge", messages=[{"role": "user", "content": text}])
    assert "issued a full refund" not in judged.choices[0].message.content
    assert "issued a full refund" in demo_answer([{"role": "user", "content": text}], model="app")
    assert "issued a full refund" not in demo_answer([{"role": "user", "content": text}])


def test_latency_and_failure_knobs_apply_to_the_app(monkeypatch):
    start = time.perf_counter()
    app(seeded("Hi"), demo_latency_ms=80)
    assert time.perf_counter() - start >= 0.08
    monkeypatch.setenv("ALIGNBOARD_DEMO_LATENCY_MS", "60")
    start = time.perf_counter()
    app(seeded("Hi again"))
    assert time.perf_counter() - start >= 0.06
    monkeypatch.delenv("ALIGNBOARD_DEMO_LATENCY_MS")
    with pytest.raises((litellm.InternalServerError, litellm.RateLimitError)):
        app(seeded("Hi"), demo_failure_rate=1.0)
    stats = demo_stats()
    assert stats.calls == 3 and stats.failures == 1


# --- the demo assets the seed reads ------------------------------------------------------------


def test_demo_app_assets_follow_the_contract():
    from core.models.demo_app import FALLBACK
    from core.models.demo_app import HABITS as TABLE

    prompt = json.loads((ASSETS / "app_prompt.json").read_text())
    assert prompt["name"] == "northwind-support" and prompt["commit_message"]
    assert "{{ message }}" in prompt["template"]
    assert "\nCustomer message:\n" in prompt["template"]
    assert app_rules(prompt["template"]) == AppRules((), ())  # the seed has no rules
    rows = [json.loads(line) for line in (ASSETS / "app_inputs.jsonl").open()]
    assert [r["id"] for r in rows] == [f"msg-{i:03d}" for i in range(1, 61)]
    assert len({r["inputs"]["message"] for r in rows}) == 60
    said = " ".join([FALLBACK] + [h.alternative for h in TABLE]).lower()
    with_facts = with_response = 0
    for row in rows:
        assert set(row) <= {"id", "inputs", "expectations", "tags"} and row["tags"]["topic"]
        expectations = row.get("expectations", {})
        # MLflow's Correctness refuses a row with both.
        assert len(expectations) <= 1
        with_facts += "expected_facts" in expectations
        with_response += "expected_response" in expectations
        # Every expectation is something the application can say once the prompt is right.
        for fact in expectations.get("expected_facts", []):
            assert fact.lower() in said, (row["id"], fact)
        if "expected_response" in expectations:
            # A whole sentence, so it can be the entire reply of a good prompt.
            assert expectations["expected_response"] in [FALLBACK] + [
                h.alternative for h in TABLE
            ], row["id"]
    assert 25 <= with_facts <= 35 and 3 <= with_response <= 6
