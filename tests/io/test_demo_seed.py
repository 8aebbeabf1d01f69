"""Seeding the demo data into a real sqlite store: complete, and idempotent."""

from __future__ import annotations

import json

import mlflow

from core.io.demo_seed import DEMO_QUEUE, DEMO_REVIEWERS, assets_dir, seed_demo
from core.labeling.labels import current_labels
from core.labeling.queues import get_queue, queue_items, reviewer_progress
from core.labeling.traces import count_traces


def _asset_counts() -> tuple[int, int]:
    lines = (assets_dir() / "demo" / "support_traces.jsonl").read_text(encoding="utf-8")
    records = [json.loads(line) for line in lines.splitlines() if line.strip()]
    return len(records), sum(len(r.get("labels", [])) for r in records)


def test_seed_writes_every_trace_label_and_a_queue_then_nothing(store_uri):
    n_traces, n_labels = _asset_counts()
    first = seed_demo("demo-test")
    assert not first.already_seeded
    assert first.traces_written == n_traces
    assert first.labels_written == n_labels
    exp_id = first.experiment_id
    assert count_traces(exp_id) == n_traces

    labels = current_labels(exp_id, criterion="support_quality")
    assert len(labels) == n_labels
    assert {lab.reviewer for lab in labels} == set(DEMO_REVIEWERS)
    # Labels are real MLflow HUMAN feedback, readable with MLflow's own API.
    trace = mlflow.get_trace(labels[0].trace_id)
    human = [a for a in trace.info.assessments if a.source.source_type == "HUMAN"]
    assert any(a.name == "support_quality" and a.rationale for a in human)

    queue = get_queue(exp_id, DEMO_QUEUE)
    assert len(queue_items(queue)) == n_traces
    progress = {p.reviewer: p.done for p in reviewer_progress(queue)}
    assert 0 < progress["dev.patel"] < progress["maria.chen"] < n_traces

    second = seed_demo("demo-test")
    assert second.already_seeded
    assert second.traces_written == 0
    assert count_traces(exp_id) == n_traces
    assert len(current_labels(exp_id, criterion="support_quality")) == n_labels
