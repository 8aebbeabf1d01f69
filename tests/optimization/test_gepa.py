"""The gepa runner on the seeded demo store, with the demo model and an in-memory recorder."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.models import demo_stats, reset_demo_stats
from core.optimization.dataset import load_examples, split_examples
from core.optimization.gepa_adapter import JudgeAdapter, check_template
from core.optimization.judging import JudgeEvaluator, score
from core.optimization.record import PROPOSALS, read_proposals
from core.optimization.runners import gepa as gepa_runner
from core.optimization.selection import select_candidate
from core.optimization.spec import AlignmentSettings, JudgeSpec
from core.optimization.stopping import StopPolicy
from tests.optimization.demo_examples import CRITERION
from tests.optimization.demo_examples import ListRecorder as FakeRecorder


@pytest.fixture
def demo(demo_store):
    from core.labeling.criteria import get_criterion

    train, val, test = split_examples(load_examples(demo_store, CRITERION))
    crit = get_criterion(demo_store, CRITERION)
    spec = JudgeSpec(CRITERION, crit.instructions, "pass_fail", "demo:/judge")
    settings = AlignmentSettings(
        experiment_id=demo_store, judge=spec, optimizer="gepa", reflection_model="demo:/reflect"
    )
    return settings, train, val, test


def _accuracy(spec, judge_or_text, examples) -> float:
    verdicts = JudgeEvaluator(spec).evaluate(judge_or_text, examples)
    return sum(score(v, e, "pass_fail") for v, e in zip(verdicts, examples, strict=True)) / len(
        examples
    )


@pytest.mark.parametrize("proposals", [1, 4], ids=["sequential", "parallel"])
def test_gepa_raises_held_out_agreement_and_records_the_run(demo, tmp_path, proposals):
    settings, train, val, test = demo
    settings = StopPolicy.off().apply(settings)  # the budget's accounting, spent in full
    settings = replace(settings, proposals_in_flight=proposals)
    rec = FakeRecorder(tmp_path / "work")
    out = gepa_runner.run(settings, train, val, rec)

    before = _accuracy(settings.judge, settings.judge.instructions, test)
    after = _accuracy(settings.judge, out.judge, test)  # the MLflow judge object itself
    assert after > before, (before, after)
    assert out.instructions != settings.judge.instructions and not out.cancelled
    # The whole budget is used, but never more than one minibatch beyond it (gepa stops
    # before an iteration whose worst case, two minibatches and the validation set, could).
    budget, mb = settings.budget(len(train)), settings.minibatch_size
    assert budget - (2 * mb + len(val)) < out.metric_calls <= budget + mb
    assert out.iterations > (3 if proposals == 1 else 1)

    val_scores = rec.steps("val_score")
    assert 0 in val_scores  # the seed, as iteration 0
    best = rec.steps("best_val_score")
    assert list(best.values()) == sorted(best.values())  # best so far never drops
    for name in (
        "metric_calls",
        "llm_calls",
        "prompt_tokens",
        "iteration_seconds",
        "pareto_aggregate",
    ):
        assert rec.steps(name), name

    cands = rec.artifacts["candidates.json"]
    assert [c["id"] for c in cands] == list(range(len(cands)))
    assert set(cands[-1]["val_scores"]) == {e.trace_id for e in val}
    assert all(c["parent_ids"] for c in cands[1:])
    pareto = rec.artifacts["pareto.json"]
    assert set(pareto["per_example"]) == {e.trace_id for e in val} and pareto["frontier"]
    assert len(rec.artifacts["lineage.json"]["edges"]) >= len(cands) - 1
    assert rec.artifacts["final_instructions.txt"] == out.instructions
    iterations = rec.artifacts["iterations.json"]
    accepted = [i for i in iterations if i["iteration"] > 0 and i.get("accepted")]
    kinds = [r["kind"] for r in accepted[0]["rounds"]]
    # The same four rounds in both modes: in parallel mode each holds every task's calls.
    assert kinds == ["minibatch_eval", "reflection", "minibatch_eval", "val_eval"]
    if proposals == 1:
        assert accepted[0]["rounds"][-1]["pairs"] == len(val)
    else:
        assert accepted[0]["rounds"][-1]["pairs"] % len(val) == 0
        assert max(r["calls"] for r in accepted[0]["rounds"]) > settings.minibatch_size


def test_reflective_dataset_shows_judge_and_human_rationales(demo):
    settings, train, _, _ = demo
    adapter = JudgeAdapter(settings.judge, JudgeEvaluator(settings.judge))
    batch = [e for e in train if e.rationale][:4]
    result = adapter.evaluate(
        batch, {"instructions": settings.judge.instructions}, capture_traces=True
    )
    records = adapter.make_reflective_dataset({"instructions": "x"}, result, ["instructions"])
    for record, ex, verdict in zip(records["instructions"], batch, result.outputs, strict=True):
        lines = record["Feedback"].splitlines()
        assert f"Judge verdict: {'pass' if verdict.value else 'fail'}" in lines
        assert any(line.startswith("Judge rationale: [demo stand-in]") for line in lines)
        assert f"Human label: {'pass' if ex.label else 'fail'}" in lines
        assert f"Human rationale: {ex.rationale.splitlines()[0]}" in record["Feedback"]
        assert record["Inputs"] == ex.inputs and record["Generated Outputs"] == ex.outputs


def test_template_variables_are_repaired_or_rejected(demo):
    required = ["{{ inputs }}", "{{ outputs }}"]
    dropped = check_template("Judge the support reply carefully.\n{{ inputs }}", required)
    assert dropped.status == "repaired" and "{{ outputs }}" in dropped.instructions
    invented = check_template(
        "Judge the support reply {{inputs}} {{ outputs }} against {{ policy }}.", required
    )
    assert invented.status == "repaired" and invented.invented == ("{{ policy }}",)
    assert "policy }}" not in invented.instructions and "{{ inputs }}" in invented.instructions
    assert check_template("{{ inputs }} {{ outputs }}", required).status == "rejected"
    assert (
        check_template("Judge the reply: {{ inputs }} {{ outputs }} strictly", required).status
        == "ok"
    )

    settings, train, _, _ = demo
    adapter = JudgeAdapter(settings.judge, JudgeEvaluator(settings.judge))
    reset_demo_stats()
    rejected = adapter.evaluate(train[:3], {"instructions": "{{ context }}"})
    assert rejected.scores == [0.0, 0.0, 0.0] and demo_stats().calls == 0
    assert all("Rejected" in v.error for v in rejected.outputs)
    repaired = adapter.evaluate(
        train[:3], {"instructions": "Decide pass or fail for this reply: {{ outputs }}"}
    )
    assert demo_stats().calls == 3 and all(v.ok for v in repaired.outputs)
    statuses = sorted(c.status for c in adapter.template_checks.values())
    assert statuses == ["rejected", "repaired"]


def test_cancel_stops_at_an_iteration_boundary_with_best_so_far(demo, tmp_path):
    settings, train, val, _ = demo
    rec = FakeRecorder(tmp_path / "work", stop_after_heartbeats=4)
    out = gepa_runner.run(settings, train, val, rec)
    assert out.cancelled
    assert out.metric_calls < settings.budget(len(train))
    assert out.iterations <= 4
    cands = rec.artifacts["candidates.json"]
    # Best so far by the noise-aware rule: after a few iterations no candidate has yet
    # beaten the seed by a margin 13 validation examples support, so the seed stays.
    chosen = select_candidate({c["id"]: c["val_scores"] for c in cands}).chosen_id
    assert chosen == 0 and max(c["val_score"] for c in cands) > cands[0]["val_score"]
    assert out.extra["selection"]["chosen_id"] == chosen
    assert out.instructions == cands[chosen]["instructions"]
    assert rec.artifacts["final_instructions.txt"] == out.instructions


def test_rerun_with_same_work_dir_resumes(demo, tmp_path):
    settings, train, val, _ = demo
    settings = StopPolicy.off().apply(replace(settings, max_metric_calls=200))
    work = tmp_path / "resumed"
    first = gepa_runner.run(settings, train, val, FakeRecorder(work, stop_after_heartbeats=5))
    assert first.cancelled

    reset_demo_stats()
    rec = FakeRecorder(work)
    resumed = gepa_runner.run(settings, train, val, rec)
    resumed_calls = demo_stats().calls
    reset_demo_stats()
    fresh = gepa_runner.run(settings, train, val, FakeRecorder(tmp_path / "fresh"))
    fresh_calls = demo_stats().calls

    assert not resumed.cancelled and resumed.iterations > first.iterations
    # Completed iterations are not redone: the resumed run logs only later steps.
    assert min(s for s in rec.steps("iteration_seconds")) == first.iterations + 1
    assert resumed_calls < fresh_calls, (resumed_calls, fresh_calls)
    # The proposal record survives the resume: earlier iterations' proposals are kept.
    iterations = {p.iteration for p in read_proposals(rec.artifacts[PROPOSALS])}
    assert min(iterations) <= first.iterations < max(iterations), iterations
    mb, worst = settings.minibatch_size, 2 * settings.minibatch_size + len(val)
    for out in (resumed, fresh):
        assert 200 - worst < out.metric_calls <= 200 + mb


class _SlowStore(FakeRecorder):
    """A recorder whose cancel-tag read and heartbeat take as long as a loaded store's."""

    delay = 0.3
    cancel = False
    reads_on: list[str]

    def should_stop(self) -> bool:
        import threading
        import time

        self.reads_on.append(threading.current_thread().name)
        time.sleep(self.delay)
        return self.cancel


def test_a_run_cancelled_before_it_starts_does_no_work(demo, tmp_path):
    settings, train, val, _ = demo
    rec = _SlowStore(tmp_path / "work")
    rec.cancel, rec.reads_on = True, []
    reset_demo_stats()
    out = gepa_runner.run(settings, train, val, rec)
    # The seed's validation is gepa's setup; not one iteration runs after the cancel.
    assert out.cancelled and out.iterations == 0
    assert demo_stats().calls == len(val)


def test_cancel_reads_and_heartbeats_stay_off_gepas_loop(demo, tmp_path):
    settings, train, val, _ = demo
    settings = replace(settings, max_metric_calls=60)
    rec = _SlowStore(tmp_path / "work")
    rec.reads_on = []
    out = gepa_runner.run(settings, train, val, rec)
    assert not out.cancelled and out.iterations >= 2
    # The first read is in the loop (a cancel before the start is honoured at once); the
    # later ones, each 0.3 s here, run in the background while gepa goes on.
    assert rec.reads_on[0] != "gepa-cancel"
    assert rec.reads_on[1:] and set(rec.reads_on[1:]) == {"gepa-cancel"}
