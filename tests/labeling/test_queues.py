"""Review queues on a real sqlite MLflow store, visible through MLflow's own API."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.genai import review_queues as rq

from core.errors import NotFoundError, ValidationError
from core.labeling.criteria import create_criterion
from core.labeling.labels import set_label
from core.labeling.queues import (
    TraceFilter,
    add_traces,
    assign_reviewers,
    create_queue,
    create_queue_from_filter,
    filter_trace_ids,
    get_queue,
    list_queues,
    mark_done,
    next_pending,
    parse_trace_ids,
    queue_items,
    remove_traces,
    reviewer_progress,
    sync_done,
    update_reviewers,
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


# ---- no reviewers, filters, remove, assign, sync -------------------------------------------


def test_a_queue_with_no_reviewers_is_refused_and_nothing_is_written(setup):
    exp_id, _crit, q, _ids = setup
    for reviewers in ([], ["  "]):
        with pytest.raises(ValidationError, match=r"no reviewers|cannot be empty"):
            create_queue(exp_id, "nobody", ["quality"], reviewers)
    with pytest.raises(ValidationError, match="no reviewers"):
        create_queue_from_filter(exp_id, "nobody", ["quality"], [], TraceFilter("all"))
    with pytest.raises(ValidationError, match="no reviewers"):
        assign_reviewers(q, [])
    with pytest.raises(ValidationError, match="no reviewers"):
        update_reviewers(q, remove=["ann", "bob"])
    assert [x.name for x in list_queues(exp_id)] == ["first-pass"]
    assert get_queue(exp_id, "first-pass").reviewers == ("ann", "bob")


def test_filters_select_traces(setup):
    exp_id, crit, _q, ids = setup
    set_label(ids[0], crit, "ann", "pass", "ok")
    mlflow.MlflowClient().set_trace_tag(ids[2], "topic", "returns")
    # Oldest first; traces of the same millisecond by id, so compare as sets here.
    assert sorted(filter_trace_ids(exp_id, TraceFilter("all"))) == sorted(ids)
    unlabeled = filter_trace_ids(exp_id, TraceFilter("unlabeled", criterion="quality"))
    assert sorted(unlabeled) == sorted(ids[1:])
    with mlflow.start_span(name="app") as span:
        span.set_inputs({"question": "Can I return merino socks?"})
    mlflow.flush_trace_async_logging()
    assert filter_trace_ids(exp_id, TraceFilter("text", text="MERINO socks")) == [span.trace_id]
    assert filter_trace_ids(exp_id, TraceFilter("tag", text="topic = returns")) == [ids[2]]
    pasted = f"{ids[3]}\n{ids[1]}, {ids[3]}"
    assert filter_trace_ids(exp_id, TraceFilter("ids", trace_ids=parse_trace_ids(pasted))) == [
        ids[3],
        ids[1],
    ]


@pytest.mark.parametrize(
    ("flt", "message"),
    [
        (TraceFilter("unlabeled"), "Pick the criterion"),
        (TraceFilter("unlabeled", criterion="nope"), "No criterion named"),
        (TraceFilter("text", text="  "), "Type the text"),
        (TraceFilter("tag", text="topic"), "key=value"),
        (TraceFilter("tag", text="topic='x"), "no quotes"),
        (TraceFilter("ids"), "at least one trace id"),
        (TraceFilter("ids", trace_ids=("tr-nope",)), "not traces of this experiment: tr-nope"),
        (TraceFilter("text", text="no such words anywhere"), "selects no trace"),
        (TraceFilter("sql"), "Unknown filter"),  # type: ignore[arg-type]
    ],
)
def test_bad_filters_create_nothing(setup, flt, message):
    exp_id, *_ = setup
    with pytest.raises((ValidationError, NotFoundError), match=message):
        create_queue_from_filter(exp_id, "second", ["quality"], ["ann"], flt)
    assert [x.name for x in list_queues(exp_id)] == ["first-pass"]


def test_create_from_filter_attaches_the_selected_traces(setup):
    exp_id, crit, _q, ids = setup
    set_label(ids[0], crit, "ann", "pass", "ok")
    _q2, n = create_queue_from_filter(
        exp_id, "unlabeled", ["quality"], ["cy"], TraceFilter("unlabeled", criterion="quality")
    )
    assert n == 3
    native = rq.get_review_queue(name="unlabeled", experiment_id=exp_id)
    assert native.users == ["cy"]
    assert {i.item_id for i in rq.list_review_queue_items(native.queue_id)} == set(ids[1:])
    with pytest.raises(ValidationError, match="already exists"):
        create_queue_from_filter(exp_id, "unlabeled", ["quality"], ["cy"], TraceFilter("all"))


def test_remove_traces_detaches_only_queue_items(setup):
    _exp_id, _crit, q, ids = setup
    with pytest.raises(ValidationError, match="not in queue 'first-pass': tr-nope"):
        remove_traces(q, [ids[0], "tr-nope"])
    assert len(queue_items(q)) == 4  # nothing removed
    with pytest.raises(ValidationError, match="at least one"):
        remove_traces(q, [" "])
    assert remove_traces(q, [ids[0], ids[1]]) == 2
    native = {i.item_id for i in rq.list_review_queue_items(q.queue_id)}
    assert native == set(ids[2:])


def test_update_reviewers_assigns_and_unassigns(setup):
    _exp_id, _crit, q, _ids = setup
    q = update_reviewers(q, add=["cy"], remove=["bob"])
    assert q.reviewers == ("ann", "cy")
    assert rq.get_review_queue(q.queue_id).users == ["ann", "cy"]
    with pytest.raises(ValidationError, match="bob is not assigned"):
        update_reviewers(q, remove=["bob"])
    with pytest.raises(ValidationError, match="Name a reviewer"):
        update_reviewers(q)


def test_sync_done_reads_statuses_through_mlflow(setup):
    _exp_id, crit, q, ids = setup

    def statuses() -> dict[str, str]:
        return {str(i.item_id): str(i.status) for i in rq.list_review_queue_items(q.queue_id)}

    for t in ids[:2]:
        set_label(t, crit, "ann", "pass", "ok")
        set_label(t, crit, "bob", "fail", "no")
    set_label(ids[2], crit, "ann", "pass", "ok")  # bob has not: stays pending
    assert sync_done(q) == 2
    assert statuses() == {ids[0]: "complete", ids[1]: "complete", ids[2]: "pending",
                          ids[3]: "pending"}  # fmt: skip
    assert sync_done(q) == 2  # idempotent
    # A reviewer added who has not labeled: complete items are pending again.
    q = update_reviewers(q, add=["cy"])
    assert set(statuses().values()) == {"pending"}
    set_label(ids[0], crit, "cy", "pass", "ok")
    assert sync_done(q) == 1 and statuses()[ids[0]] == "complete"
    # Unassigning the reviewer who held an item back completes it.
    update_reviewers(q, remove=["cy"])
    assert statuses()[ids[1]] == "complete"


def test_demo_seed_marks_items_every_demo_reviewer_labeled_complete(demo_store):
    from core.labeling.labels import current_labels

    q = get_queue(demo_store, "support-review")
    both: dict[str, set[str]] = {}
    for lab in current_labels(demo_store, "support_quality"):
        both.setdefault(lab.trace_id, set()).add(lab.reviewer)
    expected = {t for t, who in both.items() if who >= set(q.reviewers)}
    native = rq.list_review_queue_items(q.queue_id, status="complete")
    assert expected and {i.item_id for i in native} == expected


# ---- CLI -----------------------------------------------------------------------------------


def _last(capsys) -> dict:
    import json

    return json.loads(capsys.readouterr().out.splitlines()[-1])


def test_cli_queue_setup_commands(setup, capsys):
    from core.cli import main

    _exp_id, crit, _q, ids = setup
    base = ["--experiment", "test", "--json"]
    assert main(["queue", "create", "tagged", "--criterion", "quality", *base]) == 2
    assert "no reviewers" in capsys.readouterr().err
    with mlflow.start_span(name="app") as span:
        span.set_inputs({"question": "Where is my parcel?"})
    mlflow.flush_trace_async_logging()
    assert main(["queue", "create", "by-text", "--criterion", "quality", "--reviewer", "ann",
                 "--text", "my parcel", *base]) == 0  # fmt: skip
    assert _last(capsys)["items"] == 1
    assert main(["queue", "create", "by-tag", "--criterion", "quality", "--reviewer", "ann",
                 "--tag", "nope=1", *base]) == 2  # fmt: skip
    assert "selects no trace" in capsys.readouterr().err
    assert main(["queue", "create", "by-id", "--criterion", "quality", "--reviewer", "ann",
                 "--trace-id", ids[0], "--trace-id", ids[1], *base]) == 0  # fmt: skip
    assert _last(capsys)["items"] == 2
    assert main(["queue", "remove", "by-id", ids[0], *base]) == 0
    assert _last(capsys) == {"queue": "by-id", "removed": 1}
    assert main(["queue", "remove", "by-id", "tr-nope", *base]) == 2
    capsys.readouterr()
    assert main(["queue", "assign", "first-pass", "--add", "cy", "--remove", "bob", *base]) == 0
    assert _last(capsys)["reviewers"] == ["ann", "cy"]
    assert main(["queue", "rules", "first-pass", "--blind", "off", *base]) == 0
    assert _last(capsys) == {"queue": "first-pass", "rationale_policy": None, "blind": False}
    assert main(["queue", "rules", "first-pass", "--rationale", "always", *base]) == 0
    assert _last(capsys) == {"queue": "first-pass", "rationale_policy": "always", "blind": False}
    assert main(["queue", "rules", "first-pass", "--blind", "criterion", *base]) == 0
    assert _last(capsys)["blind"] is None
    set_label(ids[0], crit, "ann", "pass", "ok")
    set_label(ids[0], crit, "cy", "pass", "ok")
    assert main(["queue", "sync", "first-pass", *base]) == 0
    assert _last(capsys) == {"queue": "first-pass", "complete": 1, "items": 4}
    from core.labeling.flags import set_flag

    set_flag(ids[1], "quality", "cy", "unsure")
    assert main(["queue", "progress", "first-pass", *base]) == 0
    out = _last(capsys)
    assert (out["items"], out["complete"], out["flagged"]) == (4, 1, 1)
    assert out["progress"] == [
        {"reviewer": "ann", "done": 1, "total": 4, "flagged": 0},
        {"reviewer": "cy", "done": 1, "total": 4, "flagged": 1},
    ]
