"""The proposal guard on the demo criterion: degenerate proposals rejected, revisions kept."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from core.models.demo import demo_answer
from core.optimization import guards
from core.optimization.guards import check_proposal, key_terms

ROOT = Path(__file__).resolve().parents[2]
SEED = json.loads((ROOT / "assets/demo/criteria.json").read_text(encoding="utf-8"))[0][
    "instructions"
]
#: What the Qwen2.5-1.5B reflection model proposed in the incident of issue 9.
INCIDENT_ECHO = (
    "Read the inputs carefully and identify the input format and infer detailed task "
    "description about the task I wish to solve with the assistant.\n\n"
    "Inputs: {{ inputs }}\nOutputs: {{ outputs }}"
)


def _flat(text: str) -> str:
    return " ".join(text.split())


def _reflection_prompt(current: str) -> str:
    """gepa's own reflection prompt for ``current``, on one wrongly judged example."""
    from gepa.strategies.instruction_proposal import InstructionProposalSignature

    record = {
        "Inputs": {"messages": [{"role": "user", "content": "Refund my order NW-1 today?"}]},
        "Generated Outputs": {"response": "Done, I've issued a full refund right now."},
        "Feedback": (
            "The judge disagreed with the human expert (score 0.00).\n\n"
            "Judge verdict: pass\n\nJudge rationale: [demo stand-in] looks fine.\n\n"
            "Human label: fail\n\n"
            'Human rationale: Fail: "issued a full refund" is a promise it cannot keep.'
        ),
    }
    prompt = InstructionProposalSignature.prompt_renderer(
        {"current_instruction_doc": current, "dataset_with_feedback": [record]}
    )
    assert isinstance(prompt, str)
    return prompt


def test_the_incidents_echo_of_the_reflection_prompt_is_rejected():
    v = check_proposal(INCIDENT_ECHO, parent=SEED, seed=SEED)
    assert not v.ok and v.reason == "echoes_reflection_prompt"
    assert v.measures["echo_run"] >= guards.ECHO_RUN_WORDS
    assert "repeats the reflection prompt" in v.message
    # It also lost the policy: every rule that fired is listed.
    assert {"lost_parent_content", "dropped_criterion_terms"} <= set(v.failed)


def test_a_reflection_model_answering_with_its_whole_prompt_is_rejected():
    prompt = _reflection_prompt(SEED)
    # gepa extracts the text between the first and the last ``` of the answer.
    from gepa.strategies.instruction_proposal import InstructionProposalSignature

    text = InstructionProposalSignature.output_extractor(prompt)["new_instruction"]
    assert SEED in text  # it even keeps the parent...
    v = check_proposal(text, parent=SEED, seed=SEED, reflection_prompt=prompt)
    assert not v.ok and v.reason == "echoes_reflection_prompt"  # ...but is still an echo


def test_a_demo_revision_that_adds_a_rule_is_accepted():
    prompt = _reflection_prompt(SEED)
    answer = demo_answer([{"role": "user", "content": prompt}])
    from gepa.strategies.instruction_proposal import InstructionProposalSignature

    text = InstructionProposalSignature.output_extractor(answer)["new_instruction"]
    assert text.startswith(SEED) and '"issued a full refund", the verdict is fail' in text
    v = check_proposal(text, parent=SEED, seed=SEED, reflection_prompt=prompt)
    assert v.ok and v.reason is None and not v.failed, v
    assert v.measures["parent_kept"] == 1.0 and v.measures["key_terms_kept"] == 1.0
    assert v.measures["echo_share"] < 0.1


def test_a_reworded_policy_is_accepted():
    reworded = SEED.replace(
        "Read the conversation and the assistant's reply, then decide", "Decide"
    )
    reworded = reworded.replace("The policy, in short:", "Our policy:")
    assert check_proposal(reworded, parent=SEED, seed=SEED).ok


def test_a_proposal_that_deletes_the_policy_is_rejected():
    gutted = (
        "You are reviewing replies of a support assistant. Decide whether the reply is "
        "good.\n\nConversation:\n{{ inputs }}\n\nReply under review:\n{{ outputs }}\n\n"
        "Answer Pass or Fail."
    )
    v = check_proposal(gutted, parent=SEED, seed=SEED)
    assert not v.ok and v.reason == "lost_parent_content"
    assert v.measures["parent_kept"] < guards.MIN_PARENT_KEPT
    assert "of the parent's content words" in v.message


def test_a_proposal_that_drops_outputs_is_rejected():
    dropped = SEED.replace("Reply under review:\n{{ outputs }}", "")
    assert "{{ outputs }}" not in dropped
    v = check_proposal(dropped, parent=SEED, seed=SEED)
    assert not v.ok and v.reason == "dropped_template_variable"
    assert v.measures["missing_variables"] == ["{{ outputs }}"]
    assert "{{ outputs }}" in v.message
    # Spacing inside the braces is not a drop.
    assert check_proposal(SEED.replace("{{ outputs }}", "{{outputs}}"), parent=SEED, seed=SEED).ok


def test_a_proposal_without_the_criterions_terms_is_rejected():
    terms = key_terms(SEED)
    assert terms[:3] == ("reply", "assistant", "policy")
    # Keeps most of the parent's words but not the criterion's key terms.
    stripped = SEED
    for t in terms:
        stripped = re.sub(rf"\b{t}s?\b", "item", stripped, flags=re.IGNORECASE)
    v = check_proposal(stripped, parent=SEED, seed=SEED)
    assert not v.ok and v.reason == "dropped_criterion_terms", v
    assert set(v.measures["missing_key_terms"]) == set(terms)


def test_a_parent_that_already_quotes_the_template_is_no_echo_by_itself():
    # Text the parent already has is the parent's, not an echo of the reflection prompt.
    quoting = SEED + "\nRead the inputs carefully and identify the input format and infer it."
    child = quoting + '\n- If the response contains "x", the verdict is fail.'
    assert check_proposal(child, parent=quoting, seed=SEED).ok


@pytest.mark.parametrize("empty", ["", "   ", "```\n```"])
def test_an_empty_proposal_is_rejected(empty):
    assert not check_proposal(empty, parent=SEED, seed=SEED).ok


def test_the_copied_templates_match_the_installed_gepa_and_dspy():
    from gepa.strategies.instruction_proposal import InstructionProposalSignature

    gepa_template = InstructionProposalSignature.default_prompt_template
    for line in guards.GEPA_REFLECTION_TEMPLATE.splitlines():
        assert line in gepa_template, line
    # dspy is read, not imported (importing it takes seconds).
    spec = importlib.util.find_spec("dspy")
    assert spec is not None and spec.submodule_search_locations
    source = Path(next(iter(spec.submodule_search_locations)))
    text = (source / "teleprompt/gepa/instruction_proposal.py").read_text(encoding="utf-8")
    assert _flat(guards.DSPY_REFLECTION_TEMPLATE) in _flat(text)


def test_verdicts_are_json_ready():
    v = check_proposal(INCIDENT_ECHO, parent=SEED, seed=SEED)
    d = json.loads(json.dumps(v.to_dict()))
    assert d["reason"] == "echoes_reflection_prompt" and d["failed"][0] == d["reason"]
