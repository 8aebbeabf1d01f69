"""Bulk scoring: a registered judge version over many traces, as a real job.

The demo store with the aligned demo judge registered (``prompt_demo``: 84 traces, 63
labeled for ``support_quality``, v1 with alias ``production``), the demo judge model, and
real worker processes for the job's life (launch, cancel, kill -9 and resume). Verdicts
are read back through MLflow's own API, not ours.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter

import mlflow
import pytest
from mlflow import MlflowClient

from core.errors import NotFoundError, ValidationError
from core.labeling.labels import current_labels
from core.labeling.queues import add_traces, create_queue
from core.labeling.splits import assign_split
from core.optimization import jobs
from core.optimization.bulk_scoring import (
    KIND_SCORE,
    TraceSelection,
    build_score_settings,
    check_scoring,
    run_scoring,
    select_traces,
)
from core.optimization.judging import build_judge
from core.optimization.registry import register_version
from core.optimization.score_spec import META_JUDGE_VERSION, META_RUN_ID, ScoreSettings
from core.optimization.scoring import score_version, version_source_id
from core.optimization.spec import JudgeSpec
from core.store.index import experiment_trace_ids
from tests.support.waiting import wait_for

JUDGE = "support_quality"
SOURCE = version_source_id(JUDGE, 1)


def _verdicts(experiment_id: str, source_id: str | None = SOURCE) -> list:
    """Every valid LLM_JUDGE feedback of ``source_id`` (None: any version), as MLflow's own
    search returns it."""
    traces = mlflow.search_traces(locations=[experiment_id], return_type="list")
    return [
        a
        for t in traces
        for a in t.info.assessments
        if a.name == JUDGE
        and a.source.source_type == "LLM_JUDGE"
        and source_id in (None, a.source.source_id)
        and a.valid is not False
    ]


def _runs(experiment_id: str) -> int:
    return len(MlflowClient().search_runs([experiment_id]))


def _human_ids(experiment_id: str) -> set[str]:
    return {lab.trace_id for lab in current_labels(experiment_id, JUDGE)}


@pytest.fixture
def job_env(prompt_demo, monkeypatch):
    # Slow the demo judge so the job is still running when the test acts on it.
    monkeypatch.setenv("ALIGNBOARD_DEMO_LATENCY_MS", "150")
    monkeypatch.setenv("ALIGNBOARD_HEARTBEAT_INTERVAL_S", "0.5")
    monkeypatch.setenv(jobs.STALE_ENV, "4")
    return prompt_demo


def _settings(experiment_id: str, **selection) -> ScoreSettings:
    return build_score_settings(
        experiment_id,
        f"{JUDGE}@production",
        TraceSelection(mode="all", **selection),
        workers=2,
        batch_size=8,
    )


def test_a_killed_job_resumes_and_every_trace_is_scored_exactly_once(job_env):
    experiment_id = job_env
    run_id = jobs.launch(_settings(experiment_id))
    wait_for(lambda: (jobs.status(run_id).n_scored or 0) >= 8, 90, "a first batch written")
    with pytest.raises(ValidationError, match="still running"):
        jobs.resume(run_id)
    pid = jobs.status(run_id).pid
    assert pid
    os.kill(pid, signal.SIGKILL)
    st = wait_for(
        lambda: (s := jobs.status(run_id)).status == "interrupted" and s, 10, "the dead pid"
    )
    written_before = len(_verdicts(experiment_id))
    assert 8 <= written_before < 84, written_before
    assert st.kind == KIND_SCORE and st.judge_version == 1 and st.n_total == 84

    os.environ["ALIGNBOARD_DEMO_LATENCY_MS"] = "0"  # finish quickly (monkeypatch restores)
    jobs.resume(run_id)
    final = jobs.wait(run_id, timeout_s=120)
    assert final.status == "finished", jobs.log_path(run_id).read_text()
    verdicts = _verdicts(experiment_id)
    per_trace = Counter(a.trace_id for a in verdicts)
    assert set(per_trace) == set(experiment_trace_ids(experiment_id) or ())
    assert set(per_trace.values()) == {1}  # nothing judged twice
    # The resumed attempt skipped what the dead one wrote (at least: the kill may land
    # between a write and the next metrics).
    assert final.n_skipped is not None and final.n_skipped >= written_before - 8
    assert final.n_scored + final.n_skipped + final.n_failed == 84
    assert {a.metadata[META_RUN_ID] for a in verdicts} == {run_id}
    assert {a.metadata[META_JUDGE_VERSION] for a in verdicts} == {"1"}


def test_cancel_stops_between_batches_and_keeps_what_was_written(job_env):
    experiment_id = job_env
    run_id = jobs.launch(_settings(experiment_id))
    wait_for(lambda: (jobs.status(run_id).n_scored or 0) >= 8, 90, "a first batch written")
    assert jobs.cancel(run_id).cancel_requested is True
    final = jobs.wait(run_id, timeout_s=60)
    assert final.status == "cancelled", jobs.log_path(run_id).read_text()
    # Stopped early; the batches in flight were finished and written, nothing more.
    assert 8 <= final.n_scored < 84
    assert len(_verdicts(experiment_id)) == final.n_scored
    assert [j.run_id for j in jobs.list_jobs(experiment_id, kind=KIND_SCORE)] == [run_id]
    assert jobs.list_jobs(experiment_id) == []  # not an alignment


def test_a_second_run_over_the_same_traces_writes_nothing(prompt_demo):
    settings = _settings(prompt_demo, limit=20)
    first = run_scoring(settings)
    assert (first.n_scored, first.n_skipped, first.n_failed) == (20, 0, 0)
    assert sum(first.value_counts.values()) == 20 and set(first.value_counts) <= {"pass", "fail"}
    ids = {a.assessment_id for a in _verdicts(prompt_demo)}
    assert len(ids) == 20
    second = run_scoring(settings)
    assert (second.n_scored, second.n_skipped, second.llm_calls) == (0, 20, 0)
    assert {a.assessment_id for a in _verdicts(prompt_demo)} == ids
    # The Agreement page's scoring shares the record: it sees these verdicts as done.
    labeled_done = len(_human_ids(prompt_demo) & {a.trace_id for a in _verdicts(prompt_demo)})
    again = score_version(prompt_demo, JUDGE, 1, "all")
    assert again.already == labeled_done and again.scored == 63 - labeled_done
    assert len(_verdicts(prompt_demo)) == 20 + again.scored


def test_faults_are_counted_not_fatal_and_a_rerun_scores_only_the_failed(prompt_demo, monkeypatch):
    monkeypatch.setenv("ALIGNBOARD_DEMO_FAILURE_RATE", "0.6")
    monkeypatch.setenv("ALIGNBOARD_DEMO_SEED", "7")
    settings = build_score_settings(
        prompt_demo, JUDGE, TraceSelection(mode="all", limit=40), workers=8, batch_size=20
    )
    result = run_scoring(settings)
    assert result.status == "finished"
    assert result.n_failed > 0 and result.retries > 0
    assert result.n_scored + result.n_failed == 40
    assert len(_verdicts(prompt_demo)) == result.n_scored
    status = jobs.status(result.run_id)
    assert (status.n_scored, status.n_failed, status.n_total) == (
        result.n_scored,
        result.n_failed,
        40,
    )
    monkeypatch.setenv("ALIGNBOARD_DEMO_FAILURE_RATE", "0")
    rerun = run_scoring(settings)
    assert (rerun.n_scored, rerun.n_skipped, rerun.n_failed) == (
        result.n_failed,
        result.n_scored,
        0,
    )


def _register(experiment_id: str, instructions: str, model: str = "demo:/judge") -> int:
    spec = JudgeSpec(JUDGE, instructions, "pass_fail", model)
    return register_version(build_judge(spec), experiment_id, run_id=None, test_metrics={})


def _refused(settings: ScoreSettings, code: str) -> None:
    experiment_id = settings.experiment_id
    runs, written = _runs(experiment_id), len(_verdicts(experiment_id, None))
    check = check_scoring(settings)
    assert not check.ok and code in {f.code for f in check.findings if f.level == "error"}
    with pytest.raises(ValidationError, match="Scoring refused"):
        run_scoring(settings)
    with pytest.raises(ValidationError, match="Scoring refused"):
        jobs.launch(settings)
    assert _runs(experiment_id) == runs  # no run created
    assert len(_verdicts(experiment_id, None)) == written  # nothing written


def test_every_refusal_comes_before_any_call_and_writes_nothing(prompt_demo, monkeypatch):
    with pytest.raises(NotFoundError, match="registered judges: support_quality"):
        build_score_settings(prompt_demo, "tone")
    with pytest.raises(NotFoundError, match="aliases: production"):
        build_score_settings(prompt_demo, f"{JUDGE}@staging")
    with pytest.raises(NotFoundError, match="no version 9"):
        build_score_settings(prompt_demo, f"{JUDGE}@9")
    with pytest.raises(ValidationError, match="split applies to labeled"):
        build_score_settings(prompt_demo, JUDGE, TraceSelection(mode="all", split="test"))

    future = int(time.time() * 1000) + 86_400_000
    _refused(_settings(prompt_demo, since_ms=future), "empty_selection")
    _refused(
        build_score_settings(prompt_demo, JUDGE, TraceSelection(mode="queue", queue="nope")),
        "bad_selection",
    )
    # The demo traces have no expectations: a judge that needs them cannot run on them.
    v = _register(prompt_demo, "Do {{ outputs }} meet {{ expectations }}? Pass or fail.")
    _refused(build_score_settings(prompt_demo, f"{JUDGE}@{v}"), "unfillable_variable")
    # A key that is missing: refused by name, before any call.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(os.path.dirname(__file__))  # no .streamlit/secrets.toml here
    v = _register(prompt_demo, "Is {{ outputs }} good for {{ inputs }}?", "openai:/gpt-4.1-mini")
    _refused(build_score_settings(prompt_demo, f"{JUDGE}@{v}"), "missing_credentials")


def test_a_trace_judge_is_always_fillable(prompt_demo):
    v = _register(prompt_demo, "Judge the agent's {{ trace }} and {{ outputs }}.")
    check = check_scoring(build_score_settings(prompt_demo, f"{JUDGE}@{v}"))
    assert "unfillable_variable" not in {f.code for f in check.findings}
    assert "{{ trace }}" in check.variables


def test_each_selection_mode(prompt_demo):
    client = MlflowClient()
    traces = client.search_traces(locations=[prompt_demo], max_results=500)
    infos = {t.info.trace_id: t.info for t in traces}
    everything = experiment_trace_ids(prompt_demo) or []
    humans = _human_ids(prompt_demo)

    def sel(**kw):
        return select_traces(prompt_demo, JUDGE, TraceSelection(**kw))

    assert sel(mode="all") == everything and len(everything) == 84
    assert sel() == [t for t in everything if t not in humans] and len(sel()) == 21
    assert sel(mode="labeled") == [t for t in everything if t in humans]
    assert sel(mode="labeled", split="test") == [
        t for t in everything if t in humans and assign_split(t) == "test"
    ]
    queue = create_queue(prompt_demo, "score-me", [JUDGE], ["maria.chen"])
    add_traces(queue, everything[10:15][::-1])
    assert sel(mode="queue", queue="score-me") == everything[10:15]  # oldest first
    assert sel(mode="all", limit=7) == everything[:7]
    stamps = sorted({i.request_time for i in infos.values()})
    cut = stamps[len(stamps) // 2]
    assert sel(mode="all", since_ms=cut) == [t for t in everything if infos[t].request_time >= cut]
    assert sel(mode="all", until_ms=cut) == [t for t in everything if infos[t].request_time < cut]
    topic = [t for t in everything if infos[t].tags.get("topic") == "safety"]
    assert sel(mode="all", tags={"topic": "safety"}) == topic and 0 < len(topic) < 84
    assert (
        sel(mode="unlabeled", tags={"topic": "safety"}, limit=2)
        == [t for t in topic if t not in humans][:2]
    )


def test_settings_round_trip_and_describe():
    sel = TraceSelection(mode="labeled", split="test", tags={"env": "prod"}, limit=5)
    settings = ScoreSettings("1", JUDGE, f"{JUDGE}@production", 3, sel, workers=4)
    assert ScoreSettings.from_dict(settings.to_dict()) == settings
    assert ScoreSettings.from_dict(json.loads(settings.to_json())) == settings
    assert sel.describe() == "labeled traces (test split), tag env=prod, at most 5"
    assert TraceSelection(since_ms=1767225600000).describe() == "unlabeled traces since 2026-01-01"


def test_score_records_round_trip_and_older_results_still_read():
    from core.optimization.record import ScoreResult, ScoreTraces

    traces = ScoreTraces(("t1", "t2"), "all traces")
    assert ScoreTraces.from_dict(json.loads(json.dumps(traces.to_dict()))) == traces
    result = ScoreResult("r", "finished", JUDGE, 2, f"{JUDGE}/v2", 5, 3, 1, 1, {"pass": 3})
    assert ScoreResult.from_dict(result.to_dict()) == result and result.n_done == 5
    # A result written before a field existed (and one with a field it does not know).
    old = {k: v for k, v in result.to_dict().items() if k != "write_seconds"}
    assert ScoreResult.from_dict({**old, "future_field": 1}).write_seconds == 0.0


def test_a_second_active_scoring_of_the_same_version_is_refused(prompt_demo):
    from core.optimization.bulk_scoring import create_score_run

    settings = _settings(prompt_demo, limit=5)
    first = create_score_run(settings, "queued", check=check_scoring(settings))
    with pytest.raises(ValidationError, match=f"already queued \\(run {first}\\)"):
        create_score_run(settings, "queued", check=check_scoring(settings))
    v2 = _register(prompt_demo, "Is {{ outputs }} a good answer to {{ inputs }}?")
    other = build_score_settings(prompt_demo, f"{JUDGE}@{v2}", TraceSelection(mode="all"))
    assert create_score_run(other, "queued")  # another version: no overlap of verdicts
    from core.optimization.recorder import set_status

    set_status(MlflowClient(), first, "finished")  # once it ended, the version is free
    assert create_score_run(settings, "queued", check=check_scoring(settings))
