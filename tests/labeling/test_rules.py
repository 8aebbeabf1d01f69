"""Label rules (core/labeling/rules.py): parsing, defaults, bad tags, queue overrides."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from core.errors import ValidationError
from core.labeling.rules import (
    CRITERION_TAG_PREFIX,
    QUEUE_TAG_PREFIX,
    RATIONALE_POLICIES,
    LabelRules,
    QueueRules,
    check_policy,
    criterion_rules,
    effective_rules,
    parse_queue_rules,
    parse_rules,
    queue_rules,
    set_criterion_rules,
    set_queue_rules,
)


def test_defaults_are_blind_with_rationale_on_human_disagreement():
    assert LabelRules() == LabelRules("disagree_humans", True, None)
    assert QueueRules() == QueueRules(None, None)
    assert RATIONALE_POLICIES == ("always", "disagree_humans", "optional")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, LabelRules()),
        ("", LabelRules()),
        ('{"rationale_policy": "always"}', LabelRules("always", True, None)),
        ('{"blind": false, "min_reviewer_kappa": 0.4}', LabelRules("disagree_humans", False, 0.4)),
        (
            '{"rationale_policy": "optional", "blind": true, "min_reviewer_kappa": null}',
            LabelRules("optional", True, None),
        ),
        ('{"min_reviewer_kappa": "0.5"}', LabelRules(min_reviewer_kappa=0.5)),
    ],
)
def test_parse_rules(raw, expected):
    assert parse_rules(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        "[1, 2]",
        '"always"',
        '{"rationale_policy": "never"}',  # the old per-reviewer "never" is gone
        '{"min_reviewer_kappa": 3}',
        '{"min_reviewer_kappa": "high"}',
    ],
)
def test_unreadable_tags_fall_back_to_defaults(raw):
    assert parse_rules(raw) == LabelRules()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, QueueRules()),
        ('{"rationale_policy": "always"}', QueueRules("always", None)),
        ('{"blind": false}', QueueRules(None, False)),
        ('{"rationale_policy": null, "blind": null}', QueueRules()),
        ('{"rationale_policy": "sometimes"}', QueueRules()),
        ("nope", QueueRules()),
    ],
)
def test_parse_queue_rules(raw, expected):
    assert parse_queue_rules(raw) == expected


def test_check_policy_lists_the_policies():
    assert check_policy("optional") == "optional"
    with pytest.raises(ValidationError, match="always, disagree_humans, optional"):
        check_policy("never")


def test_set_and_read_criterion_rules_as_an_experiment_tag(experiment):
    eid = experiment.experiment_id
    assert criterion_rules(eid, "quality") == LabelRules()
    rules = set_criterion_rules(eid, "quality", rationale_policy="always", min_reviewer_kappa=0.6)
    assert rules == LabelRules("always", True, 0.6)
    raw = MlflowClient().get_experiment(eid).tags[CRITERION_TAG_PREFIX + "quality"]
    assert json.loads(raw) == {
        "rationale_policy": "always",
        "blind": True,
        "min_reviewer_kappa": 0.6,
    }
    # Only what is given changes; "keep" keeps the kappa, None removes it.
    assert set_criterion_rules(eid, "quality", blind=False) == LabelRules("always", False, 0.6)
    assert set_criterion_rules(eid, "quality", min_reviewer_kappa=None).min_reviewer_kappa is None
    assert criterion_rules(eid, "quality") == LabelRules("always", False, None)
    assert criterion_rules(eid, "other") == LabelRules()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rationale_policy": "never"}, "Unknown rationale policy"),
        ({"min_reviewer_kappa": 1.5}, "between -1 and 1"),
        ({"min_reviewer_kappa": "abc"}, "must be a number"),
    ],
)
def test_bad_rules_write_nothing(experiment, kwargs, message):
    eid = experiment.experiment_id
    set_criterion_rules(eid, "quality", rationale_policy="optional")
    with pytest.raises(ValidationError, match=message):
        set_criterion_rules(eid, "quality", **kwargs)
    assert criterion_rules(eid, "quality") == LabelRules("optional", True, None)


def test_queue_overrides_win_where_set(experiment):
    eid = experiment.experiment_id
    set_criterion_rules(eid, "quality", rationale_policy="optional", blind=True)
    assert effective_rules(eid, "quality", "q") == LabelRules("optional", True, None)
    assert set_queue_rules(eid, "q", blind=False) == QueueRules(None, False)
    assert effective_rules(eid, "quality", "q") == LabelRules("optional", False, None)
    assert effective_rules(eid, "quality") == LabelRules("optional", True, None)
    set_queue_rules(eid, "q", rationale_policy="always")  # replaces the whole override
    assert queue_rules(eid, "q") == QueueRules("always", None)
    assert effective_rules(eid, "quality", "q") == LabelRules("always", True, None)
    with pytest.raises(ValidationError, match="Unknown rationale policy"):
        set_queue_rules(eid, "q", rationale_policy="never")
    assert queue_rules(eid, "q") == QueueRules("always", None)
    raw = MlflowClient().get_experiment(eid).tags[QUEUE_TAG_PREFIX + "q"]
    assert json.loads(raw) == {"rationale_policy": "always", "blind": None}


def test_a_hand_edited_bad_tag_does_not_break_labeling(experiment):
    eid = experiment.experiment_id
    MlflowClient().set_experiment_tag(eid, CRITERION_TAG_PREFIX + "quality", "{oops")
    MlflowClient().set_experiment_tag(eid, QUEUE_TAG_PREFIX + "q", '{"blind": "yes"}')
    rules = effective_rules(eid, "quality", "q")
    assert rules.rationale_policy == "disagree_humans" and rules.blind is True
