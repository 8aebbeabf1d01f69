"""A real ``mlflow server`` subprocess on 127.0.0.1 for tests (the "shared team store").

Usage::

    with mlflow_server(tmp_path) as uri:          # "http://127.0.0.1:PORT"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        ...

The server gets a sqlite backend and a local artifact folder under the given directory,
runs in its own process group (the CLI forks a uvicorn worker) and the whole group is
terminated on exit. Its stdout/stderr go to ``server.log`` in that directory; if it does
not answer ``GET /health`` in time, the error quotes the end of that log.

Two environment settings are essential on a machine without internet:

* ``LITELLM_LOCAL_MODEL_COST_MAP=True``. At start-up the server imports
  ``mlflow.server.jobs.utils``, whose post-import hook (run while MLflow's import-hook
  lock is held) imports ``mlflow.genai`` and thereby litellm. Offline, litellm's model
  cost map download fails and a background thread retries it; that thread logs a warning
  whose filter imports a module through MLflow's hooked (locked) finder, while the main
  thread waits for a module lock the background thread holds. Both wait forever: the
  process stays alive but never starts uvicorn, i.e. it "never starts listening". With
  the local cost map there is no download, no background thread and no deadlock.
* ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``: no job-runner subprocess (tests do not
  use server-side jobs), which also skips that import path and starts faster.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

#: Environment every test server runs with (see the module docstring).
SERVER_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_ENABLE_TELEMETRY": "false",
    "DO_NOT_TRACK": "true",
    "MLFLOW_MODEL_CATALOG_URI": "",
    "PYTHONUNBUFFERED": "1",
}


class MlflowServerError(RuntimeError):
    """The test server did not come up."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_tail(path: Path, chars: int = 6000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no log: {exc}>"
    return text if len(text) <= chars else "...\n" + text[-chars:]


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Terminate the server's whole process group (SIGTERM, then SIGKILL)."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; make sure no worker of the group outlived it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return


@contextlib.contextmanager
def mlflow_server(
    directory: Path,
    *,
    template_db: Path | None = None,
    workers: int = 1,
    startup_timeout: float = 120.0,
) -> Iterator[str]:
    """Run ``mlflow server`` on a free loopback port for the ``with`` block; yield its URI.

    Args:
        directory: Where the sqlite file (``mlflow.db``), artifacts (``artifacts/``) and
            the server log (``server.log``) go.
        template_db: An already migrated MLflow sqlite file to copy instead of letting the
            server create (migrate) a fresh one, which saves a couple of seconds.
        workers: uvicorn worker processes.
        startup_timeout: Seconds to wait for ``GET /health`` to answer 200.

    Raises:
        MlflowServerError: the server exited or did not answer in time (message carries
            the command and the end of the server log).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "mlflow.db"
    if template_db is not None and not db.exists():
        shutil.copy(template_db, db)
    artifacts = directory / "artifacts"
    artifacts.mkdir(exist_ok=True)
    log_path = directory / "server.log"
    env = {**os.environ, **SERVER_ENV}
    env.pop("MLFLOW_TRACKING_URI", None)  # the server's own store is given explicitly

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{db}",
        "--artifacts-destination",
        artifacts.as_uri(),
        "--workers",
        str(workers),
    ]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=directory,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: the uvicorn worker dies with it
        )
    try:
        started = time.monotonic()
        while not _healthy(uri):
            code = proc.poll()
            waited = time.monotonic() - started
            if code is not None or waited > startup_timeout:
                what = (
                    f"exited with code {code}"
                    if code is not None
                    else f"did not answer GET {uri}/health within {startup_timeout:.0f} s"
                )
                raise MlflowServerError(
                    f"mlflow server {what}.\ncommand: {' '.join(cmd)}\n"
                    f"log ({log_path}):\n{_log_tail(log_path)}"
                )
            time.sleep(0.2)
        yield uri
    finally:
        _stop(proc)
