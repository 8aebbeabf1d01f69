"""alignboard's core: everything but the UI. Never imports streamlit.

The app, the CLI and the tests all come in through these names. They are imported on
first use (:mod:`core._lazy`), so ``import core.errors`` or ``alignboard --help`` load
no MLflow.
"""

from typing import TYPE_CHECKING

from core._lazy import lazy_exports

if TYPE_CHECKING:
    from core.agreement import AgreementReport, compare, reviewer_matrix
    from core.errors import (
        AlignboardError,
        CredentialsError,
        ImportFileError,
        ModelError,
        NotFoundError,
        ValidationError,
    )
    from core.io.demo_seed import seed_demo
    from core.io.export import export_labels
    from core.io.importer import import_file, parse_import_file
    from core.labeling.criteria import Criterion, create_criterion, get_criterion, list_criteria
    from core.labeling.labels import Label, current_labels, label_history, set_label
    from core.labeling.queues import (
        Queue,
        add_traces,
        create_queue,
        get_queue,
        list_queues,
        mark_done,
        next_pending,
        reviewer_progress,
    )
    from core.labeling.splits import assign_split, split_ids
    from core.labeling.traces import TraceDetail, TracePage, count_traces, get_trace, list_traces
    from core.store.config import configure, data_dir, tracking_uri
    from core.store.experiments import get_experiment, get_or_create_experiment, list_experiments

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "core.agreement": ["AgreementReport", "compare", "reviewer_matrix"],
        "core.errors": [
            "AlignboardError",
            "CredentialsError",
            "ImportFileError",
            "ModelError",
            "NotFoundError",
            "ValidationError",
        ],
        "core.io.demo_seed": ["seed_demo"],
        "core.io.export": ["export_labels"],
        "core.io.importer": ["import_file", "parse_import_file"],
        "core.labeling.criteria": [
            "Criterion",
            "create_criterion",
            "get_criterion",
            "list_criteria",
        ],
        "core.labeling.labels": ["Label", "current_labels", "label_history", "set_label"],
        "core.labeling.queues": [
            "Queue",
            "add_traces",
            "create_queue",
            "get_queue",
            "list_queues",
            "mark_done",
            "next_pending",
            "reviewer_progress",
        ],
        "core.labeling.splits": ["assign_split", "split_ids"],
        "core.labeling.traces": [
            "TraceDetail",
            "TracePage",
            "count_traces",
            "get_trace",
            "list_traces",
        ],
        "core.store.config": ["configure", "data_dir", "tracking_uri"],
        "core.store.experiments": [
            "get_experiment",
            "get_or_create_experiment",
            "list_experiments",
        ],
    },
)

__all__ = [
    "AgreementReport",
    "AlignboardError",
    "CredentialsError",
    "Criterion",
    "ImportFileError",
    "Label",
    "ModelError",
    "NotFoundError",
    "Queue",
    "TraceDetail",
    "TracePage",
    "ValidationError",
    "add_traces",
    "assign_split",
    "compare",
    "configure",
    "count_traces",
    "create_criterion",
    "create_queue",
    "current_labels",
    "data_dir",
    "export_labels",
    "get_criterion",
    "get_experiment",
    "get_or_create_experiment",
    "get_queue",
    "get_trace",
    "import_file",
    "label_history",
    "list_criteria",
    "list_experiments",
    "list_queues",
    "list_traces",
    "mark_done",
    "next_pending",
    "parse_import_file",
    "reviewer_matrix",
    "reviewer_progress",
    "seed_demo",
    "set_label",
    "split_ids",
    "tracking_uri",
]
