"""An MLflow run as the :class:`~core.optimization.spec.RunRecorder` of an alignment job.

Everything goes through :class:`mlflow.MlflowClient` with an explicit run id, never the
fluent "active run" API, because the heartbeat thread, the optimizer's worker threads and
the engine all write to the same run at once.

What a job writes, so that any dashboard pointed at the same store can follow it:

- tags ``alignboard.status`` (queued/running/finished/failed/cancelled/interrupted),
  ``alignboard.heartbeat`` (epoch seconds), ``alignboard.pid``, ``alignboard.host``,
  ``alignboard.optimizer``, ``alignboard.judge_name``, ``alignboard.error`` (redacted),
  ``alignboard.iteration`` (highest step logged), and ``alignboard.cancel_requested``
  (written by :func:`core.optimization.jobs.cancel`, read here);
- params: ``AlignmentSettings.to_params()`` only (never secrets);
- metrics at step = iteration; JSON and text artifacts, overwritten in place.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from core.models.secrets import redact
from core.optimization import record, stop_signal
from core.store import config

if TYPE_CHECKING:
    from mlflow import MlflowClient

# MLflow is imported by the functions that write: the tag names and timings here are read
# by ``jobs.status``, which on a local store runs without MLflow.

TAG_PREFIX = "alignboard."
TAG_KIND = "alignboard.kind"
TAG_STATUS = "alignboard.status"
TAG_HEARTBEAT = "alignboard.heartbeat"
TAG_PID = "alignboard.pid"
TAG_HOST = "alignboard.host"
TAG_OPTIMIZER = "alignboard.optimizer"
TAG_JUDGE = "alignboard.judge_name"
TAG_ERROR = "alignboard.error"
TAG_CANCEL = "alignboard.cancel_requested"
TAG_ITERATION = "alignboard.iteration"
TAG_BUDGET = "alignboard.budget"
TAG_JUDGE_VERSION = "alignboard.judge_version"
TAG_RESUMED = "alignboard.resumed"
#: Attempt number of a job ("0" at creation, +1 on each resume); claims are per attempt.
TAG_ATTEMPT = "alignboard.attempt"
#: Id of the worker that claimed (and runs) the job's current attempt.
TAG_WORKER = "alignboard.worker"
#: How many times workers resumed the job on their own after its process died.
TAG_AUTO_RESUMES = "alignboard.auto_resumes"
#: Held-out verdict of a finished alignment: improved, no_change or worse.
TAG_VERDICT = "alignboard.verdict"
#: Value of ``alignboard.kind`` on alignment runs (how :func:`jobs.list_jobs` finds them).
KIND_ALIGNMENT = "alignment"
#: Kept for callers of the old name; the run record owns artifact names.
SETTINGS_ARTIFACT = record.SETTINGS

#: The error recorded on a run whose process was stopped by SIGTERM/SIGINT (resumable).
SIGNAL_INTERRUPTED = "The job process was stopped (signal)."
STATUSES = ("queued", "running", "finished", "failed", "cancelled", "interrupted")
TERMINAL = frozenset({"finished", "failed", "cancelled", "interrupted"})
# MLflow's own run status, so MLflow's UI shows something sensible too.
_MLFLOW_STATUS = {
    "queued": "SCHEDULED",
    "running": "RUNNING",
    "finished": "FINISHED",
    "failed": "FAILED",
    "cancelled": "KILLED",
    "interrupted": "FAILED",
}

HEARTBEAT_INTERVAL_ENV = "ALIGNBOARD_HEARTBEAT_INTERVAL_S"
DEFAULT_HEARTBEAT_INTERVAL_S = 5.0
#: Heartbeats asked for sooner than this after the last one written are not written again
#: (runners beat at every iteration; each write is a store transaction).
HEARTBEAT_MIN_INTERVAL_S = 1.0
#: How long a cancel-tag read is reused: runners may ask many times per iteration.
CANCEL_CACHE_S = 1.0
_MAX_TAG_CHARS = 5000  # MLflow caps tag values (8000 on sqlite); keep errors readable
_WRITE_ATTEMPTS = 8


def job_dir(run_id: str) -> Path:
    """Folder of a job's files (optimizer state, log): ``<data dir>/jobs/<run_id>``.

    Only a cache of the state: :meth:`MlflowRunRecorder.checkpoint` keeps it in the run's
    artifacts (``state/``), :meth:`MlflowRunRecorder.restore_state` brings it back.
    """
    path = config.data_dir() / "jobs" / run_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def with_retry(fn, *args, **kwargs):
    """Call a store write, retrying briefly when sqlite reports the database locked.

    The job process and every dashboard write to the same sqlite file; a lock held by
    another process for a moment is not a failure.
    """
    for attempt in range(_WRITE_ATTEMPTS):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if "locked" not in str(exc).lower() or attempt == _WRITE_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * 2**attempt)
    return None  # pragma: no cover


def set_status(client: MlflowClient, run_id: str, status: str, error: str | None = None) -> None:
    """Set the ``alignboard.status`` tag (and MLflow's own run status to match)."""
    if status not in STATUSES:
        raise ValueError(f"unknown job status {status!r}")
    from mlflow.entities import RunTag

    tags = [RunTag(TAG_STATUS, status)]
    if error is not None:
        tags.append(RunTag(TAG_ERROR, redact(error)[:_MAX_TAG_CHARS]))
    with_retry(client.log_batch, run_id, tags=tags)
    mlflow_status = _MLFLOW_STATUS[status]
    if status in TERMINAL:
        with_retry(client.set_terminated, run_id, status=mlflow_status)
    else:
        with_retry(client.update_run, run_id, status=mlflow_status)


def local_artifact_dir(client: MlflowClient, run_id: str) -> Path | None:
    """The run's artifact folder when it is on this machine's disk, else None."""
    uri = client.get_run(run_id).info.artifact_uri or ""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and uri:
        return Path(uri)
    return None


def write_artifact(client: MlflowClient, run_id: str, name: str, text: str, local: Path | None):
    """Write one text artifact, replacing any previous version.

    On a local artifact store the file is written next to its final place and renamed, so a
    dashboard reading it mid-write never sees half a file. Elsewhere the artifact
    repository's upload (which overwrites) is used.
    """
    if local is not None:
        target = local / name
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return
    with_retry(client.log_text, run_id, text, name)


def read_artifact_text(client: MlflowClient, run_id: str, name: str) -> str | None:
    """Return a text artifact of a run, or None when it does not exist."""
    local = local_artifact_dir(client, run_id)
    if local is not None:
        path = local / name
        return path.read_text(encoding="utf-8") if path.is_file() else None
    tmp = tempfile.mkdtemp(prefix="alignboard-artifact-")
    try:
        downloaded = client.download_artifacts(run_id, name, tmp)
        return Path(downloaded).read_text(encoding="utf-8")
    except Exception:
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class MlflowRunRecorder:
    """A :class:`~core.optimization.spec.RunRecorder` backed by one MLflow run.

    Thread-safe: runners may log from worker threads while the heartbeat thread ticks.
    Use as a context manager (or call :meth:`start`/:meth:`stop`) to run the background
    heartbeat for the duration of a job.
    """

    def __init__(self, run_id: str, client: MlflowClient | None = None) -> None:
        """Attach to an existing run.

        Args:
            run_id: The MLflow run recording the alignment.
            client: Client to use (default: one for the configured tracking URI).
        """
        from mlflow import MlflowClient

        config.configure()
        self.run_id = run_id
        self.client = client or MlflowClient()
        self.work_dir = job_dir(run_id)
        self._local = local_artifact_dir(self.client, run_id)
        self._lock = threading.Lock()
        self._cancel_checked = 0.0
        self._cancel_value = False
        self._max_step = -1
        self._last_beat = float("-inf")
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    # --- RunRecorder protocol ----------------------------------------------------------

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Log numeric metrics at ``step``; None/NaN/non-numeric values are skipped."""
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        batch = []
        for key, value in metrics.items():
            if isinstance(value, bool):
                value = float(value)
            if not isinstance(value, int | float) or not math.isfinite(value):
                continue
            batch.append(Metric(key, float(value), now, int(step)))
        tags = []
        with self._lock:
            if step > self._max_step:
                self._max_step = int(step)
                tags.append(RunTag(TAG_ITERATION, str(int(step))))
        if batch or tags:
            with_retry(self.client.log_batch, self.run_id, metrics=batch, tags=tags)

    def log_json(self, name: str, obj: Any) -> None:
        """Write ``obj`` as the JSON artifact ``name``, replacing the previous version."""
        text = json.dumps(obj, indent=1, default=str, ensure_ascii=False)
        write_artifact(self.client, self.run_id, name, redact(text), self._local)

    def log_text(self, name: str, text: str) -> None:
        """Write the text artifact ``name``, replacing the previous version."""
        write_artifact(self.client, self.run_id, name, redact(text), self._local)

    def should_stop(self) -> bool:
        """True once :func:`core.optimization.jobs.cancel` asked this run to stop.

        The tag is read at most once a second; runners may ask after every example.
        A stop signal Python swallowed is raised again here (:mod:`stop_signal`).
        """
        stop_signal.raise_if_pending()
        now = time.monotonic()
        with self._lock:
            if self._cancel_value or now - self._cancel_checked < CANCEL_CACHE_S:
                return self._cancel_value
            self._cancel_checked = now
        try:
            tags = self.client.get_run(self.run_id).data.tags
        except Exception:
            # A store hiccup is not a cancel request; ask again next time.
            return False
        requested = tags.get(TAG_CANCEL, "") not in ("", "0")
        with self._lock:
            self._cancel_value = self._cancel_value or requested
            return self._cancel_value

    def heartbeat(self, force: bool = False) -> None:
        """Set ``alignboard.heartbeat`` to now (epoch seconds); raises a swallowed stop
        signal again (:mod:`stop_signal`).

        Args:
            force: Write even if the last heartbeat is less than
                ``HEARTBEAT_MIN_INTERVAL_S`` old (otherwise that one stands).
        """
        stop_signal.raise_if_pending()
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last_beat < HEARTBEAT_MIN_INTERVAL_S:
                return
            self._last_beat = now
        with_retry(self.client.set_tag, self.run_id, TAG_HEARTBEAT, f"{time.time():.3f}")

    # --- resumable state (core.optimization.job_state) ---------------------------------

    def checkpoint(self, names: list[str] | None = None) -> Any:
        """Upload the job folder's changed state files to the run (``state/``).

        Returns:
            The :class:`~core.optimization.job_state.CheckpointStats`.
        """
        from core.optimization import job_state

        return job_state.checkpoint(
            self.client, self.run_id, self.work_dir, names, local=self._local
        )

    def restore_state(self) -> list[str]:
        """Bring the run's checkpointed state into the job folder where it is missing or
        older (a resume on another host); returns the files restored."""
        from core.optimization import job_state

        return job_state.restore(self.client, self.run_id, self.work_dir, local=self._local)

    # --- extras used by the engine -----------------------------------------------------

    def set_status(self, status: str, error: str | None = None) -> None:
        """Set the job status (and, for failures, the redacted error message)."""
        set_status(self.client, self.run_id, status, error)

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set several tags at once (values are stringified)."""
        from mlflow.entities import RunTag

        with_retry(
            self.client.log_batch, self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()]
        )

    def log_params(self, params: dict[str, str]) -> None:
        """Log run params (only ever ``AlignmentSettings.to_params()``)."""
        from mlflow.entities import Param

        with_retry(
            self.client.log_batch,
            self.run_id,
            params=[Param(k, str(v)) for k, v in params.items()],
        )

    def start(self) -> MlflowRunRecorder:
        """Start the background heartbeat (every ``ALIGNBOARD_HEARTBEAT_INTERVAL_S``, 5 s).

        A single LLM call can take longer than the staleness threshold; the thread keeps
        the job visibly alive meanwhile. It dies with the process, which is the point:
        a killed job stops beating and is reported interrupted.
        """
        if self._thread is not None:
            return self
        self._stop_event.clear()
        self.heartbeat(force=True)
        interval = float(os.environ.get(HEARTBEAT_INTERVAL_ENV) or DEFAULT_HEARTBEAT_INTERVAL_S)

        def beat() -> None:
            while not self._stop_event.wait(interval):
                # A missed beat is tolerable; the next one may succeed.
                with contextlib.suppress(Exception):
                    self.heartbeat()

        self._thread = threading.Thread(target=beat, name=f"heartbeat-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the background heartbeat."""
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> MlflowRunRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
