"""The Align page's time estimate includes job start and is within 1.5x of the real job.

B9 (benchmarks/b9_estimates.py) launches each optimizer on the demo as the page does
(check_alignment, jobs.launch with that check, jobs.wait) and compares the estimate the
page showed with the wall time from launch to final status.
"""

from __future__ import annotations

import pytest

from core.optimization.preflight import Overheads, estimate, recorded_overheads
from tests.optimization.demo_examples import demo_settings


@pytest.mark.slow
def test_estimates_are_within_one_and_a_half_times_the_actual_wall_time(store_uri):
    from benchmarks import b9_estimates

    # One more launch of an optimizer whose ratio is off: on the shared 2-core machine another
    # process's burst during one job's start can double it (both attempts are reported).
    result = b9_estimates.run(latency_ms=50, quick=True, timeout_s=240, retries=1)
    assert [r["optimizer"] for r in result["rows"]] == ["gepa", "memalign", "mlflow-gepa", "simba"]
    for row in result["rows"]:
        assert row["status"] == "finished", row
        assert "job start" in row["explanation"], row
        assert row["actual/estimate"] <= 1.5 and row["estimate/actual"] <= 1.5, row
        # No optimizer overspends: at most one minibatch (3) beyond the budget.
        if row["budget"] is not None:
            assert row["metric_calls"] <= row["budget"] + 3, row
    # The runs after the first take their job start from those before them.
    assert "median of the last" in result["rows"][-1]["explanation"]


def test_the_estimate_counts_job_start_calls_and_the_demo_latency(demo_store, monkeypatch):
    settings = demo_settings(demo_store, "gepa", max_metric_calls=120, workers=4)
    est = estimate(settings, n_train=36, n_val=13, n_test=14)
    quiet = Overheads(job_start_s=5.0, finish_s=1.0)
    phases = est.phases(0.05, quiet)
    assert phases["job_start"] == 5.0 and phases["finish"] == 1.0
    assert phases["optimize"] > est.seconds_at(0.05) - phases["held_out"]
    assert est.wall_seconds(0.05, quiet) == pytest.approx(sum(phases.values()))
    # Slower calls, longer estimate; the per-call work stays.
    assert est.wall_seconds(0.2, quiet) > est.wall_seconds(0.05, quiet)
    assert est.wall_seconds(0.0, quiet) > 6.0
    # With no finished run here, the defaults apply.
    assert recorded_overheads(demo_store).runs == 0


def test_the_align_check_uses_the_stand_ins_latency(demo_store, monkeypatch):
    from core.labeling.criteria import get_criterion
    from core.optimization.settings import build_settings, check_alignment

    crit = get_criterion(demo_store, "support_quality")
    settings = build_settings(demo_store, crit, optimizer="gepa", max_metric_calls=120)
    monkeypatch.setenv("ALIGNBOARD_DEMO_LATENCY_MS", "0")
    fast = check_alignment(settings)
    monkeypatch.setenv("ALIGNBOARD_DEMO_LATENCY_MS", "200")
    slow = check_alignment(settings)
    assert fast.latency_s == 0.0 and slow.latency_s == 0.2
    assert slow.seconds > fast.seconds > 7.0  # the default job start is in both
    assert "s job start (default for this machine" in fast.explanation


def test_mlflow_gepa_explains_a_budget_that_fits_no_iteration(demo_store):
    small = estimate(demo_settings(demo_store, "mlflow-gepa", max_metric_calls=80), 36, 13, 14)
    assert "fits no iteration" in small.explanation and "at least 101" in small.explanation
    enough = estimate(demo_settings(demo_store, "mlflow-gepa", max_metric_calls=120), 36, 13, 14)
    assert "fits no iteration" not in enough.explanation


def test_a_real_models_estimate_uses_the_latency_its_runs_measured(demo_store, monkeypatch):
    # A judge on a slow server (0.3 s per call, as a small local model is slow): before any
    # run the estimate assumes the hosted default; after one finished run it uses what the
    # run measured, and says so. (The B4 smoke: "~21-37 s" shown for an 814 s run.)
    import time
    from dataclasses import replace

    from core.optimization.engine import run_alignment
    from core.optimization.preflight import SECONDS_PER_CALL_METRIC, recorded_latency_s
    from core.optimization.settings import ESTIMATE_LATENCY_S, check_alignment
    from tests.support.openai_server import openai_server

    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-real-key-0000")

    def slow(body: dict) -> None:
        time.sleep(0.3)
        return None  # then answer as the demo judge does

    with openai_server(answer=slow) as server:
        s = demo_settings(demo_store, "gepa", max_metric_calls=12, workers=4)
        settings = replace(
            s, judge=replace(s.judge, model="openai:/slow-judge", base_url=server.base_url)
        )
        before = check_alignment(settings)
        assert before.latency_s == ESTIMATE_LATENCY_S["default"]
        assert "median measured" not in before.explanation
        result = run_alignment(settings)
        assert result.status == "finished"
    from mlflow import MlflowClient

    logged = MlflowClient().get_run(result.run_id).data.metrics[SECONDS_PER_CALL_METRIC]
    # The judge calls took >= 0.3 s; the demo reflection's ~0 s pulls the mean down a bit.
    assert 0.15 < logged < 1.5
    after = check_alignment(settings)
    assert after.latency_s == pytest.approx(logged)
    assert "median measured in the last 1 finished run with this model" in after.explanation
    # Another model has no measured run: still the default.
    other = recorded_latency_s(demo_store, "judge_model", "openai:/other", 1.5)
    assert (other.seconds, other.runs) == (1.5, 0)
