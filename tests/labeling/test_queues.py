"""Review queues on a real sqlite MLflow store, visible through MLflow's own API."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.genai import review_queues as rq

from core.errors import NotFoundError, ValidationError
from core.labeling.criteria import create_criterion
from core.labeling.labels import set_label
from core.labeling.queues import (
    add_traces,
    assign_reviewers,
    create_queue,
    get_queue,
    list_queues,
    mark_done,
    next_pending,
    queue_items,
    reviewer_progress,
)


def _make_traces(n: int) -> list[str]:
    ids = []
    for i in range(n):
        with mlflow.start_span(name="app") as span:
            span.set_inputs({"question": f"q{i}"})
            span.set_outputs({"response": f"a{i}"})
            ids.append(span.trace_id)
    mlflow.flush_trace_async_logging()
    return ids


@pytest.fixture
def setup(experiment):
    mlflow.set_experiment(experiment_id=experiment.experiment_id)
    crit = create_criterion(
        experiment.experiment_id, "quality", "pass_fail", "Is {{ outputs }} good for {{ inputs }}?"
    )
    ids = _make_traces(4)
    q = create_queue(experiment.experiment_id, "first-pass", ["quality"], ["ann", "bob"])
    add_traces(q, ids)
    return experiment.experiment_id, crit, q, ids


def test_queue_is_an_mlflow_custom_review_queue(setup):
    exp_id, crit, q, ids = setup
    native = rq.get_review_queue(name="first-pass", experiment_id=exp_id)
    assert native.queue_type == rq.ReviewQueueType.CUSTOM
    assert sorted(native.users) == ["ann", "bob"]
    assert native.schema_ids == [crit.schema_id]
    native_items = {i.item_id for i in rq.list_review_queue_items(native.queue_id)}
    assert native_items == set(ids)
    assert q.criteria == ("quality",)


def test_next_pending_walks_the_reviewers_own_work(setup):
    _exp_id, crit, q, ids = setup
    order = [i.trace_id for i in queue_items(q)]
    assert sorted(order) == sorted(ids)
    first = next_pending(q, "ann")
    assert first == order[0]
    set_label(first, crit, "ann", "pass", "fine")
    assert next_pending(q, "ann") == order[1]
    # bob's work is independent of ann's
    assert next_pending(q, "bob") == order[0]
    # skipping moves on and wraps round
    assert next_pending(q, "ann", after=order[1]) == order[2]
    assert next_pending(q, "ann", after=order[3]) == order[1]


def test_progress_counts_each_reviewer(setup):
    _exp_id, crit, q, ids = setup
    for t in ids[:3]:
        set_label(t, crit, "ann", "fail", "no")
    set_label(ids[0], crit, "bob", "pass", "ok")
    prog = {p.reviewer: (p.done, p.total) for p in reviewer_progress(q)}
    assert prog == {"ann": (3, 4), "bob": (1, 4)}
    for t in ids[3:]:
        set_label(t, crit, "ann", "pass", "ok")
    assert next_pending(q, "ann") is None


def test_mark_done_completes_in_mlflow_only_when_every_reviewer_labeled(setup):
    _exp_id, crit, q, ids = setup
    t = ids[0]
    with pytest.raises(ValidationError, match="has not labeled quality"):
        mark_done(q, t, "ann")
    set_label(t, crit, "ann", "pass", "ok")
    assert mark_done(q, t, "ann") == "pending"
    set_label(t, crit, "bob", "fail", "not ok")
    assert mark_done(q, t, "bob") == "complete"
    native = {i.item_id: i for i in rq.list_review_queue_items(q.queue_id)}
    assert str(native[t].status) == "complete"
    assert native[t].completed_by == "bob"
    assert str(native[ids[1]].status) == "pending"


def test_queue_validation_and_lookup_errors(setup):
    exp_id, _crit, q, _ids = setup
    with pytest.raises(ValidationError, match="already exists"):
        create_queue(exp_id, "first-pass", ["quality"], ["ann"])
    with pytest.raises(ValidationError, match="at least one criterion"):
        create_queue(exp_id, "empty", [], ["ann"])
    with pytest.raises(NotFoundError):
        create_queue(exp_id, "bad", ["no_such_criterion"], ["ann"])
    with pytest.raises(ValidationError, match="at most 10"):
        create_queue(exp_id, "big", ["quality"], [f"r{i}" for i in range(11)])
    with pytest.raises(NotFoundError, match="first-pass"):
        get_queue(exp_id, "nope")
    with pytest.raises(ValidationError, match="not in queue"):
        mark_done(q, "tr-doesnotexist", "ann")


def test_assign_reviewers_and_list_by_reviewer(setup):
    exp_id, _crit, q, ids = setup
    q2 = assign_reviewers(q, ["ann", "cy"])
    assert q2.reviewers == ("ann", "cy")
    assert [x.name for x in list_queues(exp_id, reviewer="cy")] == ["first-pass"]
    assert list_queues(exp_id, reviewer="bob") == []
    assert add_traces(q2, ids[:2]) == 2  # idempotent re-attach
    assert len(queue_items(q2)) == 4
