"""Alignment: turn a criterion's human labels into a better LLM judge, as a recorded job.

The public surface used by the dashboard, the CLI and the tests:

- :func:`preflight` / :func:`estimate`: checks and a cost forecast before anything runs;
- :func:`run_alignment`: one alignment in this process, recorded in an MLflow run;
- :func:`launch`, :func:`status`, :func:`cancel`, :func:`resume`, :func:`list_jobs`:
  the same as a background job;
- the contract types in :mod:`core.optimization.spec`.

The names are imported on first use (:mod:`core._lazy`), and submodules import heavy
libraries (MLflow, gepa, dspy) only when used.
"""

from typing import TYPE_CHECKING

from core._lazy import lazy_exports

if TYPE_CHECKING:
    from core.optimization.engine import (
        AlignmentResult,
        create_run,
        load_and_check,
        load_settings,
        run_alignment,
    )
    from core.optimization.jobs import JobStatus, cancel, launch, list_jobs, resume, status, wait
    from core.optimization.preflight import Estimate, Finding, estimate, preflight
    from core.optimization.recorder import STATUSES, MlflowRunRecorder
    from core.optimization.spec import (
        OPTIMIZERS,
        AlignmentOutcome,
        AlignmentSettings,
        Example,
        JudgeSpec,
        RunRecorder,
    )

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "core.optimization.engine": [
            "AlignmentResult",
            "create_run",
            "load_and_check",
            "load_settings",
            "run_alignment",
        ],
        "core.optimization.jobs": [
            "JobStatus",
            "cancel",
            "launch",
            "list_jobs",
            "resume",
            "status",
            "wait",
        ],
        "core.optimization.preflight": ["Estimate", "Finding", "estimate", "preflight"],
        "core.optimization.recorder": ["STATUSES", "MlflowRunRecorder"],
        "core.optimization.spec": [
            "OPTIMIZERS",
            "AlignmentOutcome",
            "AlignmentSettings",
            "Example",
            "JudgeSpec",
            "RunRecorder",
        ],
    },
)

__all__ = [
    "OPTIMIZERS",
    "STATUSES",
    "AlignmentOutcome",
    "AlignmentResult",
    "AlignmentSettings",
    "Estimate",
    "Example",
    "Finding",
    "JobStatus",
    "JudgeSpec",
    "MlflowRunRecorder",
    "RunRecorder",
    "cancel",
    "create_run",
    "estimate",
    "launch",
    "list_jobs",
    "load_and_check",
    "load_settings",
    "preflight",
    "resume",
    "run_alignment",
    "status",
    "wait",
]
