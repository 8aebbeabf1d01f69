"""The SQL fast path (core.store.index, core.labeling.worklists) answers exactly what MLflow's API does.

Every check compares the direct read of MLflow's tables against the public-API path on
the same real store (the fallback used against an MLflow server), including after the
edits that make the two easy to get wrong: a relabel (an override marks the old version
invalid), a withdrawn label (the replaced version becomes valid again), judge feedback
sharing the criterion's name, and traces added to the experiment and the queue.
"""

from __future__ import annotations

import pytest

from core.io.importer import import_file
from core.labeling.criteria import get_criterion
from core.labeling.labels import current_labels, delete_label, iter_trace_infos, set_label
from core.labeling.queues import add_traces, get_queue, queue_items
from core.labeling.session import load_session
from core.labeling.worklists import labeled_ids, load_work_list, work_list_stamp
from core.store import index as store_index
from core.views import overview
from tests.support.judges import log_judge_verdict

CRIT = "support_quality"
QUEUE = "support-review"


def _api_labeled(eid: str, reviewer: str) -> set[str]:
    return {lab.trace_id for lab in current_labels(eid, criterion=CRIT, reviewer=reviewer)}


@pytest.fixture
def no_sql(monkeypatch):
    """Force the public-API path, as against an MLflow server over REST."""
    monkeypatch.setattr(store_index, "_sql_store", lambda: None)


def test_ids_and_labels_match_the_api_including_after_edits(demo_store):
    eid = demo_store
    api_ids = [i.trace_id for i in iter_trace_infos(eid)]
    assert store_index.experiment_trace_ids(eid) == api_ids and len(api_ids) == 84
    q = get_queue(eid, QUEUE)
    assert store_index.queue_item_ids(q.queue_id) == [i.trace_id for i in queue_items(q)]

    crit = get_criterion(eid, CRIT)
    maria = _api_labeled(eid, "maria.chen")
    assert store_index.human_labeled_ids(eid, CRIT, "maria.chen") == maria and len(maria) == 63
    unlabeled = next(t for t in api_ids if t not in maria)
    labeled = sorted(maria)[0]
    # A judge verdict shares the criterion's name: it is not a human label.
    log_judge_verdict(unlabeled, True, source_id="support_quality/v1")
    set_label(labeled, crit, "maria.chen", False, "relabel: overrides the first version")
    set_label(unlabeled, crit, "new.reviewer", True)
    assert store_index.human_labeled_ids(eid, CRIT, "maria.chen") == _api_labeled(eid, "maria.chen")
    assert store_index.human_labeled_ids(eid, CRIT, "new.reviewer") == {unlabeled}
    # Withdrawing the relabel makes the first version current again: still labeled.
    assert delete_label(labeled, CRIT, "maria.chen")
    assert labeled in store_index.human_labeled_ids(eid, CRIT, "maria.chen")
    # Withdrawing the only version: no longer labeled.
    assert delete_label(unlabeled, CRIT, "new.reviewer")
    assert store_index.human_labeled_ids(eid, CRIT, "new.reviewer") == set()
    assert store_index.human_reviewers(eid) == ["dev.patel", "maria.chen"]


def test_label_counts_are_the_same_on_both_paths(demo_store, monkeypatch):
    eid = demo_store
    log_judge_verdict(store_index.experiment_trace_ids(eid)[0], False, source_id="j/v1")
    fast = overview.label_counts(eid)
    monkeypatch.setattr(store_index, "_sql_store", lambda: None)
    slow = overview.label_counts(eid)
    assert fast == slow
    (c,) = fast
    assert (c.labeled_traces, c.multi_labeled, c.judged_traces) == (63, 23, 1)
    assert c.per_reviewer == {"dev.patel": 23, "maria.chen": 63}
    assert overview.reviewers(eid) == ["dev.patel", "maria.chen"]


@pytest.mark.parametrize("queue", [QUEUE, ""])
def test_sessions_are_the_same_on_both_paths(demo_store, monkeypatch, queue):
    eid = demo_store
    fast = load_session(eid, CRIT, "dev.patel", queue)
    monkeypatch.setattr(store_index, "_sql_store", lambda: None)
    slow = load_session(eid, CRIT, "dev.patel", queue)
    assert fast == slow
    assert fast.total == 84 and fast.done_count == 23
    assert fast.position(fast.trace_ids[-1]) == 83
    assert fast.first_pending() == slow.first_pending()


def test_stamps_change_with_membership_not_with_labels(demo_store, tmp_path):
    eid = demo_store
    q = get_queue(eid, QUEUE)
    before_all, before_q = work_list_stamp(eid, None), work_list_stamp(eid, q)
    assert before_all[0] == 84 and before_q[0] == 84
    set_label(store_index.experiment_trace_ids(eid)[0], get_criterion(eid, CRIT), "x", True)
    assert work_list_stamp(eid, None) == before_all
    assert work_list_stamp(eid, q) == before_q

    late = tmp_path / "late.jsonl"
    late.write_text('{"id": "late-1", "inputs": "hi", "outputs": "hello"}\n')
    (new_id,) = import_file(late, "alignboard-demo").trace_ids
    assert work_list_stamp(eid, None)[0] == 85
    assert work_list_stamp(eid, q) == before_q  # the queue did not change...
    add_traces(q, [new_id])
    assert work_list_stamp(eid, q)[0] == 85  # ...until the trace was attached
    work = load_work_list(eid, q)
    assert work.trace_ids[-1] == new_id and work.index[new_id] == 84


def test_without_sql_the_api_path_answers(demo_store, no_sql):
    eid = demo_store
    assert store_index.experiment_trace_ids(eid) is None
    assert work_list_stamp(eid, None) is None
    q = get_queue(eid, QUEUE)
    work = load_work_list(eid, q)
    assert len(work) == 84
    assert labeled_ids(eid, CRIT, "dev.patel", within=work.index) == _api_labeled(eid, "dev.patel")


def _search(eid: str, text: str, **kw) -> list[str]:
    from core.labeling.traces import list_traces

    out, token = [], None
    while True:
        page = list_traces(eid, text=text, page_size=7, page_token=token, **kw)
        out += [r.trace_id for r in page.rows]
        token = page.next_page_token
        if not token:
            return out


@pytest.mark.parametrize(
    "text",
    ["refund", "REFUND", "order", 'said "hi"', "50%", "back\\slash", "_", "ü", "nothing like it"],
)
def test_text_search_matches_mlflows_filter(demo_store, tmp_path, monkeypatch, text):
    eid = demo_store
    odd = tmp_path / "odd.jsonl"
    odd.write_text(
        '{"id": "odd-1", "inputs": "Grüße: he said \\"hi\\" back\\\\slash", "outputs": "50% off_now"}\n',
        encoding="utf-8",
    )
    (odd_id,) = import_file(odd, "alignboard-demo").trace_ids
    fast = _search(eid, text)
    fast_labeled = _search(eid, text, criterion=CRIT, labeled=True)
    monkeypatch.setattr(store_index, "_sql_store", lambda: None)
    slow = _search(eid, text)  # MLflow's own trace.text ILIKE, paged the same way
    if text in ('said "hi"', "50%", "back\\slash"):
        # MLflow's filter language cannot escape a quote, a wildcard or a backslash, so
        # that path approximates them or misses; the SQL path matches exactly.
        assert fast == [odd_id], slow
        return
    assert fast == slow
    assert fast_labeled == _search(eid, text, criterion=CRIT, labeled=True)
    assert set(fast_labeled) <= set(fast)
    if text == "refund":
        assert len(fast) > 7 and fast_labeled  # several pages, and the label filter bites


def test_queue_item_statuses_match_the_api(demo_store):
    from mlflow.genai import review_queues as rq

    eid = demo_store
    q = get_queue(eid, QUEUE)
    items = queue_items(q)
    done, pending = items[0].trace_id, items[1].trace_id
    rq.set_review_queue_item_status(
        q.queue_id, item_id=done, status="complete", completed_by="maria.chen"
    )
    api = {i.trace_id: i.status for i in queue_items(q)}
    fast = store_index.queue_item_statuses(q.queue_id, [done, pending, "tr-not-in-the-queue"])
    assert fast == {done: api[done], pending: api[pending]}
    assert fast[done] == "complete" and fast[pending] == "pending"
    assert store_index.queue_item_statuses(q.queue_id, []) == {}
