"""Alignment jobs as real detached processes: cancel, kill -9, interrupted, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow import MlflowClient

from core.alignment import jobs
from core.alignment import recorder as rec
from core.demo_seed import seed_demo
from core.errors import NotFoundError, ValidationError
from core.labels import current_labels

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _wait_for(pred, timeout: float, what: str, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def demo_job_env(store_uri, monkeypatch):
    res = seed_demo("demo")
    # Slow the demo model so the job is still running when the test acts on it.
    monkeypatch.setenv("ALIGNBOARD_DEMO_LATENCY_MS", "100")
    monkeypatch.setenv("ALIGNBOARD_HEARTBEAT_INTERVAL_S", "0.5")
    monkeypatch.setenv(jobs.STALE_ENV, "4")
    return res.experiment_id


def _launch_gepa(budget: int = 300) -> str:
    proc = _cli(
        "align", "--experiment", "demo", "--judge", "support_quality", "--optimizer", "gepa",
        "--model", "demo:/judge", "--reflection-model", "demo:/reflect",
        "--max-metric-calls", str(budget), "--workers", "2", "--detach", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = _last_json(proc)
    assert out["status"] == "queued"
    return out["run_id"]


def _status_if(run_id: str, pred):
    current = jobs.status(run_id)
    return current if pred(current) else None


def _history(run_id: str) -> dict[str, list[tuple[int, float]]]:
    client = MlflowClient()
    keys = client.get_run(run_id).data.metrics.keys()
    return {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in keys}


def test_cancel_stops_at_an_iteration_boundary_and_keeps_the_best(demo_job_env):
    run_id = _launch_gepa()
    _wait_for(lambda: (jobs.status(run_id).iteration or 0) >= 1, 90, "a first iteration")
    # In-process: a CLI start-up (seconds) could outlast a short run. The CLI's cancel is
    # covered in test_cli_align.
    assert jobs.cancel(run_id).cancel_requested is True
    t0 = time.monotonic()
    final = _wait_for(lambda: _status_if(run_id, lambda s: not s.active), 60, "the cancel")
    assert final.status == "cancelled", (final, jobs.log_path(run_id).read_text())
    assert time.monotonic() - t0 < 60
    assert final.judge_version is not None  # best so far scored and registered
    metrics = MlflowClient().get_run(run_id).data.metrics
    assert "test_accuracy_after" in metrics
    assert _last_json(_cli("status", run_id, "--json"))["status"] == "cancelled"


def test_killed_job_is_interrupted_then_resumed_without_losing_iterations(demo_job_env):
    experiment_id = demo_job_env
    labels_before = sorted(
        (lab.trace_id, lab.reviewer, lab.assessment_id) for lab in current_labels(experiment_id)
    )
    run_id = _launch_gepa(budget=250)
    _wait_for(lambda: (jobs.status(run_id).iteration or 0) >= 2, 120, "two iterations")
    with pytest.raises(ValidationError, match="still running"):
        jobs.resume(run_id)
    pid = jobs.status(run_id).pid
    assert pid
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)  # let in-flight writes land before reading what survived
    before = _history(run_id)
    iteration_before = jobs.status(run_id).iteration

    st = _wait_for(
        lambda: _status_if(run_id, lambda s: s.status == "interrupted"), 30, "the stale heartbeat"
    )
    assert st.heartbeat_age_s > 4 and "alignboard resume" in st.error
    assert MlflowClient().get_run(run_id).data.tags[rec.TAG_STATUS] == "interrupted"

    os.environ["ALIGNBOARD_DEMO_LATENCY_MS"] = "0"  # finish quickly (monkeypatch restores)
    proc = _cli("resume", run_id, "--json")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = _last_json(proc)
    assert out["status"] == "finished" and out["run_id"] == run_id and out["resumed"] is True
    assert out["judge_version"] >= 1 and out["iterations"] >= iteration_before
    after = _history(run_id)

    # Completed iterations are kept, not redone: every point logged before the kill is
    # still there, and at most the iteration in flight (plus the seed, step 0) was logged
    # again after the resume.
    redone = set()
    for key, points in before.items():
        assert set(points) <= set(after[key]), key
        n_before, n_after = Counter(s for s, _ in points), Counter(s for s, _ in after[key])
        redone |= {s for s in n_before if s > 0 and n_after[s] > n_before[s]}
    assert len(redone) <= 1, redone
    assert max(s for pts in after.values() for s, _ in pts) > iteration_before

    labels_after = sorted(
        (lab.trace_id, lab.reviewer, lab.assessment_id) for lab in current_labels(experiment_id)
    )
    assert labels_after == labels_before


def test_status_of_unknown_run_and_finished_run_cannot_resume(store_uri):
    with pytest.raises(NotFoundError):
        jobs.status("0" * 32)
    proc = _cli("status", "0" * 32, "--json")
    assert proc.returncode == 2 and _last_json(proc)["error"] == "NotFoundError"
