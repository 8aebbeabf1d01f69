"""The Traces page through AppTest on the demo store: the table's columns, selection into a
queue, and an import that creates the criteria it names."""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.labeling.criteria import create_criterion, list_criteria
from core.labeling.labels import set_label
from core.labeling.queues import add_traces, create_queue, get_queue, list_queues, queue_items
from core.labeling.traces import all_trace_ids, count_traces
from tests.support.judges import log_judge_verdict

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
CRIT = "support_quality"


def _page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["shell_reviewer"] = "maria.chen"
    return at.switch_page("app_pages/traces.py").run()


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _table(at: AppTest):
    return at.dataframe[0].value


def _select(at: AppTest, rows: list[int]) -> AppTest:
    gen = at.session_state["traces_gen"]
    at.session_state[f"traces_table_{gen}"] = {"selection": {"rows": rows, "columns": []}}
    return at.run()


def test_table_has_text_label_reviewer_judge_and_link_columns_with_full_ids(demo_store):
    ids = all_trace_ids(demo_store)
    log_judge_verdict(ids[0], False, source_id=f"{CRIT}/v1")
    at = _page()
    _ok(at)
    df = _table(at)
    assert {"trace", "open", "request", "response", "label", "reviewers", "judge"} <= set(
        df.columns
    )
    assert list(df["trace"]) == ids[:25]  # whole ids, never cut
    assert list(df["open"]) == [f"label?trace={t}" for t in ids[:25]]
    assert all(r and not r.lstrip().startswith("{") for r in df["response"])
    assert all(r and not r.lstrip().startswith("{") for r in df["request"])
    assert df["judge"].iloc[0] == "Fail"
    labeled = df[df["reviewers"] != ""]
    assert len(labeled) and set(labeled["label"]) <= {"Pass", "Fail"}
    assert any("," in r for r in labeled["reviewers"])  # several reviewers listed


def test_the_criterion_selector_picks_the_label_columns(demo_store):
    tone = create_criterion(demo_store, "tone", "categorical", "Tone?", options=["warm", "cold"])
    first = all_trace_ids(demo_store)[0]
    set_label(first, tone, "ann", "warm")
    at = _page()
    at.selectbox(key="traces_criterion").set_value("tone").run()
    _ok(at)
    df = _table(at)
    assert (df["label"].iloc[0], df["reviewers"].iloc[0]) == ("warm", "ann")
    assert set(df["label"].iloc[1:]) == {""}


def test_selected_rows_become_a_new_queue(demo_store):
    at = _page()
    ids = list(_table(at)["trace"])
    at = _select(at, [0, 2, 5])
    _ok(at)
    assert at.button(key="traces_sel_create").label == "Create queue from selection"
    at.text_input(key="traces_sel_name").set_value("picked")
    at.multiselect(key="traces_sel_reviewers").set_value(["dev.patel", "maria.chen"])
    at.button(key="traces_sel_create").click().run()
    _ok(at)
    assert "Created queue picked with 3 traces" in at.success[0].value
    q = get_queue(demo_store, "picked")
    assert q.criteria == (CRIT,) and set(q.reviewers) == {"dev.patel", "maria.chen"}
    assert {i.trace_id for i in queue_items(q)} == {ids[0], ids[2], ids[5]}


def test_a_queue_from_selection_without_reviewers_or_name_writes_nothing(demo_store):
    before = [q.name for q in list_queues(demo_store)]
    at = _select(_page(), [0, 1])
    at.text_input(key="traces_sel_name").set_value("nobody")
    at.button(key="traces_sel_create").click().run()
    assert "at least one reviewer" in at.error[0].value
    at.text_input(key="traces_sel_name").set_value("")
    at.multiselect(key="traces_sel_reviewers").set_value(["dev.patel"])
    at.button(key="traces_sel_create").click().run()
    assert "Name the new queue" in at.error[0].value
    at.text_input(key="traces_sel_name").set_value("support-review")  # taken
    at.button(key="traces_sel_create").click().run()
    assert "already exists" in at.error[0].value
    assert [q.name for q in list_queues(demo_store)] == before


def test_selected_rows_are_added_to_an_existing_queue(demo_store):
    q = create_queue(demo_store, "later", [CRIT], ["ann"])
    add_traces(q, [all_trace_ids(demo_store)[-1]])
    at = _page()
    ids = list(_table(at)["trace"])
    at = _select(at, [3, 4])
    at.selectbox(key="traces_sel_queue").set_value("later")
    at.button(key="traces_sel_add").click().run()
    _ok(at)
    assert at.success[0].value == "Added 2 traces to queue later."
    after = {i.trace_id for i in queue_items(q)}
    assert after == {all_trace_ids(demo_store)[-1], ids[3], ids[4]}


def _file(records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


TONE_FILE = _file(
    {
        "id": f"tone-{i}",
        "inputs": f"q{i}",
        "outputs": f"a{i}",
        "labels": [{"criterion": "tone", "value": v, "reviewer": "ann"}],
    }
    for i, v in enumerate(["warm", "cold", "neutral"])
)


def test_import_offers_to_create_a_missing_criterion_and_creates_it_when_ticked(demo_store):
    at = _page()
    at.file_uploader(key="traces_upload").set_value(("tone.jsonl", TONE_FILE, "text/plain"))
    at.run()
    assert not at.exception
    crits = next(d.value for d in at.dataframe if "kind" in d.value.columns)
    assert list(crits["criterion"]) == ["tone"]
    assert crits["kind"].iloc[0] == "categorical"
    assert crits["options / range"].iloc[0] == "options: warm, cold, neutral"
    assert crits["labels"].iloc[0] == 3
    box = at.checkbox(key="traces_create_criteria")
    assert box.label == "Create missing criteria" and box.value is False
    assert at.button(key="traces_import").disabled  # refused until ticked

    box.check().run()
    assert not at.exception
    assert not at.button(key="traces_import").disabled
    at.button(key="traces_import").click().run()
    _ok(at)
    assert "Created criteria tone" in at.success[0].value
    tone = next(c for c in list_criteria(demo_store) if c.name == "tone")
    assert tone.options == ("warm", "cold", "neutral")
    assert count_traces(demo_store) == 87


def test_import_refuses_too_many_categories_with_a_clear_message(demo_store):
    many = _file(
        {
            "inputs": "q",
            "outputs": "a",
            "labels": [{"criterion": "topic", "value": f"t{i}", "reviewer": "ann"}],
        }
        for i in range(30)
    )
    at = _page()
    at.file_uploader(key="traces_upload").set_value(("many.jsonl", many, "text/plain"))
    at.run()
    assert any("at most 20" in e.value for e in at.error)
    assert at.checkbox(key="traces_create_criteria").disabled
    assert at.button(key="traces_import").disabled
    assert "topic" not in {c.name for c in list_criteria(demo_store)}


def test_import_into_a_new_queue_needs_reviewers_then_fills_it(demo_store):
    plain = _file({"id": f"p{i}", "inputs": f"q{i}", "outputs": f"a{i}"} for i in range(2))
    at = _page()
    at.file_uploader(key="traces_upload").set_value(("p.jsonl", plain, "text/plain"))
    at.run()
    at.selectbox(key="traces_import_queue").set_value("(new queue)").run()
    at.text_input(key="traces_import_queue_name").set_value("imported")
    at.button(key="traces_import").click().run()
    assert "at least one reviewer" in at.error[0].value
    assert count_traces(demo_store) == 84  # nothing written
    at.multiselect(key="traces_import_reviewers").set_value(["dev.patel"])
    at.button(key="traces_import").click().run()
    _ok(at)
    assert "Put 2 traces into queue imported." in at.success[0].value
    q = get_queue(demo_store, "imported")
    assert q.reviewers == ("dev.patel",) and len(queue_items(q)) == 2
