"""Seeding the demo experiment: support-assistant traces, a criterion, expert labels, a queue.

Seeding is idempotent: every step checks what is already there, so ``make run`` can
call it on every start and a half-finished seed (a killed process) completes next time.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from core.errors import NotFoundError
from core.io.importer import import_file
from core.labeling.criteria import create_criterion, list_criteria
from core.labeling.queues import add_traces, create_queue, get_queue
from core.labeling.traces import all_trace_ids
from core.store import config
from core.store.experiments import get_or_create_experiment

DEMO_EXPERIMENT = "alignboard-demo"
DEMO_QUEUE = "support-review"
DEMO_REVIEWERS = ("maria.chen", "dev.patel")
#: Experiment tag set once every seed step has completed.
SEEDED_TAG = "alignboard.demo_seeded"


def assets_dir() -> Path:
    """Folder holding the demo data (``ALIGNBOARD_ASSETS`` overrides it)."""
    override = os.environ.get("ALIGNBOARD_ASSETS")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "assets"


@dataclass(frozen=True)
class SeedResult:
    """What :func:`seed_demo` did."""

    experiment_id: str
    """The demo experiment."""
    already_seeded: bool
    """True when everything was already in place and nothing was written."""
    traces_written: int
    """Traces imported by this call."""
    labels_written: int
    """Labels imported by this call."""
    queue: str
    """Name of the demo review queue."""

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return asdict(self)


def seed_demo(experiment_name: str = DEMO_EXPERIMENT) -> SeedResult:
    """Load the demo data into ``experiment_name`` unless it is already there.

    Creates the criterion from ``assets/demo/criteria.json``, imports
    ``assets/demo/support_traces.jsonl`` (with its expert labels) and a review queue
    holding every trace, assigned to the demo reviewers.
    """
    import mlflow

    config.configure()
    exp = get_or_create_experiment(experiment_name)
    if exp.tags.get(SEEDED_TAG) == "1":
        return SeedResult(exp.experiment_id, True, 0, 0, DEMO_QUEUE)

    demo = assets_dir() / "demo"
    existing = {c.name for c in list_criteria(exp.experiment_id)}
    criteria = json.loads((demo / "criteria.json").read_text(encoding="utf-8"))
    for spec in criteria:
        if spec["name"] not in existing:
            create_criterion(
                exp.experiment_id,
                spec["name"],
                spec["kind"],
                spec["instructions"],
                options=spec.get("options"),
                positive_label=spec.get("positive_label", "Pass"),
                negative_label=spec.get("negative_label", "Fail"),
            )
    result = import_file(demo / "support_traces.jsonl", experiment_name, on_existing="skip")

    try:
        queue = get_queue(exp.experiment_id, DEMO_QUEUE)
    except NotFoundError:
        queue = create_queue(
            exp.experiment_id, DEMO_QUEUE, [c["name"] for c in criteria], DEMO_REVIEWERS
        )
    add_traces(queue, all_trace_ids(exp.experiment_id))
    mlflow.MlflowClient().set_experiment_tag(exp.experiment_id, SEEDED_TAG, "1")
    return SeedResult(
        exp.experiment_id, False, result.traces_written, result.labels_written, DEMO_QUEUE
    )
