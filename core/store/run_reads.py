"""Read one run's tags, params and latest metrics straight from a local sqlite MLflow store.

``alignboard status`` and the dashboard's job polls read one run, many times. Through
:class:`mlflow.MlflowClient` that read first builds MLflow's SQL store (SQLAlchemy's ORM,
its mappers, alembic's schema check): a whole process spends about 0.6x of ``import
mlflow`` on top of the import itself, for four indexed single-row queries. Here the same
rows are read with the standard library's :mod:`sqlite3`, read-only (``mode=ro``: this
module can never write), in one read transaction, and nothing of MLflow is imported.

It applies only where it is provably the same read as MLflow's:

- the tracking URI is a local sqlite file (``sqlite:///...``) that exists;
- the database is at the schema revision these queries were checked against
  (:data:`SCHEMA_REVISION`, MLflow's alembic head for the pinned MLflow; MLflow's own store
  refuses any other revision too), and the tables and columns are there.

Otherwise :func:`read_run` returns ``None`` and the caller reads through ``MlflowClient``
exactly as before: REST tracking servers, PostgreSQL and MySQL stores keep MLflow's path.
The tables (``runs``, ``tags``, ``params``, ``latest_metrics``) and what
``SqlRun.to_mlflow_entity`` makes of them are in ``mlflow/store/tracking/dbmodels/models.py``.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from core.errors import NotFoundError
from core.store import config

#: MLflow's alembic head revision the queries below were checked against (MLflow 3.17.2).
#: A store at another revision is read through MLflow (which refuses it unless it is its
#: own head); a test fails when the installed MLflow's head moves, so the queries are
#: re-checked before this is raised.
SCHEMA_REVISION = "dc11669786a5"
#: Seconds to wait for a writer's lock, like MLflow's own ``busy_timeout`` (20 s).
BUSY_TIMEOUT_S = 20.0

_RUN_SQL = (
    "SELECT run_uuid, experiment_id, status, lifecycle_stage, start_time, end_time "
    "FROM runs WHERE run_uuid = ?"
)
_TAGS_SQL = "SELECT key, value FROM tags WHERE run_uuid = ?"
_PARAMS_SQL = "SELECT key, value FROM params WHERE run_uuid = ?"
_METRICS_SQL = "SELECT key, value, is_nan FROM latest_metrics WHERE run_uuid = ?"


@dataclass(frozen=True)
class RunSnapshot:
    """One run as ``MlflowClient().get_run`` reports it: info, tags, params, latest metrics."""

    run_id: str
    """The run's id."""
    experiment_id: str
    """Its experiment (a string, as MLflow gives it)."""
    status: str
    """MLflow's own run status (``RUNNING``, ``FINISHED``, ...), not alignboard's tag."""
    lifecycle_stage: str
    """``active`` or ``deleted``."""
    start_time: int | None
    """Start, epoch milliseconds."""
    end_time: int | None
    """End, epoch milliseconds (None while it runs)."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Every tag of the run, MLflow's own included."""
    params: Mapping[str, str] = field(default_factory=dict)
    """Every param."""
    metrics: Mapping[str, float] = field(default_factory=dict)
    """The latest value of each metric (NaN where NaN was logged)."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (every field, the mappings as plain dicts)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: dict(v) if isinstance(v, Mapping) else v for k, v in values.items()}

    @classmethod
    def from_mlflow(cls, run: Any) -> RunSnapshot:
        """The snapshot of an ``mlflow.entities.Run`` (what the MLflow path read)."""
        info, data = run.info, run.data
        return cls(
            run_id=info.run_id,
            experiment_id=str(info.experiment_id),
            status=info.status,
            lifecycle_stage=info.lifecycle_stage,
            start_time=info.start_time,
            end_time=info.end_time,
            tags=dict(data.tags),
            params=dict(data.params),
            metrics=dict(data.metrics),
        )


def sqlite_file(uri: str | None = None) -> Path | None:
    """The database file of a local sqlite tracking URI (default: the one in force), or None.

    ``sqlite:///rel.db`` is relative to the working directory and ``sqlite:////abs.db``
    absolute, as in SQLAlchemy; an in-memory database, a percent-encoded path (SQLAlchemy
    may decode it) or a file that does not exist yet gives None: MLflow's path decides.
    """
    uri = uri or config.tracking_uri()
    if not config.is_local_sqlite(uri):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    if not path or path == ":memory:" or "%" in path:
        return None
    file = Path(path).resolve()
    return file if file.is_file() else None


def read_run(run_id: str, uri: str | None = None) -> RunSnapshot | None:
    """Read one run from a local sqlite MLflow store, read-only, without MLflow.

    Args:
        run_id: The run.
        uri: Tracking URI (default: :func:`core.store.config.tracking_uri`).

    Returns:
        The run as ``MlflowClient().get_run`` would report it, or None when this store
        cannot be read here (not a local sqlite file, another schema revision, a table or
        column missing, the file unreadable): then read it through MLflow.

    Raises:
        NotFoundError: the store was read and has no run ``run_id``.
    """
    file = sqlite_file(uri)
    if file is None:
        return None
    try:
        conn = sqlite3.connect(
            f"{file.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None
        )
    except sqlite3.Error:
        return None
    try:
        # One read transaction: the run, its tags and its metrics as of one commit.
        conn.execute("BEGIN")
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        if revision != [(SCHEMA_REVISION,)]:
            return None
        row = conn.execute(_RUN_SQL, (run_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"Run with id={run_id} not found in {uri or file}.")
        tags = dict(conn.execute(_TAGS_SQL, (run_id,)).fetchall())
        params = dict(conn.execute(_PARAMS_SQL, (run_id,)).fetchall())
        metrics = {
            key: math.nan if is_nan else value
            for key, value, is_nan in conn.execute(_METRICS_SQL, (run_id,))
        }
    except sqlite3.Error:
        # A missing table or column (another schema), a damaged file, a lock held past
        # the timeout: MLflow's path reads it or reports the problem in its own words.
        return None
    finally:
        conn.close()
    run_uuid, experiment_id, status, stage, start, end = row
    return RunSnapshot(
        run_id=run_uuid,
        experiment_id=str(experiment_id),
        status=status,
        lifecycle_stage=stage,
        start_time=start,
        end_time=end,
        tags=tags,
        params=params,
        metrics=metrics,
    )
