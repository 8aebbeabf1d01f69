"""The Traces table's rows (core/views/traces.py), built without a browser."""

from __future__ import annotations

import json
import time

import pytest

from core.labeling.consolidation import consolidate
from core.labeling.criteria import display_value, get_criterion
from core.labeling.labels import current_labels, set_label
from core.labeling.traces import all_trace_ids, list_traces
from core.store import index as store_index
from core.views import traces as tv
from tests.support.judges import log_judge_verdict

CRIT = "support_quality"


def _all(eid, crit=None, **filters) -> list[tv.TraceTableRow]:
    rows: list[tv.TraceTableRow] = []
    token = None
    while True:
        page = tv.trace_table(eid, crit, page_size=10, page_token=token, **filters)
        rows.extend(page.rows)
        token = page.next_page_token
        if token is None:
            return rows


# ---- text ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preview", "text"),
    [
        ('{"response": "Yes, within 30 days."}', "Yes, within 30 days."),
        ('{"question": "Can I \\"return\\" it?"}', 'Can I "return" it?'),
        # MLflow cut it at its preview length: the first field's text, as far as it goes.
        ('{"response": "A long answer that was cu', "A long answer that was cu"),
        (
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": "hi"},
                        {"role": "assistant", "content": "hello"},
                    ]
                }
            ),
            "hello",
        ),
        (
            json.dumps({"choices": [{"message": {"role": "assistant", "content": "done"}}]}),
            "done",
        ),
        (json.dumps({"question": "q?", "locale": "en"}), "question: q?\nlocale: en"),
        ("plain words", "plain words"),
        ("", ""),
        (None, ""),
    ],
)
def test_previews_read_as_text_not_json(preview, text):
    assert tv.preview_as_text(preview) == text


def test_link_opens_the_trace_in_label():
    assert tv.label_link("tr-abc") == "label?trace=tr-abc"
    assert tv.label_link("a b&c") == "label?trace=a%20b%26c"


# ---- rows on the demo store ------------------------------------------------------------


def test_rows_carry_full_ids_text_consolidated_label_reviewers_and_link(demo_store):
    crit = get_criterion(demo_store, CRIT)
    page = tv.trace_table(demo_store, crit, page_size=25)
    assert len(page.rows) == 25 and page.total == 84
    ids = all_trace_ids(demo_store)
    assert page.trace_ids == ids[:25]
    chosen = consolidate(current_labels(demo_store, CRIT))
    by_trace: dict[str, list[str]] = {}
    for lab in current_labels(demo_store, CRIT):
        by_trace.setdefault(lab.trace_id, []).append(lab.reviewer)
    for row in page.rows:
        assert row.trace_id in ids  # the whole id, as MLflow has it
        assert row.link == f"label?trace={row.trace_id}"
        assert row.response and not row.response.lstrip().startswith("{")
        assert row.request and not row.request.lstrip().startswith("{")
        want = chosen.get(row.trace_id)
        assert row.label == (display_value(crit, want.value) if want else "")
        assert row.reviewers == ", ".join(sorted(by_trace.get(row.trace_id, [])))
    table = page.table()
    assert list(table[0]) == [
        "trace",
        "open",
        "label",
        "reviewers",
        "judge",
        "request",
        "response",
        "time",
        "labels",
        "judge by",
    ]


def test_the_label_follows_the_consolidation_across_the_whole_criterion(demo_store):
    """A tie on a trace goes to the reviewer with most labels overall, not on the page."""
    crit = get_criterion(demo_store, CRIT)
    labels = current_labels(demo_store, CRIT)
    counts: dict[str, int] = {}
    for lab in labels:
        counts[lab.reviewer] = counts.get(lab.reviewer, 0) + 1
    busiest = max(counts, key=lambda r: (counts[r], r))
    # A trace only the busiest labeled; "aaron" (first by name, so a count over the page
    # alone would pick him) disagrees: a 1-1 tie.
    target = next(
        lab
        for lab in labels
        if [x.reviewer for x in labels if x.trace_id == lab.trace_id] == [busiest]
    )
    set_label(target.trace_id, crit, "aaron", not target.value)
    ids = all_trace_ids(demo_store)
    pos = ids.index(target.trace_id)
    page = tv.trace_table(demo_store, crit, page_size=1, page_token=tv._token(pos))
    (row,) = page.rows
    assert row.trace_id == target.trace_id
    assert row.label == display_value(crit, target.value)
    assert row.reviewers == ", ".join(sorted([busiest, "aaron"]))


def test_judge_column_shows_the_latest_valid_llm_judge_verdict(demo_store):
    crit = get_criterion(demo_store, CRIT)
    first = all_trace_ids(demo_store)[0]
    log_judge_verdict(first, True, source_id=f"{CRIT}/v1")
    time.sleep(0.01)
    log_judge_verdict(first, False, source_id=f"{CRIT}/v2")
    time.sleep(0.01)
    log_judge_verdict(first, "not a verdict", source_id=f"{CRIT}/v3")  # ignored: bad value
    row = tv.trace_table(demo_store, crit, page_size=1).rows[0]
    assert (row.judge, row.judge_source) == ("Fail", f"{CRIT}/v2")
    other = tv.trace_table(demo_store, crit, page_size=2).rows[1]
    assert other.judge == ""


def test_without_a_criterion_no_label_columns_are_filled(demo_store):
    row = tv.trace_table(demo_store, None, page_size=1).rows[0]
    assert (row.label, row.reviewers, row.judge) == ("", "", "")


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"labeled": True},
        {"labeled": False},
        {"labeled": True, "reviewer": "maria.chen"},
        {"value": "Pass"},
        {"value": "fail", "reviewer": "dev.patel"},
        {"text": "merino"},
        {"text": "merino", "labeled": False},
    ],
)
def test_filters_and_paging_match_list_traces(demo_store, filters):
    crit = get_criterion(demo_store, CRIT)
    got = [r.trace_id for r in _all(demo_store, crit, **filters)]
    want: list[str] = []
    token = None
    while True:
        page = list_traces(demo_store, criterion=CRIT, page_size=50, page_token=token, **filters)
        want.extend(r.trace_id for r in page.rows)
        token = page.next_page_token
        if token is None:
            break
    assert got == want and got


def test_without_a_sql_store_the_fallback_gives_the_same_rows(demo_store, monkeypatch):
    crit = get_criterion(demo_store, CRIT)
    fast = tv.trace_table(demo_store, crit, labeled=True, page_size=10)
    monkeypatch.setattr(store_index, "experiment_trace_ids", lambda *a, **k: None)
    monkeypatch.setattr(store_index, "valid_feedback_keys", lambda *a, **k: None)
    slow = tv.trace_table(demo_store, crit, labeled=True, page_size=10)
    assert [r.trace_id for r in slow.rows] == [r.trace_id for r in fast.rows]
    assert [r.label for r in slow.rows] == [r.label for r in fast.rows]


def test_bad_requests_are_refused(demo_store):
    from core.errors import ValidationError

    with pytest.raises(ValidationError, match="needs a criterion"):
        tv.trace_table(demo_store, None, labeled=True)
    with pytest.raises(ValidationError, match="page token"):
        tv.trace_table(demo_store, None, page_token="nonsense")
    with pytest.raises(ValidationError, match="page_size"):
        tv.trace_table(demo_store, None, page_size=0)


def test_label_keys_read_once_give_the_same_page(demo_store):
    crit = get_criterion(demo_store, CRIT)
    keys = tv.label_keys_of(demo_store, CRIT)
    assert keys and all(r for _, r in keys)
    shared = tv.trace_table(demo_store, crit, labeled=False, page_size=10, label_keys=keys)
    own = tv.trace_table(demo_store, crit, labeled=False, page_size=10)
    assert shared == own
