"""Alignment: turn a criterion's human labels into a better LLM judge, as a recorded job.

The public surface used by the dashboard, the CLI and the tests:

- :func:`preflight` / :func:`estimate`: checks and a cost forecast before anything runs;
- :func:`run_alignment`: one alignment in this process, recorded in an MLflow run;
- :func:`launch`, :func:`status`, :func:`cancel`, :func:`resume`, :func:`list_jobs`:
  the same as a background job;
- the contract types in :mod:`core.optimization.spec`.

Submodules import heavy libraries (MLflow, gepa, dspy) only when used.
"""

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
