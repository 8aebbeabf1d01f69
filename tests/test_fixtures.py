"""The shared fixtures isolate tests from one another."""

from __future__ import annotations

from pathlib import Path

import mlflow

from core.store import config


def test_demo_store_copies_keep_their_artifacts_in_their_own_home(demo_store):
    location = mlflow.get_experiment(demo_store).artifact_location
    assert location.startswith(Path(config.data_dir()).as_uri())
    with mlflow.start_run(experiment_id=demo_store) as run:
        mlflow.log_text("hello", "probe.txt")
    assert run.info.artifact_uri.startswith(Path(config.data_dir()).as_uri())
    assert (config.data_dir() / "artifacts" / "demo").exists()
