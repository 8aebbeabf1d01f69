"""Start-up: the package fronts are lazy, ``--help`` loads no MLflow, the worker runs a job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import core
import core.agreement
import core.models
import core.optimization
from core.optimization import jobs

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("mlflow", "litellm", "dspy", "gepa", "pandas")


def _fresh(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _fresh_ok(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter and require it to exit 0."""
    proc = _fresh(code, *args)
    assert proc.returncode == 0, proc.stderr
    return proc


def _status_if(run_id: str, pred):
    current = jobs.status(run_id)
    return current if pred(current) else None


def _loaded_after(statement: str) -> list[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    proc = _fresh_ok(code)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_the_package_fronts_and_the_cli_loads_no_heavy_library():
    fronts = "import core, core.errors, core.cli, core.optimization, core.agreement, core.models"
    assert _loaded_after(fronts) == []


def test_help_exits_0_without_importing_mlflow():
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('LOADED', [m for m in ('mlflow', 'litellm') "
        "if m in sys.modules], file=sys.stderr))\n"
        "from core.cli import main\n"
        "sys.argv = ['alignboard', '--help']\n"
        "main()\n"
    )
    proc = _fresh_ok(code)
    assert "usage: alignboard" in proc.stdout and "status" in proc.stdout
    assert "LOADED []" in proc.stderr
    # The job process's entry point is not a hidden flag of the CLI any more.
    align_help = subprocess.run(
        [sys.executable, "-m", "core.cli", "align", "--help"],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert align_help.returncode == 0, align_help.stderr
    assert "--detach" in align_help.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "core.cli", "align", "--run-id", "x"],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "unrecognized arguments: --run-id" in bad.stderr


@pytest.mark.parametrize("package", [core, core.optimization, core.agreement, core.models])
def test_every_lazy_name_resolves_and_is_listed(package):
    for name in package.__all__:
        value = getattr(package, name)
        assert value is not None, name
        assert vars(package)[name] is value, f"{name} was not cached in the package"
        assert name in dir(package)
    with pytest.raises(AttributeError, match="no_such_name"):
        package.no_such_name  # noqa: B018
    # Submodules stay reachable as attributes, as with the eager fronts.
    assert core.optimization.jobs is jobs


def test_the_status_path_loads_no_litellm_dspy_or_gepa():
    loaded = _loaded_after(
        "from core.store import config\nimport core.optimization.jobs\nconfig.configure()"
    )
    assert "mlflow" in loaded
    assert not {"litellm", "dspy", "gepa"} & set(loaded), loaded


def test_status_of_a_run_on_a_local_store_imports_no_mlflow(experiment):
    from mlflow import MlflowClient

    from core.optimization import recorder as rec

    client = MlflowClient()
    run_id = client.create_run(experiment.experiment_id).info.run_id
    for key, value in ((rec.TAG_STATUS, "finished"), (rec.TAG_VERDICT, "improved")):
        client.set_tag(run_id, key, value)
    client.set_tag(run_id, rec.TAG_JUDGE_VERSION, "1")
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('LOADED', sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('mlflow', 'sqlalchemy', 'alembic', 'litellm', 'pandas')), "
        "file=sys.stderr))\n"
        "from core.cli import main\n"
        "sys.exit(main(['status', sys.argv[1], '--json']))\n"
    )
    proc = _fresh_ok(code, run_id)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (out["run_id"], out["status"], out["verdict"], out["registered"]) == (
        run_id, "finished", "improved", True,
    )  # fmt: skip
    assert "LOADED []" in proc.stderr, proc.stderr[-2000:]


def test_the_demo_provider_is_registered_when_litellm_is_imported_later():
    code = (
        "import sys\n"
        "from core.store import config\n"
        "config.configure()\n"
        "assert 'litellm' not in sys.modules\n"
        "from core.models.completion import complete\n"
        "print('ANSWER', complete('demo:/judge', [{'role': 'user', 'content': 'Response: ok'}]))\n"
    )
    proc = _fresh_ok(code)
    assert "ANSWER" in proc.stdout and "demo stand-in" in proc.stdout


def test_job_command_launches_the_worker_not_the_cli():
    cmd = jobs.job_command("abc", resume=True)
    assert cmd[:3] == [sys.executable, "-m", "core.optimization.worker"]
    assert cmd[3:] == ["abc", "--resume"]
    assert "core.cli" not in " ".join(cmd)


@pytest.mark.slow
def test_worker_runs_a_queued_run_to_the_end(store_uri):
    from mlflow import MlflowClient

    from core.io.demo_seed import seed_demo
    from core.optimization import recorder as rec
    from core.optimization.engine import create_run
    from tests.optimization.demo_examples import demo_settings

    experiment_id = seed_demo("demo").experiment_id
    settings = demo_settings(experiment_id, "memalign")
    run_id = create_run(settings, status="queued")
    proc = subprocess.run(
        [sys.executable, "-m", "core.optimization.worker", run_id],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["run_id"] == run_id and out["status"] == "finished"
    assert out["optimizer"] == "memalign" and out["judge_version"] >= 1
    assert MlflowClient().get_run(run_id).data.tags[rec.TAG_STATUS] == "finished"
    assert jobs.status(run_id).status == "finished"

    # A run that does not exist: a JSON error on the last line and exit 2.
    missing = subprocess.run(
        [sys.executable, "-m", "core.optimization.worker", "0" * 32],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert missing.returncode == 2, missing.stderr[-3000:]
    err = json.loads(missing.stdout.strip().splitlines()[-1])
    assert err["error"] == "NotFoundError" and err["run_id"] == "0" * 32


def test_the_process_probe_recognises_a_worker_by_its_command_line():
    sleep = "import time; time.sleep(60)"
    worker = subprocess.Popen([sys.executable, "-c", sleep, "-m", "core.optimization.worker"])
    other = subprocess.Popen([sys.executable, "-c", sleep])
    try:
        # No recorded identity: only the command line tells a job from a recycled pid.
        assert jobs._probe(worker.pid, None) == jobs._ALIVE
        assert jobs._probe(other.pid, None) == jobs._NOT_OURS
    finally:
        for proc in (worker, other):
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_sigterm_to_a_launched_job_records_it_interrupted(store_uri, monkeypatch):
    import signal

    from core.io.demo_seed import seed_demo
    from tests.optimization.demo_examples import demo_settings
    from tests.support.waiting import wait_for

    monkeypatch.setenv("ALIGNBOARD_DEMO_LATENCY_MS", "100")
    monkeypatch.setenv("ALIGNBOARD_HEARTBEAT_INTERVAL_S", "0.5")
    experiment_id = seed_demo("demo").experiment_id
    settings = demo_settings(experiment_id, "gepa", max_metric_calls=300, workers=2)
    run_id = jobs.launch(settings)
    running = wait_for(lambda: _status_if(run_id, lambda s: s.status == "running"), 120, "run")
    os.kill(running.pid, signal.SIGTERM)
    try:
        final = wait_for(lambda: _status_if(run_id, lambda s: s.status != "running"), 60, "stop")
    except AssertionError as exc:
        # Seen once under a full suite's load (not reproduced in 8 runs alone or 6 at once):
        # keep what the job wrote, so the next occurrence says where it was.
        log = jobs.log_path(run_id).read_text()[-4000:]
        raise AssertionError(f"{exc}\njob log:\n{log}") from exc
    assert final.status == "interrupted", (final, jobs.log_path(run_id).read_text())
    # Recorded by the job itself on its way out (the SIGTERM handler), not by the pid probe.
    assert "stopped (signal)" in (final.error or ""), final.error


@pytest.mark.slow
def test_b0_benchmark_measures_every_command_and_reports_the_goals(tmp_path):
    from benchmarks import b0_startup
    from benchmarks.common import write_json

    result = b0_startup.run(repeats=1)
    out = tmp_path / "b0.json"
    write_json(out, {"b0": result})
    b0 = json.loads(out.read_text())["b0"]
    commands = b0["commands"]
    assert set(commands) == {
        "import mlflow",
        "import core.errors",
        "alignboard --help",
        "alignboard status --json",
        "MlflowClient().get_run",
    }
    for label, figures in commands.items():
        assert len(figures["runs_s"]) == 1 and figures["median_s"] > 0, label
    # No timing is asserted (a shared machine), but what each command loads is a fact.
    assert commands["import core.errors"]["loaded"] == []
    assert commands["alignboard --help"]["loaded"] == []
    assert commands["alignboard status --json"]["loaded"] == []  # a local store: no MLflow
    assert set(b0["goals"]) >= {"help_s", "status_over_import_mlflow"}


def test_worker_streams_redact_secrets_before_they_reach_the_job_log(monkeypatch):
    import io

    from core.optimization.worker import RedactingStream

    monkeypatch.setenv("OPENAI_API_KEY", "sk-startup-test-0123456789abcdef")
    log = io.StringIO()
    RedactingStream(log).write("calling with sk-startup-test-0123456789abcdef now\n")
    assert "sk-startup-test" not in log.getvalue() and "***" in log.getvalue()


def test_a_name_exported_from_two_submodules_is_refused():
    from core._lazy import lazy_exports

    with pytest.raises(ValueError, match=r"'x' is exported by a\.one and a\.two"):
        lazy_exports("a", {"a.one": ["x"], "a.two": ["x"]})
