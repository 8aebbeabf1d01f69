"""Back to the humans: a prompt optimization's test outputs sent to a review queue, labeled
by a reviewer, and seen by the Agreement page and by the next optimization's reflection.

Real parts throughout: the demo store, a real (MetaPrompt) optimization run, MLflow traces,
assessments and review queues, core.labeling as a reviewer uses it.
"""

from __future__ import annotations

from typing import Any

import pytest

from core.optimization.prompt_preflight import build_prompt_settings

PROMPT = "northwind-support"
JUDGE = "support_quality"
REVIEWERS = ["rev-ana", "rev-ben"]


def _settings(experiment_id: str, optimizer: str = "metaprompt") -> Any:
    return build_prompt_settings(
        experiment_id,
        prompts=[f"{PROMPT}@production"],
        dataset="dataset:northwind-messages",
        task_model="demo:/app",
        judges=[f"{JUDGE}@production"],
        optimizer=optimizer,
        reflection_model="demo:/reflect",
        max_metric_calls=30,
        workers=4,
        mapping={"message": "message"},
    )


@pytest.fixture
def optimized(prompt_demo: str) -> tuple[str, Any]:
    """A finished prompt optimization on the demo that registered v2: (experiment, result)."""
    from core.optimization.engine import run_prompt_optimization

    result = run_prompt_optimization(_settings(prompt_demo))
    assert result.prompt_version == 2
    return prompt_demo, result


def _test_outputs(run_id: str) -> Any:
    from mlflow import MlflowClient

    from core.optimization import record

    tm = record.read_test_metrics(MlflowClient(), run_id)
    assert tm is not None
    return tm.outputs


def test_send_creates_tagged_traces_with_judge_feedback_in_a_queue(
    optimized: tuple[str, Any],
) -> None:
    from mlflow.tracing.client import TracingClient

    from core.labeling.queues import get_queue, queue_items
    from core.optimization.prompt_eval import text_sha
    from core.optimization.prompt_review import (
        TAG_OUTPUT_SHA,
        TAG_PROMPT_VERSION,
        TAG_ROW,
        TAG_SOURCE_RUN,
        send_outputs_to_queue,
    )

    experiment_id, result = optimized
    sent = send_outputs_to_queue(
        experiment_id, result.run_id, queue="optimized-v2", reviewers=REVIEWERS
    )
    outputs = _test_outputs(result.run_id)
    distinct = {(o.row_id, text_sha(o.after)) for o in outputs}
    assert sent.created == len(distinct) == len(sent.trace_ids) > 0
    assert sent.prompt_versions == {"after": f"{PROMPT}@2"}
    by_key = {(o.row_id, text_sha(o.after)): o for o in outputs}
    client = TracingClient()
    for tid in sent.trace_ids:
        trace = client.get_trace(tid)
        tags = trace.info.tags
        o = by_key[(tags[TAG_ROW], tags[TAG_OUTPUT_SHA])]
        assert tags[TAG_PROMPT_VERSION] == f"{PROMPT}@2"
        assert tags[TAG_SOURCE_RUN] == result.run_id
        root = trace.data.spans[0]
        assert root.inputs == dict(o.values) and root.outputs == {"response": o.after}
        [fb] = [a for a in trace.info.assessments if a.name == JUDGE]
        assert fb.source.source_type == "LLM_JUDGE" and fb.source.source_id == f"{JUDGE}/v1"
        assert fb.value == o.after_verdicts[f"{JUDGE} v1"]["value"]
        assert fb.rationale == o.after_verdicts[f"{JUDGE} v1"]["rationale"]
    q = get_queue(experiment_id, "optimized-v2")
    assert set(q.reviewers) == set(REVIEWERS) and q.criteria == (JUDGE,)
    assert {i.trace_id for i in queue_items(q)} == set(sent.trace_ids)


def test_a_label_on_a_sent_output_reaches_agreement_and_reflection(
    optimized: tuple[str, Any],
) -> None:
    from mlflow.tracing.client import TracingClient

    from core.io.prompt_data import load_rows, parse_source
    from core.labeling.criteria import get_criterion
    from core.labeling.labels import set_label
    from core.optimization.prompt_review import (
        TAG_OUTPUT_SHA,
        TAG_ROW,
        human_labels_on_outputs,
        send_outputs_to_queue,
    )
    from core.optimization.prompt_task import PromptTask
    from core.views.agreement import Rater, compare_raters, load_ratings

    experiment_id, result = optimized
    assert human_labels_on_outputs(experiment_id, [JUDGE]) == {}
    sent = send_outputs_to_queue(
        experiment_id, result.run_id, which="both", queue="v1-vs-v2", reviewers=REVIEWERS
    )
    assert set(sent.prompt_versions) == {"before", "after"}
    outputs = {o.row_id: o for o in _test_outputs(result.run_id)}
    tid = sent.trace_ids[0]
    tags = TracingClient().get_trace(tid).info.tags
    row_id, sha = tags[TAG_ROW], tags[TAG_OUTPUT_SHA]
    # A reviewer labels the output as the labeling page would.
    criterion = get_criterion(experiment_id, JUDGE)
    why = 'It says "we are happy to help" but never answers the question.'
    set_label(tid, criterion, REVIEWERS[0], False, why)

    assert human_labels_on_outputs(experiment_id, [JUDGE]) == {(row_id, sha): (False, why)}

    # The Agreement page compares the judge version with the reviewer on that trace.
    ratings = load_ratings(experiment_id, criterion)
    [t] = [t for t in ratings.traces if t.trace_id == tid]
    assert set(t.humans) == {REVIEWERS[0]} and f"{JUDGE}/v1" in t.judges
    report = compare_raters(ratings, Rater.reviewer(REVIEWERS[0]), Rater.judge(f"{JUDGE}/v1"))
    assert report.n == 1

    # The next optimization's reflection sees the human label next to the judge's verdict
    # on that very output (the demo app answers the same prompt the same way).
    settings = _settings(experiment_id, optimizer="gepa")
    task = PromptTask(settings)
    row = next(r for r in load_rows(parse_source("dataset:northwind-messages")) if r.id == row_id)
    o = outputs[row_id]
    template = result.template if sha == _sha(o.after) else task.seed_candidate()[PROMPT]
    adapter = task.make_adapter([row], [row], None)
    try:
        batch = adapter.evaluate([row], {PROMPT: template}, capture_traces=True)
        records = adapter.make_reflective_dataset({PROMPT: template}, batch, [PROMPT])[PROMPT]
    finally:
        adapter.close()
    assert "Human label: fail" in records[0]["Feedback"]
    assert why.split('"')[1] in records[0]["Feedback"]


def _sha(text: str | None) -> str:
    from core.optimization.prompt_eval import text_sha

    return text_sha(text or "")


def test_sending_again_adds_nothing(optimized: tuple[str, Any]) -> None:
    from core.labeling.labels import iter_trace_infos
    from core.labeling.queues import get_queue, queue_items
    from core.optimization.prompt_review import send_outputs_to_queue

    experiment_id, result = optimized
    first = send_outputs_to_queue(
        experiment_id, result.run_id, queue="again", reviewers=REVIEWERS[:1]
    )
    traces = sum(1 for _ in iter_trace_infos(experiment_id))
    second = send_outputs_to_queue(experiment_id, result.run_id, queue="again", reviewers=REVIEWERS)
    assert second.created == 0 and second.feedback_written == 0
    assert second.existing == first.created and second.trace_ids == first.trace_ids
    assert sum(1 for _ in iter_trace_infos(experiment_id)) == traces
    q = get_queue(experiment_id, "again")
    assert len(queue_items(q)) == len(first.trace_ids)
    # A reviewer named the second time is added to the queue.
    assert set(q.reviewers) == set(REVIEWERS)


def test_send_refuses_what_it_cannot_tag(optimized: tuple[str, Any]) -> None:
    from core.errors import NotFoundError, ValidationError
    from core.optimization.prompt_review import send_outputs_to_queue

    experiment_id, result = optimized
    with pytest.raises(ValidationError, match="reviewer"):
        send_outputs_to_queue(experiment_id, result.run_id, queue="q", reviewers=[])
    with pytest.raises(ValidationError, match="which"):
        send_outputs_to_queue(
            experiment_id, result.run_id, which="best", queue="q", reviewers=REVIEWERS
        )
    with pytest.raises(NotFoundError):
        send_outputs_to_queue(experiment_id, "0" * 32, queue="q", reviewers=REVIEWERS)
