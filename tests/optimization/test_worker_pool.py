"""A worker's pool: concurrency, cancel, SIGTERM, kill -9 and auto-resume elsewhere, and
how :func:`jobs.launch` hands jobs to workers (or a one-off process) by jobs mode."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest
from mlflow import MlflowClient

from core.optimization import jobs, workers
from core.optimization import recorder as rec
from core.optimization.workers import JOBS_MODE_ENV
from tests.optimization.test_job_state import _assert_not_redone, _history
from tests.optimization.worker_support import queue_jobs, start_worker, stop
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def job_env(demo_store, monkeypatch):
    monkeypatch.setenv("ALIGNBOARD_HEARTBEAT_INTERVAL_S", "0.5")
    monkeypatch.setenv(jobs.STALE_ENV, "4")
    monkeypatch.setenv(JOBS_MODE_ENV, "worker")
    return demo_store


def _until(
    run_id: str, pred: Callable[[jobs.JobStatus], bool], timeout: float, what: str
) -> jobs.JobStatus:
    """Poll the job's status until ``pred`` holds; return that status."""

    def check() -> jobs.JobStatus | None:
        st = jobs.status(run_id)
        return st if pred(st) else None

    found = wait_for(check, timeout, what)
    assert found is not None
    return found


def _ended(run_id: str, timeout: float = 240) -> jobs.JobStatus:
    return _until(run_id, lambda s: not s.active, timeout, "the job's end")


def _gepa(experiment_id: str, budget: int, n: int = 1) -> list[str]:
    return queue_jobs(experiment_id, n, "gepa", max_metric_calls=budget, workers=2)


def test_concurrency_is_honoured(job_env, tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNBOARD_DEMO_LATENCY_MS", "40")
    run_ids = _gepa(job_env, 60, n=4)
    worker = start_worker(tmp_path / "w.log", "--concurrency", "2", "--id", "pool")
    client = MlflowClient()
    most_running, most_listed = 0, 0
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            states = [client.get_run(r).data.tags.get(rec.TAG_STATUS) for r in run_ids]
            most_running = max(most_running, states.count("running"))
            entry = next((w for w in workers.all_workers() if w.worker_id == "pool"), None)
            if entry is not None:
                assert entry.concurrency == 2
                most_listed = max(most_listed, len(entry.running))
            if all(s in rec.TERMINAL for s in states):
                break
            time.sleep(0.1)
    finally:
        assert stop(worker) == 0
    statuses = [jobs.status(r) for r in run_ids]
    assert [s.status for s in statuses] == ["finished"] * 4, [(s.status, s.error) for s in statuses]
    assert most_running == 2 and most_listed <= 2, (most_running, most_listed)
    assert not [w for w in workers.all_workers() if w.worker_id == "pool"]  # withdrawn


def test_cancel_reaches_a_job_on_a_worker(job_env, tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNBOARD_DEMO_LATENCY_MS", "100")
    (run_id,) = _gepa(job_env, 300)
    worker = start_worker(tmp_path / "w.log", "--id", "canceller")
    try:
        wait_for(lambda: (jobs.status(run_id).iteration or 0) >= 1, 120, "a first iteration")
        assert jobs.status(run_id).worker == "canceller"
        jobs.cancel(run_id)
        final = _ended(run_id, 90)
    finally:
        assert stop(worker) == 0
    assert final.status == "cancelled", (final, jobs.log_path(run_id).read_text()[-2000:])


def test_sigterm_of_a_worker_ends_its_job_interrupted(job_env, tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNBOARD_DEMO_LATENCY_MS", "100")
    (run_id,) = _gepa(job_env, 300)
    worker = start_worker(tmp_path / "w.log", "--id", "stopper")
    wait_for(lambda: (jobs.status(run_id).iteration or 0) >= 1, 120, "a first iteration")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(60) == 0
    st = jobs.status(run_id)
    assert st.status == "interrupted", (st, jobs.log_path(run_id).read_text()[-2000:])
    assert "stopped (signal)" in (st.error or "")
    assert not [w for w in workers.all_workers() if w.worker_id == "stopper"]


def test_auto_mode_without_a_worker_spawns_a_one_off(job_env, monkeypatch):
    monkeypatch.setenv(JOBS_MODE_ENV, "auto")
    assert workers.alive_workers() == []
    (run_id,) = queue_jobs(job_env, 1)
    final = _ended(run_id)
    assert final.status == "finished", jobs.log_path(run_id).read_text()[-2000:]
    assert (final.worker or "").startswith("once-") and final.attempt == 0


def test_worker_mode_keeps_a_run_queued_until_a_worker_comes(job_env, tmp_path, monkeypatch):
    monkeypatch.setenv(jobs.STALE_ENV, "1")
    (run_id,) = queue_jobs(job_env, 1)
    time.sleep(3)  # far past the stale heartbeat: an unclaimed queued run still waits
    st = jobs.status(run_id)
    assert st.status == "queued" and st.worker is None and st.attempt == 0
    # From here a 1 s staleness would only measure this machine's load, not the queue.
    monkeypatch.setenv(jobs.STALE_ENV, "30")
    worker = start_worker(tmp_path / "w.log", "--id", "late")
    try:
        final = _ended(run_id)
    finally:
        assert stop(worker) == 0
    assert final.status == "finished" and final.worker == "late"


def test_kill_9_of_a_worker_then_another_host_resumes_the_job(job_env, tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNBOARD_DEMO_LATENCY_MS", "100")
    (run_id,) = _gepa(job_env, 250)
    first = start_worker(tmp_path / "a.log", "--id", "host-a")
    wait_for(lambda: (jobs.status(run_id).iteration or 0) >= 2, 180, "two iterations")
    job_pid = jobs.status(run_id).pid
    iteration_before = jobs.status(run_id).iteration or 0
    first.kill()
    first.wait(10)
    before = _history(run_id)  # final: the job died with its worker
    # The job died with its worker (PR_SET_PDEATHSIG) and shows interrupted.
    st = _until(run_id, lambda s: s.status == "interrupted", 30, "the job to show interrupted")
    assert (job_pid and not os.path.exists(f"/proc/{job_pid}/status")) or _zombie(job_pid)
    assert "alignboard resume" in (st.error or "")

    # Another "host": its own data folder, same store.
    other = tmp_path / "host-b"
    other.mkdir()
    second = start_worker(
        tmp_path / "b.log",
        "--id",
        "host-b",
        env={"ALIGNBOARD_HOME": str(other), "ALIGNBOARD_DEMO_LATENCY_MS": "0"},
    )
    try:
        final = _until(
            run_id, lambda s: s.attempt >= 1 and not s.active, 300, "the resumed attempt's end"
        )
    finally:
        assert stop(second) == 0
    assert final.status == "finished", (final, (tmp_path / "b.log").read_text()[-3000:])
    assert final.attempt == 1 and final.worker == "host-b"
    tags = MlflowClient().get_run(run_id).data.tags
    assert tags[rec.TAG_AUTO_RESUMES] == "1"
    assert (final.iteration or 0) >= iteration_before
    # Host-b restored gepa's state from the run's artifacts: no completed iteration redone.
    _assert_not_redone(before, _history(run_id))
    assert (other / "jobs" / run_id / "gepa" / "gepa_state.bin").is_file()


def _zombie(pid: int | None) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True
