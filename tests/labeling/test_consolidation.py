"""The precedence rule: gold, then majority, then the primary reviewer; gold never votes."""

from __future__ import annotations

from core.labeling.consolidation import (
    consolidate,
    consolidate_values,
    consolidate_with_precedence,
    precedence_counts,
)
from core.labeling.labels import Label


def _lab(trace, reviewer, value, *, gold=False, t=0, rationale=None) -> Label:
    return Label(
        trace_id=trace,
        criterion="c",
        reviewer=reviewer,
        value=value,
        rationale=rationale,
        assessment_id=f"{trace}-{reviewer}-{gold}-{t}",
        created_ms=t,
        updated_ms=t,
        overrides=None,
        adjudication=gold,
    )


def test_each_step_of_the_precedence_rule_and_its_counts():
    labels = [
        # t1: two reviewers disagree, a gold label settles it against the busier reviewer.
        _lab("t1", "ann", True),
        _lab("t1", "bob", False),
        _lab("t1", "lead", False, gold=True, rationale="policy 4.2"),
        # t2: majority of three.
        _lab("t2", "ann", True),
        _lab("t2", "bob", False),
        _lab("t2", "cy", False),
        # t3: a tie: ann has the most reviewer labels, so ann's value wins.
        _lab("t3", "ann", True),
        _lab("t3", "bob", False),
        # t4: one reviewer.
        _lab("t4", "ann", False),
        _lab("t5", "ann", True),
    ]
    chosen = consolidate_with_precedence(labels)
    steps = {t: step for t, (_, step) in chosen.items()}
    assert steps == {
        "t1": "gold",
        "t2": "majority",
        "t3": "primary_tiebreak",
        "t4": "single",
        "t5": "single",
    }
    assert chosen["t1"][0].value is False and chosen["t1"][0].rationale == "policy 4.2"
    assert chosen["t2"][0].value is False
    assert chosen["t3"][0].reviewer == "ann"
    assert consolidate(labels)["t1"].reviewer == "lead"
    assert precedence_counts(s for s in steps.values()) == {
        "gold": 1,
        "majority": 1,
        "primary_tiebreak": 1,
        "single": 2,
    }


def test_gold_labels_never_vote_nor_make_their_author_primary():
    # "lead" wrote many gold labels; without them "bob" and "ann" are level, so the
    # tie on t9 goes to the reviewer first by name (ann), not to the adjudicator.
    labels = [_lab(f"g{i}", "lead", True, gold=True) for i in range(5)]
    labels += [_lab("t9", "ann", True), _lab("t9", "lead", False), _lab("t9", "bob", False)]
    labels += [_lab("t8", "ann", True), _lab("t8", "lead", False)]
    chosen = consolidate_with_precedence(labels)
    assert chosen["t9"][1] == "majority" and chosen["t9"][0].value is False
    # Reviewer counts: ann 2, lead 2 (gold not counted), bob 1: the tie on t8 goes to ann.
    assert chosen["t8"][1] == "primary_tiebreak" and chosen["t8"][0].reviewer == "ann"


def test_the_newest_gold_label_wins_between_two_adjudicators():
    labels = [
        _lab("t1", "ann", True),
        _lab("t1", "bob", False),
        _lab("t1", "lead", True, gold=True, t=10),
        _lab("t1", "chief", False, gold=True, t=20),
    ]
    assert consolidate(labels)["t1"].reviewer == "chief"


def test_consolidate_values_reads_a_gold_marker_on_rows():
    rows = [("t1", "ann", "yes"), ("t1", "bob", "no"), ("t1", "lead", "no", True)]
    assert consolidate_values(rows) == {"t1": "no"}
    # Without the marker the row is a vote like any other (a 2:1 majority here).
    assert consolidate_values([("t1", "ann", "yes"), ("t1", "bob", "yes"), ("t1", "c", "no")]) == {
        "t1": "yes"
    }
