"""The benchmarks run end to end with tiny settings and write the figures they promise.

No timing is asserted: this checks the code path (the same one ``make bench`` runs) and
the shape of the JSON, not the machine's speed.
"""

from __future__ import annotations

import json

import pytest

from benchmarks import b1_gepa_speed
from benchmarks.common import waves, write_json


def test_waves_count_parallel_calls_once_per_batch_of_workers():
    assert waves(0, 0, 8) == 0
    assert waves(3, 1, 8) == 1
    assert waves(10, 1, 8) == 2
    assert waves(16, 1, 8) == 2
    assert waves(3, 3, 8) == 3  # a call retried twice is three dependent attempts


def test_critical_path_sums_rounds_and_adds_the_test_round():
    iterations = [
        {"rounds": [{"kind": "val_eval", "calls": 10, "depth": 1}]},
        {
            "rounds": [
                {"kind": "minibatch_eval", "calls": 3, "depth": 1},
                {"kind": "reflection", "calls": 1, "depth": 1},
                {"kind": "minibatch_eval", "calls": 0, "depth": 0},
            ]
        },
    ]
    bound = b1_gepa_speed.critical_path(iterations, 0.2, 8, test_calls=20)
    assert bound["optimizer_steps"] == 4
    assert bound["test_steps"] == 3
    assert abs(bound["total_seconds"] - 1.4) < 1e-9


def test_b1_runs_with_tiny_settings_and_reports_ratios(tmp_path):
    result = b1_gepa_speed.run(
        latency_ms=2, quick=True, labeled=12, budget=40, workers=4, seeds=[0, 1]
    )
    out = tmp_path / "b1.json"
    write_json(out, {"b1": result})
    data = json.loads(out.read_text())
    assert data["machine"]["date"] and data["machine"]["cpu_count"]
    b1 = data["b1"]
    assert b1["settings"]["seeds"] == [0, 1] and len(b1["repeats"]) == 2
    for system in ("a", "s", "b"):
        for key in ("wall_s", "optimizer_wall_s", "metric_calls", "llm_calls", "max_in_flight"):
            assert key in b1[system], (system, key)
        assert 0 < b1[system]["metric_calls"] <= 40 + 12
        # The work floor of the calls each system actually made, workers at a time.
        for rep in b1["repeats"]:
            floor = rep[system]["demo_calls"] / 4 * 0.002
            assert rep[system]["floor_s"] == pytest.approx(floor, abs=1e-3)  # JSON rounds
    # (a) is the parallel mode, (s) the sequential one, side by side in one run.
    assert b1["a"]["proposals_in_flight"] > 1 and b1["s"]["proposals_in_flight"] == 1
    for system in ("a", "s"):
        split = b1[system]["time_split"]
        assert {"minibatch_eval", "val_eval"} <= set(split["by_kind"]), split
        assert split["between_rounds_s"] >= 0 and split["outside_optimizer_s"] > 0
        after = b1["accuracy"][system]["test_accuracy_after"]
        assert len(after["values"]) == 2 and after["min"] <= after["mean"] <= after["max"]
    assert b1["c"]["optimizer_steps"] > 0 and b1["c"]["wall_s"] > 0
    assert b1["iterations_logged"] >= 1
    for key in (
        "a_over_floor_total",
        "s_over_floor_total",
        "a_over_c_total",
        "a_over_c_optimizer",
        "s_over_a_total",
        "b_over_a_total",
        "b_over_a_optimizer",
        "b_over_s_total",
    ):
        assert isinstance(b1["ratios"][key], float), key
    assert set(b1["goals"]) == {
        "a_within_1_3x_of_floor",
        "b_over_a_at_least_3",
        "a_accuracy_not_lower_than_s",
    }


def test_time_split_counts_idle_slots_and_time_between_rounds():
    iterations = [
        {"rounds": [{"kind": "val_eval", "calls": 10, "depth": 1, "seconds": 0.5}]},
        {"rounds": [{"kind": "minibatch_eval", "calls": 12, "depth": 1, "seconds": 0.45}]},
    ]
    split = b1_gepa_speed.time_split(iterations, 0.2, 8, optimizer_wall_s=1.5)
    assert split["by_kind"]["val_eval"]["idle_slots"] == 6  # 2 waves of 8 for 10 calls
    assert split["by_kind"]["minibatch_eval"]["bound_s"] == 0.4
    assert split["in_rounds_s"] == 0.95 and split["between_rounds_s"] == 0.55
    assert b1_gepa_speed.work_floor(190, 8, 0.2) == pytest.approx(4.75)


def test_b3_builds_a_store_measures_it_and_checks_its_own_labels(tmp_path, monkeypatch):
    from benchmarks import b3_labeling_scale, b3_stores

    monkeypatch.setenv(b3_stores.CACHE_ENV, str(tmp_path / "cache"))
    result = b3_labeling_scale.run((300,), submits=3, opens=2, colds=1)
    (size,) = result["sizes"]
    assert size["traces"] == 300 and size["labels_checked"] == 3
    for measure in ("submit_next", "pick_value", "open_label", "open_traces"):
        assert size[measure]["n"] >= 2 and 0 < size[measure]["p50_ms"] <= size[measure]["max_ms"]
    assert size["peak_rss_mb"] > 50
    assert result["goals"]["ratio"] == 1.0  # one size: compared with itself
    built = json.loads((b3_stores.store_dir(300) / "built.json").read_text())
    assert built["traces"] == 300


def test_b5_critical_path_counts_app_then_judge_waves_and_the_held_out_round():
    from benchmarks import b5_prompt_speed

    iterations = [
        {
            "iteration": 0,
            "accepted": True,
            "seconds": 1.0,
            "rounds": [{"kind": "val_eval", "calls": 10, "depth": 2}],
        },
        {
            "iteration": 1,
            "accepted": True,
            "seconds": 2.0,
            "rounds": [
                {"kind": "minibatch_eval", "calls": 3, "depth": 2},
                {"kind": "reflection", "calls": 1, "depth": 1},
                {"kind": "minibatch_eval", "calls": 0, "depth": 0},  # answered from cache
            ],
        },
        {
            "iteration": 2,
            "seconds": 0.5,
            "rounds": [{"kind": "minibatch_eval", "calls": 2, "depth": 2}],
        },
        {"iteration": 3, "seconds": 0.1, "rounds": []},
    ]
    bound = b5_prompt_speed.critical_path(iterations, 0.2, 8, test_app_calls=14)
    # val: 2 app waves + 2 judge waves; minibatches: 1 + 1 each; reflection: 1.
    assert bound["optimizer_steps"] == 9 and bound["rounds"] == 4
    assert bound["steps_by_kind"] == {"val_eval": 4, "minibatch_eval": 4, "reflection": 1}
    assert bound["test_steps"] == 4
    assert abs(bound["total_seconds"] - 2.6) < 1e-9
    # Every judge verdict cached: one wave per round.
    assert bound["floor_optimizer_steps"] == 5
    assert abs(bound["floor_seconds"] - 1.4) < 1e-9
    assert bound["last_accepted_iteration"] == 1
    assert bound["after_last_accepted"] == {
        "iterations": 2,
        "steps": 2,
        "floor_steps": 1,
        "seconds": 0.6,
    }
    assert bound["until_last_accepted_seconds"] == 3.0
    assert bound["cached_only_iterations"] == {"iterations": 1, "seconds": 0.1}


def test_b5_runs_with_tiny_settings_and_counts_calls_by_kind(tmp_path):
    from benchmarks import b5_prompt_speed

    # 40 calls of search as before issue 13, whose gepa stop now keeps room for a worst-case
    # iteration (2 minibatches of 3 + the 10 validation rows) beyond what was spent.
    budget = 40 + 3 + 10 - 1
    result = b5_prompt_speed.run(
        latency_ms=0, quick=True, budget=budget, workers=4, include_metaprompt=False
    )
    out = tmp_path / "b5.json"
    write_json(out, {"b5": result})
    b5 = json.loads(out.read_text())["b5"]
    for system in ("a", "b"):
        row = b5[system]
        assert row["status"] == "finished", row
        for key in (
            "wall_s",
            "optimizer_wall_s",
            "metric_calls",
            "app_calls",
            "judge_calls",
            "reflection_calls",
            "test_score_before",
            "test_score_after",
        ):
            assert row[key] is not None, (system, key)
        # Never more than one minibatch (3) beyond the budget, whichever optimizer.
        assert 0 < row["metric_calls"] <= budget + 3, (system, row["metric_calls"])
        # Every stand-in call has a kind, and the run's own LiteLLM count sees the same calls.
        assert row["demo_calls"] == sum(row["calls_by_model"].values()) == row["llm_calls"]
        assert row["calls_by_model"]["other"] == 0
        assert row["optimizer_wall_s"] < row["wall_s"]
    a = b5["a"]
    # The held-out step adds one app call per (prompt, test row) to the optimizer's own.
    held_out = a["test_size"] * (2 if a["prompt_version"] is not None else 1)
    assert a["app_calls"] == a["optimizer_calls_by_model"]["app"] + held_out
    assert a["run_app_calls_metric"] == a["optimizer_calls_by_model"]["app"]
    assert a["reflection_calls"] >= 1 and a["test_gain"] > 0  # the demo loop improves it
    assert b5["c"]["optimizer_steps"] > 0 and b5["c"]["test_steps"] > 0
    assert isinstance(b5["ratios"]["b_over_a_total"], float)
    assert set(b5["goals"]) == {"a_2x_faster_than_b", "a_gain_at_least_b", "met"}
    assert "(b)/(a) =" in b5["explanation"]


def test_b6_scores_through_the_job_path_and_a_second_run_writes_nothing():
    from benchmarks import b6_bulk_scoring

    result = b6_bulk_scoring.run(latency_ms=0, traces=30, workers=4, launch_traces=4)
    a, b, c = result["a"], result["b"], result["c"]
    assert a["status"] == "finished" and a["n_scored"] == 30 and a["n_failed"] == 0
    assert sum(a["value_counts"].values()) == 30 and a["llm_calls"] == 30
    assert a["writes_per_s"] > 0 and a["write_seconds"] > 0
    # Idempotent: the second run judges nothing and writes nothing.
    assert (b["n_scored"], b["n_skipped"], b["llm_calls"]) == (0, 30, 0)
    # One job through jobs.launch and a real worker process.
    assert c["status"] == "finished" and c["n_scored"] == 4
    assert c["launch_to_finished_s"] >= c["job_wall_s"] > 0
    assert result["floor_s"] == 0 and result["ratio"] is None  # no latency: no floor
    assert set(result["goals"]) == {"a_within_1_3x_of_floor"}
