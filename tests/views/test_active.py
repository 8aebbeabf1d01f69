"""The "Label next" view on the demo store: rows with reasons as text, notes, the button."""

from __future__ import annotations

import pytest

from core.errors import ValidationError
from core.labeling.active import NO_SIGNAL, fill_queue
from core.views.active import added_message, label_next
from tests.support.judges import log_judge_verdict

CRIT = "support_quality"


def test_without_verdicts_the_view_says_to_score_first(demo_store):
    view = label_next(demo_store, CRIT, "next-up", 5)
    assert len(view.rows) == 5 and view.n_pool == 21 and view.n_with_signal == 0
    assert any("score the unlabeled traces" in note for note in view.notes)
    assert all(r.why == NO_SIGNAL for r in view.rows)
    assert view.button_label == "Add the 5 most informative unlabeled traces to queue next-up"


def test_rows_carry_the_reasons_the_import_id_and_the_text(demo_store):
    pool = [r.trace_id for r in label_next(demo_store, CRIT, "q", 21).rows]
    target = pool[11]
    log_judge_verdict(target, True, source_id=f"{CRIT}/v1")
    log_judge_verdict(target, False, source_id=f"{CRIT}/v2")
    view = label_next(demo_store, CRIT, "q", 3)
    top = view.rows[0]
    assert top.trace_id == target and top.rank == 1
    assert top.why.startswith("support_quality v1 says Pass, v2 says Fail")
    assert top.trace.startswith("nw-")  # the import id a reviewer knows
    assert top.request and not top.request.startswith("{")  # text, not JSON
    assert view.versions == (1, 2) and view.n_with_verdicts == 1
    table = view.table()
    assert table[0]["why"] == top.why and set(table[0]) >= {"rank", "trace", "why", "score"}

    fill_queue(demo_store, CRIT, "q", 2, reviewers=["maria.chen"])
    after = label_next(demo_store, CRIT, "q", 50)
    assert after.n_pool == 19 and after.n_in_queue == 2 and len(after.rows) == 19
    assert target not in {r.trace_id for r in after.rows}
    assert "2 unlabeled traces are in the queue already" in after.summary


def test_messages_and_bad_n(demo_store):
    assert added_message(5, "x") == "Added 5 traces to queue x, most informative first."
    assert "Nothing to add" in added_message(0, "x")
    with pytest.raises(ValidationError):
        label_next(demo_store, CRIT, "x", 0)


def test_the_whole_pool_once_then_cut_to_any_n(demo_store):
    whole = label_next(demo_store, CRIT, "q", None)
    assert len(whole.rows) == 21 and whole.n == 21
    five = whole.top(5)
    assert five.rows == whole.rows[:5] and five.n == 5
    assert five.button_label.startswith("Add the 5 most informative")
    assert label_next(demo_store, CRIT, "q", 5).rows == five.rows
