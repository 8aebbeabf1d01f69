"""Which job workers are alive on this store: a registry kept in MLflow itself.

Every ``alignboard worker`` process (:mod:`core.optimization.worker`) announces itself and
beats as one tag of the experiment :data:`REGISTRY_EXPERIMENT`:
``alignboard.worker.<worker id>`` holds a JSON :class:`WorkerInfo` (host, pid, data
folder, concurrency, the jobs it runs, when it last beat). One tag per worker, so workers
never overwrite each other; a worker removes its tag when it stops, and tags of workers
silent for a day are pruned by the next worker that starts.

Dashboards and the CLI read the registry (:func:`alive_workers`) to say when no worker
would pick up a queued run, instead of leaving it "queued" forever. The experiment is a
system one: :func:`core.store.experiments.list_experiments` hides it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from core.store import config
from core.store.experiments import REGISTRY_EXPERIMENT

__all__ = ["REGISTRY_EXPERIMENT", "WorkerInfo", "alive_workers", "announce", "withdraw"]
#: Tag prefix of one worker's entry.
TAG_WORKER = "alignboard.worker."
#: Seconds between a worker's beats.
BEAT_INTERVAL_S = 2.0
#: A worker silent this long is presumed gone.
ALIVE_ENV = "ALIGNBOARD_WORKER_STALE_S"
DEFAULT_ALIVE_S = 15.0
#: Entries older than this are pruned.
PRUNE_AFTER_S = 86400.0
#: How jobs start: ``auto`` (default) queues a job for a live worker, or starts a
#: one-off job process when none is alive; ``worker`` only queues (team mode: a worker
#: elsewhere will claim it); ``spawn`` always starts a one-off process.
JOBS_MODE_ENV = "ALIGNBOARD_JOBS"
JOBS_MODES = ("auto", "worker", "spawn")


@dataclass(frozen=True)
class WorkerInfo:
    """One worker's registry entry."""

    worker_id: str
    """Unique per worker process: ``<host>-<pid>-<random hex>``."""
    host: str
    """Machine name."""
    pid: int
    """Process id on ``host``."""
    concurrency: int
    """How many jobs it runs at once."""
    started: float
    """Epoch seconds it started."""
    beat: float
    """Epoch seconds of its last beat."""
    data_dir: str = ""
    """Its data folder (job logs, the local copy of job state)."""
    running: list[str] = field(default_factory=list)
    """Run ids of the jobs it runs now."""
    version: str = ""
    """alignboard version it runs."""

    def age(self, now: float | None = None) -> float:
        """Seconds since the last beat."""
        return max((time.time() if now is None else now) - self.beat, 0.0)

    def alive(self, now: float | None = None) -> bool:
        """True while its last beat is younger than :func:`alive_after_s`."""
        return self.age(now) <= alive_after_s()

    @property
    def free_slots(self) -> int:
        """Jobs it could still start."""
        return max(self.concurrency - len(self.running), 0)

    def to_json(self) -> str:
        """The tag value."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> WorkerInfo | None:
        """Parse a tag value; None when it is not a worker entry."""
        try:
            data = json.loads(text)
            return cls(
                worker_id=str(data["worker_id"]),
                host=str(data.get("host", "")),
                pid=int(data.get("pid", 0)),
                concurrency=int(data.get("concurrency", 1)),
                started=float(data.get("started", 0.0)),
                beat=float(data.get("beat", 0.0)),
                data_dir=str(data.get("data_dir", "")),
                running=[str(r) for r in data.get("running", [])],
                version=str(data.get("version", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None


def alive_after_s() -> float:
    """Beat age beyond which a worker is presumed gone (``ALIGNBOARD_WORKER_STALE_S``)."""
    try:
        return float(os.environ.get(ALIVE_ENV) or DEFAULT_ALIVE_S)
    except ValueError:
        return DEFAULT_ALIVE_S


def jobs_mode() -> str:
    """``auto``, ``worker`` or ``spawn`` (``ALIGNBOARD_JOBS``; unknown values mean auto)."""
    mode = (os.environ.get(JOBS_MODE_ENV) or "auto").strip().lower()
    return mode if mode in JOBS_MODES else "auto"


def new_worker_id() -> str:
    """A worker id unique across hosts and restarts."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _client() -> Any:
    from mlflow import MlflowClient

    config.configure()
    return MlflowClient()


def registry_experiment_id(client: Any | None = None, *, create: bool = False) -> str | None:
    """The registry experiment's id (created when ``create``), None when there is none."""
    from mlflow.exceptions import MlflowException

    client = client or _client()
    exp = client.get_experiment_by_name(REGISTRY_EXPERIMENT)
    if exp is not None and exp.lifecycle_stage == "active":
        return str(exp.experiment_id)
    if not create:
        return None
    if exp is not None:  # deleted by someone: bring it back rather than fail
        client.restore_experiment(exp.experiment_id)
        return str(exp.experiment_id)
    location = None
    if config.is_local_sqlite():
        location = (config.artifact_root() / REGISTRY_EXPERIMENT).as_uri()
    try:
        return str(client.create_experiment(REGISTRY_EXPERIMENT, artifact_location=location))
    except MlflowException:
        # Another worker created it first.
        exp = client.get_experiment_by_name(REGISTRY_EXPERIMENT)
        if exp is None:
            raise
        return str(exp.experiment_id)


def announce(info: WorkerInfo, client: Any | None = None) -> None:
    """Write (or refresh) ``info``'s entry; call it every :data:`BEAT_INTERVAL_S`."""
    from core.optimization.recorder import with_retry

    client = client or _client()
    exp_id = registry_experiment_id(client, create=True)
    with_retry(client.set_experiment_tag, exp_id, TAG_WORKER + info.worker_id, info.to_json())


def withdraw(worker_id: str, client: Any | None = None) -> None:
    """Remove a worker's entry (it is stopping); a missing entry is fine."""
    client = client or _client()
    exp_id = registry_experiment_id(client)
    if exp_id is None:
        return
    # Already gone, or the store is away: it goes stale anyway.
    with contextlib.suppress(Exception):
        client.delete_experiment_tag(exp_id, TAG_WORKER + worker_id)


def all_workers(client: Any | None = None) -> list[WorkerInfo]:
    """Every registry entry, alive or not, most recent beat first."""
    client = client or _client()
    exp = client.get_experiment_by_name(REGISTRY_EXPERIMENT)
    if exp is None or exp.lifecycle_stage != "active":
        return []
    out = []
    for key, value in (exp.tags or {}).items():
        if key.startswith(TAG_WORKER):
            info = WorkerInfo.from_json(value)
            if info is not None:
                out.append(info)
    return sorted(out, key=lambda w: -w.beat)


def alive_workers(client: Any | None = None) -> list[WorkerInfo]:
    """The workers that beat recently (see :func:`alive_after_s`)."""
    now = time.time()
    return [w for w in all_workers(client) if w.alive(now)]


def prune(client: Any | None = None, older_than_s: float = PRUNE_AFTER_S) -> int:
    """Delete entries of workers silent for ``older_than_s``; returns how many."""
    client = client or _client()
    exp_id = registry_experiment_id(client)
    if exp_id is None:
        return 0
    now, n = time.time(), 0
    for info in all_workers(client):
        if info.age(now) > older_than_s:
            withdraw(info.worker_id, client)
            n += 1
    return n
