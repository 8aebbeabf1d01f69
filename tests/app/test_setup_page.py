"""The Setup page through AppTest on the demo store: every form, good and bad input.

What a form wrote is read back through MLflow's own APIs (label schemas, review queues,
experiment tags); a refused form must leave all of them as they were.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.genai import label_schemas as ls
from mlflow.genai import review_queues as rq
from streamlit.testing.v1 import AppTest

from core.labeling.criteria import get_criterion, list_criteria
from core.labeling.flags import set_flag
from core.labeling.queues import get_queue, list_queues, queue_items
from core.labeling.rules import LabelRules, QueueRules, criterion_rules, queue_rules
from core.labeling.traces import all_trace_ids

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
CRIT = "support_quality"
QUEUE = "support-review"


def _page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["shell_reviewer"] = "lead"
    at = at.switch_page("app_pages/setup.py").run()
    assert not at.exception, at.exception
    return at


def _submit(at: AppTest, label: str) -> AppTest:
    button = next(b for b in at.button if b.label == label)
    at = button.click().run()
    assert not at.exception, at.exception
    return at


def _errors(at: AppTest) -> list[str]:
    # The page escapes markdown in messages (they quote what people typed): read them back.
    return [e.value.replace("\\", "") for e in at.error]


def _successes(at: AppTest) -> list[str]:
    return [s.value.replace("\\", "") for s in at.success]


def _fill(at: AppTest, **values) -> None:
    for key, value in values.items():
        _widget(at, key).set_value(value)


def _widget(at: AppTest, key: str):
    for kind in ("text_input", "text_area", "selectbox", "multiselect", "radio", "checkbox"):
        found = [w for w in getattr(at, kind) if w.key == key]
        if found:
            return found[0]
    raise KeyError(key)


def _table(at: AppTest, column: str):
    """The first table with ``column`` (AppTest does not expose a dataframe's key)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _schemas(eid: str) -> dict[str, object]:
    return {s.name: (s.input, s.instruction) for s in ls.list_label_schemas(eid)}


# ---- criteria ------------------------------------------------------------------------------


def test_page_shows_the_three_sections(demo_store):
    at = _page()
    assert [t.label for t in at.tabs] == ["Criteria", "Queues", "Team progress"]
    progress = _table(at, "queue complete in MLflow")
    assert set(progress["reviewer"]) == {"maria.chen", "dev.patel"}
    assert set(progress["queue complete in MLflow"]) == {"23 / 84"}


@pytest.mark.parametrize(
    ("fields", "check"),
    [
        (
            {"setup_new_name": "polite", "setup_new_kind": "pass_fail",
             "setup_new_pos": "Polite", "setup_new_neg": "Rude",
             "setup_new_instructions": "Is {{ outputs }} polite?"},
            lambda s: (s.input.positive_label, s.input.negative_label) == ("Polite", "Rude"),
        ),
        (
            {"setup_new_name": "tone", "setup_new_kind": "categorical",
             "setup_new_options": "warm\nneutral, curt",
             "setup_new_instructions": "The tone of {{ outputs }}"},
            lambda s: s.input.options == ["warm", "neutral", "curt"],
        ),
        (
            {"setup_new_name": "stars", "setup_new_kind": "numeric", "setup_new_min": "1",
             "setup_new_max": "5", "setup_new_instructions": "Rate {{ outputs }} 1-5"},
            lambda s: (s.input.min_value, s.input.max_value) == (1.0, 5.0),
        ),
    ],
)  # fmt: skip
def test_create_a_criterion_of_each_kind(demo_store, fields, check):
    at = _page()
    _fill(at, **fields)
    at = _submit(at, "Create criterion")
    assert not _errors(at)
    assert _successes(at)[0].startswith("Created criterion")
    schema = ls.get_label_schema(fields["setup_new_name"], experiment_id=demo_store)
    assert check(schema)
    assert schema.instruction == fields["setup_new_instructions"]
    # The new criterion is listed and selected for editing.
    names = list(_table(at, "instructions")["name"])
    assert fields["setup_new_name"] in names
    assert at.selectbox(key="setup_edit_name").value == fields["setup_new_name"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"setup_new_name": CRIT}, "already exists"),
        ({"setup_new_name": "has space"}, "Invalid criterion name"),
        ({"setup_new_kind": "categorical", "setup_new_options": ""}, "at least two"),
        ({"setup_new_kind": "categorical", "setup_new_options": "a, A"}, "must differ"),
        ({"setup_new_kind": "numeric", "setup_new_min": "5", "setup_new_max": "1"}, "below"),
        ({"setup_new_kind": "numeric", "setup_new_min": "5", "setup_new_max": "5"}, "below"),
        ({"setup_new_kind": "numeric", "setup_new_min": "low"}, "Minimum must be a number"),
        ({"setup_new_instructions": "  "}, "cannot be empty"),
        ({"setup_new_instructions": "Judge {{ answer }}"}, "Unknown template variable"),
        ({"setup_new_pos": "Yes", "setup_new_neg": "yes"}, "two different"),
    ],
)
def test_bad_criteria_are_refused_and_nothing_is_written(demo_store, fields, message):
    before = _schemas(demo_store)
    at = _page()
    _fill(at, **{"setup_new_name": "fresh", "setup_new_instructions": "Is it ok?", **fields})
    at = _submit(at, "Create criterion")
    assert any(message in e for e in _errors(at)), _errors(at)
    assert _schemas(demo_store) == before


def test_edit_a_criterion_in_place(demo_store):
    old = get_criterion(demo_store, CRIT)
    at = _page()
    assert at.selectbox(key="setup_edit_name").value == CRIT
    assert at.text_area(key="setup_edit_instructions").value == old.instructions  # prefilled
    _fill(at, setup_edit_instructions="Is {{ outputs }} a correct, polite reply to {{ inputs }}?")
    _fill(at, setup_edit_pos="Good", setup_edit_neg="Bad")
    at = _submit(at, "Save criterion")
    assert not _errors(at) and _successes(at) == [f"Saved criterion {CRIT}."]
    new = get_criterion(demo_store, CRIT)
    assert new.schema_id == old.schema_id
    assert (new.positive_label, new.negative_label) == ("Good", "Bad")
    assert ls.get_label_schema(CRIT, experiment_id=demo_store).instruction.startswith(
        "Is {{ outputs }} a correct"
    )
    assert at.text_input(key="setup_edit_pos").value == "Good"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"setup_edit_kind": "categorical", "setup_edit_options": "a\nb"}, "cannot change"),
        ({"setup_edit_instructions": ""}, "cannot be empty"),
        ({"setup_edit_instructions": "{{ output }}"}, "Unknown template variable"),
    ],
)
def test_refused_edits_write_nothing(demo_store, fields, message):
    before = _schemas(demo_store)
    at = _page()
    _fill(at, **fields)
    at = _submit(at, "Save criterion")
    assert any(message in e for e in _errors(at)), _errors(at)
    assert _schemas(demo_store) == before


def test_removing_a_used_option_is_refused(demo_store):
    from core.labeling.criteria import create_criterion
    from core.labeling.labels import set_label

    tone = create_criterion(demo_store, "tone", "categorical", "Tone?", options=["warm", "curt"])
    set_label(all_trace_ids(demo_store)[0], tone, "ann", "curt", "short")
    at = _page()
    at.selectbox(key="setup_edit_name").set_value("tone").run()
    assert at.text_area(key="setup_edit_options").value == "warm\ncurt"
    _fill(at, setup_edit_options="warm\nneutral")
    at = _submit(at, "Save criterion")
    assert any("'curt' (1 label(s))" in e for e in _errors(at)), _errors(at)
    assert get_criterion(demo_store, "tone").options == ("warm", "curt")
    _fill(at, setup_edit_options="warm\ncurt\nneutral")
    at = _submit(at, "Save criterion")
    assert get_criterion(demo_store, "tone").options == ("warm", "curt", "neutral")


def test_criterion_rules_form(demo_store):
    at = _page()
    assert at.radio(key="setup_rules_policy").value == "disagree_humans"
    assert at.checkbox(key="setup_rules_blind").value is True
    _fill(at, setup_rules_policy="always", setup_rules_blind=False, setup_rules_kappa="0.5")
    at = _submit(at, "Save rules")
    assert not _errors(at)
    assert criterion_rules(demo_store, CRIT) == LabelRules("always", False, 0.5)
    rules_shown = _table(at, "instructions")["rules"].iloc[0]
    assert rules_shown == "rationale always; not blind; min kappa 0.5"
    for bad, message in (("abc", "must be a number"), ("1.5", "between -1 and 1")):
        _fill(at, setup_rules_kappa=bad, setup_rules_policy="optional")
        at = _submit(at, "Save rules")
        assert any(message in e for e in _errors(at)), _errors(at)
        assert criterion_rules(demo_store, CRIT) == LabelRules("always", False, 0.5)
    _fill(at, setup_rules_kappa="")
    at = _submit(at, "Save rules")
    assert criterion_rules(demo_store, CRIT).min_reviewer_kappa is None


# ---- queues --------------------------------------------------------------------------------


def _new_queue(at: AppTest, **fields) -> AppTest:
    _fill(at, **{"setup_q_name": "second-pass", "setup_q_criteria": [CRIT], **fields})
    return _submit(at, "Create queue")


def test_create_a_queue_of_unlabeled_traces_with_reviewers(demo_store):
    from core.labeling.traces import list_traces

    unlabeled = {
        r.trace_id
        for r in list_traces(demo_store, criterion=CRIT, labeled=False, page_size=1000).rows
    }
    at = _page()
    at = _new_queue(
        at, setup_q_reviewers="ana, bo", setup_q_filter="unlabeled", setup_q_unlabeled=CRIT
    )
    assert not _errors(at), _errors(at)
    native = rq.get_review_queue(name="second-pass", experiment_id=demo_store)
    assert native.users == ["ana", "bo"]
    assert {i.item_id for i in rq.list_review_queue_items(native.queue_id)} == unlabeled
    assert at.selectbox(key="setup_queue").value == "second-pass"


def test_create_a_queue_from_pasted_ids_and_a_tag(demo_store):
    ids = all_trace_ids(demo_store)
    at = _page()
    at = _new_queue(at, setup_q_reviewers="ana", setup_q_filter="ids",
                    setup_q_ids=f"{ids[3]}\n{ids[5]}\n")  # fmt: skip
    assert not _errors(at), _errors(at)
    items = queue_items(get_queue(demo_store, "second-pass"))
    assert {i.trace_id for i in items} == {ids[3], ids[5]}
    at = _new_queue(
        at, setup_q_name="returns", setup_q_reviewers="ana", setup_q_filter="tag",
        setup_q_tag="topic=returns",
    )  # fmt: skip
    assert not _errors(at), _errors(at)
    assert len(queue_items(get_queue(demo_store, "returns"))) > 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"setup_q_reviewers": ""}, "no reviewers"),
        ({"setup_q_reviewers": "ana", "setup_q_name": QUEUE}, "already exists"),
        ({"setup_q_reviewers": "ana", "setup_q_name": " "}, "needs a name"),
        ({"setup_q_reviewers": "ana", "setup_q_criteria": []}, "at least one criterion"),
        ({"setup_q_reviewers": "ana", "setup_q_filter": "ids", "setup_q_ids": "tr-nope"},
         "not traces of this experiment"),
        ({"setup_q_reviewers": "ana", "setup_q_filter": "text",
          "setup_q_text": "zzz no such words"}, "selects no trace"),
        ({"setup_q_reviewers": "ana", "setup_q_filter": "tag", "setup_q_tag": "topic"},
         "key=value"),
        ({"setup_q_reviewers": ",".join(f"r{i}" for i in range(11))}, "at most 10"),
    ],
)  # fmt: skip
def test_bad_queues_are_refused_and_nothing_is_written(demo_store, fields, message):
    at = _page()
    at = _new_queue(at, **fields)
    assert any(message in e for e in _errors(at)), _errors(at)
    assert [q.name for q in list_queues(demo_store)] == [QUEUE]


def test_add_and_remove_traces(demo_store):
    from core.labeling.queues import TraceFilter, create_queue_from_filter

    ids = all_trace_ids(demo_store)
    create_queue_from_filter(
        demo_store, "small", [CRIT], ["ana"], TraceFilter("ids", trace_ids=(ids[0],))
    )
    at = _page()
    at.selectbox(key="setup_queue").set_value("small").run()
    _fill(at, setup_add_ids=f"{ids[1]}, {ids[2]}")
    at = _submit(at, "Add traces")
    assert not _errors(at) and "Added 2 traces" in _successes(at)[0]
    assert {i.trace_id for i in queue_items(get_queue(demo_store, "small"))} == set(ids[:3])
    _fill(at, setup_add_ids="tr-nope")
    at = _submit(at, "Add traces")
    assert any("not traces of this experiment" in e for e in _errors(at))
    _fill(at, setup_remove_ids=f"{ids[0]}\n{ids[50]}")  # ids[50] is not in the queue
    at = _submit(at, "Remove traces")
    assert any("not in queue" in e for e in _errors(at))
    assert len(queue_items(get_queue(demo_store, "small"))) == 3
    _fill(at, setup_remove_ids=ids[0])
    at = _submit(at, "Remove traces")
    assert not _errors(at)
    native = rq.get_review_queue(name="small", experiment_id=demo_store)
    assert {i.item_id for i in rq.list_review_queue_items(native.queue_id)} == set(ids[1:3])


def test_assign_and_unassign_reviewers_and_sync(demo_store):
    at = _page()
    assert at.selectbox(key="setup_queue").value == QUEUE
    _fill(at, setup_rev_add="ana")
    at = _submit(at, "Update reviewers")
    assert not _errors(at)
    native = rq.get_review_queue(name=QUEUE, experiment_id=demo_store)
    assert sorted(native.users) == ["ana", "dev.patel", "maria.chen"]
    # ana has labeled nothing: no item is complete any more.
    assert not list(rq.list_review_queue_items(native.queue_id, status="complete"))
    _fill(at, setup_rev_remove=["maria.chen", "dev.patel", "ana"])
    at = _submit(at, "Update reviewers")
    assert any("no reviewers" in e for e in _errors(at))
    assert rq.get_review_queue(name=QUEUE, experiment_id=demo_store).users == native.users
    _fill(at, setup_rev_remove=["ana"])
    at = _submit(at, "Update reviewers")
    assert not _errors(at)
    assert sorted(rq.get_review_queue(name=QUEUE, experiment_id=demo_store).users) == [
        "dev.patel",
        "maria.chen",
    ]
    at = _submit(at, "Sync status to MLflow")
    assert "23 items of support-review are complete" in _successes(at)[0]
    assert len(list(rq.list_review_queue_items(native.queue_id, status="complete"))) == 23


def test_queue_rules_override(demo_store):
    at = _page()
    assert at.selectbox(key="setup_qr_policy").value == "criterion's rule"
    _fill(at, setup_qr_policy="optional", setup_qr_blind="not blind")
    at = _submit(at, "Save queue rules")
    assert not _errors(at)
    assert queue_rules(demo_store, QUEUE) == QueueRules("optional", False)
    _fill(at, setup_qr_policy="criterion's rule")
    at = _submit(at, "Save queue rules")
    assert queue_rules(demo_store, QUEUE) == QueueRules(None, False)


def test_team_progress_counts_flags(demo_store):
    ids = all_trace_ids(demo_store)
    set_flag(ids[0], CRIT, "dev.patel", "broken", "empty reply")
    set_flag(ids[1], CRIT, "dev.patel", "unsure")
    set_flag(ids[1], CRIT, "maria.chen", "unsure")
    at = _page()
    table = _table(at, "queue complete in MLflow")
    flagged = dict(zip(table["reviewer"], table["flagged"], strict=True))
    assert flagged == {"maria.chen": 1, "dev.patel": 2}
    assert set(table["queue flagged"]) == {2}
    done = dict(zip(table["reviewer"], table["done"], strict=True))
    assert done["maria.chen"].endswith("/ 84")
    assert list_criteria(demo_store)  # untouched
