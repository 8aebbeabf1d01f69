"""Alignment jobs: launched as their own process, watched and steered through MLflow.

A job is an MLflow run plus a detached process running ``alignboard align --run-id``.
Everything the dashboard needs is in the run (status and heartbeat tags, metrics,
artifacts), so a restarted web server, or another dashboard on the same store, picks up
where it was.

- :func:`launch` creates the run (``queued``) and starts the process in its own session,
  so it outlives the process that launched it.
- :func:`status` reads the run; a ``running``/``queued`` job whose heartbeat is stale
  (``ALIGNBOARD_HEARTBEAT_STALE_S``, default 30 s) and whose process is gone is reported,
  and recorded, as ``interrupted``.
- :func:`cancel` sets a tag the job reads at its next iteration boundary (cooperative;
  the best candidate so far is still scored and registered).
- :func:`resume` relaunches an interrupted, failed or cancelled run; gepa continues from
  its saved state in the job folder.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import RunTag

from core import config
from core.alignment import recorder as rec
from core.alignment.engine import create_run, load_and_check, load_settings
from core.alignment.spec import AlignmentSettings
from core.errors import NotFoundError, ValidationError

STALE_ENV = "ALIGNBOARD_HEARTBEAT_STALE_S"
DEFAULT_STALE_S = 30.0
LOG_FILE = "job.log"
_ROOT = Path(__file__).resolve().parents[2]
# Metric names runners use for progress, most specific first.
_BEST_KEYS = ("best_score", "best_val_score", "val_best", "best_so_far")
_CALL_KEYS = ("metric_calls", "metric_calls_total")


@dataclass(frozen=True)
class JobStatus:
    """Where an alignment job stands, as any process reading the store sees it."""

    run_id: str
    """The job's MLflow run."""
    status: str
    """queued, running, finished, failed, cancelled or interrupted."""
    heartbeat_age_s: float | None
    """Seconds since the job last said it was alive (None before its first beat)."""
    iteration: int | None
    """Highest iteration logged so far."""
    metric_calls: int | None
    """Judge evaluations spent so far."""
    budget: int | None
    """The metric-call budget in force."""
    best_score: float | None
    """Best validation score so far, when the optimizer reports one."""
    error: str | None
    """Why it failed (redacted), if it did."""
    started: float | None
    """Run start, epoch seconds."""
    ended: float | None
    """Run end, epoch seconds (None while it runs)."""
    optimizer: str | None = None
    """Which optimizer."""
    judge_name: str | None = None
    """The judge being aligned."""
    judge_version: int | None = None
    """Registered version of the aligned judge, once there is one."""
    cancel_requested: bool = False
    """A cancel was asked for and not yet honoured."""
    pid: int | None = None
    """Process id of the job (on ``host``)."""
    host: str | None = None
    """Machine running the job."""

    @property
    def active(self) -> bool:
        """True while the job is queued or running."""
        return self.status in ("queued", "running")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def stale_after_s() -> float:
    """Heartbeat age beyond which a job is presumed dead."""
    try:
        return float(os.environ.get(STALE_ENV) or DEFAULT_STALE_S)
    except ValueError:
        return DEFAULT_STALE_S


def log_path(run_id: str) -> Path:
    """The job process's log file (stdout and stderr, secrets redacted)."""
    return rec.job_dir(run_id) / LOG_FILE


def job_command(run_id: str, *, resume: bool = False) -> list[str]:
    """The command line of a job process (the same entry point as ``alignboard align``)."""
    cmd = [sys.executable, "-m", "core.cli", "align", "--run-id", run_id, "--json"]
    return [*cmd, "--resume"] if resume else cmd


def _spawn(run_id: str, *, resume: bool) -> int:
    log = log_path(run_id)
    env = {
        **os.environ,
        # The child must write to the very store (and data folder) this process uses.
        "MLFLOW_TRACKING_URI": config.tracking_uri(),
        config.HOME_ENV: str(config.data_dir()),
        "PYTHONUNBUFFERED": "1",
    }
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            job_command(run_id, resume=resume),
            cwd=_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the launcher (and its Ctrl-C / restart)
            close_fds=True,
        )
    # Reap the child when it ends so it never lingers as a zombie of a long-lived server.
    threading.Thread(target=proc.wait, name=f"reap-{run_id}", daemon=True).start()
    client = MlflowClient()
    rec.with_retry(
        client.log_batch,
        run_id,
        tags=[
            RunTag(rec.TAG_PID, str(proc.pid)),
            RunTag(rec.TAG_HOST, socket.gethostname()),
            # The first beat: a job that dies before starting still goes stale in time.
            RunTag(rec.TAG_HEARTBEAT, f"{time.time():.3f}"),
        ],
    )
    return proc.pid


def launch(settings: AlignmentSettings, *, check: bool = True) -> str:
    """Start an alignment as a background process.

    Args:
        settings: What to align and how.
        check: Run the pre-flight checks here first, so mistakes are reported at once
            instead of as a failed job.

    Returns:
        The run id; follow it with :func:`status`.

    Raises:
        ValidationError: a pre-flight error (nothing was created).
    """
    config.configure()
    if check:
        load_and_check(settings)
    run_id = create_run(settings, status="queued")
    _spawn(run_id, resume=False)
    return run_id


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            # A killed child not yet reaped is a zombie: dead for our purpose.
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
            if state in ("Z", "X"):
                return False
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            # A recycled pid belongs to some other program.
            return b"core.cli" in cmdline or b"alignboard" in cmdline
        except (OSError, IndexError):
            return True
    return True


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _int(text: Any) -> int | None:
    value = _float(None if text is None else str(text))
    return None if value is None else int(value)


def _first(metrics: dict[str, float], keys: tuple[str, ...]) -> float | None:
    return next((metrics[k] for k in keys if k in metrics), None)


def status(run_id: str) -> JobStatus:
    """Read where a job stands; record ``interrupted`` if its process died.

    A ``queued``/``running`` job is interrupted when its heartbeat is older than
    ``ALIGNBOARD_HEARTBEAT_STALE_S`` and its process is gone (checked by pid when the job
    ran on this machine; presumed gone otherwise).

    Raises:
        NotFoundError: no such run.
    """
    config.configure()
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except Exception as exc:
        raise NotFoundError(f"No alignment run {run_id!r} in {config.tracking_uri()}.") from exc
    tags, metrics = run.data.tags, run.data.metrics
    state = tags.get(rec.TAG_STATUS, "queued")
    beat = _float(tags.get(rec.TAG_HEARTBEAT))
    if beat is None and run.info.start_time:
        beat = run.info.start_time / 1000
    now = time.time()
    age = None if beat is None else max(now - beat, 0.0)
    pid, host = _int(tags.get(rec.TAG_PID)), tags.get(rec.TAG_HOST)
    error = tags.get(rec.TAG_ERROR) or None
    ended = run.info.end_time / 1000 if run.info.end_time else None
    if state in ("queued", "running") and age is not None and age > stale_after_s():
        same_host = host == socket.gethostname()
        if not (same_host and pid and _pid_alive(pid)):
            state = "interrupted"
            error = (
                f"The job process stopped sending heartbeats {age:.0f} s ago (it was killed "
                f"or its machine restarted). Continue it with: alignboard resume {run_id}"
            )
            rec.set_status(client, run_id, "interrupted", error=error)
            ended = now
    return JobStatus(
        run_id=run_id,
        status=state,
        heartbeat_age_s=None if age is None else round(age, 3),
        iteration=_int(tags.get(rec.TAG_ITERATION)),
        metric_calls=_int(_first(metrics, _CALL_KEYS)),
        budget=_int(tags.get(rec.TAG_BUDGET)),
        best_score=_first(metrics, _BEST_KEYS),
        error=error,
        started=run.info.start_time / 1000 if run.info.start_time else None,
        ended=ended,
        optimizer=tags.get(rec.TAG_OPTIMIZER),
        judge_name=tags.get(rec.TAG_JUDGE),
        judge_version=_int(tags.get(rec.TAG_JUDGE_VERSION)),
        cancel_requested=tags.get(rec.TAG_CANCEL, "") not in ("", "0"),
        pid=pid,
        host=host,
    )


def cancel(run_id: str) -> JobStatus:
    """Ask a job to stop at its next iteration boundary.

    Cooperative: the job keeps its best candidate so far, scores and registers it, and
    ends ``cancelled``. A job that is not running any more (interrupted, failed) is marked
    cancelled at once so it is not resumed by mistake; a finished job is left alone.

    Returns:
        The job's status after the request.
    """
    current = status(run_id)
    client = MlflowClient()
    if current.status == "finished" or current.status == "cancelled":
        return current
    rec.with_retry(client.set_tag, run_id, rec.TAG_CANCEL, f"{time.time():.3f}")
    if not current.active:
        rec.set_status(client, run_id, "cancelled")
    return status(run_id)


def resume(run_id: str, *, detach: bool = True) -> str:
    """Continue an interrupted, failed or cancelled alignment in the same run.

    gepa picks up from the state saved in the job folder, so completed iterations are not
    redone; the other optimizers start over (their metrics continue in the same run).

    Args:
        run_id: The run to continue.
        detach: Start a background process (True) or leave it to the caller to run
            :func:`core.alignment.engine.run_alignment` with ``resume=True`` (False).

    Returns:
        The run id.

    Raises:
        ValidationError: the job is still running, or already finished.
    """
    current = status(run_id)
    if current.active:
        raise ValidationError(
            f"Run {run_id} is still {current.status} (heartbeat {current.heartbeat_age_s} s "
            f"ago); cancel it first with: alignboard cancel {run_id}"
        )
    if current.status == "finished":
        raise ValidationError(
            f"Run {run_id} already finished (judge version {current.judge_version}); "
            "start a new alignment instead."
        )
    load_settings(run_id)  # refuse early if the run is not an alignment
    client = MlflowClient()
    # A fresh start: forget the old cancel request and error.
    rec.with_retry(
        client.log_batch,
        run_id,
        tags=[
            RunTag(rec.TAG_CANCEL, ""),
            # A fresh beat, or the old stale one would get the job reported interrupted
            # again before its new process has started.
            RunTag(rec.TAG_HEARTBEAT, f"{time.time():.3f}"),
        ],
    )
    rec.set_status(client, run_id, "queued", error="")
    if detach:
        _spawn(run_id, resume=True)
    return run_id


def list_jobs(experiment_id: str, max_results: int = 100) -> list[JobStatus]:
    """The experiment's alignment jobs, newest first (dead ones reported interrupted)."""
    config.configure()
    runs = MlflowClient().search_runs(
        [str(experiment_id)],
        filter_string=f"tags.`{rec.TAG_KIND}` = '{rec.KIND_ALIGNMENT}'",
        order_by=["attributes.start_time DESC"],
        max_results=max_results,
    )
    return [status(r.info.run_id) for r in runs]


def wait(run_id: str, timeout_s: float = 600, poll_s: float = 0.5) -> JobStatus:
    """Poll until a job is no longer queued or running (or ``timeout_s`` passes)."""
    deadline = time.monotonic() + timeout_s
    while True:
        current = status(run_id)
        if not current.active or time.monotonic() > deadline:
            return current
        time.sleep(poll_s)
