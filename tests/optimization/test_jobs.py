"""Alignment jobs as real detached processes: cancel, kill -9, interrupted, resume."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag

from core.errors import NotFoundError, ValidationError
from core.io.demo_seed import seed_demo
from core.labeling.labels import current_labels
from core.optimization import jobs
from core.optimization import recorder as rec
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def demo_job_env(store_uri, monkeypatch):
    res = seed_demo("demo")
    # Slow the demo model so the job is still running when the test acts on it.
    monkeypatch.setenv("ALIGNBOARD_DEMO_LATENCY_MS", "100")
    monkeypatch.setenv("ALIGNBOARD_HEARTBEAT_INTERVAL_S", "0.5")
    monkeypatch.setenv(jobs.STALE_ENV, "4")
    return res.experiment_id


def _launch_gepa(budget: int = 300, *extra: str) -> str:
    proc = _cli(
        "align", "--experiment", "demo", "--judge", "support_quality", "--optimizer", "gepa",
        "--model", "demo:/judge", "--reflection-model", "demo:/reflect",
        "--max-metric-calls", str(budget), "--workers", "2", "--detach", "--json", *extra,
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


@pytest.mark.slow
@pytest.mark.parametrize("keep", [False, True], ids=["default", "register-if-cancelled"])
def test_cancel_stops_at_an_iteration_boundary_and_registers_only_if_asked(demo_job_env, keep):
    from core.optimization import record
    from core.views.job_status import CANCELLED_NOT_REGISTERED, outcome_line

    run_id = _launch_gepa(300, *(["--register-if-cancelled"] if keep else []))
    wait_for(lambda: (jobs.status(run_id).iteration or 0) >= 1, 90, "a first iteration")
    # In-process: a CLI start-up (seconds) could outlast a short run. The CLI's cancel is
    # covered in test_cli_align.
    assert jobs.cancel(run_id).cancel_requested is True
    t0 = time.monotonic()
    final = wait_for(lambda: _status_if(run_id, lambda s: not s.active), 60, "the cancel")
    assert final.status == "cancelled", (final, jobs.log_path(run_id).read_text())
    assert time.monotonic() - t0 < 60
    run = MlflowClient().get_run(run_id)
    # The best so far is scored on the held-out split either way: the record shows how far
    # the run got.
    assert "test_accuracy_after" in run.data.metrics
    result = json.loads(rec.read_artifact_text(MlflowClient(), run_id, record.RESULT))
    assert result["status"] == "cancelled" and result["register_if_cancelled"] is keep
    assert final.register_if_cancelled is keep
    if keep:
        assert final.judge_version is not None  # best so far scored and registered
        assert result["registered"] is True and result["not_registered_reason"] is None
        assert jobs.TAG_NOT_REGISTERED not in run.data.tags
        line = f"Cancelled — registered v{final.judge_version} (Register if cancelled was on)"
        assert "registered anyway" not in result["verdict_text"]
    else:
        from core.optimization.registry import list_versions

        assert final.judge_version is None and final.registered is False
        assert not [v for v in list_versions(demo_job_env, "support_quality") if v.run_id == run_id]
        assert result["registered"] is False and result["judge_version"] is None
        assert result["not_registered_reason"] == "cancelled"
        assert run.data.tags[jobs.TAG_NOT_REGISTERED] == "cancelled"
        assert final.not_registered_reason == "cancelled"
        assert result["verdict_text"].startswith("Cancelled: not registered")
        line = CANCELLED_NOT_REGISTERED
    assert outcome_line(final) == line
    # The CLI says the same sentence, and takes the 8-character id the dashboard shows.
    proc = _cli("status", run_id[:8])
    assert proc.returncode == 0, proc.stderr
    assert line in proc.stdout
    assert _last_json(_cli("status", run_id, "--json"))["status"] == "cancelled"


@pytest.mark.slow
def test_killed_job_is_interrupted_then_resumed_without_losing_iterations(demo_job_env):
    experiment_id = demo_job_env
    labels_before = sorted(
        (lab.trace_id, lab.reviewer, lab.assessment_id) for lab in current_labels(experiment_id)
    )
    run_id = _launch_gepa(budget=250)
    wait_for(lambda: (jobs.status(run_id).iteration or 0) >= 2, 120, "two iterations")
    with pytest.raises(ValidationError, match="still running"):
        jobs.resume(run_id)
    pid = jobs.status(run_id).pid
    assert pid
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)  # let in-flight writes land before reading what survived
    before = _history(run_id)
    iteration_before = jobs.status(run_id).iteration

    # The pid is checked on this machine: no need to wait for the heartbeat to go stale.
    st = wait_for(
        lambda: _status_if(run_id, lambda s: s.status == "interrupted"), 5, "the dead pid"
    )
    assert "killed or crashed" in st.error and "alignboard resume" in st.error
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


@pytest.mark.slow
def test_status_of_unknown_run_and_finished_run_cannot_resume(store_uri):
    with pytest.raises(NotFoundError):
        jobs.status("0" * 32)
    proc = _cli("status", "0" * 32, "--json")
    assert proc.returncode == 2 and _last_json(proc)["error"] == "NotFoundError"


# ---- the liveness rules, on runs with hand-written tags ---------------------------------


def _job_run(experiment, *, pid: int, host: str, age: float, identity: str = "") -> str:
    run = MlflowClient().create_run(
        experiment.experiment_id,
        tags={
            rec.TAG_KIND: rec.KIND_ALIGNMENT,
            rec.TAG_STATUS: "running",
            rec.TAG_PID: str(pid),
            rec.TAG_HOST: host,
            jobs.TAG_PROCESS: identity,
            rec.TAG_HEARTBEAT: f"{time.time() - age:.3f}",
        },
    )
    return run.info.run_id


@pytest.fixture
def dead_pid():
    """(pid, identity) of a process that ran and was killed and reaped."""
    proc = subprocess.Popen(["sleep", "60"])
    identity = jobs.process_identity(proc.pid)
    assert identity and identity.startswith(f"{proc.pid}:")
    proc.kill()
    proc.wait()
    return proc.pid, identity


@pytest.fixture
def default_timing(monkeypatch):
    monkeypatch.delenv(jobs.STALE_ENV, raising=False)
    monkeypatch.delenv(rec.HEARTBEAT_INTERVAL_ENV, raising=False)
    assert (jobs.stale_after_s(), jobs.grace_s()) == (30.0, 10.0)


def test_dead_pid_with_recorded_identity_is_interrupted_at_once(
    experiment, dead_pid, default_timing
):
    pid, identity = dead_pid
    run_id = _job_run(experiment, pid=pid, host=socket.gethostname(), age=0, identity=identity)
    st = jobs.status(run_id)
    assert st.status == "interrupted" and st.heartbeat_age_s < 5
    assert f"pid {pid}" in st.error and "alignboard resume" in st.error
    assert MlflowClient().get_run(run_id).data.tags[rec.TAG_STATUS] == "interrupted"


def test_dead_pid_without_identity_waits_for_the_grace_not_the_stale_heartbeat(
    experiment, dead_pid, default_timing
):
    pid, _ = dead_pid
    here = socket.gethostname()
    assert jobs.status(_job_run(experiment, pid=pid, host=here, age=5)).status == "running"
    st = jobs.status(_job_run(experiment, pid=pid, host=here, age=12))
    assert st.status == "interrupted" and "killed or crashed" in st.error


def test_job_on_another_host_is_interrupted_only_when_its_heartbeat_is_stale(
    experiment, dead_pid, default_timing
):
    pid, identity = dead_pid
    kw = {"pid": pid, "host": "another-machine", "identity": identity}
    assert jobs.status(_job_run(experiment, age=25, **kw)).status == "running"
    st = jobs.status(_job_run(experiment, age=31, **kw))
    assert st.status == "interrupted" and "stopped sending heartbeats" in st.error


def test_recycled_pid_is_told_from_the_job_by_its_start_time(experiment, default_timing):
    me, here = os.getpid(), socket.gethostname()
    identity = jobs.process_identity(me)
    assert identity
    # The recorded start time is this process's: the job is alive, however old its beat.
    assert jobs.status(_job_run(experiment, pid=me, host=here, age=300, identity=identity)).active
    # Another start time under the same pid: the job's process is gone, its pid reused.
    _, started, rest = identity.split(":", 2)
    reused = f"{me}:{int(started) + 1}:{rest}"
    st = jobs.status(_job_run(experiment, pid=me, host=here, age=0, identity=reused))
    assert st.status == "interrupted"
    # Without an identity a live pid running another program counts only once stale.
    assert jobs.status(_job_run(experiment, pid=me, host=here, age=20)).status == "running"
    assert jobs.status(_job_run(experiment, pid=me, host=here, age=31)).status == "interrupted"


def test_zombie_job_process_is_dead(experiment, default_timing):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    identity = jobs.process_identity(proc.pid)
    try:
        wait_for(lambda: jobs._proc_stat(proc.pid)[0] == "Z", 10, "a zombie")
        os.kill(proc.pid, 0)  # still a pid: only its state tells it is dead
        run_id = _job_run(
            experiment, pid=proc.pid, host=socket.gethostname(), age=0, identity=identity
        )
        assert jobs.status(run_id).status == "interrupted"
    finally:
        proc.wait()


def test_identity_from_another_boot_or_namespace_falls_back_to_the_stale_rule(
    experiment, dead_pid, default_timing
):
    pid, identity = dead_pid
    pid_s, started, _boot, ns = identity.split(":", 3)
    other = f"{pid_s}:{started}:00000000-0000-0000-0000-000000000000:{ns}"
    kw = {"pid": pid, "host": socket.gethostname(), "identity": other}
    assert jobs.status(_job_run(experiment, age=25, **kw)).status == "running"
    assert jobs.status(_job_run(experiment, age=31, **kw)).status == "interrupted"


def test_a_job_that_finished_while_being_checked_keeps_its_status(
    experiment, dead_pid, default_timing, monkeypatch
):
    pid, identity = dead_pid
    run_id = _job_run(experiment, pid=pid, host=socket.gethostname(), age=0, identity=identity)
    probe = jobs._probe

    def finish_then_probe(*args):
        # The job writes its last status and exits between the read and the pid check.
        rec.set_status(MlflowClient(), run_id, "finished")
        return probe(*args)

    monkeypatch.setattr(jobs, "_probe", finish_then_probe)
    assert jobs.status(run_id).status == "finished"
    assert MlflowClient().get_run(run_id).data.tags[rec.TAG_STATUS] == "finished"


def test_resume_forgets_the_dead_process(experiment, dead_pid, default_timing, monkeypatch):
    pid, identity = dead_pid
    run_id = _job_run(experiment, pid=pid, host=socket.gethostname(), age=0, identity=identity)
    assert jobs.status(run_id).status == "interrupted"
    monkeypatch.setattr(jobs, "load_settings", lambda run_id: None)  # a hand-made run
    jobs.resume(run_id, detach=False)
    # Until the new process records itself, the old dead pid must not count against it.
    st = jobs.status(run_id)
    assert st.status == "queued" and st.pid is None
    assert MlflowClient().get_run(run_id).data.tags[jobs.TAG_PROCESS] == ""


# ---- the read path: a local sqlite file without MLflow, MLflow for everything else ------


@pytest.fixture
def frozen_clock(monkeypatch):
    """Freeze the clock ``jobs`` reads, so two reads of one run give equal heartbeat ages."""
    import types

    now = time.time()
    monkeypatch.setattr(
        jobs,
        "time",
        types.SimpleNamespace(time=lambda: now, monotonic=time.monotonic, sleep=time.sleep),
    )
    return now


def _mlflow_path(monkeypatch):
    """Make ``jobs.status`` read through MlflowClient, as it does for a tracking server."""
    from core.store import run_reads

    monkeypatch.setattr(run_reads, "read_run", lambda run_id, uri=None: None)


def _ended_run(experiment, state: str, **tags: str) -> str:
    run_id = _job_run(experiment, pid=4_000_000, host="another-machine", age=3)
    client = MlflowClient()
    client.log_batch(
        run_id,
        tags=[RunTag(k, v) for k, v in tags.items()],
        metrics=[Metric("metric_calls", 40, 0, 1), Metric("metric_calls", 98, 0, 7)],
    )
    rec.set_status(client, run_id, state, error="boom: it failed" if state == "failed" else None)
    return run_id


def test_status_reads_the_same_through_sqlite_and_through_mlflow(
    experiment, dead_pid, default_timing, frozen_clock, monkeypatch
):
    from core.store import run_reads

    here, me = socket.gethostname(), os.getpid()
    queued = MlflowClient().create_run(
        experiment.experiment_id,
        tags={rec.TAG_KIND: rec.KIND_ALIGNMENT, rec.TAG_STATUS: "queued"},
    )
    runs = {
        "queued": queued.info.run_id,
        "running": _job_run(
            experiment, pid=me, host=here, age=2, identity=jobs.process_identity(me) or ""
        ),
        "finished": _ended_run(
            experiment, "finished",
            **{rec.TAG_VERDICT: "improved", rec.TAG_JUDGE_VERSION: "2", rec.TAG_ITERATION: "7"},
        ),
        "failed": _ended_run(experiment, "failed"),
        "cancelled": _ended_run(experiment, "cancelled", **{rec.TAG_CANCEL: "1700000000.0"}),
    }  # fmt: skip
    pid, identity = dead_pid
    dead = [_job_run(experiment, pid=pid, host=here, age=1, identity=identity) for _ in "ab"]
    for run_id in dead:  # the same last beat, so both report the same age
        MlflowClient().set_tag(run_id, rec.TAG_HEARTBEAT, f"{frozen_clock - 1:.3f}")

    fast = {name: jobs.status(run_id).to_dict() for name, run_id in runs.items()}
    assert all(run_reads.read_run(run_id) is not None for run_id in runs.values())
    fast_dead = jobs.status(dead[0]).to_dict()  # read from the file, written through MLflow
    fast_back = jobs.status(dead[0]).to_dict()  # now as recorded (its end time is MLflow's)
    with monkeypatch.context() as m:
        _mlflow_path(m)
        slow = {name: jobs.status(run_id).to_dict() for name, run_id in runs.items()}
        slow_dead = jobs.status(dead[1]).to_dict()
        assert jobs.status(dead[0]).to_dict() == fast_back
    assert fast == slow
    assert {name: d["status"] for name, d in fast.items()} == {name: name for name in runs}
    assert fast["finished"]["verdict"] == "improved" and fast["finished"]["registered"] is True
    assert fast["failed"]["error"] == "boom: it failed" and fast["cancelled"]["cancel_requested"]
    assert 0 < fast["running"]["heartbeat_age_s"] <= 2 and fast["running"]["metric_calls"] is None
    assert fast["finished"]["metric_calls"] == 98 and fast["finished"]["iteration"] == 7

    # The dead job was recorded interrupted the same way on both paths.
    assert fast_dead["status"] == slow_dead["status"] == "interrupted"
    assert fast_dead == {
        **slow_dead,
        "run_id": dead[0],
        "error": slow_dead["error"].replace(dead[1], dead[0]),
        "started": fast_dead["started"],  # created a moment apart
    }
    assert fast_dead["ended"] == frozen_clock and fast_dead["heartbeat_age_s"] == 1.0
    for run_id in dead:
        run = MlflowClient().get_run(run_id)
        assert run.data.tags[rec.TAG_STATUS] == "interrupted" and run.info.status == "FAILED"
        assert "killed or crashed" in run.data.tags[rec.TAG_ERROR] and run.info.end_time
    assert fast_back["status"] == "interrupted" and fast_back["error"] == fast_dead["error"]


def test_status_reports_the_verdict_and_what_was_registered(experiment, frozen_clock):
    improved = _ended_run(experiment, "finished", **{rec.TAG_VERDICT: "improved",
                                                     rec.TAG_JUDGE_VERSION: "3"})  # fmt: skip
    MlflowClient().log_metric(improved, "test_verdict_significant", 1.0)
    worse = _ended_run(experiment, "finished", **{rec.TAG_VERDICT: "worse"})
    MlflowClient().log_metric(worse, "test_verdict_significant", 0.0)
    old = _ended_run(experiment, "finished", **{rec.TAG_JUDGE_VERSION: "1"})  # before verdicts
    running = _job_run(experiment, pid=4_000_000, host="another-machine", age=1)

    st = jobs.status(improved)
    assert (st.verdict, st.significant, st.registered, st.judge_version) == (
        "improved", True, True, 3,
    )  # fmt: skip
    st = jobs.status(worse)
    assert (st.verdict, st.significant, st.registered, st.judge_version) == (
        "worse", False, False, None,
    )  # fmt: skip
    st = jobs.status(old)
    assert (st.verdict, st.significant, st.registered) == (None, None, True)
    st = jobs.status(running)
    assert (st.verdict, st.significant, st.registered) == (None, None, None)

    out = _cli("status", worse, "--json")
    assert out.returncode == 0, out.stderr
    assert {k: _last_json(out)[k] for k in ("verdict", "significant", "registered")} == {
        "verdict": "worse", "significant": False, "registered": False,
    }  # fmt: skip
    human = _cli("status", worse).stdout
    assert "held-out verdict: worse, not significant; nothing registered" in human, human
    human = _cli("status", improved).stdout
    assert "held-out verdict: improved, significant; registered version 3" in human, human


def test_status_of_a_real_run_says_what_its_verdict_gate_decided(demo_store):
    from core.optimization.engine import run_alignment
    from tests.optimization.test_verdict import _settings, worse_runner

    kept = run_alignment(_settings(demo_store), runner=worse_runner)
    forced = run_alignment(_settings(demo_store, register_if_worse=True), runner=worse_runner)
    for result in (kept, forced):
        st = jobs.status(result.run_id)
        assert st.status == "finished" and st.verdict == result.verdict == "worse"
        assert st.registered is result.registered and st.judge_version == result.judge_version
        assert st.significant is result.significant
    assert (kept.registered, forced.registered) == (False, True)


@pytest.mark.slow
def test_status_through_a_tracking_server_reads_and_writes_through_mlflow(
    tmp_path, dead_pid, default_timing, monkeypatch, _template_db
):
    from core.store import config, run_reads
    from tests.support.mlflow_server import mlflow_server

    with mlflow_server(tmp_path / "server", template_db=_template_db) as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.setenv(config.HOME_ENV, str(tmp_path / "home"))
        config.configure(uri)
        client = MlflowClient()
        experiment = client.get_experiment(client.create_experiment("served"))
        pid, identity = dead_pid
        run_id = _job_run(experiment, pid=pid, host=socket.gethostname(), age=0, identity=identity)
        client.set_tag(run_id, rec.TAG_ITERATION, "4")
        assert run_reads.read_run(run_id) is None  # not a local file: MLflow's path

        st = jobs.status(run_id)
        assert st.status == "interrupted" and st.iteration == 4 and "pid" in (st.error or "")
        assert client.get_run(run_id).data.tags[rec.TAG_STATUS] == "interrupted"
        assert jobs.status(run_id).status == "interrupted"
        with pytest.raises(NotFoundError):
            jobs.status("0" * 32)
