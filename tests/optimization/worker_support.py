"""Shared by the worker tests: start real ``alignboard worker`` processes, queue jobs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from core.optimization import jobs

ROOT = Path(__file__).resolve().parents[2]


def start_worker(
    log: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A real ``alignboard worker`` process (its stderr, the worker log, in ``log``)."""
    out = open(log, "ab")  # noqa: SIM115  # the child holds it; closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "core.cli", "worker", "--poll", "0.1", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int | None:
    """SIGTERM a worker and wait for it (SIGKILL if it does not stop)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def queue_jobs(experiment_id: str, n: int, optimizer: str = "memalign", **kw: object) -> list[str]:
    """``n`` queued jobs (``ALIGNBOARD_JOBS=worker`` must be set: nothing is spawned)."""
    from tests.optimization.demo_examples import demo_settings

    settings = demo_settings(experiment_id, optimizer, **kw)
    return [jobs.launch(settings, check=False, allow_concurrent=True) for _ in range(n)]
