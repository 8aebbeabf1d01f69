"""The Setup page's view: form parsers, rule texts, criteria rows, the team's progress."""

from __future__ import annotations

import pytest

from core.errors import ValidationError
from core.labeling.flags import set_flag
from core.labeling.labels import set_label
from core.labeling.queues import get_queue, sync_done, update_reviewers
from core.labeling.rules import LabelRules, QueueRules, set_criterion_rules, set_queue_rules
from core.labeling.traces import all_trace_ids
from core.views.setup import (
    criteria_rows,
    parse_number,
    parse_options,
    parse_reviewers,
    plain,
    progress_rows,
    queue_progress,
    queue_rules_text,
    rules_text,
    team_progress,
)

CRIT = "support_quality"
QUEUE = "support-review"


def test_parse_options_and_reviewers():
    assert parse_options("warm\nneutral, curt\n\n") == ["warm", "neutral", "curt"]
    assert parse_options(None) == []
    assert parse_reviewers("ann, bob\nann ,") == ["ann", "bob"]
    assert parse_reviewers("") == []


@pytest.mark.parametrize(("text", "expected"), [("", None), ("  ", None), (None, None),
                                                ("3", 3.0), (" -1.5 ", -1.5), (2, 2.0)])  # fmt: skip
def test_parse_number(text, expected):
    assert parse_number(text, "Minimum") == expected


@pytest.mark.parametrize("text", ["low", "nan", "inf", "1,5"])
def test_parse_number_refuses_what_is_not_a_finite_number(text):
    with pytest.raises(ValidationError, match="Minimum must be a"):
        parse_number(text, "Minimum")


def test_plain_shows_markdown_as_typed():
    assert plain("a_b *c* [x](y) <b>") == r"a\_b \*c\* \[x\]\(y\) \<b\>"


def test_rule_texts():
    assert rules_text(LabelRules()) == (
        "rationale when the label disagrees with another reviewer (checked after saving); blind"
    )
    assert (
        rules_text(LabelRules("always", False, 0.6)) == "rationale always; not blind; min kappa 0.6"
    )
    assert queue_rules_text(QueueRules()) == "none (the criteria's rules)"
    assert queue_rules_text(QueueRules("optional", True)) == "rationale optional; blind"


def test_criteria_rows_show_values_and_rules(demo_store):
    set_criterion_rules(demo_store, CRIT, rationale_policy="optional", min_reviewer_kappa=0.4)
    (row,) = criteria_rows(demo_store)
    assert (row.name, row.kind) == (CRIT, "pass/fail")
    assert row.values == "Pass / Fail"
    assert row.rules == "rationale optional; blind; min kappa 0.4"
    assert row.to_dict()["instructions"]


def test_queue_progress_per_reviewer_with_mlflow_status_and_flags(demo_store):
    ids = all_trace_ids(demo_store)
    set_flag(ids[0], CRIT, "dev.patel", "unsure", "hmm")
    set_flag(ids[0], "other_criterion", "dev.patel", "unsure")  # not this queue's criterion
    set_queue_rules(demo_store, QUEUE, blind=False)
    p = queue_progress(get_queue(demo_store, QUEUE))
    assert (p.items, p.complete, p.flagged) == (84, 23, 1)
    assert p.rules == "not blind"
    per = {r.reviewer: (r.done, r.total, r.flagged) for r in p.reviewers}
    assert per["dev.patel"] == (23, 84, 1)
    assert per["maria.chen"][1:] == (84, 0) and per["maria.chen"][0] > 23
    d = p.to_dict()
    assert d["queue"] == QUEUE and d["complete"] == 23 and len(d["reviewers"]) == 2


def test_progress_follows_labels_and_reviewer_changes(demo_store):
    from core.labeling.criteria import get_criterion
    from core.labeling.labels import current_labels

    crit = get_criterion(demo_store, CRIT)
    q = update_reviewers(get_queue(demo_store, QUEUE), add=["ana"])
    p = queue_progress(q)
    assert p.complete == 0  # ana has labeled nothing yet
    assert {r.reviewer: r.done for r in p.reviewers}["ana"] == 0
    # ana labels five traces both demo reviewers labeled: those five are complete again.
    who: dict[str, set[str]] = {}
    for lab in current_labels(demo_store, CRIT):
        who.setdefault(lab.trace_id, set()).add(lab.reviewer)
    both = [t for t in all_trace_ids(demo_store) if who.get(t) == {"maria.chen", "dev.patel"}]
    for t in both[:5]:
        set_label(t, crit, "ana", "pass", "ok")
    assert sync_done(q) == 5
    p = queue_progress(q)
    assert p.complete == 5 and {r.reviewer: r.done for r in p.reviewers}["ana"] == 5
    rows = progress_rows(team_progress(demo_store))
    assert {r["reviewer"] for r in rows} == {"ana", "dev.patel", "maria.chen"}
    assert {r["queue complete in MLflow"] for r in rows} == {"5 / 84"}
