"""Writing judge verdicts (non-human feedback) on traces, as an LLM judge would."""

from __future__ import annotations

import mlflow
from mlflow.entities import AssessmentSource


def log_judge_verdict(
    trace_id: str,
    value,
    *,
    name: str = "support_quality",
    rationale: str = "judge's reasoning",
    source_id: str = "support_quality-judge",
) -> None:
    """Log an LLM_JUDGE feedback named ``name`` on the trace."""
    mlflow.log_feedback(
        trace_id=trace_id,
        name=name,
        value=value,
        rationale=rationale,
        source=AssessmentSource(source_type="LLM_JUDGE", source_id=source_id),
    )
