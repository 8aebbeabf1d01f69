"""MLflow's own GEPA and SIMBA optimizers as baselines, and the traces handed to them.

With the demo model, MLflow's GEPA path cannot change the instructions: its reflection
sees only "This trajectory got a score of ..." and no human rationale, so the demo
reflection model (which learns from quoted phrases in rationales) proposes the same text.
SIMBA needs varying scores across resampled runs of one example to write a rule; the
deterministic demo judge gives none. These tests check that both run, stay within the
budget and record what they did.
"""

from __future__ import annotations

import pytest

from core.optimization.mlflow_judge import fetch_traces
from core.optimization.runners import mlflow_baselines as mlflow_runners
from tests.optimization.demo_examples import ListRecorder, demo_examples, demo_settings


def test_traces_for_align_carry_only_the_examples_label(demo_store):
    ex = demo_examples(demo_store)
    examples = ex["train"] + ex["val"]
    traces = fetch_traces(examples, "support_quality")
    assert [t.info.trace_id for t in traces] == [e.trace_id for e in examples]
    doubly = _doubly_labeled(demo_store)
    for trace, example in zip(traces, examples, strict=True):
        human = [
            a
            for a in trace.info.assessments
            if a.name == "support_quality" and a.source.source_type == "HUMAN"
        ]
        assert [a.assessment_id for a in human] == [example.label_version]
    # The filter was exercised: some of these traces carry two reviewers' labels.
    assert doubly & {e.trace_id for e in examples}


def _doubly_labeled(experiment_id: str) -> set[str]:
    from collections import Counter

    from core.labeling.labels import current_labels

    counts = Counter(lab.trace_id for lab in current_labels(experiment_id, "support_quality"))
    return {tid for tid, n in counts.items() if n > 1}


def test_mlflow_gepa_runs_within_budget_and_records_candidates(demo_store, tmp_path):
    ex = demo_examples(demo_store)
    settings = demo_settings(demo_store, "mlflow-gepa", max_metric_calls=120)
    recorder = ListRecorder(tmp_path)
    outcome = mlflow_runners.run_mlflow_gepa(settings, ex["train"], ex["val"], recorder)

    n = len(ex["train"]) + len(ex["val"])
    candidates = recorder.artifacts["candidates.json"]
    seed = candidates[0]
    assert seed["id"] == 0 and seed["iteration"] == 0 and seed["parent_ids"] == []
    assert seed["instructions"] == settings.judge.instructions
    # dspy validates on the traces it was given; the writer keys its scores by trace id.
    assert set(seed["val_scores"]) == {e.trace_id for e in ex["train"] + ex["val"]}
    assert 0 < seed["val_score"] < 1
    assert recorder.metric("val_score") == seed["val_score"]

    # gepa checks the budget between iterations; alignboard's stop callback ends the search
    # before an iteration that could overshoot it by more than one minibatch (two
    # minibatches plus all n examples, which MLflow's GEPA validates on).
    assert n <= outcome.metric_calls <= 120 + settings.minibatch_size
    assert outcome.iterations >= 2
    assert recorder.metric("llm_calls") >= 0 and recorder.metric("wall_seconds") > 0
    proposals = recorder.artifacts["proposals.json"]
    assert proposals, "MLflow's GEPA asked the reflection model for new instructions"
    # No human rationale reaches MLflow's reflection prompt, so nothing is learned.
    assert all(p["new_instructions"] == settings.judge.instructions for p in proposals)
    assert outcome.instructions == settings.judge.instructions
    totals = recorder.artifacts["mlflow_gepa.json"]
    assert totals["instructions_changed"] is False and totals["budget"] == 120
    assert totals["metric_calls"] == outcome.metric_calls and totals["examples"] == n


def test_mlflow_gepa_stops_at_an_iteration_boundary_when_cancelled(demo_store, tmp_path):
    ex = demo_examples(demo_store)
    settings = demo_settings(demo_store, "mlflow-gepa", max_metric_calls=400)
    recorder = ListRecorder(tmp_path, stop_after_heartbeats=4)
    outcome = mlflow_runners.run_mlflow_gepa(settings, ex["train"], ex["val"], recorder)
    assert outcome.cancelled
    assert outcome.iterations <= 4 and outcome.metric_calls < 200
    assert outcome.judge is not None


def test_simba_runs_within_budget_and_records_trials(demo_store, tmp_path):
    ex = demo_examples(demo_store)
    settings = demo_settings(demo_store, "simba", max_metric_calls=300)
    recorder = ListRecorder(tmp_path)
    outcome = mlflow_runners.run_simba(settings, ex["train"], ex["val"], recorder)

    log = recorder.artifacts["simba.json"]
    n = len(ex["train"]) + len(ex["val"])
    assert log["bsize"] == 10 and log["max_steps"] >= 1
    assert log["effective_seed"] == 42  # MLflow replaces seed 0 with its default
    assert n < outcome.metric_calls <= 300
    assert outcome.metric_calls == log["metric_calls"] == recorder.metric("metric_calls")
    assert set(log["trial_logs"]) == {str(i) for i in range(log["max_steps"])}
    assert log["candidates"] and all(0 <= c["train_score"] <= 1 for c in log["candidates"])
    assert outcome.iterations == log["max_steps"]
    # A deterministic judge never varies across SIMBA's resamples: no rule is written.
    assert outcome.instructions == settings.judge.instructions


def test_simba_refuses_fewer_than_ten_examples(demo_store, tmp_path):
    ex = demo_examples(demo_store)
    settings = demo_settings(demo_store, "simba")
    with pytest.raises(ValueError, match="at least 10"):
        mlflow_runners.run_simba(settings, ex["train"][:5], ex["val"][:4], ListRecorder(tmp_path))


@pytest.mark.parametrize(
    ("optimizer", "run"),
    [("mlflow-gepa", mlflow_runners.run_mlflow_gepa), ("simba", mlflow_runners.run_simba)],
)
def test_a_stop_asked_before_the_search_returns_the_seed_cancelled(
    demo_store, tmp_path, optimizer, run
):
    ex = demo_examples(demo_store)
    settings = demo_settings(demo_store, optimizer)
    recorder = ListRecorder(tmp_path, stop_after_heartbeats=1)
    outcome = run(settings, ex["train"], ex["val"], recorder)
    assert outcome.cancelled and outcome.optimizer == optimizer
    assert recorder.heartbeats == 1
    assert outcome.metric_calls == 0
    assert outcome.instructions == settings.judge.instructions
