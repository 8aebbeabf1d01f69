"""Test helpers for alignment tests (the seeded `demo_store` fixture is in tests/conftest.py):
demo examples built straight from MLflow, a recorder and an accuracy check.

The examples are built here, not with ``core.optimization.dataset``, so these tests depend
only on the runner contract (``core.optimization.spec``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.optimization.spec import AlignmentSettings, Example, JudgeSpec

CRITERION = "support_quality"


def demo_examples(experiment_id: str) -> dict[str, list[Example]]:
    """Examples by split: one per labeled trace, majority label (ties: newest label)."""
    from mlflow.genai.utils.trace_utils import (
        resolve_inputs_from_trace,
        resolve_outputs_from_trace,
    )
    from mlflow.tracing.client import TracingClient

    from core.labeling.labels import current_labels
    from core.labeling.splits import assign_split

    by_trace = defaultdict(list)
    for lab in current_labels(experiment_id, CRITERION):
        by_trace[lab.trace_id].append(lab)
    ids = sorted(by_trace)
    traces = {t.info.trace_id: t for t in TracingClient().batch_get_traces(ids)}
    out: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    for tid in ids:
        labs = by_trace[tid]
        votes = defaultdict(int)
        for lab in labs:
            votes[lab.value] += 1
        top = max(votes.values())
        lab = max((x for x in labs if votes[x.value] == top), key=lambda x: x.created_ms)
        trace = traces[tid]
        split = assign_split(tid)
        out[split].append(
            Example(
                trace_id=tid,
                inputs=resolve_inputs_from_trace(None, trace),
                outputs=resolve_outputs_from_trace(None, trace),
                expectations={},
                label=lab.value,
                rationale=lab.rationale,
                reviewer=lab.reviewer,
                split=split,
                label_version=lab.assessment_id,
            )
        )
    return out


def demo_settings(experiment_id: str, optimizer: str, **kw: Any) -> AlignmentSettings:
    """Settings for aligning the demo criterion's judge with the demo model."""
    from core.labeling.criteria import get_criterion

    crit = get_criterion(experiment_id, CRITERION)
    judge = JudgeSpec(
        name=CRITERION, instructions=crit.instructions, value_type="pass_fail", model="demo:/judge"
    )
    return AlignmentSettings(
        experiment_id=experiment_id,
        judge=judge,
        optimizer=optimizer,
        reflection_model="demo:/reflect",
        **kw,
    )


def accuracy(judge: Any, examples: list[Example]) -> float:
    """Share of ``examples`` where ``judge`` agrees with the human label."""
    hits = 0
    for ex in examples:
        fb = judge(inputs=ex.inputs, outputs=ex.outputs)
        hits += str(fb.value).lower() == str(ex.label).lower()
    return hits / len(examples)


@dataclass
class ListRecorder:
    """A RunRecorder that keeps everything in memory (the engine's is an MLflow run)."""

    work_dir: Path
    run_id: str = "test-run"
    stop_after_heartbeats: int | None = None
    metrics: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    artifacts: dict[str, Any] = field(default_factory=dict)
    heartbeats: int = 0

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_json(self, name: str, obj: Any) -> None:
        self.artifacts[name] = json.loads(json.dumps(obj))

    def log_text(self, name: str, text: str) -> None:
        self.artifacts[name] = text

    def should_stop(self) -> bool:
        return self.stop_after_heartbeats is not None and (
            self.heartbeats >= self.stop_after_heartbeats
        )

    def heartbeat(self) -> None:
        self.heartbeats += 1

    def steps(self, name: str) -> dict[int, float]:
        """Every value logged for ``name``, by step."""
        return {step: m[name] for step, m in self.metrics if name in m}

    def metric(self, name: str) -> float | None:
        """The last value logged for ``name``."""
        values = [m[name] for _, m in self.metrics if name in m]
        return values[-1] if values else None
