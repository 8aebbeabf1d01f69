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
