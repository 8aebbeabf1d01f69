"""The agent demo: its file keeps the story (evidence only in a tool span), and seeding puts
it in a second experiment, idempotently, without touching the first."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import mlflow

from core.io.demo_seed import (
    AGENT_CRITERIA_FILE,
    AGENT_EXPERIMENT,
    AGENT_QUEUE,
    AGENT_TRACES_FILE,
    DEMO_QUEUE,
    SEEDED_TAG,
    seed_demo,
)
from core.io.formats import parse_import_file
from core.labeling.criteria import list_criteria
from core.labeling.labels import current_labels
from core.labeling.queues import get_queue, queue_items
from core.labeling.traces import count_traces
from core.store.experiments import get_experiment

DEMO = Path(__file__).resolve().parents[2] / "assets" / "demo"
CRITERION = "agent_groundedness"


@cache
def _records() -> tuple[dict, ...]:
    lines = (DEMO / AGENT_TRACES_FILE).read_text(encoding="utf-8").splitlines()
    return tuple(json.loads(line) for line in lines if line.strip())


def _walk(span: dict):
    yield span
    for child in span.get("children", []):
        yield from _walk(child)


def _tool_output(rec: dict, name: str) -> dict:
    spans = [s for s in _walk(rec["spans"]) if s["name"] == name and "outputs" in s]
    return spans[-1]["outputs"]


def _expert(rec: dict) -> str | None:
    return next(
        (lb["value"] for lb in rec.get("labels", []) if lb["reviewer"] == "maria.chen"), None
    )


def test_the_agent_file_is_valid_and_every_trace_is_an_agent_run(tmp_path):
    parsed = parse_import_file(DEMO / AGENT_TRACES_FILE)
    assert parsed.ok, parsed.errors[:5]
    assert 20 <= len(parsed.records) <= 30
    for rec in parsed.records:
        types = [s.span_type for s in rec.spans]
        assert types[0] == "AGENT" and types.count("LLM") == 2, rec.source_id
        names = [s.name for s in rec.spans]
        assert "lookup_order" in names and "get_tracking" in names
        # The record's inputs/outputs are the root span's: the question and the final answer.
        assert rec.inputs["messages"][-1]["role"] == "user"
        assert isinstance(rec.outputs["response"], str)
        assert rec.timestamp_ms is not None
    retrievers = [s for r in parsed.records for s in r.spans if s.span_type == "RETRIEVER"]
    assert retrievers and all(
        d["page_content"] and d["metadata"]["doc_uri"] for s in retrievers for d in s.outputs
    )
    # Spread over several weeks, so a drift chart by week has points.
    weeks = {
        datetime.fromtimestamp(r.timestamp_ms / 1000, tz=UTC).isocalendar()[:2]
        for r in parsed.records
    }
    assert len(weeks) >= 3


def test_some_traces_fail_on_evidence_found_only_in_a_tool_span():
    only_in_tool = []
    for rec in _records():
        status = _tool_output(rec, "get_tracking")["status"]
        answer = rec["spans"]["outputs"]["response"].lower()
        if status == "lost in transit" and "lost" not in answer and "shipped" in answer:
            only_in_tool.append(rec["id"])
            assert _expert(rec) in ("fail", None), rec["id"]
            # The answer itself reads fine: nothing in the conversation gives it away.
            question = rec["spans"]["inputs"]["messages"][-1]["content"].lower()
            assert "lost in transit" not in question
    assert len(only_in_tool) >= 3
    values = [_expert(r) for r in _records() if _expert(r)]
    assert values.count("pass") >= 8 and values.count("fail") >= 8
    # Every expert rationale quotes the tool evidence it rests on.
    for rec in _records():
        for lab in rec.get("labels", []):
            assert lab["criterion"] == CRITERION
    assert any(
        '"lost in transit"' in lb["rationale"] for r in _records() for lb in r.get("labels", [])
    )


def test_the_agent_criterion_uses_the_trace_variable():
    (spec,) = json.loads((DEMO / AGENT_CRITERIA_FILE).read_text(encoding="utf-8"))
    assert spec["name"] == CRITERION and spec["kind"] == "pass_fail"
    assert "{{ trace }}" in spec["instructions"]
    assert "{{ inputs }}" not in spec["instructions"]


def test_seeding_writes_the_agent_experiment_once_and_leaves_the_first_alone(store_uri):
    n = len(_records())
    n_labels = sum(len(r.get("labels", [])) for r in _records())
    first = seed_demo("demo-test")
    assert first.agent_experiment_id is not None
    assert (first.agent_traces_written, first.agent_labels_written) == (n, n_labels)
    agent = get_experiment(AGENT_EXPERIMENT)
    assert agent.experiment_id == first.agent_experiment_id
    assert agent.tags.get(SEEDED_TAG) == "1"
    assert count_traces(agent.experiment_id) == n
    assert [c.name for c in list_criteria(agent.experiment_id)] == [CRITERION]
    assert len(current_labels(agent.experiment_id, criterion=CRITERION)) == n_labels
    assert len(queue_items(get_queue(agent.experiment_id, AGENT_QUEUE))) == n
    # Real MLflow spans: MLflow's own read has the tree.
    labeled = current_labels(agent.experiment_id, criterion=CRITERION)[0]
    spans = mlflow.get_trace(labeled.trace_id).data.spans
    assert len(spans) >= 5 and sum(s.parent_id is None for s in spans) == 1
    # The first experiment gets what it always got.
    eid = first.experiment_id
    assert count_traces(eid) == 84
    assert [c.name for c in list_criteria(eid)] == ["support_quality"]
    assert len(queue_items(get_queue(eid, DEMO_QUEUE))) == 84

    again = seed_demo("demo-test")
    assert again.already_seeded
    assert (again.agent_traces_written, again.agent_labels_written) == (0, 0)
    assert count_traces(agent.experiment_id) == n


def test_a_store_seeded_before_the_agent_demo_gets_it_next_time(store_uri):
    before = seed_demo("demo-test", agent_experiment=None)
    assert before.agent_experiment_id is None
    assert mlflow.get_experiment_by_name(AGENT_EXPERIMENT) is None
    later = seed_demo("demo-test")
    assert not later.already_seeded
    assert later.traces_written == 0 and later.agent_traces_written == len(_records())
    assert count_traces(before.experiment_id) == 84
