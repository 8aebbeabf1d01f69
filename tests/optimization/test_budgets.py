"""No optimizer spends more than its budget plus one minibatch of metric calls.

Each runs for real on the seeded demo store with the demo models; the budgets are small
so the last iteration is where an overshoot would happen (gepa's between-iteration check
once let "372 / 370" through; SIMBA spent 116 calls against 60).
"""

from __future__ import annotations

import pytest

from core.optimization.runners import gepa as gepa_runner
from core.optimization.runners import memalign as memalign_runner
from core.optimization.runners import mlflow_baselines as mlflow_runners
from tests.optimization.demo_examples import ListRecorder, demo_examples, demo_settings

RUNNERS = {
    "gepa": gepa_runner.run,
    "mlflow-gepa": mlflow_runners.run_mlflow_gepa,
    "simba": mlflow_runners.run_simba,
}


@pytest.mark.parametrize("budget", [60, 137])
@pytest.mark.parametrize("optimizer", list(RUNNERS))
def test_metric_calls_stay_within_budget_plus_one_minibatch(
    demo_store, tmp_path, optimizer, budget
):
    ex = demo_examples(demo_store)
    settings = demo_settings(demo_store, optimizer, max_metric_calls=budget, minibatch_size=3)
    outcome = RUNNERS[optimizer](settings, ex["train"], ex["val"], ListRecorder(tmp_path))
    assert not outcome.cancelled
    assert outcome.metric_calls > 0
    assert outcome.metric_calls <= budget + settings.minibatch_size, (
        optimizer,
        outcome.metric_calls,
        budget,
        outcome.extra.get("max_steps"),
    )


def test_memalign_spends_no_metric_calls_and_says_no_budget_applies(demo_store, tmp_path):
    from core.optimization import engine
    from core.optimization.judge_task import JudgeTask

    ex = demo_examples(demo_store)
    settings = demo_settings(demo_store, "memalign", embedding_model="demo:/embed")
    outcome = memalign_runner.run(settings, ex["train"], ex["val"], ListRecorder(tmp_path))
    assert outcome.metric_calls == 0
    # The engine records "none" rather than a budget MemAlign never spends.
    assert JudgeTask(settings).optimizer in engine.UNBUDGETED


def test_simba_plan_worst_case_fits_the_budget():
    for budget, n in [(300, 49), (500, 120), (2000, 60), (60, 12), (60, 49), (30, 20)]:
        plan = mlflow_runners.simba_plan(budget, n)
        assert plan["fits"] == 1, (budget, n, plan)
        worst = mlflow_runners.simba_cost(
            plan["bsize"], plan["num_candidates"], plan["max_steps"], plan["examples"]
        )
        assert worst == plan["worst_case"] <= budget, (budget, n, plan)
        assert mlflow_runners.MIN_TRACES <= plan["examples"] <= n
    # Every example, full batches and candidates when the budget allows.
    assert mlflow_runners.simba_plan(300, 49)["examples"] == 49
    assert mlflow_runners.simba_plan(300, 49)["bsize"] == 10
    # Too small for even the smallest plan: it says so.
    assert mlflow_runners.simba_plan(15, 20)["fits"] == 0


def test_simba_refuses_a_budget_no_plan_fits(demo_store, tmp_path):
    from core.errors import ValidationError

    ex = demo_examples(demo_store)
    settings = demo_settings(demo_store, "simba", max_metric_calls=15)
    with pytest.raises(ValidationError, match="too small for SIMBA"):
        mlflow_runners.run_simba(settings, ex["train"], ex["val"], ListRecorder(tmp_path))


def test_simba_stops_on_cancel_during_the_search(demo_store, tmp_path):
    ex = demo_examples(demo_store)
    settings = demo_settings(demo_store, "simba", max_metric_calls=2000)
    # One heartbeat at the start, the next after 50 metric calls: then the cancel is seen.
    recorder = ListRecorder(tmp_path, stop_after_heartbeats=2)
    outcome = mlflow_runners.run_simba(settings, ex["train"], ex["val"], recorder)
    assert outcome.cancelled
    assert outcome.instructions == settings.judge.instructions
    assert 50 <= outcome.metric_calls < 2000 // 4
