"""The read-only sqlite read of one run: MLflow's answer, or None where it cannot be sure."""

from __future__ import annotations

import math
import shutil
import sqlite3
import stat

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from core.errors import NotFoundError
from core.store import run_reads
from core.store.run_reads import RunSnapshot


def _comparable(snapshot: RunSnapshot) -> dict:
    # NaN never equals itself: compare it by name.
    d = snapshot.to_dict()
    d["metrics"] = {k: "nan" if math.isnan(v) else v for k, v in d["metrics"].items()}
    return d


def _mlflow_read(run_id: str) -> RunSnapshot:
    return RunSnapshot.from_mlflow(MlflowClient().get_run(run_id))


@pytest.fixture
def full_run(experiment) -> str:
    """A run with tags (one empty), params, metrics over several steps and a NaN."""
    client = MlflowClient()
    run = client.create_run(experiment.experiment_id, tags={"alignboard.status": "running"})
    run_id = run.info.run_id
    client.log_batch(
        run_id,
        metrics=[
            Metric("best_score", 0.5, 1000, 0),
            Metric("best_score", 0.75, 2000, 1),
            Metric("metric_calls", 40, 2000, 1),
            Metric("broken", math.nan, 2000, 1),
        ],
        params=[Param("optimizer", "gepa"), Param("max_metric_calls", "100")],
        tags=[RunTag("alignboard.error", ""), RunTag("alignboard.iteration", "1")],
    )
    client.set_terminated(run_id, status="FAILED")
    return run_id


def test_a_run_reads_exactly_as_mlflow_get_run_reports_it(full_run, store_uri):
    fast = run_reads.read_run(full_run, store_uri)
    assert fast is not None
    assert _comparable(fast) == _comparable(_mlflow_read(full_run))
    # The latest value of each metric, the NaN kept, MLflow's own tags included.
    assert fast.metrics["best_score"] == 0.75 and math.isnan(fast.metrics["broken"])
    assert fast.params == {"optimizer": "gepa", "max_metric_calls": "100"}
    assert fast.tags["alignboard.error"] == "" and "mlflow.runName" in fast.tags
    assert fast.status == "FAILED" and fast.end_time and fast.start_time <= fast.end_time


def test_an_unknown_run_is_not_found(store_uri):
    with pytest.raises(NotFoundError, match=r"0{32}"):
        run_reads.read_run("0" * 32, store_uri)


def test_stores_it_cannot_read_give_none(tmp_path, store_uri, full_run):
    for uri in (
        "http://127.0.0.1:5000",
        "postgresql://user@localhost/mlflow",
        "sqlite://",
        "sqlite:///:memory:",
        f"sqlite:///{tmp_path / 'missing.db'}",
        f"sqlite:///{tmp_path / 'a%20b.db'}",
    ):
        assert run_reads.read_run(full_run, uri) is None, uri


def test_a_relative_sqlite_path_is_relative_to_the_working_directory(
    store_uri, full_run, monkeypatch
):
    db = run_reads.sqlite_file(store_uri)
    assert db is not None
    monkeypatch.chdir(db.parent)
    snapshot = run_reads.read_run(full_run, f"sqlite:///{db.name}")
    assert snapshot is not None and snapshot.run_id == full_run


def test_another_schema_revision_or_a_missing_table_gives_none(tmp_path, store_uri, full_run):
    db = run_reads.sqlite_file(store_uri)
    assert db is not None
    older, broken = tmp_path / "older.db", tmp_path / "broken.db"
    shutil.copy(db, older)
    shutil.copy(db, broken)
    with sqlite3.connect(older) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'an0ther0rev1'")
    with sqlite3.connect(broken) as conn:
        conn.execute("DROP TABLE latest_metrics")
    assert run_reads.read_run(full_run, f"sqlite:///{older}") is None
    assert run_reads.read_run(full_run, f"sqlite:///{broken}") is None


def test_the_read_never_writes_and_works_on_a_read_only_file(store_uri, full_run):
    db = run_reads.sqlite_file(store_uri)
    assert db is not None
    before = db.read_bytes()
    mode = db.stat().st_mode
    db.chmod(stat.S_IRUSR)
    try:
        snapshot = run_reads.read_run(full_run, store_uri)
    finally:
        db.chmod(mode)
    assert snapshot is not None and snapshot.run_id == full_run
    assert db.read_bytes() == before
    assert not db.with_name(db.name + "-journal").exists()


def test_the_pinned_schema_revision_is_the_installed_mlflows_head():
    # When MLflow is upgraded this fails: re-check the queries against its models
    # (mlflow/store/tracking/dbmodels/models.py), then move SCHEMA_REVISION.
    from mlflow.store.db.utils import _get_latest_schema_revision

    assert _get_latest_schema_revision() == run_reads.SCHEMA_REVISION
