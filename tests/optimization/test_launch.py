"""Launching an alignment: pre-flight once per launch, and one active run per judge."""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import RunTag

from core.errors import ValidationError
from core.labeling import labels as labels_module
from core.labeling.criteria import create_criterion, get_criterion
from core.optimization import dataset, jobs
from core.optimization import recorder as rec
from core.optimization.engine import (
    TAG_PREFLIGHT,
    create_run,
    recorded_findings,
    run_alignment,
)
from core.optimization.settings import build_settings, check_alignment
from core.optimization.spec import AlignmentOutcome

ROOT = Path(__file__).resolve().parents[2]
# The package re-exports the function under the module's name, so fetch the module itself.
preflight_module = importlib.import_module("core.optimization.preflight")


def tiny_runner(settings, train, val, recorder):
    """One 'iteration' that changes nothing: the test is about what happens around it."""
    recorder.log_metrics({"metric_calls": 1}, step=1)
    return AlignmentOutcome(settings.optimizer, settings.judge.instructions, None, 1, 1)


def _settings(experiment_id: str, judge: str = "support_quality", **kw):
    optimizer = kw.pop("optimizer", "memalign")
    return build_settings(
        experiment_id, get_criterion(experiment_id, judge), optimizer=optimizer, **kw
    )


def _count(monkeypatch, module, name: str, counts: dict[str, int]) -> None:
    real = getattr(module, name)

    def counted(*args, **kwargs):
        counts[name] = counts.get(name, 0) + 1
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)


@pytest.fixture
def scans(monkeypatch) -> dict[str, int]:
    """Label scans and pre-flight runs of this process, by function."""
    counts: dict[str, int] = {}
    _count(monkeypatch, dataset, "load_examples", counts)
    _count(monkeypatch, preflight_module, "preflight", counts)
    # Every reader of the labels table: the module itself and the one that imported it.
    real = labels_module.current_labels

    def counted(*args, **kwargs):
        counts["current_labels"] = counts.get("current_labels", 0) + 1
        return real(*args, **kwargs)

    monkeypatch.setattr(labels_module, "current_labels", counted)
    monkeypatch.setattr(dataset, "current_labels", counted)
    return counts


def _runs(experiment_id: str) -> list:
    return MlflowClient().search_runs(
        [experiment_id], filter_string=f"tags.`{rec.TAG_KIND}` = '{rec.KIND_ALIGNMENT}'"
    )


def test_check_then_launch_scans_the_labels_once_and_records_the_findings(demo_store, scans):
    settings = _settings(demo_store, reviewers=["maria.chen", "dev.patel"])
    check = check_alignment(settings)  # what the Align page shows (or the CLI runs)
    run_id = jobs.launch(settings, check=check)
    assert scans == {"load_examples": 1, "current_labels": 1, "preflight": 1}
    client = MlflowClient()
    assert client.get_run(run_id).data.tags[TAG_PREFLIGHT]
    assert recorded_findings(client, run_id) == list(check.findings)
    final = jobs.wait(run_id, timeout_s=300)
    assert final.status == "finished", final.error
    assert final.optimizer == "memalign" and final.judge_version is not None


def test_launch_without_a_check_at_hand_checks_once_itself(demo_store, scans):
    settings = _settings(demo_store)
    with pytest.raises(ValidationError, match="Unknown optimizer"):
        jobs.launch(_settings(demo_store, optimizer="annealing"))
    assert scans["preflight"] == 1 and scans["current_labels"] == 1
    assert _runs(demo_store) == []
    # A check with errors is refused as such, without another scan.
    bad = check_alignment(_settings(demo_store, optimizer="annealing"))
    scans.clear()
    with pytest.raises(ValidationError, match="Unknown optimizer"):
        jobs.launch(settings, check=bad)
    assert scans == {} and _runs(demo_store) == []


def test_the_job_of_a_checked_launch_loads_its_examples_without_repeating_preflight(
    demo_store, scans
):
    settings = _settings(demo_store)
    check = check_alignment(settings)
    checked = create_run(settings, findings=check.findings)
    unchecked = create_run(settings)  # e.g. jobs.launch(check=False): the job checks
    scans.clear()
    result = run_alignment(settings, run_id=checked, runner=tiny_runner)
    assert scans == {"load_examples": 1, "current_labels": 1}
    assert result.status == "finished"
    assert result.warnings == [f.to_dict() for f in check.findings]
    scans.clear()
    run_alignment(settings, run_id=unchecked, runner=tiny_runner)
    assert scans == {"load_examples": 1, "current_labels": 1, "preflight": 1}


def test_a_second_launch_for_the_same_judge_is_refused_while_the_first_is_active(demo_store):
    settings = _settings(demo_store)
    check = check_alignment(settings)
    first = create_run(settings)  # queued, as launch leaves it until its process starts
    refused = rf"already queued \(run {first}\).*alignboard cancel {first}.*--allow-concurrent"
    with pytest.raises(ValidationError, match=refused):
        jobs.launch(settings, check=check)
    with pytest.raises(ValidationError, match=refused):
        run_alignment(settings, runner=tiny_runner, allow_concurrent=False)
    assert [r.info.run_id for r in _runs(demo_store)] == [first]
    # Another judge is not held up by it.
    other = create_criterion(demo_store, "tone", "pass_fail", "Is {{ outputs }} polite?")
    create_run(_settings(demo_store, other.name), allow_concurrent=False)
    # Asked for explicitly, a second run of the same judge goes ahead.
    second = run_alignment(settings, runner=tiny_runner, allow_concurrent=True)
    assert second.status == "finished" and second.run_id != first
    assert len(_runs(demo_store)) == 3


def test_a_dead_run_does_not_block_a_new_launch(demo_store):
    settings = _settings(demo_store)
    run_id = create_run(settings, status="running")
    proc = subprocess.Popen(["sleep", "60"])
    identity = jobs.process_identity(proc.pid)
    proc.kill()
    proc.wait()
    MlflowClient().set_tag(run_id, rec.TAG_PID, str(proc.pid))
    MlflowClient().set_tag(run_id, rec.TAG_HOST, socket.gethostname())
    MlflowClient().set_tag(run_id, jobs.TAG_PROCESS, identity or "")
    assert jobs.active_runs(demo_store, "support_quality") == []
    assert jobs.status(run_id).status == "interrupted"
    result = run_alignment(settings, runner=tiny_runner, allow_concurrent=False)
    assert result.status == "finished"


def test_two_launches_racing_for_one_judge_never_both_go_ahead(demo_store):
    settings = _settings(demo_store)
    # Two launches that both passed the first check, their runs written close together.
    a = create_run(settings, allow_concurrent=True)
    b = create_run(settings, allow_concurrent=True)
    client = MlflowClient()
    for mine, other in ((a, b), (b, a)):
        with pytest.raises(ValidationError, match=f"run {other}"):
            jobs.refuse_if_active(demo_store, "support_quality", created=client.get_run(mine))
    # A run written well after an active one is refused by it, and only by it.
    time.sleep(jobs.RACE_WINDOW_MS / 1000 + 0.1)
    client.delete_run(b)
    late = create_run(settings, allow_concurrent=True)
    with pytest.raises(ValidationError, match=f"run {a}"):
        jobs.refuse_if_active(demo_store, "support_quality", created=client.get_run(late))
    jobs.refuse_if_active(demo_store, "support_quality", created=client.get_run(a))


def test_concurrent_launches_in_threads_make_at_most_one_run(demo_store):
    settings = _settings(demo_store)
    start = threading.Barrier(3)
    made, refused = [], []

    def launch() -> None:
        start.wait()
        try:
            made.append(create_run(settings, allow_concurrent=False))
        except ValidationError as exc:
            refused.append(exc)

    threads = [threading.Thread(target=launch) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(made) <= 1 and len(made) + len(refused) == 3
    assert [r.info.run_id for r in _runs(demo_store)] == made  # the refused left nothing


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def live_process():
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


def _running_job(experiment_id: str, pid: int) -> str:
    """A run as a live job process records it (pid, host, identity, heartbeat)."""
    run_id = create_run(_settings(experiment_id), status="running")
    MlflowClient().log_batch(
        run_id,
        tags=[
            RunTag(rec.TAG_PID, str(pid)),
            RunTag(rec.TAG_HOST, socket.gethostname()),
            RunTag(jobs.TAG_PROCESS, jobs.process_identity(pid) or ""),
            RunTag(rec.TAG_HEARTBEAT, f"{time.time():.3f}"),
        ],
    )
    return run_id


def test_cli_refuses_a_second_run_of_a_judge_unless_allow_concurrent(demo_store, live_process):
    # A job that stays running however slow the CLI starts (a bare queued run goes stale).
    first = _running_job(demo_store, live_process.pid)
    name = mlflow.get_experiment(demo_store).name
    align = ["align", "--experiment", name, "--judge", "support_quality", "--optimizer",
             "memalign", "--model", "demo:/judge", "--reflection-model", "demo:/reflect",
             "--json"]  # fmt: skip
    for mode in ([], ["--detach"]):
        proc = _cli(*align, *mode)
        assert proc.returncode == 2, proc.stderr
        out = _last_json(proc)
        assert out["error"] == "ValidationError" and f"run {first}" in out["message"]
        assert "--allow-concurrent" in out["message"]
    assert len(_runs(demo_store)) == 1
    proc = _cli(*align, "--detach", "--allow-concurrent")
    assert proc.returncode == 0, proc.stderr
    second = _last_json(proc)["run_id"]
    assert second != first
    final = jobs.wait(second, timeout_s=300)
    assert final.status == "finished", final.error
