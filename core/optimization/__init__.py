"""Alignment: turn a criterion's human labels into a better LLM judge, as a recorded job.

The public surface used by the dashboard, the CLI and the tests:

- :func:`preflight` / :func:`estimate`: checks and a cost forecast before anything runs;
- :func:`run_alignment`: one alignment in this process, recorded in an MLflow run;
- :func:`run_optimization`: the general engine it uses, for any
  :class:`OptimizationTask` (judge alignment is :class:`JudgeTask`);
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
        run_optimization,
    )
    from core.optimization.jobs import JobStatus, cancel, launch, list_jobs, resume, status, wait
    from core.optimization.judge_task import JudgeTask
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
    from core.optimization.task import (
        BaseTaskAdapter,
        GuardContext,
        HeldOut,
        OptimizationTask,
        Registrar,
        RunSummary,
        TaskAdapter,
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
            "run_optimization",
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
        "core.optimization.judge_task": ["JudgeTask"],
        "core.optimization.task": [
            "BaseTaskAdapter",
            "GuardContext",
            "HeldOut",
            "OptimizationTask",
            "Registrar",
            "RunSummary",
            "TaskAdapter",
        ],
    },
)

__all__ = [
    "OPTIMIZERS",
    "STATUSES",
    "AlignmentOutcome",
    "AlignmentResult",
    "AlignmentSettings",
    "BaseTaskAdapter",
    "Estimate",
    "Example",
    "Finding",
    "GuardContext",
    "HeldOut",
    "JobStatus",
    "JudgeSpec",
    "JudgeTask",
    "MlflowRunRecorder",
    "OptimizationTask",
    "Registrar",
    "RunRecorder",
    "RunSummary",
    "TaskAdapter",
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
    "run_optimization",
    "status",
    "wait",
]
