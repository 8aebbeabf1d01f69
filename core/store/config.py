"""Where alignboard keeps its data and how it reaches MLflow.

The embedded default is a sqlite file under a local data folder; a team points
``MLFLOW_TRACKING_URI`` at an MLflow tracking server instead. Nothing else is stored
anywhere: MLflow is the only store.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

#: Environment variable naming the local data folder (default: ``./.alignboard``).
HOME_ENV = "ALIGNBOARD_HOME"

_configured_uri: str | None = None


def _quiet_environment() -> None:
    # LiteLLM downloads a price table on import and retries with sleeps when offline;
    # the local copy it ships is good enough and keeps start-up instant.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    # MLflow's gateway adapter downloads a model catalog on first use (about 8 s of
    # retries offline); an empty URI turns the download off.
    os.environ.setdefault("MLFLOW_MODEL_CATALOG_URI", "")


_quiet_environment()


def data_dir() -> Path:
    """Return the local data folder, creating it if needed."""
    path = Path(os.environ.get(HOME_ENV) or Path.cwd() / ".alignboard").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_tracking_uri() -> str:
    """Return the embedded store's URI: a sqlite file in the data folder."""
    return f"sqlite:///{data_dir() / 'mlflow.db'}"


def tracking_uri() -> str:
    """Return the tracking URI in force: ``MLFLOW_TRACKING_URI`` or the embedded default."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def is_local_sqlite(uri: str | None = None) -> bool:
    """Whether ``uri`` (default: the one in force) is a local sqlite file."""
    return (uri or tracking_uri()).startswith("sqlite:///")


def artifact_root() -> Path:
    """Folder for artifacts of experiments created on the embedded store."""
    path = data_dir() / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def configure(uri: str | None = None) -> str:
    """Point MLflow at ``uri`` (default: :func:`tracking_uri`) and prepare the environment.

    Idempotent and cheap to call from every entry point (CLI, app, job process).

    Returns:
        The tracking URI now in force.
    """
    global _configured_uri
    import mlflow

    target = uri or tracking_uri()
    if target != _configured_uri or mlflow.get_tracking_uri() != target:
        mlflow.set_tracking_uri(target)
        _configured_uri = target
    from core.models.providers import register_providers

    register_providers()
    return target


#: Default ports of the network stores MLflow speaks to, by URI scheme (without driver).
_DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}

#: What to try next, by kind of store.
_HINTS = {
    "postgresql": "is PostgreSQL running? (team mode: make team)",
    "mysql": "is MySQL running?",
    "mssql": "is SQL Server running?",
    "http": "is the MLflow server running? (team mode: make team)",
    "https": "is the MLflow server running?",
}


def display_uri(uri: str) -> str:
    """``uri`` without its password (``user:secret@host`` becomes ``user@host``) or query."""
    parts = urlsplit(uri)
    if parts.password is None and not parts.query:
        return uri
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _check_driver(scheme: str, target: str) -> None:
    """Refuse a bare ``postgresql://`` URI when its default driver is not installed.

    SQLAlchemy 2.1 reads ``postgresql://`` as psycopg 3; the ``postgres`` extra installs
    psycopg2, which the URI must then name.
    """
    import importlib.util

    from core.errors import StoreUnavailableError

    if scheme != "postgresql" or importlib.util.find_spec("psycopg") is not None:
        return
    hint = (
        "write the URI as postgresql+psycopg2://..."
        if importlib.util.find_spec("psycopg2") is not None
        else "install the driver: pip install 'alignboard[postgres]', and write the URI as "
        "postgresql+psycopg2://..."
    )
    raise StoreUnavailableError(
        f"The MLflow store URI {display_uri(target)} needs the psycopg (3) driver, which is "
        f"not installed: {hint}"
    )


def check_store(uri: str | None = None, timeout: float = 3.0) -> None:
    """Fail fast, with one clear line, when a network store does not accept connections.

    Without this, MLflow retries for minutes (the SQLAlchemy engine retries with
    backoff, the REST client retries each request) and then raises a long traceback.
    A TCP connection to the store's host and port is enough to tell "not running" or
    "wrong address" apart; local sqlite/file stores are not checked.

    Raises:
        StoreUnavailableError: the host does not resolve, refuses or does not answer.
    """
    from core.errors import StoreUnavailableError

    target = uri or tracking_uri()
    parts = urlsplit(target)
    kind = parts.scheme.split("+", 1)[0].lower()
    if kind not in _DEFAULT_PORTS or not parts.hostname:
        return
    try:
        port = parts.port or _DEFAULT_PORTS[kind]
    except ValueError:
        raise StoreUnavailableError(
            f"Bad port in the MLflow store URI {display_uri(target)}: check MLFLOW_TRACKING_URI."
        ) from None
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
        _check_driver(parts.scheme.lower(), target)
        return
    except ConnectionRefusedError:
        reason = "connection refused"
    except TimeoutError:
        reason = f"no answer within {timeout:g} s"
    except socket.gaierror:
        reason = f"unknown host {parts.hostname}"
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
    raise StoreUnavailableError(
        f"Cannot reach the MLflow store at {display_uri(target)} ({reason}): "
        f"{_HINTS[kind]} Or set MLFLOW_TRACKING_URI to a store that is."
    )
