"""A job's resumable state in its MLflow run's artifacts (``state/``): checkpoint and
restore on a real sqlite store and through a real ``mlflow server`` with proxied
artifacts, and jobs killed with SIGKILL on one "host" (data folder) and resumed on
another without redoing what they completed: gepa alignment, prompt optimization,
MemAlign chunks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow import MlflowClient

from core.optimization import job_state, jobs
from core.optimization import recorder as rec
from core.store import config
from tests.support.mlflow_server import mlflow_server
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _fill(work: Path) -> dict[str, bytes]:
    files = {
        "gepa/gepa_state.bin": os.urandom(50_000),
        "gepa/run_log.json": b"[1, 2]",
        "judge_cache.json": b'{"verdicts": []}',
    }
    for rel, data in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes(data)
    (work / "job.log").write_text("per attempt, not state\n")
    (work / "gepa" / "gepa_state.bin.tmp").write_bytes(b"half written")
    return files


def _round_trip(client: MlflowClient, run_id: str, tmp_path: Path) -> None:
    host_a, host_b = tmp_path / "a", tmp_path / "b"
    host_a.mkdir(parents=True)
    files = _fill(host_a)
    first = job_state.checkpoint(client, run_id, host_a)
    assert first.files == 3 and first.bytes == sum(len(v) for v in files.values())
    # Nothing changed: no upload, no store call.
    assert job_state.checkpoint(client, run_id, host_a).files == 0
    time.sleep(0.01)
    files["judge_cache.json"] = b'{"verdicts": [1]}'
    (host_a / "judge_cache.json").write_bytes(files["judge_cache.json"])
    again = job_state.checkpoint(client, run_id, host_a)
    assert again.files == 1 and again.bytes == len(files["judge_cache.json"])

    # Another host: an empty job folder gets everything back, and nothing else.
    restored = job_state.restore(client, run_id, host_b)
    assert sorted(restored) == sorted(files)
    for rel, data in files.items():
        assert (host_b / rel).read_bytes() == data
    assert not (host_b / "job.log").exists() and not (host_b / "gepa/gepa_state.bin.tmp").exists()
    # Restored files are known as uploaded: the next checkpoint there uploads nothing.
    assert job_state.checkpoint(client, run_id, host_b).files == 0
    assert job_state.restore(client, run_id, host_b) == []
    # A local copy written after the checkpoint (this host got further) is kept.
    (host_b / "gepa/run_log.json").write_bytes(b"[1, 2, 3]")
    assert job_state.restore(client, run_id, host_b) == []
    assert (host_b / "gepa/run_log.json").read_bytes() == b"[1, 2, 3]"
    # A lost file comes back.
    (host_b / "judge_cache.json").unlink()
    assert job_state.restore(client, run_id, host_b) == ["judge_cache.json"]


def test_checkpoint_and_restore_round_trip_on_a_local_store(experiment, tmp_path):
    client = MlflowClient()
    run_id = client.create_run(experiment.experiment_id).info.run_id
    assert rec.local_artifact_dir(client, run_id) is not None
    _round_trip(client, run_id, tmp_path)
    local = rec.local_artifact_dir(client, run_id)
    assert local is not None
    manifest = json.loads((local / job_state.MANIFEST).read_text())
    assert set(manifest["files"]) == {
        "gepa/gepa_state.bin",
        "gepa/run_log.json",
        "judge_cache.json",
    }


def test_checkpoint_and_restore_round_trip_through_a_tracking_server(tmp_path, monkeypatch):
    with mlflow_server(tmp_path / "server") as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        config.configure(uri)
        client = MlflowClient(uri)
        exp = client.create_experiment("state-test")
        run = client.create_run(exp)
        # Proxied artifacts: nothing of the run is on this process's disk.
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        assert rec.local_artifact_dir(client, run.info.run_id) is None
        _round_trip(client, run.info.run_id, tmp_path / "hosts")
        names = {f.path for f in client.list_artifacts(run.info.run_id, "state")}
        assert {"state/gepa", "state/judge_cache.json", "state/manifest.json"} <= names


# --------------------------------------------------------------------------- killed jobs


def _cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.stdout.strip(), proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _history(run_id: str) -> dict[str, list[tuple[int, float]]]:
    client = MlflowClient()
    keys = client.get_run(run_id).data.metrics.keys()
    return {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in keys}


def _kill_then_resume_elsewhere(run_id: str, tmp_path: Path, monkeypatch) -> tuple[dict, dict]:
    """SIGKILL the job after two iterations, lose its job folder, resume it with another
    data folder (another host); returns (history before the kill, the resume's JSON)."""
    wait_for(lambda: (jobs.status(run_id).iteration or 0) >= 2, 150, "two iterations")
    pid = jobs.status(run_id).pid
    assert pid
    os.killpg(pid, signal.SIGKILL)
    time.sleep(0.5)
    before = _history(run_id)
    wait_for(lambda: jobs.status(run_id).status == "interrupted", 10, "the dead pid")
    # The first host's job folder is gone; the second host has never seen this run.
    shutil.rmtree(rec.job_dir(run_id))
    other_home = tmp_path / "host2"
    other_home.mkdir()
    env = {**os.environ, config.HOME_ENV: str(other_home), "ALIGNBOARD_DEMO_LATENCY_MS": "0"}
    proc = _cli("resume", run_id, "--json", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    out = _last_json(proc)
    assert out["status"] == "finished" and out["resumed"] is True
    monkeypatch.setenv(config.HOME_ENV, str(other_home))
    work = rec.job_dir(run_id)
    assert (work / "gepa" / "gepa_state.bin").is_file()  # restored there from the run
    return before, out


def _assert_not_redone(before: dict, after: dict) -> None:
    redone = set()
    for key, points in before.items():
        assert set(points) <= set(after[key]), key
        n_before, n_after = Counter(s for s, _ in points), Counter(s for s, _ in after[key])
        redone |= {s for s in n_before if s > 0 and n_after[s] > n_before[s]}
    # Started over, every step from 1 would be logged again; resumed, at most the one in
    # flight at the kill.
    assert len(redone) <= 1, redone
    last_before = max(s for pts in before.values() for s, _ in pts)
    assert max(s for pts in after.values() for s, _ in pts) > last_before


def _first_new(before: dict, after: dict, key: str) -> tuple[int, float] | None:
    old = set(before.get(key, []))
    return min((p for p in after.get(key, []) if p not in old), default=None)


@pytest.fixture
def slow_jobs(monkeypatch):
    monkeypatch.setenv("ALIGNBOARD_DEMO_LATENCY_MS", "100")
    monkeypatch.setenv(rec.HEARTBEAT_INTERVAL_ENV, "0.5")
    monkeypatch.setenv(jobs.STALE_ENV, "4")


@pytest.mark.slow
def test_gepa_alignment_killed_resumes_on_another_host_without_redoing_iterations(
    demo_store, slow_jobs, tmp_path, monkeypatch
):
    proc = _cli(
        "align", "--experiment", "alignboard-demo", "--judge", "support_quality", "--optimizer", "gepa",
        "--model", "demo:/judge", "--reflection-model", "demo:/reflect",
        "--max-metric-calls", "250", "--workers", "2", "--detach", "--json",
        env=dict(os.environ),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run_id = _last_json(proc)["run_id"]
    before, out = _kill_then_resume_elsewhere(run_id, tmp_path, monkeypatch)
    after = _history(run_id)
    _assert_not_redone(before, after)
    # The seed's re-evaluation on the new host was answered by the restored verdict cache.
    hits = _first_new(before, after, "cache_hits")
    assert hits is not None and hits[1] > 0, hits
    iterations = json.loads(
        rec.read_artifact_text(MlflowClient(), run_id, "state/gepa_iterations.json") or "[]"
    )
    steps = [e["iteration"] for e in iterations]
    assert steps == sorted(set(steps)) and max(steps) == out["iterations"]


@pytest.mark.slow
def test_prompt_optimization_killed_resumes_on_another_host_from_its_caches(
    prompt_demo, slow_jobs, tmp_path, monkeypatch
):
    from tests.optimization.test_prompt_jobs import _settings

    run_id = jobs.launch(_settings(prompt_demo, full_budget=True, max_metric_calls=300, workers=2))
    before, out = _kill_then_resume_elsewhere(run_id, tmp_path, monkeypatch)
    after = _history(run_id)
    _assert_not_redone(before, after)
    hits = _first_new(before, after, "output_cache_hits")
    assert hits is not None and hits[1] >= out["val_size"], hits


class _StopAfter(rec.MlflowRunRecorder):
    """A real run recorder whose process is "stopped" (KeyboardInterrupt, as SIGTERM
    raises) right after chunk ``n`` was logged."""

    n = 2

    def log_metrics(self, metrics, step):
        super().log_metrics(metrics, step)
        if step >= self.n:
            raise KeyboardInterrupt


def test_memalign_resumes_after_the_last_completed_chunk_on_another_host(
    demo_store, tmp_path, monkeypatch
):
    from core.optimization.runners import memalign as memalign_runner
    from tests.optimization.demo_examples import demo_examples, demo_settings

    monkeypatch.setattr(memalign_runner, "MIN_CHUNK", 10)
    ex = demo_examples(demo_store)
    settings = demo_settings(demo_store, "memalign")
    client = MlflowClient()
    run_id = client.create_run(demo_store).info.run_id
    with pytest.raises(KeyboardInterrupt):
        memalign_runner.run(settings, ex["train"], ex["val"], _StopAfter(run_id, client))
    assert [m.step for m in client.get_metric_history(run_id, "memalign_guidelines")] == [1, 2]

    monkeypatch.setenv(config.HOME_ENV, str(tmp_path / "host2"))
    recorder = rec.MlflowRunRecorder(run_id, client)
    assert recorder.restore_state() == [memalign_runner.PROGRESS_FILE]
    outcome = memalign_runner.run(settings, ex["train"], ex["val"], recorder)
    # Chunks 1 and 2 were not aligned again: only 3 and 4 were logged by the resume.
    steps = [m.step for m in client.get_metric_history(run_id, "memalign_guidelines")]
    assert steps == [1, 2, 3, 4] and outcome.iterations == 4
    assert outcome.extra["episodes"] == len(ex["train"])
    whole = memalign_runner.run(
        settings,
        ex["train"],
        ex["val"],
        rec.MlflowRunRecorder(client.create_run(demo_store).info.run_id, client),
    )
    assert {g["text"] for g in outcome.extra["guidelines"]} == {
        g["text"] for g in whole.extra["guidelines"]
    }
