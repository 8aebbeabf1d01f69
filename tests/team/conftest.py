"""Team-mode tests run against a real PostgreSQL cluster (tests/support/postgres.py)."""

from tests.support.postgres import (  # noqa: F401  (pytest fixtures)
    pg_cluster,
    pg_mlflow_server,
    pg_mlflow_server_factory,
)
