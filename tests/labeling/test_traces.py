"""Trace lists (paging, filters), trace detail and counts on a real store."""

from __future__ import annotations

import json

import mlflow
import pytest
from mlflow.entities import AssessmentSource, AssessmentSourceType

from core.errors import NotFoundError, ValidationError
from core.io.importer import import_file
from core.labeling.criteria import create_criterion
from core.labeling.labels import set_label
from core.labeling.traces import all_trace_ids, count_traces, get_trace, list_traces


@pytest.fixture
def store(tmp_path, experiment):
    """12 imported traces; ann labels t0-t3, bob labels t2; a judge scores t5."""
    eid = experiment.experiment_id
    crit = create_criterion(eid, "correct", "pass_fail", "Right?")
    path = tmp_path / "t.jsonl"
    lines = [
        {
            "id": f"t{i}",
            "inputs": {"question": f"question number {i}" + (" about refunds" if i == 7 else "")},
            "outputs": f"answer {i}",
            "tags": {"topic": "billing" if i % 2 else "shipping"},
            "expectations": {"expected_facts": ["x"]} if i == 0 else None,
        }
        for i in range(12)
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    ids = list(import_file(path, experiment.name).trace_ids)
    for i, value in enumerate([True, False, True, False]):
        set_label(ids[i], crit, "ann", value, f"why {i}")
    set_label(ids[2], crit, "bob", False)
    mlflow.log_feedback(
        trace_id=ids[5],
        name="correct",
        value=True,
        rationale="judge says so",
        source=AssessmentSource(source_type=AssessmentSourceType.LLM_JUDGE, source_id="j1"),
    )
    return eid, ids


def test_pages_cover_every_trace_once_in_import_order(store):
    eid, ids = store
    seen, token, sizes = [], None, []
    while True:
        page = list_traces(eid, page_size=5, page_token=token)
        sizes.append(len(page.rows))
        seen += [r.trace_id for r in page.rows]
        assert page.total == 12
        token = page.next_page_token
        if token is None:
            break
    assert sizes == [5, 5, 2]
    assert seen == ids
    row = list_traces(eid, page_size=1).rows[0]
    assert row.request_preview == '{"question": "question number 0"}'
    assert row.response_preview == '{"response": "answer 0"}'
    assert row.tags == {"topic": "shipping", "alignboard.source_id": "t0"}


def test_labeled_filters_count_only_human_labels(store):
    eid, ids = store
    labeled = list_traces(eid, criterion="correct", labeled=True)
    assert [r.trace_id for r in labeled.rows] == ids[:4]
    assert labeled.rows[2].labels == {"ann": True, "bob": False}
    assert labeled.total is None
    unlabeled = list_traces(eid, criterion="correct", labeled=False)
    assert [r.trace_id for r in unlabeled.rows] == ids[4:]  # t5 has only judge feedback


def test_labeled_filter_pages_through_filtered_rows(store):
    eid, ids = store
    first = list_traces(eid, criterion="correct", labeled=False, page_size=3)
    second = list_traces(
        eid, criterion="correct", labeled=False, page_size=3, page_token=first.next_page_token
    )
    assert [r.trace_id for r in first.rows + second.rows] == ids[4:10]


def test_value_and_reviewer_filters(store):
    eid, ids = store
    fails = list_traces(eid, criterion="correct", value="fail")
    assert [r.trace_id for r in fails.rows] == [ids[1], ids[2], ids[3]]
    ann_fails = list_traces(eid, criterion="correct", value="Fail", reviewer="ann")
    assert [r.trace_id for r in ann_fails.rows] == [ids[1], ids[3]]
    assert ann_fails.rows[0].labels == {"ann": False}
    bob = list_traces(eid, criterion="correct", reviewer="bob", labeled=True)
    assert [r.trace_id for r in bob.rows] == [ids[2]]
    bob_todo = list_traces(eid, criterion="correct", reviewer="bob", labeled=False)
    assert len(bob_todo.rows) == 11


def test_text_filter_searches_span_contents(store):
    eid, ids = store
    assert [r.trace_id for r in list_traces(eid, text="REFUNDS").rows] == [ids[7]]
    assert list_traces(eid, text="no such words").rows == []
    assert list_traces(eid, text="it's").rows == []  # a quote does not break the filter


def test_filters_need_a_criterion_and_tokens_must_be_ours(store):
    eid, _ = store
    with pytest.raises(ValidationError, match="needs a criterion"):
        list_traces(eid, labeled=True)
    with pytest.raises(ValidationError, match="page token"):
        list_traces(eid, page_token="garbage")
    with pytest.raises(ValidationError, match="Invalid value"):
        list_traces(eid, criterion="correct", value="maybe")


def test_trace_detail_separates_labels_judges_and_expectations(store):
    eid, ids = store
    d = get_trace(ids[0])
    assert d.experiment_id == eid
    assert d.inputs == {"question": "question number 0"}
    assert d.outputs == {"response": "answer 0"}
    assert d.expectations == {"expected_facts": ["x"]}
    assert [(s.name, s.span_type, s.parent_id) for s in d.spans] == [
        ("alignboard_import", "CHAIN", None)
    ]
    assert [(lab.reviewer, lab.value, lab.rationale) for lab in d.labels] == [
        ("ann", True, "why 0")
    ]
    assert d.source_id == "t0"
    judged = get_trace(ids[5])
    assert judged.labels == []
    assert [(j.source_id, j.value, j.source_type) for j in judged.judge_feedback] == [
        ("j1", True, "LLM_JUDGE")
    ]
    with pytest.raises(NotFoundError):
        get_trace("tr-" + "f" * 32)


def test_counts_and_ids(store):
    eid, ids = store
    assert count_traces(eid) == 12
    assert all_trace_ids(eid) == ids
    other = mlflow.create_experiment("empty")
    assert count_traces(other) == 0
