"""Where alignboard keeps its data and how it reaches MLflow.

The embedded default is a sqlite file under a local data folder; a team points
``MLFLOW_TRACKING_URI`` at an MLflow tracking server instead. Nothing else is stored
anywhere: MLflow is the only store.
"""

from __future__ import annotations

import os
from pathlib import Path

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
