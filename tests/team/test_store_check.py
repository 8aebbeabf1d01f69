"""A store that does not answer gives one clear line (CLI and dashboard), not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.errors import StoreUnavailableError
from core.store.config import check_store, display_uri
from tests.support.mlflow_server import free_port

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app" / "main.py")


def _down_pg() -> str:
    """A PostgreSQL URI (with a password) on a loopback port nobody listens on."""
    return f"postgresql+psycopg2://alice:s3cret-pw@127.0.0.1:{free_port()}/mlflow"


def test_display_uri_strips_password() -> None:
    assert display_uri("postgresql+psycopg2://alice:pw@db:5439/mlflow?sslmode=require") == (
        "postgresql+psycopg2://alice@db:5439/mlflow"
    )
    assert display_uri("http://127.0.0.1:5055") == "http://127.0.0.1:5055"


def test_local_stores_are_not_checked(tmp_path: Path) -> None:
    check_store(f"sqlite:///{tmp_path}/none/mlflow.db")
    check_store(tmp_path.as_uri())
    check_store("databricks")


def test_running_postgres_passes(pg_cluster) -> None:
    check_store(pg_cluster.uri("postgres"))


def test_a_bare_postgresql_uri_without_its_driver_says_which_to_write(pg_cluster) -> None:
    import importlib.util

    if importlib.util.find_spec("psycopg") is not None:
        pytest.skip("psycopg 3 is installed: a bare postgresql:// URI works")
    bare = pg_cluster.uri("postgres").replace("postgresql+psycopg2://", "postgresql://")
    with pytest.raises(StoreUnavailableError, match=r"postgresql\+psycopg2://"):
        check_store(bare)


@pytest.mark.parametrize(
    ("make_uri", "hint"),
    [
        (_down_pg, "is PostgreSQL running?"),
        (lambda: f"http://127.0.0.1:{free_port()}", "MLflow server"),
    ],
)
def test_refused_store_one_line(make_uri, hint: str) -> None:
    uri = make_uri()
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        check_store(uri)
    message = str(info.value)
    assert time.monotonic() - started < 1
    assert "connection refused" in message and hint in message
    assert "s3cret-pw" not in message and "\n" not in message


def test_unknown_host() -> None:
    with pytest.raises(StoreUnavailableError, match=r"unknown host no-such-host\.invalid"):
        check_store("postgresql+psycopg2://u@no-such-host.invalid:5432/db")


def _cli(uri: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "ALIGNBOARD_HOME": str(home)}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.mark.parametrize("command", [["seed-demo"], ["criterion", "list", "--experiment", "x"]])
def test_cli_prints_one_line_and_fails(command: list[str], tmp_path: Path) -> None:
    started = time.monotonic()
    proc = _cli(_down_pg(), tmp_path, *command)
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(
        "error: Cannot reach the MLflow store at postgresql+psycopg2://alice@"
    )
    assert "connection refused" in lines[0] and "s3cret-pw" not in proc.stderr
    assert elapsed < 30  # MLflow alone would retry the engine for minutes


def test_dashboard_shows_the_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("ALIGNBOARD_HOME", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors == [
        f"Cannot reach the MLflow store at {uri} (connection refused): is the MLflow server "
        "running? (team mode: make team) Or set MLFLOW_TRACKING_URI to a store that is."
    ]
