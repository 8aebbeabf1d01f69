"""Experiments: the MLflow container every trace, label, queue and run lives in."""

from __future__ import annotations

import mlflow
from mlflow.entities import Experiment

from core.errors import NotFoundError, ValidationError
from core.store import config

#: The job workers' registry (:mod:`core.optimization.workers`): a system experiment.
REGISTRY_EXPERIMENT = "alignboard.workers"


def get_experiment(name: str) -> Experiment:
    """Return the experiment called ``name``.

    Raises:
        NotFoundError: no such experiment (the message lists the ones that exist).
    """
    config.configure()
    exp = mlflow.get_experiment_by_name(name)
    if exp is None or exp.lifecycle_stage == "deleted":
        names = [e.name for e in list_experiments()]
        raise NotFoundError(
            f"No experiment named {name!r}. Existing experiments: {', '.join(names) or 'none'}. "
            "Create it by importing traces: alignboard import FILE --experiment NAME"
        )
    return exp


def get_or_create_experiment(name: str) -> Experiment:
    """Return the experiment called ``name``, creating it if needed.

    On the embedded store its artifacts go under the local data folder rather than
    wherever the process happens to run.
    """
    config.configure()
    if not name or not name.strip():
        raise ValidationError("An experiment name is required.")
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None and exp.lifecycle_stage != "deleted":
        return exp
    location = None
    if config.is_local_sqlite():
        location = (config.artifact_root() / name.replace("/", "_")).as_uri()
    try:
        exp_id = mlflow.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        # Another process created it first: fine, it is the same experiment.
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp
    return mlflow.get_experiment(exp_id)


def list_experiments() -> list[Experiment]:
    """Return the active experiments, most recently created first (Default last)."""
    config.configure()
    exps = mlflow.search_experiments(order_by=["creation_time DESC"])
    # The job workers' registry is alignboard's own bookkeeping, not an experiment to open.
    exps = [e for e in exps if e.name != REGISTRY_EXPERIMENT]
    return sorted(exps, key=lambda e: e.name == "Default")
