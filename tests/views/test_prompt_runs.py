"""Prompt optimization runs as the Run explorer and the Versions page read them back.

The records come from a real small optimization (demo prompt, demo app, the aligned demo
judge, gepa, budget 80) in a real sqlite store and Prompt Registry, or from record dicts
for the pure builders.
"""

from __future__ import annotations

import pytest

from core.optimization import jobs
from core.optimization.engine import run_prompt_optimization
from core.optimization.prompt_preflight import build_prompt_settings
from core.store.prompts import load_prompt, register_prompt
from core.views import prompt_runs as pr
from core.views.runs import PROMPT_LABELS, load_run_view
from core.views.versions import compare_versions

PROMPT = "northwind-support"
JUDGE = "support_quality v1"


@pytest.fixture
def prompt_run(prompt_demo):
    settings = build_prompt_settings(
        prompt_demo,
        prompts=[f"{PROMPT}@production"],
        dataset="dataset:northwind-messages",
        task_model="demo:/app",
        judges=["support_quality@production"],
        max_metric_calls=80,
        workers=4,
    )
    result = run_prompt_optimization(settings)
    assert result.status == "finished" and result.prompt_version == 2, result
    return prompt_demo, result


def test_the_best_candidates_outputs_sit_beside_the_seeds_with_every_verdict(prompt_run):
    _eid, result = prompt_run
    view = load_run_view(result.run_id)
    side = pr.build_outputs(view.run_record.test, best_id=view.best_id, seed_id=view.seed_id)
    assert side.available and side.candidate_id == view.best_id != view.seed_id
    assert len(side.rows) == result.test_size
    assert side.scorers == (JUDGE,)
    for row in side.rows:
        assert row.inputs.startswith("message: ")
        assert row.seed_output.startswith("[demo stand-in] ")
        assert row.output.startswith("[demo stand-in] ")
        for verdicts, score in ((row.seed_verdicts, row.seed_score), (row.verdicts, row.score)):
            (v,) = verdicts
            assert v.scorer == JUDGE and v.value in ("pass", "fail") and v.rationale
            assert (v.value == "pass") == (score == 1.0)
    counts = side.counts()
    assert sum(counts.values()) == len(side.rows)
    # The demo judge fails the seed's habits and the best prompt's rules drop them.
    assert counts["better"] > 0 and counts["worse"] == 0
    table = pr.output_rows(side)
    assert {"#0 seed output", f"#{view.best_id} output", f"{JUDGE} on #0 seed"} <= set(table[0])


def test_a_candidate_other_than_the_seed_and_the_best_has_no_held_out_outputs(prompt_run):
    _eid, result = prompt_run
    view = load_run_view(result.run_id)
    others = [c.id for c in view.candidates if c.id not in (view.best_id, view.seed_id)]
    assert others, "the demo run has intermediate candidates"
    side = pr.build_outputs(
        view.run_record.test, candidate_id=others[0], best_id=view.best_id, seed_id=view.seed_id
    )
    assert not side.available
    assert "only for the seed and the best candidate" in side.note
    assert f"#{view.best_id}" in side.note
    seed = pr.build_outputs(
        view.run_record.test,
        candidate_id=view.seed_id,
        best_id=view.best_id,
        seed_id=view.seed_id,
    )
    assert not seed.available and "This is the seed prompt" in seed.note


def test_held_out_scores_per_scorer_with_intervals_and_overall_last(prompt_run):
    _eid, result = prompt_run
    view = load_run_view(result.run_id)
    scores = pr.build_scores(view.run_record.test)
    assert [s.scorer for s in scores] == [JUDGE, pr.OVERALL]
    judge = scores[0]
    recorded = result.test_scores[JUDGE]
    assert (judge.before, judge.after, judge.n) == (
        recorded["before"],
        recorded["after"],
        result.test_size,
    )
    assert judge.before_ci == tuple(recorded["before_ci"])
    assert scores[1].before == result.test_score_before
    assert scores[1].after == result.test_score_after
    assert judge.change == pytest.approx(judge.after - judge.before)
    rows = pr.score_rows(scores, "seed", "best")
    assert rows[-1]["scorer"] == "overall (aggregated)"
    assert rows[0]["seed 95% CI"] and " to " in rows[0]["best 95% CI"]


def test_a_prompt_runs_view_names_templates_and_the_registered_prompt_version(prompt_run):
    eid, result = prompt_run
    view = load_run_view(result.run_id)
    assert view.is_prompt and view.labels == PROMPT_LABELS
    assert view.info.prompt_name == PROMPT and view.info.prompt_version == 2
    assert view.info.base_version == 1
    # The seed is the registered v1 template; the final text is what v2 holds.
    assert view.seed_instructions == load_prompt(f"{PROMPT}@1").template
    assert view.final_instructions == load_prompt(f"{PROMPT}@2").template
    assert "Never say" in view.candidate(view.best_id).instructions
    assert view.verdict_text.startswith("Improved")
    # The run picker lists it (and only prompt runs) with a readable label.
    (job,) = pr.list_prompt_runs(eid)
    assert job.run_id == result.run_id and job.status == "finished"
    assert pr.prompt_label(job) == f"{PROMPT} v1 -> v2"
    assert result.run_id not in {j.run_id for j in jobs.list_jobs(eid)}


def test_two_versions_an_optimization_compared_show_its_scores_and_outputs(prompt_run):
    eid, result = prompt_run
    pair = pr.compare_prompt_versions(PROMPT, 1, 2)
    assert pair.scored and pair.run_id == result.run_id and pair.task_model == "demo:/app"
    overall = next(s for s in pair.scores if s.is_overall)
    assert (overall.before, overall.after) == (result.test_score_before, result.test_score_after)
    assert pair.outputs.label == "v2" and pair.outputs.seed_label == "v1"
    assert len(pair.outputs.rows) == result.test_size
    # The other way round, A is the newer version: every number and output swaps sides.
    back = pr.compare_prompt_versions(PROMPT, 2, 1)
    overall_back = next(s for s in back.scores if s.is_overall)
    assert (overall_back.before, overall_back.after) == (overall.after, overall.before)
    assert back.outputs.rows[0].output == pair.outputs.rows[0].seed_output
    assert back.outputs.rows[0].verdicts == pair.outputs.rows[0].seed_verdicts
    # The Versions page's comparison carries the pair.
    cmp = compare_versions(eid, "prompt", PROMPT, 1, 2)
    assert cmp.prompt_pair == pair
    assert cmp.b.run_id == result.run_id and cmp.b.optimizer == "gepa"
    assert cmp.stats.words_added > 0


def test_versions_no_run_compared_say_they_were_never_scored_together(prompt_run):
    v3 = register_prompt(PROMPT, "Answer briefly.\n\n{{ message }}", commit_message="by hand")
    for a, b in ((1, v3.version), (2, v3.version)):
        pair = pr.compare_prompt_versions(PROMPT, a, b)
        assert not pair.scored and pair.outputs is None and pair.run_id is None
        assert "never scored together" in pair.note and "Score them together" in pair.note


def test_builders_read_record_dicts_and_swap_sides():
    test = {
        "n": 1,
        "outputs": [
            {
                "row_id": "r1",
                "values": {"message": "hi"},
                "before": "old",
                "after": None,
                "before_score": 0.0,
                "after_score": None,
                "before_verdicts": {
                    "j v1": {"value": False, "score": 0.0, "rationale": "rude"},
                    "correctness": {"value": None, "skipped": True},
                },
                "after_verdicts": {"j v1": {"value": None, "error": "timeout"}},
            }
        ],
        "scores": {
            "overall": {
                "before": 0.0,
                "after": None,
                "before_ci": [0, 0],
                "after_ci": [None, None],
            },
            "j v1": {
                "before": 0.0,
                "after": 1.0,
                "before_ci": [0.0, 0.5],
                "after_ci": [1, 1],
                "n": 1,
            },
        },
    }
    side = pr.build_outputs(test, best_id=3, seed_id=0)
    (row,) = side.rows
    assert row.outcome == "failed" and row.output is None and row.change is None
    assert [(v.scorer, v.value, v.skipped) for v in row.seed_verdicts] == [
        ("j v1", "fail", False),
        ("correctness", "-", True),
    ]
    assert row.verdicts[0].value == "failed" and row.verdicts[0].error == "timeout"
    assert side.counts() == {"better": 0, "worse": 0, "same": 0, "failed": 1}
    scores = pr.build_scores(test)
    assert [s.scorer for s in scores] == ["j v1", "overall"]
    assert scores[1].after_ci is None and scores[1].change is None
    swapped = pr.build_scores(test, swap=True)[0]
    assert (swapped.before, swapped.after, swapped.before_ci) == (1.0, 0.0, (1.0, 1.0))
    flipped = pr.build_outputs(test, best_id=3, seed_id=0, swap=True).rows[0]
    assert (flipped.seed_output, flipped.output) == (None, "old")
    assert pr.build_outputs(None, best_id=3).note.startswith("No held-out outputs yet")
    assert pr.build_outputs({"n": 0, "note": "no row in the test split"}).note == (
        "no row in the test split"
    )


def test_version_tag_names_are_the_registrars():
    from core.optimization import prompt_task

    assert pr.VERSION_TAG_RUN == prompt_task.VERSION_TAG_RUN
    assert pr.VERSION_TAG_BASE == prompt_task.VERSION_TAG_BASE
    assert pr.KIND_PROMPT == prompt_task.KIND_PROMPT


def test_a_comparison_run_of_two_existing_versions_is_found_in_its_experiment(prompt_run):
    from mlflow import MlflowClient

    from core.optimization import record
    from core.optimization import recorder as rec

    eid, result = prompt_run
    v3 = register_prompt(PROMPT, "Answer briefly.\n\n{{ message }}", commit_message="by hand")
    client = MlflowClient()
    # A finished comparison run (optimizer compare) of v2 against v3, as the engine records
    # one: its test metrics hold both versions' outputs (here the optimization's, reused).
    run = client.create_run(
        eid,
        tags={
            rec.TAG_KIND: pr.KIND_PROMPT,
            rec.TAG_STATUS: "finished",
            rec.TAG_OPTIMIZER: pr.COMPARE,
            "alignboard.prompt": PROMPT,
        },
    )
    recorder = rec.MlflowRunRecorder(run.info.run_id, client)
    recorder.log_params(
        {"optimizer": pr.COMPARE, "prompt": f"{PROMPT}@2", "compare_version": str(v3.version)}
    )
    record.write_test_metrics(recorder, record.read_test_metrics(client, result.run_id))
    pair = pr.compare_prompt_versions(PROMPT, 2, v3.version, eid)
    assert pair.scored and pair.run_id == run.info.run_id
    assert (pair.outputs.seed_label, pair.outputs.label) == ("v2", f"v{v3.version}")
    back = pr.compare_prompt_versions(PROMPT, v3.version, 2, eid)
    assert back.run_id == run.info.run_id
    assert back.scores[0].before == pair.scores[0].after
    # Outside its experiment (or without one) nothing links the two versions.
    assert not pr.compare_prompt_versions(PROMPT, 2, v3.version).scored
    assert compare_versions(eid, "prompt", PROMPT, 2, v3.version).prompt_pair == pair
