"""The Label page's shared caches: work lists reused until their membership changes, and a
reviewer's done-set updated in place by their own submits, re-read after its TTL."""

from __future__ import annotations

from app.components import data
from core.labeling.criteria import get_criterion
from core.labeling.labels import set_label
from core.labeling.queues import add_traces, get_queue
from core.store.index import experiment_trace_ids

CRIT = "support_quality"


def test_done_set_counts_own_submits_and_rereads_others_after_its_ttl(demo_store):
    done = data.DoneSet(ttl=3600)
    first = done.get(demo_store, CRIT, "dev.patel")
    assert len(first) == 23
    other = next(t for t in experiment_trace_ids(demo_store) if t not in first)
    # Written by another process (the CLI, another server): not seen until the TTL lapses.
    set_label(other, get_criterion(demo_store, CRIT), "dev.patel", True)
    assert done.get(demo_store, CRIT, "dev.patel") == first
    done.add("own-submit")
    assert "own-submit" in done.get(demo_store, CRIT, "dev.patel")
    done.ttl = 0
    again = done.get(demo_store, CRIT, "dev.patel")
    assert other in again and "own-submit" not in again and len(again) == 24


def test_session_shares_the_work_list_until_the_queue_changes(demo_store, tmp_path):
    s1 = data.session(demo_store, CRIT, "dev.patel", "support-review")
    s2 = data.session(demo_store, CRIT, "dev.patel", "support-review")
    assert s1.trace_ids is s2.trace_ids  # one shared list, not a copy per rerun
    data.after_label(s1.trace_ids[0], demo_store, CRIT, "dev.patel")
    assert s1.trace_ids[0] in data.session(demo_store, CRIT, "dev.patel", "support-review").done

    from core.io.importer import import_file

    late = tmp_path / "late.jsonl"
    late.write_text('{"id": "late-1", "inputs": "hi", "outputs": "hello"}\n')
    (new_id,) = import_file(late, "alignboard-demo").trace_ids
    add_traces(get_queue(demo_store, "support-review"), [new_id])
    data._work_list_stamp.clear()  # its 5 s TTL, lapsed
    s3 = data.session(demo_store, CRIT, "dev.patel", "support-review")
    assert s3.total == 85 and s3.trace_ids[-1] == new_id
