"""Prompt optimization through the engine: the demo loop, scorers, reflection feedback, record.

Real sqlite store and Prompt Registry (the ``prompt_demo`` fixture: the seeded demo with
the Northwind prompt, its evaluation dataset and the aligned judge ``support_quality``
v1), the demo stand-ins (``demo:/app``, ``demo:/judge``, ``demo:/reflect``), the real gepa.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from core.errors import ValidationError
from core.io.prompt_data import DatasetRow
from core.optimization import record
from core.optimization.engine import run_prompt_optimization
from core.optimization.prompt_eval import PromptEvaluator, RowResult, ScoredVerdict, Scorer
from core.optimization.prompt_preflight import build_prompt_settings
from core.optimization.prompt_task import (
    VERSION_TAG_JUDGES,
    VERSION_TAG_RUN,
    PromptAdapter,
    PromptTask,
    check_prompt,
)
from core.optimization.spec import JudgeSpec
from core.store.prompts import load_prompt

PROMPT = "northwind-support"
DATASET = "dataset:northwind-messages"


def settings(experiment_id: str, **kw):
    base = dict(
        prompts=[PROMPT],
        dataset=DATASET,
        task_model="demo:/app",
        judges=["support_quality@production"],
        reflection_model="demo:/reflect",
        max_metric_calls=150,
    )
    return build_prompt_settings(experiment_id, **{**base, **kw})


def test_gepa_raises_the_held_out_judge_score_and_registers_the_rules_it_learned(prompt_demo):
    s = settings(prompt_demo)
    assert (s.prompt.name, s.prompt.version) == (PROMPT, 1)
    assert [(j.name, j.version) for j in s.judges] == [("support_quality", 1)]

    result = run_prompt_optimization(s)

    assert result.status == "finished" and result.verdict == "improved"
    assert result.test_score_after > result.test_score_before
    assert result.prompt_version == 2 and result.alias == "candidate"
    # The registered version is the run's best template, and it shows what it learned.
    v2 = load_prompt(f"{PROMPT}@candidate")
    assert v2.version == 2 and v2.template == result.template
    assert 'Never say "issued a full refund"' in v2.template and "{{ message }}" in v2.template
    assert v2.tags[VERSION_TAG_RUN] == result.run_id
    assert v2.tags[VERSION_TAG_JUDGES] == "support_quality@1"
    assert load_prompt(f"{PROMPT}@production").version == 1  # promotion is separate

    # Per-judge held-out scores with intervals, and both outputs of every test row.
    per_judge = result.test_scores["support_quality v1"]
    assert per_judge["after"] > per_judge["before"]
    lo, hi = per_judge["after_ci"]
    assert lo <= per_judge["after"] <= hi
    run = record.read_run_record(MlflowClient(), result.run_id)
    assert run.test is not None and len(run.test.outputs) == result.test_size
    assert [o.row_id for o in run.test.outputs] == list(run.split.test)
    for o in run.test.outputs:
        assert o.before and o.after and o.before.startswith("[demo stand-in]")
        verdict = o.after_verdicts["support_quality v1"]
        assert verdict["rationale"] and verdict["score"] in (0.0, 1.0)
    # The same record as judge alignment: candidates with validation scores, proposals.
    assert run.candidates[0].instructions == load_prompt(f"{PROMPT}@1").template
    assert set(run.candidates[0].val_scores) == set(run.split.val)
    assert any(c.instructions == result.template for c in run.candidates)
    assert run.result["prompt_version"] == 2
    # A perfect validation score leaves nothing to gain there: the search stops early.
    assert run.extra["stopped"].startswith("perfect validation score (1.0) at iteration")
    assert result.metric_calls < 150 and run.result["stop_reason"] == "perfect_score"
    assert result.stop_reason == "perfect_score"
    tags = MlflowClient().get_run(result.run_id).data.tags
    assert tags["alignboard.kind"] == "prompt_optimization" and tags["alignboard.prompt"] == PROMPT


def test_a_prompt_that_cannot_be_improved_registers_no_identical_version(prompt_demo, tmp_path):
    # Product questions only: the app's plain answer passes, so there is nothing to learn.
    path = tmp_path / "questions.jsonl"
    rows = [
        {
            "id": f"q{i}",
            "inputs": {"message": f"What sizes does the trail jacket model {i} come in?"},
        }
        for i in range(40)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    result = run_prompt_optimization(settings(prompt_demo, dataset=str(path), max_metric_calls=60))
    assert result.verdict == "no_change" and result.test_score_before == 1.0
    assert result.prompt_version is None and not result.registered
    assert load_prompt(PROMPT).version == 1
    # The best prompt is the seed: its held-out outputs are made once and stand for both
    # (a sampling application model asked twice would differ by chance alone).
    assert result.verdict_text.startswith("No change: the search kept the seed prompt")
    tm = json.loads(
        Path(MlflowClient().download_artifacts(result.run_id, "test_metrics.json")).read_text(
            encoding="utf-8"
        )
    )
    assert tm["verdict"]["same_as_seed"] is True
    assert all(o["before"] == o["after"] for o in tm["outputs"]) and tm["outputs"]


def test_reflection_sees_the_output_each_judges_verdict_and_rationale_and_a_human_label(
    prompt_demo,
):
    from core.optimization.prompt_eval import text_sha

    task = PromptTask(settings(prompt_demo))
    row = DatasetRow("r1", {"message": "Can I return my boots?"}, {})
    evaluator = task.make_evaluator()
    out = evaluator.evaluate([(task.seed_candidate(), [row])])[0][0]
    assert out.output and "issued a full refund" in out.output
    human = {("r1", text_sha(out.output)): (False, 'Promises an "instant refund".')}
    adapter = PromptAdapter(evaluator, task.seed_candidate(), human=human)
    batch = adapter.evaluate([row], task.seed_candidate())
    assert batch.scores == [0.0]
    (rec,) = adapter.make_reflective_dataset(task.seed_candidate(), batch, [PROMPT])[PROMPT]
    assert rec["Inputs"] == "message: Can I return my boots?"
    assert rec["Application output"] == out.output
    feedback = rec["Feedback"]
    assert "Judge: support_quality v1" in feedback and "Judge verdict: fail" in feedback
    assert (
        'Judge rationale: [demo stand-in] The response contains "issued a full refund"' in feedback
    )
    assert "Human label: fail" in feedback and "instant refund" in feedback
    adapter.close()


def test_two_scorers_combine_by_the_mean_and_each_keeps_its_own_score(prompt_demo):
    s = settings(prompt_demo, scorers=["correctness"])
    task = PromptTask(s)
    assert task.frontier_type == "hybrid"
    rows = [
        DatasetRow(
            "a", {"message": "Can I return my boots?"}, {"expected_facts": ["prepaid label"]}
        ),
        DatasetRow("b", {"message": "Can I return my tent?"}, {}),
    ]
    evaluator = task.make_evaluator()
    a, b = evaluator.evaluate([(task.seed_candidate(), rows)])[0]
    # Row a: the judge fails the refund promise, Correctness misses "prepaid label".
    assert a.scores == {"support_quality v1": 0.0, "correctness": 0.0}
    # Row b has no expectations: Correctness is skipped, not counted as a failure.
    assert b.verdicts["correctness"].skipped and b.score == b.scores["support_quality v1"]
    fixed = {PROMPT: task.seed_candidate()[PROMPT] + '\n- Never say "issued a full refund".'}
    a2, _ = evaluator.evaluate([(fixed, rows)])[0]
    assert a2.scores == {"support_quality v1": 1.0, "correctness": 1.0} and a2.score == 1.0
    adapter = PromptAdapter(evaluator, task.seed_candidate())
    batch = adapter.evaluate(rows, task.seed_candidate())
    assert batch.objective_scores == [
        {"support_quality v1": 0.0, "correctness": 0.0},
        {"support_quality v1": b.scores["support_quality v1"], "correctness": 0.0},
    ]
    evaluator.close()


def test_outputs_and_verdicts_are_paid_for_once_and_survive_a_resume(prompt_demo):
    task = PromptTask(settings(prompt_demo))
    rows = [DatasetRow(f"r{i}", {"message": f"Where is my parcel {i}?"}, {}) for i in range(3)]
    first = task.make_evaluator()
    first.evaluate([(task.seed_candidate(), rows)])
    assert first.stats.app_calls == 3
    first.evaluate([(task.seed_candidate(), rows)])
    assert first.stats.app_calls == 3 and first.stats.output_hits == 3
    again = task.make_evaluator(first.state())
    results = again.evaluate([(task.seed_candidate(), rows)])[0]
    assert again.stats.app_calls == 0 and all(r.output for r in results)
    first.close()
    again.close()


def test_a_proposal_keeps_the_seed_variables_and_invents_none():
    ok = check_prompt(
        "Answer politely.\n\nCustomer message:\n{{ message }}", ["message"], ["message"]
    )
    assert ok.status == "ok"
    dropped = check_prompt("Answer politely and never promise refunds.", ["message"], ["message"])
    assert dropped.status == "repaired" and dropped.text.endswith("message: {{ message }}")
    invented = check_prompt(
        "Answer politely, mention {{ order_id }}.\n{{ message }}", ["message"], ["message"]
    )
    assert invented.status == "repaired" and "order_id" not in invented.text
    assert check_prompt("{{ message }}", ["message"], ["message"]).status == "rejected"


@pytest.mark.parametrize(
    ("value_type", "value_map", "options", "value", "expected"),
    [
        ("pass_fail", {}, (), True, 1.0),
        ("pass_fail", {}, (), "no", 0.0),
        ("numeric", {}, (), 4, 0.75),
        ("numeric", {"min": 0, "max": 10}, (), 5, 0.5),
        ("numeric", {}, (), 0.4, 0.4),
        ("categorical", {"good": 1.0, "partial": 0.5}, ("bad", "partial", "good"), "Partial", 0.5),
        ("categorical", {}, ("bad", "partial", "good"), "good", 1.0),
        ("categorical", {}, ("bad", "partial", "good"), "unknown", None),
    ],
)
def test_verdicts_map_to_a_score_between_0_and_1(value_type, value_map, options, value, expected):
    spec = JudgeSpec("j", "x", value_type, "demo:/judge", options=options)
    assert (
        Scorer("j v1", "judge", value_type, spec, value_map=value_map).normalise(value) == expected
    )


def test_a_failed_application_call_is_a_failed_row_not_a_crashed_run(prompt_demo, monkeypatch):
    monkeypatch.setenv("ALIGNBOARD_DEMO_FAILURE_RATE", "1.0")
    task = PromptTask(settings(prompt_demo))
    evaluator = PromptEvaluator(task.settings, task.scorers(), variables=["message"], app_retries=0)
    (row,) = evaluator.evaluate(
        [(task.seed_candidate(), [DatasetRow("r", {"message": "hi"}, {})])]
    )[0]
    assert isinstance(row, RowResult) and row.output is None and row.score == 0.0
    assert "demo stand-in" in (row.error or "") and evaluator.stats.failed_rows == {"r"}
    assert row.verdicts == {} or all(isinstance(v, ScoredVerdict) for v in row.verdicts.values())
    evaluator.close()


def test_settings_round_trip_through_the_run_record(prompt_demo):
    from core.optimization.engine import load_any_settings
    from core.optimization.prompt_spec import PromptSettings
    from core.optimization.prompt_task import create_prompt_run

    s = settings(prompt_demo, mapping={"message": "message"}, scorers=["exact_match"])
    run_id = create_prompt_run(s)
    back = load_any_settings(run_id)
    assert isinstance(back, PromptSettings) and back == s
    params = MlflowClient().get_run(run_id).data.params
    assert params["prompt"] == f"{PROMPT}@1" and params["judges"] == "support_quality@1"


def test_fixture_assets_are_what_the_demo_seed_registered(prompt_demo):
    seed = json.loads(
        (Path(__file__).parents[2] / "assets" / "demo" / "app_prompt.json").read_text("utf-8")
    )
    assert load_prompt(f"{PROMPT}@production").template == seed["template"]


def test_two_existing_versions_are_compared_on_held_out_rows_without_registering(prompt_demo):
    from core.optimization.prompt_preflight import build_comparison_settings
    from core.store.prompts import list_prompt_versions, register_prompt

    seed = load_prompt(f"{PROMPT}@1").template
    register_prompt(PROMPT, seed.replace("{{ message }}", '{{ message }}\n- Never say "sorry".'))
    s = build_comparison_settings(
        prompt_demo, PROMPT, 1, 2, dataset=DATASET, task_model="demo:/app",
        judges=["support_quality@1"],
    )  # fmt: skip
    result = run_prompt_optimization(s)
    assert result.optimizer == "compare" and result.metric_calls == 0
    assert (result.base_version, result.compared_version, result.prompt_version) == (1, 2, None)
    assert result.test_score_after >= result.test_score_before
    assert [v.version for v in list_prompt_versions(PROMPT)] == [1, 2]  # nothing registered
    run = record.read_run_record(MlflowClient(), result.run_id)
    assert run.test is not None and len(run.test.outputs) == result.test_size > 0
    assert all("sorry" not in (o.after or "").lower() for o in run.test.outputs)
    assert [c.id for c in run.candidates] == [0, 1]


def test_without_a_stop_score_the_search_spends_its_budget(prompt_demo):
    result = run_prompt_optimization(settings(prompt_demo, stop_at_score=None, max_metric_calls=80))
    assert result.metric_calls >= 80 - 16  # within one validation pass of the budget
    run = record.read_run_record(MlflowClient(), result.run_id)
    assert "stopped" not in run.extra and result.verdict == "improved"


def test_the_application_is_called_with_the_temperature_and_max_tokens_set(
    prompt_demo, monkeypatch
):
    # A self-hosted application model samples at its server's default (0.8 on llama.cpp)
    # unless told otherwise: B4 saw the same seed prompt score 0.75 and 1.00 in two runs.
    from tests.support.openai_server import openai_server

    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-real-key-0000")
    with openai_server() as server:
        served = dict(task_model="openai:/app-served", task_base_url=server.base_url)
        for optimizer in ("gepa", "mlflow-gepa"):
            result = run_prompt_optimization(
                settings(
                    prompt_demo,
                    optimizer=optimizer,
                    max_metric_calls=30,
                    task_temperature=0,
                    task_max_tokens=200,
                    **served,
                )
            )
            assert result.status == "finished"
        bodies = [r.body for r in server.requests if r.path.endswith("/chat/completions")]
        assert bodies and all(
            b.get("temperature") == 0 and b.get("max_tokens") == 200 for b in bodies
        ), [(b.get("temperature"), b.get("max_tokens")) for b in bodies[:3]]
        server.requests.clear()
        run_prompt_optimization(settings(prompt_demo, max_metric_calls=30, **served))
        bodies = [r.body for r in server.requests if r.path.endswith("/chat/completions")]
        assert bodies and not any("temperature" in b or "max_tokens" in b for b in bodies)
    with pytest.raises(ValidationError, match="temperature is between 0 and 2"):
        settings(prompt_demo, task_temperature=3)
    with pytest.raises(ValidationError, match="max tokens must be at least 1"):
        settings(prompt_demo, task_max_tokens=0)
