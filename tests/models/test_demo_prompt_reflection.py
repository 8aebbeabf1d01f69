"""The demo reflection model on application prompts, the Correctness stand-in, and the loop.

Reflection requests are rendered by gepa's own ``InstructionProposalSignature`` from records in
the issue-10 contract format and sent through LiteLLM to ``demo/reflect``; the answer is read
back with gepa's own extractor. Judges are MLflow judges (``make_judge``, ``Correctness``) on
``demo:/judge``. MLflow's GEPA and MetaPrompt optimizers run for real on a temporary store.
"""

from __future__ import annotations

import json
from pathlib import Path

import litellm
import pytest
from gepa.strategies.instruction_proposal import InstructionProposalSignature
from mlflow.genai.judges import make_judge

from core.models import register_providers, reset_demo_stats
from core.models.demo_reflection import add_never_rules

ROOT = Path(__file__).resolve().parents[2]
SEED = json.loads((ROOT / "assets" / "demo" / "app_prompt.json").read_text())["template"]
ROWS = [json.loads(line) for line in (ROOT / "assets" / "demo" / "app_inputs.jsonl").open()]
ALIGNED = (ROOT / "tests" / "fixtures" / "aligned_demo_judge.txt").read_text(encoding="utf-8")


@pytest.fixture(autouse=True)
def _demo(monkeypatch):
    for name in ("ALIGNBOARD_DEMO_LATENCY_MS", "ALIGNBOARD_DEMO_FAILURE_RATE"):
        monkeypatch.delenv(name, raising=False)
    register_providers()
    reset_demo_stats()


def record(
    message: str,
    output: str,
    verdict: str,
    rationale: str,
    *,
    human: tuple[str, str] | None = None,
    score: str | None = None,
) -> dict[str, str]:
    """One reflective record as the lead's PromptAdapter writes it (contract of issue 10)."""
    failing = verdict.lower() in ("fail", "no", "false")
    lines = [
        f"Score: {score or ('0.00' if failing else '1.00')}",
        "Judge: support_quality v2",
        f"Judge verdict: {verdict}",
        f"Judge rationale: {rationale}",
    ]
    if human:
        lines += [f"Human label: {human[0]}", f"Human rationale: {human[1]}"]
    return {
        "Inputs": f"message: {message}",
        "Application output": output,
        "Feedback": "\n".join(lines),
    }


def reflect(template: str, records: list[dict[str, str]]) -> str:
    """Ask ``demo/reflect`` for a new template the way gepa does; return gepa's extraction."""
    prompt = InstructionProposalSignature.prompt_renderer(
        {"current_instruction_doc": template, "dataset_with_feedback": records}
    )
    response = litellm.completion(
        model="demo/reflect", messages=[{"role": "user", "content": prompt}]
    )
    text = response.choices[0].message.content
    assert text.startswith("[demo stand-in] ")
    return InstructionProposalSignature.output_extractor(text)["new_instruction"]


def rule_says(phrase: str, verdict: str) -> str:
    return f'[demo stand-in] The response contains "{phrase}", and the instructions say that means {verdict}.'


REFUND = "[demo stand-in] Sorry about that! I've issued a full refund to your card, so you'll see it today."
RETURN = "[demo stand-in] Sorry about that! I've started a return and emailed you a prepaid label."
SAFETY = "[demo stand-in] It should be fine to keep using it."


# --- prompt reflection ----------------------------------------------------------------------


def test_reflection_adds_never_rules_for_phrases_of_failing_records_only():
    new = reflect(
        SEED,
        [
            record("Refund please", REFUND, "fail", rule_says("issued a full refund", "fail")),
            record("Return please", RETURN, "pass", rule_says("I've started a return", "pass")),
            record(
                "Is it late?",
                "[demo stand-in] Sorry about that! I guarantee it will arrive by Friday.",
                "no",
                rule_says("guarantee it will arrive", "fail"),
            ),
        ],
    )
    assert '- Never say "issued a full refund".' in new
    assert '- Never say "guarantee it will arrive".' in new
    assert "started a return" not in new
    # The template itself is intact: variables untouched, rules before the message marker.
    assert new.count("{{ message }}") == 1
    assert new.endswith("Customer message:\n{{ message }}")
    assert new.replace('- Never say "issued a full refund".\n', "").replace(
        '- Never say "guarantee it will arrive".\n', ""
    ) == SEED.replace("Customer message:", "\nCustomer message:")


def test_a_score_below_one_fails_and_the_base_heuristic_quote_is_learned():
    new = reflect(
        SEED,
        [
            record(
                "Stove leaks",
                "[demo stand-in] Sorry about that! It should be fine to keep using it.",
                "3",
                '[demo stand-in] No rule matched; the base heuristic says fail because the response contains "sorry".',
                score="0.50",
            )
        ],
    )
    assert '- Never say "sorry".' in new


def test_nothing_to_learn_gives_the_template_back_unchanged():
    records = [
        record("Return please", RETURN, "pass", rule_says("I've started a return", "pass")),
        # Failing, but the quoted phrase is not in the output (e.g. a missing fact).
        record("Return please", RETURN, "fail", 'It is missing "5-7 business days".'),
    ]
    assert reflect(SEED, records) == SEED.strip()
    assert reflect(SEED, []) == SEED.strip()


def test_phrases_already_forbidden_are_not_added_again():
    template = add_never_rules(SEED, ["full refund"])
    new = reflect(
        template,
        [record("Refund", REFUND, "fail", rule_says("issued a full refund", "fail"))],
    )
    assert new == template.strip()
    assert new.count("Never say") == 1


def test_human_labels_on_the_output_overrule_and_extend_the_judge():
    new = reflect(
        SEED,
        [
            # The judge passes the blind spot; the human fails it and quotes the phrase.
            record(
                "My stove leaks",
                SAFETY,
                "pass",
                "[demo stand-in] No rule matched; the base heuristic says pass.",
                human=(
                    "fail",
                    'Telling them it is "fine to keep using" a leaking stove is dangerous.',
                ),
            ),
            # The judge fails an apology the human accepts: nothing learned from it.
            record(
                "Where is it",
                "[demo stand-in] Sorry about that! Tracking shows it is on its way.",
                "fail",
                '[demo stand-in] No rule matched; the base heuristic says fail because the response contains "sorry".',
                human=("pass", "Accurate and kind."),
            ),
        ],
    )
    assert '- Never say "fine to keep using".' in new
    assert "sorry" not in new.lower()


def test_a_chat_template_as_json_gets_the_rules_in_its_system_message():
    chat = json.dumps(
        [
            {"role": "system", "content": "You are Northwind's assistant."},
            {"role": "user", "content": "Customer message:\n{{ message }}"},
        ]
    )
    messages = json.loads(
        reflect(chat, [record("x", REFUND, "fail", rule_says("full refund", "fail"))])
    )
    assert messages[0]["content"] == 'You are Northwind\'s assistant.\n- Never say "full refund".'
    assert messages[1]["content"] == "Customer message:\n{{ message }}"


def test_judge_reflection_is_unchanged_by_prompt_reflection():
    # A judge-alignment record (no "Application output" heading) still gets judge rules.
    prompt = InstructionProposalSignature.prompt_renderer(
        {
            "current_instruction_doc": "Judge the reply.",
            "dataset_with_feedback": [
                {
                    "Inputs": "q",
                    "Generated Outputs": "Judge verdict: pass",
                    "Feedback": 'Judge verdict: pass\nHuman label: fail\nHuman rationale: It says "instant refund".',
                }
            ],
        }
    )
    text = (
        litellm.completion(model="demo/reflect", messages=[{"role": "user", "content": prompt}])
        .choices[0]
        .message.content
    )
    assert 'If the response contains "instant refund", the verdict is fail.' in text


def test_records_with_several_judges_and_multi_line_rationales_are_parsed():
    from core.models.demo_reflection import parse_prompt_records, phrases_to_avoid

    prompt = InstructionProposalSignature.prompt_renderer(
        {
            "current_instruction_doc": SEED,
            "dataset_with_feedback": [
                {
                    "Inputs": "message: Refund?",
                    "Application output": REFUND,
                    "Feedback": "Score: 0.50\n"
                    "Judge: tone v1\nJudge verdict: pass\n"
                    'Judge rationale: Warm. It says "Sorry about that".\n'
                    "Judge: support_quality v2\nJudge verdict: Fail\n"
                    "Judge rationale: Breaks the returns policy:\n"
                    'it says "issued a full refund".',
                }
            ],
        }
    )
    [rec] = parse_prompt_records(prompt)
    assert rec.score == 0.5 and rec.failing
    assert [(j.judge, j.verdict) for j in rec.judges] == [
        ("tone v1", "pass"),
        ("support_quality v2", "Fail"),
    ]
    assert "issued a full refund" in rec.judges[1].rationale
    assert phrases_to_avoid([rec], SEED) == ["issued a full refund"]


def mlflow_record(output: str, score: float, rationales: dict[str, str]) -> dict:
    """One record as MLflow's GepaPromptOptimizer builds it (gepa renders it as markdown)."""
    return {
        "component_name": "northwind-support",
        "trace": [{"name": "predict_fn", "inputs": {"message": "x"}, "outputs": output}],
        "score": score,
        "inputs": {"message": "x"},
        "outputs": output,
        "expectations": {"expected_facts": ["5-7 business days"]},
        "rationales": rationales,
        "index": 0,
    }


def test_mlflow_gepa_records_teach_from_rationales_that_do_not_state_a_pass():
    judge_fail = rule_says("issued a full refund", "fail")
    judge_pass = rule_says("I've started a return", "pass")
    missing = '[demo stand-in] The response is not correct: it is missing "5-7 business days".'
    new = reflect(
        SEED,
        [
            mlflow_record(REFUND, 0.0, {"support_quality": judge_fail, "correctness": missing}),
            # Mixed: the judge passed (its rationale says so), Correctness failed on a missing
            # fact. Neither phrase is one to avoid.
            mlflow_record(RETURN, 0.5, {"support_quality": judge_pass, "correctness": missing}),
            mlflow_record(RETURN, 1.0, {"support_quality": judge_pass}),
        ],
    )
    assert new.count("Never say") == 1
    assert '- Never say "issued a full refund".' in new


# --- Correctness stand-in -----------------------------------------------------------------------


def test_correctness_says_yes_only_when_every_expected_fact_is_in_the_response():
    from mlflow.genai.scorers import Correctness

    scorer = Correctness(model="demo:/judge")
    ask = {"message": "Can I return it? What about the prepaid label?"}
    good = (
        "[demo stand-in] I've started a return and emailed you a PREPAID  label; 5-7 business days."
    )
    fb = scorer(
        inputs=ask,
        outputs=good,
        expectations={"expected_facts": ["prepaid label", "5-7 business days"]},
    )
    assert fb.value == "yes"
    assert fb.rationale.startswith("[demo stand-in]")
    # A fact the customer wrote is not one the reply stated.
    fb = scorer(
        inputs=ask,
        outputs="[demo stand-in] 5-7 business days.",
        expectations={"expected_facts": ["prepaid label", "5-7 business days"]},
    )
    assert fb.value == "no"
    assert '"prepaid label"' in fb.rationale and "5-7" not in fb.rationale


def test_correctness_with_an_expected_response_needs_it_contained():
    from mlflow.genai.scorers import Correctness

    scorer = Correctness(model="demo:/judge")
    expected = "Please stop using it right away"
    fb = scorer(
        inputs={"message": "Stove leaks"},
        outputs=f"[demo stand-in] {expected}; ok.",
        expectations={"expected_response": expected},
    )
    assert fb.value == "yes"
    fb = scorer(
        inputs={"message": "Stove leaks"},
        outputs=SAFETY,
        expectations={"expected_response": expected},
    )
    assert fb.value == "no"


# --- the loop: seed prompt -> app -> aligned judge -> reflection -> better prompt ---------------


def _run(template: str, judge) -> tuple[int, list[dict[str, str]]]:
    passed, failing = 0, []
    for row in ROWS:
        message = row["inputs"]["message"]
        rendered = template.replace("{{ message }}", message)
        reply = (
            litellm.completion(model="demo/app", messages=[{"role": "user", "content": rendered}])
            .choices[0]
            .message.content
        )
        fb = judge(inputs=row["inputs"], outputs=reply)
        if fb.value is True:
            passed += 1
        else:
            failing.append(record(message, reply, "fail", fb.rationale))
    return passed, failing


def test_reflection_on_the_aligned_judge_rationales_raises_the_pass_rate():
    judge = make_judge(
        name="support_quality", instructions=ALIGNED, model="demo:/judge", feedback_value_type=bool
    )
    before, failing = _run(SEED, judge)
    revised = reflect(SEED, failing)
    after, still_failing = _run(revised, judge)
    print(f"\naligned-judge pass rate: seed {before}/60 -> revised {after}/60\n{revised}")
    assert 21 <= before <= 30  # the seed fails 50-65% of the demo messages
    assert after >= before + 25
    for phrase in (
        "issued a full refund",
        "guarantee it will arrive",
        "full card number",
        "waived the shipping fee",
        "sorry",
    ):
        assert f'- Never say "{phrase}".' in revised
    assert revised.count("{{ message }}") == 1
    assert reflect(revised, still_failing) == revised  # nothing left it can learn


# --- MLflow's own optimizers with the demo models ----------------------------------------------


@pytest.fixture
def mlflow_experiment(experiment, monkeypatch):
    """MLflow's optimizers log into this test's experiment (artifacts under its own folder)."""
    import mlflow

    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment.experiment_id)
    yield experiment
    # Traces are exported in the background: finish while this test's store is still set,
    # or they land in a default ./mlflow.db.
    mlflow.flush_trace_async_logging()


def _mlflow_optimize(optimizer):
    import mlflow

    prompt = mlflow.genai.register_prompt(name="northwind-support", template=SEED)
    judge = make_judge(
        name="support_quality", instructions=ALIGNED, model="demo:/judge", feedback_value_type=bool
    )

    def predict_fn(message: str) -> str:
        text = mlflow.genai.load_prompt(prompt.uri).format(message=message)
        response = litellm.completion(
            model="demo/app", messages=[{"role": "user", "content": text}]
        )
        return response.choices[0].message.content

    data = [
        {"inputs": r["inputs"]}
        for r in ROWS
        if r["tags"]["topic"] in ("returns", "billing", "product")
    ]
    return mlflow.genai.optimize_prompts(
        predict_fn=predict_fn,
        train_data=data,
        prompt_uris=[prompt.uri],
        optimizer=optimizer,
        scorers=[judge],
    )


def test_mlflow_gepa_prompt_optimizer_learns_from_the_scorer_rationales(mlflow_experiment):
    from mlflow.genai.optimize.optimizers import GepaPromptOptimizer

    result = _mlflow_optimize(
        GepaPromptOptimizer(reflection_model="demo:/reflect", max_metric_calls=60)
    )
    template = result.optimized_prompts[0].template
    print(f"\nmlflow-gepa: {result.initial_eval_score} -> {result.final_eval_score}")
    assert result.final_eval_score > result.initial_eval_score
    assert "Never say" in template and "{{ message }}" in template


def test_mlflow_metaprompt_optimizer_gets_a_json_answer_with_rules(mlflow_experiment):
    from mlflow.genai.optimize.optimizers import MetaPromptOptimizer

    result = _mlflow_optimize(MetaPromptOptimizer(reflection_model="demo:/reflect"))
    template = result.optimized_prompts[0].template
    print(f"\nmetaprompt: {result.initial_eval_score} -> {result.final_eval_score}")
    assert '- Never say "issued a full refund".' in template
    assert '- Never say "full card number".' in template
    assert result.final_eval_score > result.initial_eval_score


def test_mlflow_metaprompt_zero_shot_gives_the_prompts_back_unchanged(mlflow_experiment):
    import mlflow
    from mlflow.genai.optimize.optimizers import MetaPromptOptimizer

    prompt = mlflow.genai.register_prompt(name="northwind-support", template=SEED)
    result = mlflow.genai.optimize_prompts(
        predict_fn=lambda message: "",
        train_data=[],
        prompt_uris=[prompt.uri],
        optimizer=MetaPromptOptimizer(reflection_model="demo:/reflect"),
        scorers=[],
    )
    assert result.optimized_prompts[0].template == SEED
