"""Criteria: MLflow label schemas with validation and value normalisation."""

from __future__ import annotations

import pytest
from mlflow.genai import label_schemas as ls

from core.errors import NotFoundError, ValidationError
from core.labeling.criteria import (
    Criterion,
    create_criterion,
    display_value,
    get_criterion,
    list_criteria,
    normalize_value,
    update_criterion,
)

PF = Criterion("correct", "pass_fail", "Right?", positive_label="Good", negative_label="Bad")
CAT = Criterion("tone", "categorical", "Tone?", options=("polite", "neutral", "Rude"))
NUM = Criterion("score", "numeric", "1-5", min_value=1.0, max_value=5.0)


def test_created_criteria_are_mlflow_label_schemas_and_list_back(experiment):
    eid = experiment.experiment_id
    pf = create_criterion(eid, "correct", "pass_fail", "Is the answer right?")
    create_criterion(eid, "tone", "categorical", "Tone?", options=["polite", "rude"])
    create_criterion(eid, "score", "numeric", "Score", min_value=1, max_value=5)

    assert [c.name for c in list_criteria(eid)] == ["correct", "score", "tone"]
    assert get_criterion(eid, "tone").options == ("polite", "rude")
    num = get_criterion(eid, "score")
    assert (num.kind, num.min_value, num.max_value) == ("numeric", 1.0, 5.0)
    schema = ls.get_label_schema("correct", experiment_id=eid)
    assert schema.schema_id == pf.schema_id
    assert schema.instruction == "Is the answer right?"
    assert isinstance(schema.input, ls.InputPassFail)
    assert pf.to_dict()["kind"] == "pass_fail"


def test_unknown_criterion_error_lists_existing_ones(experiment):
    create_criterion(experiment.experiment_id, "correct", "pass_fail", "x")
    with pytest.raises(NotFoundError, match=r"Existing criteria: correct.*criterion create"):
        get_criterion(experiment.experiment_id, "nope")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "has space", "kind": "pass_fail"}, "Invalid criterion name"),
        ({"name": "1abc", "kind": "pass_fail"}, "Invalid criterion name"),
        ({"name": "ok", "kind": "stars"}, "Unknown criterion kind"),
        ({"name": "ok", "kind": "categorical", "options": ["a"]}, "at least two"),
        ({"name": "ok", "kind": "categorical", "options": ["a", "A"]}, "must differ"),
        ({"name": "ok", "kind": "numeric", "min_value": 5, "max_value": 1}, "must be below"),
        (
            {"name": "ok", "kind": "pass_fail", "positive_label": "x", "negative_label": "X"},
            "two different",
        ),
    ],
)
def test_create_rejects_bad_definitions(experiment, kwargs, message):
    with pytest.raises(ValidationError, match=message):
        create_criterion(experiment.experiment_id, instructions="i", **kwargs)
    assert list_criteria(experiment.experiment_id) == []


def test_duplicate_name_is_rejected(experiment):
    create_criterion(experiment.experiment_id, "correct", "pass_fail", "x")
    with pytest.raises(ValidationError, match="already exists"):
        create_criterion(experiment.experiment_id, "correct", "numeric", "y")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        ("true", True),
        ("PASS", True),
        ("yes", True),
        ("Good", True),
        (1, True),
        (False, False),
        ("fail", False),
        ("No", False),
        ("bad", False),
        (0, False),
    ],
)
def test_pass_fail_accepts_common_spellings(raw, expected):
    assert normalize_value(PF, raw) is expected


@pytest.mark.parametrize(
    ("crit", "raw", "expected"),
    [
        (CAT, "polite", "polite"),
        (CAT, " NEUTRAL ", "neutral"),
        (CAT, "rude", "Rude"),
        (NUM, 3, 3.0),
        (NUM, "4.5", 4.5),
        (NUM, 1, 1.0),
        (NUM, 5, 5.0),
    ],
)
def test_categorical_and_numeric_normalise(crit, raw, expected):
    assert normalize_value(crit, raw) == expected


@pytest.mark.parametrize(
    ("crit", "raw", "allowed"),
    [
        (PF, "maybe", "Good or Bad"),
        (PF, 2, "Good or Bad"),
        (CAT, "angry", "'polite', 'neutral', 'Rude'"),
        (NUM, 6, "from 1 to 5"),
        (NUM, "abc", "from 1 to 5"),
        (NUM, True, "from 1 to 5"),
        (NUM, float("nan"), "from 1 to 5"),
    ],
)
def test_invalid_values_say_what_is_allowed(crit, raw, allowed):
    with pytest.raises(ValidationError, match=allowed):
        normalize_value(crit, raw)


def test_display_value():
    assert display_value(PF, True) == "Good"
    assert display_value(PF, False) == "Bad"
    assert display_value(NUM, 4.0) == "4"
    assert display_value(NUM, 4.5) == "4.5"
    assert display_value(CAT, "polite") == "polite"
    assert display_value(CAT, None) == ""


def test_long_instructions_survive_mlflows_1000_character_schema_limit(experiment):
    eid = experiment.experiment_id
    text = "Quote the policy. " * 120  # about 2,200 characters
    crit = create_criterion(eid, "long", "pass_fail", text)
    assert crit.instructions == text.strip()
    assert get_criterion(eid, "long").instructions == text.strip()
    schema = ls.get_label_schema("long", experiment_id=eid)
    assert len(schema.instruction) <= 1000
    assert schema.instruction.endswith("[...]")
    # Edited in MLflow afterwards: the schema wins over the stale long copy.
    ls.update_label_schema(schema.schema_id, instruction="Short now.")
    assert get_criterion(eid, "long").instructions == "Short now."


# ---- template variables, empty instructions ----------------------------------------------


def test_template_variables_match_what_judges_use():
    from core.labeling.criteria import TEMPLATE_VARIABLE_NAMES
    from core.optimization.spec import TEMPLATE_VARIABLES

    assert tuple("{{ " + v + " }}" for v in TEMPLATE_VARIABLE_NAMES) == TEMPLATE_VARIABLES


@pytest.mark.parametrize(
    ("instructions", "message"),
    [
        ("", "Instructions cannot be empty"),
        ("   \n ", "Instructions cannot be empty"),
        ("Is {{ output }} right?", r"Unknown template variable \{\{ output \}\}"),
        ("Judge {{ outputs }} for {{ question }}", r"\{\{ question \}\}.*can only read"),
        ("Judge {{ conversation }}", "conversation"),
        ("Judge {{ }}", "Unknown template variable"),
        ("x" * 20_001, "the limit is 20000"),
    ],
)
def test_bad_instructions_are_refused_and_nothing_is_written(experiment, instructions, message):
    eid = experiment.experiment_id
    with pytest.raises(ValidationError, match=message):
        create_criterion(eid, "correct", "pass_fail", instructions)
    assert list_criteria(eid) == []


def test_known_variables_in_any_spacing_are_accepted(experiment):
    text = "Given {{inputs}} and {{ outputs }}, {{  expectations }} and {{ trace }}: right?"
    assert create_criterion(experiment.experiment_id, "ok", "pass_fail", text).instructions == text


# ---- edit ----------------------------------------------------------------------------------


def _trace() -> str:
    import mlflow

    with mlflow.start_span(name="app") as span:
        span.set_inputs({"q": "hi"})
        span.set_outputs({"a": "hello"})
    mlflow.flush_trace_async_logging()
    return span.trace_id


@pytest.fixture
def labeled(experiment):
    """A categorical and a numeric criterion, each with one label on one trace."""
    import mlflow

    from core.labeling.labels import set_label

    eid = experiment.experiment_id
    mlflow.set_experiment(experiment_id=eid)
    tone = create_criterion(eid, "tone", "categorical", "Tone?", options=["polite", "rude"])
    score = create_criterion(eid, "score", "numeric", "Score?", min_value=1, max_value=5)
    t = _trace()
    set_label(t, tone, "ann", "polite", "nice")
    set_label(t, score, "ann", 4, "good")
    return eid


def test_edit_updates_the_same_label_schema_in_place(experiment):
    eid = experiment.experiment_id
    crit = create_criterion(eid, "correct", "pass_fail", "Is it right?")
    edited = update_criterion(
        eid,
        "correct",
        instructions="Is {{ outputs }} right?",
        positive_label="Right",
        negative_label="Wrong",
    )
    assert edited.schema_id == crit.schema_id and edited.name == "correct"
    schema = ls.get_label_schema("correct", experiment_id=eid)
    assert schema.instruction == "Is {{ outputs }} right?"
    assert (schema.input.positive_label, schema.input.negative_label) == ("Right", "Wrong")
    # Not given: kept.
    again = update_criterion(eid, "correct", instructions="Better: is {{ outputs }} right?")
    assert (again.positive_label, again.negative_label) == ("Right", "Wrong")


def test_edit_options_and_range_keep_what_labels_use(labeled):
    eid = labeled
    tone = update_criterion(eid, "tone", options=["polite", "rude", "neutral"])
    assert tone.options == ("polite", "rude", "neutral")
    assert update_criterion(eid, "tone", options=["polite", "neutral"]).options == (
        "polite",
        "neutral",
    )  # "rude" was not used by any label
    score = update_criterion(eid, "score", min_value=0, max_value=None)
    assert (score.min_value, score.max_value) == (0.0, None)
    assert get_criterion(eid, "score").max_value is None


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("tone", {"options": ["rude", "neutral"]}, r"use option\(s\) 'polite' \(1 label"),
        ("tone", {"kind": "pass_fail"}, "cannot change to pass_fail"),
        ("score", {"max_value": 3}, "fall outside the new range"),
        ("score", {"kind": "categorical", "options": ["a", "b"]}, "Create a new criterion"),
        ("tone", {"options": ["polite"]}, "at least two"),
        ("tone", {"options": ["polite", "Polite"]}, "must differ"),
        ("score", {"min_value": 5, "max_value": 5}, "must be below"),
        ("tone", {"instructions": ""}, "cannot be empty"),
        ("tone", {"instructions": "{{ tone }}?"}, "Unknown template variable"),
    ],
)
def test_edit_refuses_changes_labels_or_rules_forbid_and_writes_nothing(
    labeled, name, kwargs, message
):
    before = get_criterion(labeled, name)
    with pytest.raises(ValidationError, match=message):
        update_criterion(labeled, name, **kwargs)
    assert get_criterion(labeled, name) == before


def test_edit_of_an_unknown_criterion_names_the_existing_ones(experiment):
    create_criterion(experiment.experiment_id, "correct", "pass_fail", "x")
    with pytest.raises(NotFoundError, match="Existing criteria: correct"):
        update_criterion(experiment.experiment_id, "nope", instructions="y")


def test_kind_change_without_labels_recreates_the_schema_and_queues_follow(experiment):
    from mlflow.genai import review_queues as rq

    from core.labeling.queues import create_queue, get_queue

    eid = experiment.experiment_id
    old = create_criterion(eid, "quality", "pass_fail", "Good?")
    create_queue(eid, "q", ["quality"], ["ann"])
    new = update_criterion(eid, "quality", kind="categorical", options=["good", "bad"])
    assert new.kind == "categorical" and new.name == "quality"
    assert [c.name for c in list_criteria(eid)] == ["quality"]
    native = rq.get_review_queue(name="q", experiment_id=eid)
    assert native.schema_ids == [new.schema_id] != [old.schema_id]
    assert get_queue(eid, "q").criteria == ("quality",)


def test_long_instructions_tag_follows_edits(experiment):
    from mlflow import MlflowClient

    from core.labeling.criteria import INSTRUCTIONS_TAG_PREFIX

    eid = experiment.experiment_id
    key = INSTRUCTIONS_TAG_PREFIX + "long"
    create_criterion(eid, "long", "pass_fail", "Short at first.")
    long_text = "Check the order number. " * 100
    assert update_criterion(eid, "long", instructions=long_text).instructions == long_text.strip()
    assert MlflowClient().get_experiment(eid).tags[key] == long_text.strip()
    assert ls.get_label_schema("long", experiment_id=eid).instruction.endswith("[...]")
    assert update_criterion(eid, "long", instructions="Short again.").instructions == (
        "Short again."
    )
    assert key not in MlflowClient().get_experiment(eid).tags
    assert ls.get_label_schema("long", experiment_id=eid).instruction == "Short again."


# ---- CLI -----------------------------------------------------------------------------------


def test_cli_edit_and_rules(experiment, capsys):
    import json

    from core.cli import main

    create_criterion(experiment.experiment_id, "tone", "categorical", "Tone?", options=["a", "b"])
    code = main(
        ["criterion", "edit", "tone", "--experiment", "test", "--options", "a,b,c", "--json"]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["options"] == ["a", "b", "c"]
    code = main(["criterion", "edit", "tone", "--experiment", "test", "--instructions", "{{ x }}"])
    assert code == 2 and "Unknown template variable" in capsys.readouterr().err
    code = main(
        ["criterion", "rules", "tone", "--experiment", "test", "--rationale", "always",
         "--no-blind", "--min-kappa", "0.6", "--json"]
    )  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert out == {
        "criterion": "tone",
        "rationale_policy": "always",
        "blind": False,
        "min_reviewer_kappa": 0.6,
    }
    assert main(["criterion", "rules", "tone", "--experiment", "test", "--no-min-kappa"]) == 0
    assert "minimum reviewer kappa none" in capsys.readouterr().out
    assert main(["criterion", "rules", "tone", "--experiment", "test", "--min-kappa", "2"]) == 2
    assert "between -1 and 1" in capsys.readouterr().err
    assert main(["criterion", "rules", "nope", "--experiment", "test"]) == 2
