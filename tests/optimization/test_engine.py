"""The alignment engine in-process: recorder, pre-flight refusal, failures, gepa end to end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from core.errors import CredentialsError, ValidationError
from core.io.demo_seed import seed_demo
from core.labeling.criteria import get_criterion
from core.optimization import recorder as rec
from core.optimization.engine import load_settings, run_alignment
from core.optimization.recorder import MlflowRunRecorder, local_artifact_dir
from core.optimization.spec import AlignmentOutcome, AlignmentSettings, JudgeSpec

SENTINEL = "sk-sentinel-DO-NOT-LEAK-1234567890"
CONTRACT_KEYS = {
    "run_id", "status", "optimizer", "judge_name", "judge_version", "train_size", "val_size",
    "test_size", "metric_calls", "llm_calls", "test_accuracy_before", "test_accuracy_after",
    "test_kappa_before", "test_kappa_after", "wall_seconds",
}  # fmt: skip


@pytest.fixture
def demo(store_uri):
    res = seed_demo("demo")
    crit = get_criterion(res.experiment_id, "support_quality")
    return res.experiment_id, crit


def _settings(experiment_id, crit, optimizer="gepa", **kw) -> AlignmentSettings:
    judge = JudgeSpec(crit.name, crit.instructions, crit.kind, "demo:/judge")
    return AlignmentSettings(experiment_id, judge, optimizer, "demo:/reflect", **kw)


def tiny_runner(settings, train, val, recorder):
    """Three 'iterations' that log what a real runner logs; stops on cancel."""
    assert not {e.split for e in train + val} & {"test"}, "the optimizer must never see test"
    for it in range(1, 4):
        if recorder.should_stop():
            return AlignmentOutcome(
                "gepa", settings.judge.instructions, None, it - 1, cancelled=True
            )
        recorder.log_metrics({"val_score": 0.5 + it / 10, "metric_calls": 10 * it}, step=it)
        recorder.log_json("candidates.json", [{"id": i, "parent": i - 1} for i in range(it)])
        recorder.heartbeat()
    return AlignmentOutcome("gepa", settings.judge.instructions + "\n(tiny)", None, 3, 30)


def _all_run_text(client: MlflowClient, run_id: str) -> str:
    run = client.get_run(run_id)
    parts = [json.dumps(run.data.params), json.dumps(run.data.tags)]
    root = local_artifact_dir(client, run_id)
    parts += [p.read_text(errors="replace") for p in Path(root).rglob("*") if p.is_file()]
    log_dir = rec.job_dir(run_id)
    parts += [p.read_text(errors="replace") for p in log_dir.rglob("*") if p.is_file()]
    return "\n".join(parts)


def test_recorder_writes_tags_metrics_and_artifacts_in_place(store_uri, experiment):
    client = MlflowClient()
    run_id = client.create_run(experiment.experiment_id).info.run_id
    r = MlflowRunRecorder(run_id)
    r.set_status("running")
    r.log_metrics({"val_score": 0.5, "skipped": float("nan")}, step=1)
    r.log_metrics({"val_score": 0.75}, step=2)
    r.log_json("candidates.json", [{"id": 0}])
    r.log_json("candidates.json", [{"id": 0}, {"id": 1}])  # overwritten, not duplicated
    r.log_text("notes/final.txt", "hello")
    r.heartbeat()
    assert r.should_stop() is False
    client.set_tag(run_id, rec.TAG_CANCEL, "1")
    time.sleep(rec.CANCEL_CACHE_S + 0.1)  # the read is cached for a second
    assert r.should_stop() is True

    run = client.get_run(run_id)
    assert run.data.tags[rec.TAG_STATUS] == "running"
    assert run.data.tags[rec.TAG_ITERATION] == "2"
    assert abs(float(run.data.tags[rec.TAG_HEARTBEAT]) - time.time()) < 30
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "val_score")] == [
        (1, 0.5),
        (2, 0.75),
    ]
    assert "skipped" not in run.data.metrics
    root = local_artifact_dir(client, run_id)
    assert json.loads((root / "candidates.json").read_text()) == [{"id": 0}, {"id": 1}]
    assert (root / "notes" / "final.txt").read_text() == "hello"
    assert r.work_dir.is_dir() and r.work_dir.name == run_id
    r.set_status("finished")
    assert client.get_run(run_id).info.status == "FINISHED"


def test_run_records_everything_and_leaks_no_secret(demo, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
    experiment_id, crit = demo
    settings = _settings(experiment_id, crit, max_metric_calls=40)
    result = run_alignment(settings, runner=tiny_runner)

    d = result.to_dict()
    assert d.keys() >= CONTRACT_KEYS
    assert d["status"] == "finished" and d["iterations"] == 3 and d["metric_calls"] == 30
    assert d["train_size"] + d["val_size"] + d["test_size"] >= 60
    assert d["judge_version"] == 1 and d["test_accuracy_before"] is not None
    client = MlflowClient()
    run = client.get_run(result.run_id)
    tags = run.data.tags
    assert tags[rec.TAG_STATUS] == "finished" and tags[rec.TAG_OPTIMIZER] == "gepa"
    assert tags[rec.TAG_JUDGE] == "support_quality" and tags[rec.TAG_JUDGE_VERSION] == "1"
    assert run.data.params == settings.to_params()
    assert {
        "test_accuracy_before",
        "test_accuracy_after",
        "failed_examples",
    } <= run.data.metrics.keys()
    assert load_settings(result.run_id) == settings
    root = local_artifact_dir(client, result.run_id)
    for name in ("settings.json", "preflight.json", "test_metrics.json", "result.json"):
        assert (root / name).is_file(), name
    test_metrics = json.loads((root / "test_metrics.json").read_text())
    assert test_metrics["before"]["confusion"] is not None
    assert SENTINEL not in _all_run_text(client, result.run_id)


def test_preflight_errors_refuse_before_creating_a_run(store_uri, experiment):
    from core.labeling.criteria import create_criterion

    create_criterion(experiment.experiment_id, "quality", "pass_fail", "Judge {{ outputs }}")
    judge = JudgeSpec("quality", "Judge this answer.", "pass_fail", "demo:/judge")
    settings = AlignmentSettings(experiment.experiment_id, judge, "gepa", "demo:/reflect")
    with pytest.raises(ValidationError) as err:
        run_alignment(settings, runner=tiny_runner)
    assert "No human labels named 'quality'" in str(err.value)
    assert "template variable" in str(err.value)
    assert MlflowClient().search_runs([experiment.experiment_id]) == []


def test_systemic_failure_marks_run_failed_with_redacted_error(demo, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
    experiment_id, crit = demo

    def bad_key(settings, train, val, recorder):
        recorder.log_metrics({"val_score": 0.5}, step=0)
        raise CredentialsError(f"openai rejected the API key {SENTINEL}; check OPENAI_API_KEY")

    with pytest.raises(CredentialsError) as err:
        run_alignment(_settings(experiment_id, crit), runner=bad_key)
    run_id = err.value.run_id
    tags = MlflowClient().get_run(run_id).data.tags
    assert tags[rec.TAG_STATUS] == "failed"
    assert "rejected the API key ***" in tags[rec.TAG_ERROR]
    assert SENTINEL not in tags[rec.TAG_ERROR]


def test_gepa_raises_test_agreement_above_the_seed_judge(demo):
    experiment_id, crit = demo
    result = run_alignment(_settings(experiment_id, crit, max_metric_calls=300, seed=0))
    d = result.to_dict()
    assert d.keys() >= CONTRACT_KEYS
    assert d["status"] == "finished"
    assert d["test_accuracy_after"] > d["test_accuracy_before"], d
    assert d["judge_version"] >= 1 and d["metric_calls"] > 0 and d["llm_calls"] > 0
    from mlflow.genai.scorers import get_scorer

    loaded = get_scorer(name="support_quality", experiment_id=experiment_id)
    assert loaded.name == "support_quality"


def test_fault_injection_finishes_and_records_failures(demo, monkeypatch):
    monkeypatch.setenv("ALIGNBOARD_DEMO_FAILURE_RATE", "0.2")
    experiment_id, crit = demo
    result = run_alignment(_settings(experiment_id, crit, max_metric_calls=120))
    assert result.status == "finished"
    metrics = MlflowClient().get_run(result.run_id).data.metrics
    assert "failed_examples" in metrics and metrics["llm_calls_total"] > 0
    assert metrics["llm_failures"] > 0  # injected 429/500s were seen, retried, counted
    assert metrics["failed_examples"] == result.failed_examples
    assert result.test_accuracy_after is not None
