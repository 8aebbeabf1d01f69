"""core.store.index on PostgreSQL: the SQL fast paths answer what MLflow's API does.

With a direct ``postgresql+psycopg2://`` tracking URI the tracking store is MLflow's
SqlAlchemyStore, so every fast path runs its SQL on PostgreSQL (ILIKE with an escape
character, boolean ``valid``, integer experiment ids); each answer is compared with the
public-API path on the same store. Through an ``mlflow server`` on PostgreSQL (REST)
every fast path returns None and the callers' fallback gives the same answers.

One seeded demo store per module (seeding takes a while on PostgreSQL); the read-only
checks run first and the test that edits labels last.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from core.io.demo_seed import seed_demo
from core.labeling.criteria import get_criterion
from core.labeling.labels import current_labels, delete_label, iter_trace_infos, set_label
from core.labeling.queues import get_queue, queue_items
from core.labeling.session import load_session
from core.labeling.worklists import labeled_ids, load_work_list, work_list_stamp
from core.store import config
from core.store import index as store_index
from core.views import overview
from tests.support.judges import log_judge_verdict

CRIT = "support_quality"
QUEUE = "support-review"


def _point_at(uri: str, home: Path, mp: pytest.MonkeyPatch) -> None:
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.setenv(config.HOME_ENV, str(home))
    config.configure(uri)


@pytest.fixture(scope="module")
def _pg_demo(pg_cluster, tmp_path_factory) -> Iterator[tuple[str, Path, str]]:
    """(direct PostgreSQL URI, home, demo experiment id), seeded once for the module."""
    uri = pg_cluster.create_mlflow_database("index_demo")
    home = tmp_path_factory.mktemp("pg-index-home")
    with pytest.MonkeyPatch.context() as mp:
        _point_at(uri, home, mp)
        eid = seed_demo().experiment_id
    yield uri, home, eid
    mlflow.set_tracking_uri("")


@pytest.fixture
def pg_demo(_pg_demo, monkeypatch) -> Iterator[str]:
    """Point MLflow at the module's seeded PostgreSQL store; the demo experiment id."""
    uri, home, eid = _pg_demo
    _point_at(uri, home, monkeypatch)
    yield eid
    mlflow.set_tracking_uri("")


def _api_labeled(eid: str, reviewer: str) -> set[str]:
    return {lab.trace_id for lab in current_labels(eid, criterion=CRIT, reviewer=reviewer)}


def _search(eid: str, text: str, **kw) -> list[str]:
    from core.labeling.traces import list_traces

    out, token = [], None
    while True:
        page = list_traces(eid, text=text, page_size=7, page_token=token, **kw)
        out += [r.trace_id for r in page.rows]
        token = page.next_page_token
        if not token:
            return out


def test_fast_path_is_on_for_postgres(pg_demo) -> None:
    assert config.tracking_uri().startswith("postgresql+psycopg2://")
    assert store_index.available()


def test_ids_labels_and_stamps_match_the_api(pg_demo) -> None:
    eid = pg_demo
    api_ids = [i.trace_id for i in iter_trace_infos(eid)]
    assert store_index.experiment_trace_ids(eid) == api_ids and len(api_ids) == 84
    q = get_queue(eid, QUEUE)
    items = queue_items(q)
    assert store_index.queue_item_ids(q.queue_id) == [i.trace_id for i in items]
    statuses = store_index.queue_item_statuses(q.queue_id, [items[0].trace_id, "tr-none"])
    assert statuses == {items[0].trace_id: items[0].status}
    for reviewer, count in (("maria.chen", 63), ("dev.patel", 23)):
        api = _api_labeled(eid, reviewer)
        assert store_index.human_labeled_ids(eid, CRIT, reviewer) == api and len(api) == count
    assert store_index.human_reviewers(eid) == ["dev.patel", "maria.chen"]
    keys = store_index.valid_feedback_keys(eid, [CRIT])
    assert keys is not None and len(keys) == 63 + 23
    assert (store_index.experiment_trace_stamp(eid) or (0,))[0] == 84
    assert (store_index.queue_stamp(q.queue_id) or (0,))[0] == 84
    assert (work_list_stamp(eid, q) or (0,))[0] == 84


def test_counts_and_sessions_are_the_same_on_both_paths(pg_demo, monkeypatch) -> None:
    eid = pg_demo
    q = get_queue(eid, QUEUE)
    fast = (overview.label_counts(eid), load_session(eid, CRIT, "dev.patel", QUEUE))
    fast_work = load_work_list(eid, q)
    monkeypatch.setattr(store_index, "_sql_store", lambda: None)
    slow = (overview.label_counts(eid), load_session(eid, CRIT, "dev.patel", QUEUE))
    assert fast == slow
    assert load_work_list(eid, q).trace_ids == fast_work.trace_ids
    (counts,) = fast[0]
    assert counts.per_reviewer == {"dev.patel": 23, "maria.chen": 63}
    assert fast[1].total == 84 and fast[1].done_count == 23


@pytest.mark.parametrize("text", ["refund", "REFUND", "order", "_", "nothing like it"])
def test_text_search_matches_mlflows_filter(pg_demo, monkeypatch, text: str) -> None:
    eid = pg_demo
    fast = _search(eid, text)
    monkeypatch.setattr(store_index, "_sql_store", lambda: None)
    assert fast == _search(eid, text)
    if text == "refund":
        assert len(fast) > 7


def test_edits_keep_both_paths_equal(pg_demo) -> None:
    """Relabel, a judge verdict of the same name, a new reviewer, withdrawals (last: edits)."""
    eid = pg_demo
    crit = get_criterion(eid, CRIT)
    api_ids = store_index.experiment_trace_ids(eid)
    assert api_ids is not None
    maria = _api_labeled(eid, "maria.chen")
    unlabeled = next(t for t in api_ids if t not in maria)
    labeled = sorted(maria)[0]
    log_judge_verdict(unlabeled, True, source_id="support_quality/v1")
    set_label(labeled, crit, "maria.chen", False, "relabel")
    set_label(unlabeled, crit, "new.reviewer", True)
    assert store_index.human_labeled_ids(eid, CRIT, "maria.chen") == _api_labeled(eid, "maria.chen")
    assert store_index.human_labeled_ids(eid, CRIT, "new.reviewer") == {unlabeled}
    assert delete_label(labeled, CRIT, "maria.chen")
    assert labeled in (store_index.human_labeled_ids(eid, CRIT, "maria.chen") or set())
    assert delete_label(unlabeled, CRIT, "new.reviewer")
    assert store_index.human_labeled_ids(eid, CRIT, "new.reviewer") == set()
    (counts,) = overview.label_counts(eid)
    assert counts.judged_traces == 1


def test_through_an_mlflow_server_the_api_path_answers(
    pg_mlflow_server: str, tmp_path: Path, monkeypatch
) -> None:
    """REST store: no fast path (None everywhere) and the fallback still answers."""
    _point_at(pg_mlflow_server, tmp_path, monkeypatch)
    eid = seed_demo().experiment_id
    assert not store_index.available()
    q = get_queue(eid, QUEUE)
    assert store_index.experiment_trace_ids(eid) is None
    assert store_index.queue_item_ids(q.queue_id) is None
    assert store_index.queue_item_statuses(q.queue_id, []) is None
    assert store_index.experiment_trace_stamp(eid) is None
    assert store_index.queue_stamp(q.queue_id) is None
    assert store_index.text_matching_trace_ids(eid, "refund") is None
    assert store_index.valid_feedback_keys(eid) is None
    assert store_index.human_reviewers(eid) is None
    assert store_index.human_labeled_ids(eid, CRIT, "dev.patel") is None
    work = load_work_list(eid, q)
    assert len(work) == 84
    assert labeled_ids(eid, CRIT, "dev.patel", within=work.index) == _api_labeled(eid, "dev.patel")
    assert len(_search(eid, "refund")) > 7
    (counts,) = overview.label_counts(eid)
    assert counts.per_reviewer == {"dev.patel": 23, "maria.chen": 63}
    mlflow.set_tracking_uri("")
