"""A whole team on one machine for tests and B11: an MLflow server, one worker, two dashboards.

Usage::

    with MlflowProcess(backend_uri, directory) as server:      # restartable, fixed port
        with Team(server.uri, tmp_path) as team:
            team.dashboards[0].url, team.dashboards[1].url, team.worker_id

* :class:`MlflowProcess`: ``mlflow server`` on a given backend store (e.g. a PostgreSQL
  database of ``tests/support/postgres.py``'s cluster) with proxied artifacts, on a port
  chosen once, so a test can :meth:`~MlflowProcess.stop` it and :meth:`~MlflowProcess.start`
  it again on the same address (the "store went away" fault).
* :class:`Team`: ``alignboard worker`` (``ALIGNBOARD_JOBS=worker``) and two replicas of
  ``streamlit run app/main.py``, each process with its own ``ALIGNBOARD_HOME`` (as on three
  hosts), all pointed at the server's URI. Started in parallel, waited on for health
  (``/_stcore/health``, the worker's registry entry), stopped (process group) on exit.

Every process logs to a file in the team's folder; a start-up failure quotes its log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tests.support.mlflow_server import (
    SERVER_ENV,
    MlflowServerError,
    _healthy,
    _log_tail,
    _stop,
    free_port,
)

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 120.0

#: What every team process runs with: offline-safe MLflow/LiteLLM settings, our code.
BASE_ENV = {
    **SERVER_ENV,
    "PYTHONPATH": str(ROOT),
    "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
}


def _stop_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL what lingers (the worker forks children)."""
    _stop(proc, grace)


def _popen(cmd: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own group: stopping it takes its children too
        )


class MlflowProcess:
    """``mlflow server`` on ``backend_uri`` with artifacts proxied to ``directory/artifacts``.

    The port is fixed at construction: :meth:`stop` then :meth:`start` brings the same
    store back on the same URI.
    """

    def __init__(self, backend_uri: str, directory: Path, port: int | None = None) -> None:
        self.backend_uri = backend_uri
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "artifacts").mkdir(exist_ok=True)
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = self.directory / "server.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> str:
        """Start the server and wait for ``GET /health``; return its URI."""
        env = {**os.environ, **BASE_ENV}
        env.pop("MLFLOW_TRACKING_URI", None)
        cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
               "--port", str(self.port), "--backend-store-uri", self.backend_uri,
               "--artifacts-destination", (self.directory / "artifacts").as_uri(),
               "--workers", "1"]  # fmt: skip
        self.process = _popen(cmd, env, self.log, cwd=self.directory)
        started = time.monotonic()
        while not _healthy(self.uri):
            code = self.process.poll()
            if code is not None or time.monotonic() - started > timeout:
                self.stop()
                raise MlflowServerError(
                    f"mlflow server ({self.backend_uri}) did not come up (code {code}):\n"
                    f"{_log_tail(self.log)}"
                )
            time.sleep(0.2)
        return self.uri

    def stop(self) -> None:
        """Stop the server (its whole process group)."""
        if self.process is not None:
            _stop_group(self.process)
            self.process = None

    def __enter__(self) -> MlflowProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _streamlit_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
            return resp.status == 200 and resp.read().strip() == b"ok"
    except OSError:
        return False


@dataclass
class Dashboard:
    """One dashboard replica."""

    name: str
    url: str
    home: Path
    log: Path
    process: subprocess.Popen = field(repr=False)

    def page_url(self, path: str = "") -> str:
        """URL of a page (``label``, ``align``, ``label?trace=...``)."""
        return f"{self.url}/{path}"


@dataclass
class Worker:
    """The team's ``alignboard worker``."""

    worker_id: str
    home: Path
    log: Path
    process: subprocess.Popen = field(repr=False)


def dashboard_cmd(port: int, *, wrapper: list[str] | None = None) -> list[str]:
    """``streamlit run app/main.py`` on 127.0.0.1:``port`` with the browser tests' options.

    ``wrapper`` replaces ``python -m streamlit`` (B11 uses B8's timing wrapper).
    """
    head = wrapper or [sys.executable, "-m", "streamlit"]
    return [*head, "run", "app/main.py", "--server.address", "127.0.0.1",
            "--server.port", str(port), "--server.headless", "true",
            "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"]  # fmt: skip


class Team:
    """One worker and ``replicas`` dashboards on the MLflow server at ``tracking_uri``.

    Args:
        tracking_uri: The shared store (``http://127.0.0.1:PORT``).
        directory: Where each process's home and log go.
        replicas: Dashboards (2).
        worker_env: Extra or removed (value ``None``) environment of the worker only,
            e.g. ``{"OPENAI_API_KEY": None}``.
        worker_args: Extra ``alignboard worker`` arguments (``--concurrency 2``).
        dashboard_env: Extra environment of every dashboard.
        dashboard_wrapper: Replaces ``python -m streamlit`` in the dashboards' command.
    """

    def __init__(
        self,
        tracking_uri: str,
        directory: Path,
        *,
        replicas: int = 2,
        worker_env: dict[str, str | None] | None = None,
        worker_args: list[str] | None = None,
        dashboard_env: dict[str, str] | None = None,
        dashboard_wrapper: list[str] | None = None,
        start_worker: bool = True,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.directory = Path(directory)
        self.replicas = replicas
        self.worker_env = worker_env or {}
        self.worker_args = worker_args or []
        self.dashboard_env = dashboard_env or {}
        self.dashboard_wrapper = dashboard_wrapper
        self.start_worker = start_worker
        self.dashboards: list[Dashboard] = []
        self.worker: Worker | None = None

    def env(self, home: Path, **extra: str | None) -> dict[str, str]:
        """The environment of a team process whose ``ALIGNBOARD_HOME`` is ``home``."""
        env = {**os.environ, **BASE_ENV, "MLFLOW_TRACKING_URI": self.tracking_uri,
               "ALIGNBOARD_HOME": str(home)}  # fmt: skip
        for key, value in extra.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def cli(
        self,
        *args: str,
        home: Path | None = None,
        timeout: float = 300,
        env: dict[str, str | None] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``alignboard ARGS`` against the team's store (``env``: extra or removed
        variables); the CompletedProcess."""
        home = home or self.directory / "cli-home"
        home.mkdir(parents=True, exist_ok=True)
        return subprocess.run(
            [sys.executable, "-m", "core.cli", *args],
            cwd=ROOT,
            env=self.env(home, **(env or {})),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start_worker_process(self, worker_id: str = "team-worker-1") -> Worker:
        """Start ``alignboard worker --id worker_id`` with ``ALIGNBOARD_JOBS=worker``."""
        home = self.directory / f"home-{worker_id}"
        home.mkdir(parents=True, exist_ok=True)
        log = self.directory / f"{worker_id}.log"
        env = self.env(home, ALIGNBOARD_JOBS="worker", **self.worker_env)
        cmd = [sys.executable, "-m", "core.cli", "worker", "--id", worker_id, *self.worker_args]
        proc = _popen(cmd, env, log)
        self.worker = Worker(worker_id, home, log, proc)
        return self.worker

    def wait_worker(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Wait until the worker is registered alive in the store (or fail with its log)."""
        assert self.worker is not None
        code = (
            "import sys\nfrom core.store import config\nconfig.configure()\n"
            "from core.optimization.workers import alive_workers\n"
            "sys.exit(0 if any(w.worker_id == sys.argv[1] for w in alive_workers()) else 3)\n"
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.worker.process.poll() is not None:
                raise RuntimeError(f"the worker exited:\n{_log_tail(self.worker.log)}")
            res = subprocess.run(
                [sys.executable, "-c", code, self.worker.worker_id],
                cwd=ROOT,
                env=self.env(self.directory / "cli-home"),
                capture_output=True,
                text=True,
            )
            if res.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"worker not registered after {timeout:.0f} s:\n{res.stderr[-2000:]}\n"
                    f"{_log_tail(self.worker.log)}"
                )
            time.sleep(1.0)

    def start_dashboards(self) -> list[Dashboard]:
        """Start the replicas (not waiting); see :meth:`wait_dashboards`."""
        for i in range(self.replicas):
            name = "AB"[i] if i < 2 else str(i)
            home = self.directory / f"home-dashboard-{name}"
            home.mkdir(parents=True, exist_ok=True)
            log = self.directory / f"dashboard-{name}.log"
            port = free_port()
            proc = _popen(
                dashboard_cmd(port, wrapper=self.dashboard_wrapper),
                self.env(home, **self.dashboard_env),
                log,
            )
            self.dashboards.append(Dashboard(name, f"http://127.0.0.1:{port}", home, log, proc))
        return self.dashboards

    def wait_dashboards(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Wait for every replica's ``/_stcore/health`` (or fail with its log)."""
        deadline = time.monotonic() + timeout
        for d in self.dashboards:
            while not _streamlit_healthy(d.url):
                if d.process.poll() is not None:
                    raise RuntimeError(f"dashboard {d.name} exited:\n{_log_tail(d.log)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dashboard {d.name} not healthy:\n{_log_tail(d.log)}")
                time.sleep(0.2)

    def start(self) -> Team:
        """Start everything (in parallel) and wait until it is all up."""
        try:
            self.start_dashboards()
            if self.start_worker:
                self.start_worker_process()
            self.wait_dashboards()
            if self.start_worker:
                self.wait_worker()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process of the team (dashboards, then the worker and its children)."""
        for d in self.dashboards:
            _stop_group(d.process)
        self.dashboards = []
        if self.worker is not None:
            _stop_group(self.worker.process)
            self.worker = None

    @property
    def pids(self) -> set[int]:
        """The dashboards' pids (a job must not run in one of them)."""
        return {d.process.pid for d in self.dashboards}

    def __enter__(self) -> Team:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a team process's whole group at once (a host that vanishes)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@dataclass
class RunningTeam:
    """What :func:`running_team` yields."""

    server: MlflowProcess
    team: Team
    experiment_id: str
    """The demo experiment (``alignboard-demo``)."""


@contextlib.contextmanager
def running_team(
    backend_uri: str, directory: Path, *, seed: bool = True, **team_kwargs: object
) -> Iterator[RunningTeam]:
    """An MLflow server on ``backend_uri``, the demo seeded through it (``alignboard
    seed-demo``), and a :class:`Team` on it, for the ``with`` block.

    The calling process is pointed at the server too (``MLFLOW_TRACKING_URI``,
    :func:`core.store.config.configure`), so a test checks through MLflow's API what
    the team did; both are put back afterwards.
    """
    import mlflow

    from core.store import config

    directory = Path(directory)
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", config.HOME_ENV)}
    with MlflowProcess(backend_uri, directory / "mlflow") as server:
        team = Team(server.uri, directory, **team_kwargs)  # type: ignore[arg-type]
        experiment_id = ""
        if seed:
            res = team.cli("seed-demo")
            if res.returncode != 0:
                raise RuntimeError(f"seed-demo failed:\n{res.stdout}\n{res.stderr}")
        os.environ["MLFLOW_TRACKING_URI"] = server.uri
        home = directory / "test-home"
        home.mkdir(exist_ok=True)
        os.environ[config.HOME_ENV] = str(home)
        config.configure(server.uri)
        try:
            if seed:
                from core.io.demo_seed import DEMO_EXPERIMENT

                exp = mlflow.get_experiment_by_name(DEMO_EXPERIMENT)
                assert exp is not None
                experiment_id = exp.experiment_id
            with team:
                yield RunningTeam(server, team, experiment_id)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # back to the default
