"""Early stop of gepa runs (core/optimization/stopping.py): each condition fires on the demo
store with the demo models, the reason is recorded and shown, the defaults are on, ``off``
spends the whole budget, and a cancelled run still says cancelled."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest

from core.errors import ValidationError
from core.optimization import stopping
from core.optimization.dataset import load_examples, split_examples
from core.optimization.runners import gepa as gepa_runner
from core.optimization.spec import AlignmentSettings, JudgeSpec
from core.optimization.stopping import (
    DEFAULT_PATIENCE,
    PatienceStop,
    StopPolicy,
    make_policy,
    policy_of,
)
from tests.optimization.demo_examples import CRITERION
from tests.optimization.demo_examples import ListRecorder as FakeRecorder


@pytest.fixture
def demo(demo_store):
    from core.labeling.criteria import get_criterion

    train, val, _ = split_examples(load_examples(demo_store, CRITERION))
    crit = get_criterion(demo_store, CRITERION)
    spec = JudgeSpec(CRITERION, crit.instructions, "pass_fail", "demo:/judge")
    settings = AlignmentSettings(
        experiment_id=demo_store, judge=spec, optimizer="gepa", reflection_model="demo:/reflect"
    )
    return settings, train, val


def _run(settings, train, val, tmp_path, **rec):
    return gepa_runner.run(settings, train, val, FakeRecorder(tmp_path / "work", **rec))


# --- the policy ------------------------------------------------------------------------


def test_defaults_are_on_and_off_turns_everything_off():
    d = StopPolicy()
    assert d.at_perfect and d.patience == DEFAULT_PATIENCE and d.enabled
    assert d.max_seconds is None and d.max_cost_usd is None
    off = StopPolicy.off()
    assert not off.enabled and off.describe() == "never (the whole budget is spent)"
    assert off.to_params() == {
        "stop_at_score": "off",
        "stop_patience": "off",
        "stop_max_seconds": "off",
        "stop_max_cost_usd": "off",
    }
    # Settings made without a policy stop as the defaults do, and say so in their params.
    settings = AlignmentSettings(
        "1", JudgeSpec("q", "{{ outputs }}", "pass_fail", "demo:/judge"), "gepa", "demo:/reflect"
    )
    assert policy_of(settings) == d
    assert settings.to_params()["stop_patience"] == str(DEFAULT_PATIENCE)
    # Other optimizers' params say nothing of a policy they do not follow.
    assert "stop_patience" not in replace(settings, optimizer="memalign").to_params()


def test_policy_round_trips_through_the_settings_json():
    pol = make_policy(patience=4, max_minutes=2, max_cost_usd=0.5, at_perfect=False)
    assert pol == StopPolicy(at_score=None, patience=4, max_seconds=120.0, max_cost_usd=0.5)
    assert (
        pol.describe()
        == "after 4 proposals without improvement, after 2 min or at $0.5 of model cost"
    )
    settings = pol.apply(
        AlignmentSettings(
            "1",
            JudgeSpec("q", "{{ outputs }}", "pass_fail", "demo:/judge"),
            "gepa",
            "demo:/reflect",
        )
    )
    again = AlignmentSettings.from_dict(json.loads(settings.to_json()))
    assert policy_of(again) == pol
    assert make_policy(early_stop=False, patience=3) == StopPolicy.off()
    assert make_policy(patience=0).patience is None


@pytest.mark.parametrize(
    "kw",
    [
        {"at_score": 1.5},
        {"at_score": 0},
        {"patience": 0},
        {"max_seconds": -1},
        {"max_cost_usd": float("nan")},
    ],
)
def test_out_of_range_values_are_refused_with_the_reason(kw):
    with pytest.raises(ValidationError):
        StopPolicy(**kw)


def test_patience_counts_gepa_iterations_not_calls():
    # A state whose best (0.9, candidate 2) was found at iteration 3 (trace entry i=2).
    state = SimpleNamespace(
        i=4,
        program_full_scores_val_set=[0.5, 0.7, 0.9],
        full_program_trace=[
            {"i": 0, "new_program_indices": [1]},
            {"i": 2, "new_program_indices": [2]},
        ],
        total_num_evals=50,
    )
    stop = PatienceStop(3)
    # Called many times at the same boundary (a parallel loop may): no count moves.
    assert not any(stop(state) for _ in range(10))  # 5 done - 3 = 2 < 3
    state.i = 5
    assert stop(state) and stop.at_iteration == 6 and stop.metric_calls == 50
    assert "for 3 iterations (best since iteration 3)" in stop.detail()
    # Read from the trace, so a stopper built on resume knows where the best came from.
    assert PatienceStop(3)(state)


def test_patience_counts_proposals_when_several_are_in_flight():
    # Best found at iteration 3; 4 proposals per iteration: a patience of 8 proposals is 2
    # iterations, so the same search effort as 8 sequential iterations.
    state = SimpleNamespace(
        i=3,
        program_full_scores_val_set=[0.5, 0.9],
        full_program_trace=[{"i": 2, "new_program_indices": [1]}],
        total_num_evals=80,
    )
    stop = PatienceStop(8, per_iteration=4)
    assert not stop(state)  # 4 done - 3 = 1 iteration = 4 proposals < 8
    state.i = 4
    assert stop(state)
    assert "for 2 iterations of 4 proposals (patience 8)" in stop.detail()


# --- each condition on the demo store -------------------------------------------------


# Share of the budget spent by the time the demo run reaches 1.0 (measured: sequential
# 104-139 of 360 over seeds 0-2; 4 in flight ~196, each iteration pays for 4 proposals).
SPENT_AT_PERFECT = {1: 0.5, 4: 0.65}


@pytest.mark.parametrize("proposals", [1, 4], ids=["sequential", "parallel"])
def test_defaults_stop_the_demo_run_at_a_perfect_validation_score(demo, tmp_path, proposals):
    settings, train, val = demo
    settings = replace(settings, proposals_in_flight=proposals)
    out = _run(settings, train, val, tmp_path)
    budget = settings.budget(len(train))
    assert out.stop_reason == stopping.PERFECT and not out.cancelled
    assert out.metric_calls < budget * SPENT_AT_PERFECT[proposals], (out.metric_calls, budget)
    assert out.stop_detail.startswith("perfect validation score (1.0) at iteration ")
    assert out.stop_detail.endswith(f"after {out.metric_calls} of {budget} metric calls")
    assert out.extra["val_score_best"] == 1.0


def test_off_runs_the_whole_budget_and_says_budget(demo, tmp_path):
    settings, train, val = demo
    out = _run(StopPolicy.off().apply(settings), train, val, tmp_path)
    budget, worst = settings.budget(len(train)), 2 * settings.minibatch_size + len(val)
    assert out.stop_reason == stopping.BUDGET and budget - worst < out.metric_calls
    assert out.stop_detail == f"budget exhausted: {out.metric_calls} of {budget} metric calls spent"


@pytest.mark.parametrize(
    ("proposals", "span"),
    [(1, "3 iterations"), (4, "1 iteration of 4 proposals (patience 3)")],
    ids=["sequential", "parallel"],
)
def test_no_improvement_for_n_proposals(demo, tmp_path, proposals, span):
    settings, train, val = demo
    pol = StopPolicy(at_score=None, patience=3)
    out = _run(replace(pol.apply(settings), proposals_in_flight=proposals), train, val, tmp_path)
    assert out.stop_reason == stopping.NO_IMPROVEMENT
    assert f"no improvement of the best validation score for {span}" in out.stop_detail
    assert out.metric_calls < settings.budget(len(train)) / 2


def test_time_limit(demo, tmp_path):
    settings, train, val = demo
    pol = StopPolicy(at_score=None, patience=None, max_seconds=1e-6)
    out = _run(pol.apply(settings), train, val, tmp_path)
    assert out.stop_reason == stopping.TIME_LIMIT
    assert out.stop_detail.startswith("time limit of 1e-06 s reached")
    # Checked between iterations: the seed's evaluation is done, then the search stops.
    assert out.iterations <= 1 and out.metric_calls <= len(val) + 2 * settings.minibatch_size


@pytest.fixture
def priced_reflection():
    """LiteLLM's cost map with a price for the demo reflection model (its calls then cost
    money, as a hosted model's do); removed again afterwards."""
    import litellm
    import litellm.utils

    from core.models.providers import register_providers

    register_providers()
    price = {"input_cost_per_token": 1e-4, "output_cost_per_token": 1e-4}
    litellm.register_model(
        {"demo/reflect": {**price, "litellm_provider": "demo", "mode": "chat"}},
        persist_across_reloads=False,
    )
    yield
    litellm.model_cost.pop("demo/reflect", None)
    litellm.utils._invalidate_model_cost_lowercase_map()


def test_cost_limit_with_a_priced_reflection_model(demo, tmp_path, priced_reflection):
    settings, train, val = demo
    pol = StopPolicy(at_score=None, patience=None, max_cost_usd=0.01)
    out = _run(pol.apply(settings), train, val, tmp_path)
    assert out.stop_reason == stopping.COST_LIMIT, out.stop_detail
    assert out.stop_detail.startswith("cost limit of $0.01 reached ($")
    assert out.extra["usage"]["cost_usd"] >= 0.01
    assert out.metric_calls < settings.budget(len(train)) / 2


def test_unpriced_models_never_reach_a_cost_limit(demo, tmp_path):
    settings, train, val = demo
    pol = StopPolicy(at_score=None, patience=None, max_cost_usd=1e-9)
    out = _run(replace(pol.apply(settings), max_metric_calls=60), train, val, tmp_path)
    assert out.stop_reason == stopping.BUDGET


def test_a_cancelled_run_still_says_cancelled(demo, tmp_path):
    settings, train, val = demo
    out = _run(settings, train, val, tmp_path, stop_after_heartbeats=2)
    assert out.cancelled and out.stop_reason == stopping.CANCELLED
    assert out.stop_detail.startswith("cancelled after ")
    assert "stopped" not in out.extra


# --- recorded in the run, shown in the Run explorer and the CLI -----------------------


def test_the_reason_is_a_tag_a_result_field_and_the_run_explorer_line(demo_store):
    from mlflow import MlflowClient

    from core.labeling.criteria import get_criterion
    from core.optimization.engine import run_alignment
    from core.optimization.settings import build_settings
    from core.views.runs import load_run_view

    crit = get_criterion(demo_store, CRITERION)
    settings = build_settings(
        demo_store, crit, optimizer="gepa", model="demo:/judge", reflection_model="demo:/reflect"
    )
    result = run_alignment(settings)
    assert result.stop_reason == stopping.PERFECT
    run = MlflowClient().get_run(result.run_id)
    assert run.data.tags[stopping.TAG_STOP_REASON] == stopping.PERFECT
    assert run.data.params["stop_at_score"] == "1"
    assert run.data.params["stop_patience"] == str(DEFAULT_PATIENCE)
    view = load_run_view(result.run_id)
    assert view.stop_text.startswith("Stopped early: perfect validation score (1.0) at iteration")
    assert view.result["stop_reason"] == stopping.PERFECT


def test_memalign_records_no_stop_reason_and_the_estimate_says_gepa_may_stop_early(demo_store):
    from core.labeling.criteria import get_criterion
    from core.optimization.settings import build_settings, check_alignment

    crit = get_criterion(demo_store, CRITERION)
    gepa = build_settings(
        demo_store, crit, optimizer="gepa", model="demo:/judge", reflection_model="demo:/reflect"
    )
    assert (
        "the run may stop earlier: at a perfect validation score"
        in check_alignment(gepa).explanation
    )
    off = build_settings(
        demo_store,
        crit,
        optimizer="gepa",
        model="demo:/judge",
        reflection_model="demo:/reflect",
        stop=StopPolicy.off(),
    )
    assert "Early stop is off: the whole budget is spent." in check_alignment(off).explanation
    mem = replace(gepa, optimizer="memalign")
    assert "stop earlier" not in check_alignment(mem).explanation
