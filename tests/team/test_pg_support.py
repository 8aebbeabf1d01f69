"""The PostgreSQL test fixtures themselves: a real cluster and an mlflow server on it."""

from __future__ import annotations

import time
from pathlib import Path

from mlflow import MlflowClient


def test_cluster_serves_sql(pg_cluster) -> None:
    """The cluster answers SQL on loopback TCP and creates databases."""
    uri = pg_cluster.create_database("support_check")
    assert uri == f"postgresql+psycopg2://postgres@127.0.0.1:{pg_cluster.port}/support_check"
    with pg_cluster.connect("support_check") as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user, inet_server_addr()::text")
        assert cur.fetchone() == ("postgres", "127.0.0.1/32")


def test_mlflow_server_on_postgres(pg_mlflow_server: str, tmp_path) -> None:
    """Runs, params and proxied artifacts go through the server into PostgreSQL."""
    client = MlflowClient(pg_mlflow_server)
    exp = client.create_experiment(f"support-{time.time_ns()}")
    run = client.create_run(exp)
    client.log_param(run.info.run_id, "p", "1")
    (tmp_path / "a.txt").write_text("hello")
    client.log_artifact(run.info.run_id, str(tmp_path / "a.txt"), "state")
    assert client.get_run(run.info.run_id).data.params == {"p": "1"}
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    local = client.download_artifacts(run.info.run_id, "state/a.txt", str(tmp_path / "dl"))
    assert Path(local).read_text() == "hello"


def test_factory_gives_own_store(pg_mlflow_server_factory, pg_mlflow_server: str) -> None:
    """A factory server has its own database: the module server's experiments are absent."""
    shared = MlflowClient(pg_mlflow_server)
    shared.create_experiment("only-in-shared")
    with pg_mlflow_server_factory() as uri:
        names = {e.name for e in MlflowClient(uri).search_experiments()}
    assert "only-in-shared" not in names
