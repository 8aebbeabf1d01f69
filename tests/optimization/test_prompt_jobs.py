"""Prompt optimization as a job: launch, status, cancel, kill -9 and resume, as real
processes on a real sqlite store with the demo prompt, dataset and judge; and the held-out
rows never reaching the optimizer."""

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

from core.errors import ValidationError
from core.optimization import jobs
from core.optimization import recorder as rec
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "northwind-support"
JUDGE = "support_quality@production"
DATASET = "dataset:northwind-messages"


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _settings(experiment_id: str, *, full_budget: bool = False, **kw):
    """The demo optimization; ``full_budget`` keeps searching after a perfect validation
    score (a job the test acts on must still be running)."""
    from core.optimization.prompt_preflight import build_prompt_settings

    if full_budget:
        kw["stop_at_score"] = None  # the stop at a perfect score is on by default

    return build_prompt_settings(
        experiment_id,
        prompts=[f"{PROMPT}@production"],
        dataset=DATASET,
        task_model="demo:/app",
        judges=[JUDGE],
        optimizer="gepa",
        reflection_model="demo:/reflect",
        **kw,
    )


def _history(run_id: str) -> dict[str, list[tuple[int, float]]]:
    client = MlflowClient()
    keys = client.get_run(run_id).data.metrics.keys()
    return {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in keys}


def _status_if(run_id: str, pred):
    current = jobs.status(run_id)
    return current if pred(current) else None


def _log(run_id: str) -> str:
    path = jobs.log_path(run_id)
    return path.read_text()[-3000:] if path.is_file() else "(no log)"


@pytest.fixture
def slow_demo(prompt_demo, monkeypatch):
    """The demo store, the demo models slowed so a job is still running when acted on."""
    monkeypatch.setenv("ALIGNBOARD_DEMO_LATENCY_MS", "100")
    monkeypatch.setenv(rec.HEARTBEAT_INTERVAL_ENV, "0.5")
    monkeypatch.setenv(jobs.STALE_ENV, "4")
    return prompt_demo


def test_status_names_match_the_prompt_task_and_read_without_mlflow(prompt_demo):
    from core.optimization import prompt_task
    from core.optimization.prompt_task import create_prompt_run

    # jobs spells these to keep the status path light; they must be the task's own.
    assert jobs.KIND_PROMPT == prompt_task.KIND_PROMPT
    assert jobs.TAG_PROMPT == prompt_task.TAG_PROMPT
    assert jobs.TAG_PROMPT_VERSION == prompt_task.TAG_PROMPT_VERSION

    run_id = create_prompt_run(_settings(prompt_demo), "finished")
    client = MlflowClient()
    for key, value in ((rec.TAG_VERDICT, "improved"), (jobs.TAG_PROMPT_VERSION, "2")):
        client.set_tag(run_id, key, value)
    client.log_metric(run_id, "test_score_before", 0.25)
    client.log_metric(run_id, "test_score_after", 0.875)
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('LOADED', sorted({m.split('.')[0] for m in sys.modules "
        "if m.split('.')[0] in ('mlflow', 'sqlalchemy', 'litellm', 'numpy', 'pandas')}), "
        "file=sys.stderr))\n"
        "from core.cli import main\n"
        "sys.exit(main(['status', sys.argv[1], '--json']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, run_id],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stderr
    out = _last_json(proc)
    assert out["kind"] == "prompt_optimization" and out["status"] == "finished"
    assert (out["prompt_name"], out["base_version"], out["prompt_version"]) == (PROMPT, 1, 2)
    assert (out["test_score_before"], out["test_score_after"]) == (0.25, 0.875)
    assert out["registered"] is True and out["judge_version"] is None
    assert out["judge_name"] == "support_quality"


def test_list_jobs_lists_prompt_runs_apart_from_alignments(prompt_demo):
    from core.optimization.prompt_task import create_prompt_run

    client = MlflowClient()
    alignment = client.create_run(
        prompt_demo, tags={rec.TAG_KIND: rec.KIND_ALIGNMENT, rec.TAG_STATUS: "finished"}
    ).info.run_id
    prompt_runs = [create_prompt_run(_settings(prompt_demo), "finished") for _ in range(2)]
    listed = jobs.list_jobs(prompt_demo, kind=jobs.KIND_PROMPT)
    assert [j.run_id for j in listed] == prompt_runs[::-1]  # newest first
    assert all(j.is_prompt and j.prompt_name == PROMPT for j in listed)
    assert alignment in [j.run_id for j in jobs.list_jobs(prompt_demo)]
    assert not set(prompt_runs) & {j.run_id for j in jobs.list_jobs(prompt_demo)}


def test_the_test_split_never_reaches_the_optimizer(prompt_demo):
    """Every row the optimizer's adapter evaluates is in train or val; the test rows are
    scored only after it returned, by the task's held-out step."""
    from core.io.prompt_data import split_rows
    from core.optimization import record
    from core.optimization.engine import run_prompt_optimization
    from core.optimization.prompt_preflight import load_rows_for
    from core.optimization.runners.gepa import run_task

    settings = _settings(prompt_demo, max_metric_calls=80)
    train, val, test = split_rows(load_rows_for(settings))
    assert train and val and test
    seen: list[str] = []
    ran: dict[str, bool] = {}

    def watching_runner(task, train_, val_, recorder):
        make_adapter = task.make_adapter

        def adapter_that_records(tr, va, state):
            adapter = make_adapter(tr, va, state)
            evaluate = adapter.evaluator.evaluate

            def recording(items):
                seen.extend(r.id for _, rows in items for r in rows)
                return evaluate(items)

            adapter.evaluator.evaluate = recording
            return adapter

        task.make_adapter = adapter_that_records
        try:
            return run_task(task, train_, val_, recorder)
        finally:
            ran["done"] = True

    result = run_prompt_optimization(settings, runner=watching_runner)
    assert ran and result.status == "finished"
    ids = {"train": {r.id for r in train}, "val": {r.id for r in val}, "test": {r.id for r in test}}
    assert seen, "the optimizer evaluated nothing"
    assert not set(seen) & ids["test"], sorted(set(seen) & ids["test"])
    assert set(seen) <= ids["train"] | ids["val"]
    assert ids["val"] <= set(seen)  # the seed is scored on every validation row
    # The held-out step did score the test rows, every one, both prompts.
    tm = record.read_test_metrics(MlflowClient(), result.run_id)
    assert tm is not None and {o.row_id for o in tm.outputs} == ids["test"]
    assert all(o.before and o.after for o in tm.outputs)
    split = record.read_artifacts(MlflowClient(), result.run_id, [record.SPLIT])[record.SPLIT]
    assert set(split["test"]) == ids["test"] and result.test_size == len(test)


def test_launch_refuses_a_prompt_run_whose_preflight_fails_and_creates_nothing(prompt_demo):
    settings = _settings(prompt_demo, max_metric_calls=4)
    client = MlflowClient()
    before = client.search_runs([prompt_demo])
    with pytest.raises(ValidationError) as err:
        jobs.launch(settings)
    assert str(err.value).startswith("Prompt optimization refused before spending anything")
    assert "A budget of 4 metric calls" in str(err.value)
    # Findings handed over by the caller (the Optimize page's check) are refused alike.
    from core.optimization.prompt_preflight import check_prompt_optimization

    check = check_prompt_optimization(settings)
    assert not check.ok
    with pytest.raises(ValidationError, match="budget"):
        jobs.launch(settings, check=check)
    assert len(client.search_runs([prompt_demo])) == len(before)


@pytest.mark.slow
def test_detached_optimization_finishes_and_status_reports_the_prompt(prompt_demo):
    proc = _cli(
        "optimize", "--experiment", "alignboard-demo", "--prompt", f"{PROMPT}@production",
        "--dataset", DATASET, "--judge", JUDGE, "--optimizer", "gepa",
        "--task-model", "demo:/app", "--reflection-model", "demo:/reflect",
        "--max-metric-calls", "100", "--detach", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = _last_json(proc)
    assert out["status"] == "queued" and out["log"].endswith("job.log")
    run_id = out["run_id"]

    def finished():
        st = _last_json(_cli("status", run_id, "--json"))
        return st if st["status"] not in ("queued", "running") else None

    st = wait_for(finished, 240, "the job to finish", poll=1.0)
    assert st["status"] == "finished", _log(run_id)
    assert st["kind"] == "prompt_optimization" and st["prompt_name"] == PROMPT
    assert st["base_version"] == 1 and st["prompt_version"] == 2 and st["registered"] is True
    assert st["test_score_after"] > st["test_score_before"]
    assert st["verdict"] == "improved" and st["metric_calls"] >= 1

    human = _cli("status", run_id)
    assert human.returncode == 0, human.stderr
    assert f"prompt '{PROMPT}' from v1" in human.stdout and "registered prompt v2" in human.stdout

    from core.store.prompts import load_prompt

    assert load_prompt(f"{PROMPT}@candidate").tags["alignboard.run_id"] == run_id
    with pytest.raises(ValidationError, match="already finished \\(prompt version 2; start a new"):
        jobs.resume(run_id)
    # One launch, one pre-flight: the job loaded the rows and did not check again.
    tags = MlflowClient().get_run(run_id).data.tags
    assert tags[rec.TAG_KIND] == "prompt_optimization" and tags.get("alignboard.preflight")


@pytest.mark.slow
def test_cancel_stops_a_running_optimization_and_keeps_the_best_so_far(slow_demo):
    run_id = jobs.launch(_settings(slow_demo, full_budget=True, max_metric_calls=400, workers=2))
    wait_for(
        lambda: _status_if(run_id, lambda s: s.status == "running" and (s.iteration or 0) >= 1),
        120,
        "a first iteration",
    )
    proc = _cli("cancel", run_id, "--json")
    assert proc.returncode == 0, proc.stderr
    asked = _last_json(proc)
    assert asked["run_id"] == run_id
    assert asked["cancel_requested"] is True or asked["status"] == "cancelled", asked
    final = wait_for(lambda: _status_if(run_id, lambda s: not s.active), 90, "the cancel")
    assert final.status == "cancelled", (final, _log(run_id))
    assert final.metric_calls is not None and final.metric_calls < 400
    # The best prompt so far was still scored on the held-out rows, and not registered: a
    # cancelled run registers nothing unless launched with "Register if cancelled".
    assert final.test_score_before is not None and final.test_score_after is not None
    assert final.verdict is not None
    assert final.prompt_version is None and final.not_registered_reason == "cancelled"
    from core.views.job_status import CANCELLED_NOT_REGISTERED

    assert CANCELLED_NOT_REGISTERED in _cli("status", run_id).stdout
    assert _last_json(_cli("status", run_id, "--json"))["status"] == "cancelled"


@pytest.mark.slow
def test_killed_optimization_is_interrupted_then_resumed_without_redoing_iterations(
    slow_demo,
):
    run_id = jobs.launch(_settings(slow_demo, full_budget=True, max_metric_calls=300, workers=2))
    wait_for(lambda: (jobs.status(run_id).iteration or 0) >= 2, 150, "two iterations")
    pid = jobs.status(run_id).pid
    assert pid
    os.killpg(pid, signal.SIGKILL)  # the job and anything it started
    time.sleep(0.5)  # let in-flight writes land before reading what survived
    before = _history(run_id)
    iteration_before = jobs.status(run_id).iteration
    assert iteration_before is not None and iteration_before >= 2

    st = wait_for(
        lambda: _status_if(run_id, lambda s: s.status == "interrupted"), 10, "the dead pid"
    )
    assert "killed or crashed" in st.error and "alignboard resume" in st.error
    assert st.kind == "prompt_optimization" and st.prompt_version is None
    work = rec.job_dir(run_id)
    cached = json.loads((work / "judge_cache.json").read_text())
    assert cached["outputs"] and cached["verdicts"]  # the evaluator's cache survived
    assert any((work / "gepa").iterdir())  # and gepa's state

    os.environ["ALIGNBOARD_DEMO_LATENCY_MS"] = "0"  # finish quickly (monkeypatch restores)
    proc = _cli("resume", run_id, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    out = _last_json(proc)
    assert out["kind"] == "prompt" and out["run_id"] == run_id
    assert out["status"] == "finished" and out["resumed"] is True
    assert out["iterations"] >= iteration_before
    assert out["prompt_version"] == 2 and out["test_score_after"] > out["test_score_before"]
    tags = MlflowClient().get_run(run_id).data.tags
    assert tags[rec.TAG_RESUMED] == "1" and int(tags[rec.TAG_PID]) != pid

    # Completed iterations are kept, not redone: every point logged before the kill is
    # still there, at most the iteration in flight was logged again, and the search went on.
    after = _history(run_id)
    redone = set()
    for key, points in before.items():
        assert set(points) <= set(after[key]), key
        n_before, n_after = Counter(s for s, _ in points), Counter(s for s, _ in after[key])
        redone |= {s for s in n_before if s > 0 and n_after[s] > n_before[s]}
    assert len(redone) <= 1, redone
    assert max(s for pts in after.values() for s, _ in pts) > iteration_before
    # The resumed process answered the seed's re-evaluation on the validation rows from the
    # cache it inherited: its first logged counters show the hits, not application calls.
    first = {
        key: min((p for p in after[key] if p not in set(before.get(key, []))), default=None)
        for key in ("output_cache_hits", "app_calls")
    }
    hits, calls = first["output_cache_hits"], first["app_calls"]
    assert hits is not None and hits[1] >= out["val_size"], first
    assert jobs.status(run_id).status == "finished"
    print(
        f"\nkilled at iteration {iteration_before}; resumed to iteration {out['iterations']} "
        f"({out['metric_calls']} metric calls); seed re-evaluation from the cache: "
        f"{hits[1]:.0f} output hits, {calls[1] if calls else 0:.0f} app calls at the first "
        f"iteration logged after it ({out['val_size']} validation rows)"
    )
