"""Gold labels: their own chain, refusals that write nothing, and out of reviewer agreement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from core.agreement import reviewer_matrix
from core.errors import ValidationError
from core.io.importer import import_file
from core.labeling.adjudication import adjudicate, disputes, gold_labels, in_disagreement
from core.labeling.criteria import create_criterion
from core.labeling.flags import set_flag
from core.labeling.labels import (
    ADJUDICATION_KEY,
    current_labels,
    get_label,
    label_history,
    set_label,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def disputed(tmp_path, experiment):
    """Three traces: t0 ann pass / lead fail (lead is also a reviewer), t1 both pass,
    t2 only ann."""
    path = tmp_path / "t.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"t{i}", "inputs": f"q{i}", "outputs": f"a{i}"}) + "\n"
            for i in range(3)
        )
    )
    ids = list(import_file(path, experiment.name).trace_ids)
    crit = create_criterion(experiment.experiment_id, "correct", "pass_fail", "Right?")
    set_label(ids[0], crit, "ann", "pass", "looks right")
    set_label(ids[0], crit, "lead", "fail", "wrong refund rule")
    set_label(ids[1], crit, "ann", "pass")
    set_label(ids[1], crit, "lead", "pass")
    set_label(ids[2], crit, "ann", "fail")
    return experiment.experiment_id, crit, ids


def _human(trace_id: str):
    return [a for a in mlflow.get_trace(trace_id).info.assessments if a.name == "correct"]


def test_only_traces_where_reviewers_disagree_are_listed(disputed):
    eid, _, ids = disputed
    (d,) = disputes(eid, "correct")
    assert d.trace_id == ids[0] and not d.resolved
    assert [(lab.reviewer, lab.value, lab.rationale) for lab in d.labels] == [
        ("ann", True, "looks right"),
        ("lead", False, "wrong refund rule"),
    ]


def test_a_gold_label_has_its_own_chain_and_never_overwrites_the_adjudicators_label(disputed):
    eid, crit, ids = disputed
    mine = get_label(ids[0], "correct", "lead")
    gold = adjudicate(ids[0], crit, "lead", "pass", "  ann is right: policy 4.2 allows it ")
    assert gold.adjudication and gold.value is True and gold.reviewer == "lead"
    assert gold.rationale == "ann is right: policy 4.2 allows it"
    # The adjudicator's reviewer label is still current, and still says fail.
    again = get_label(ids[0], "correct", "lead")
    assert again == mine and again.value is False and again.valid
    assert get_label(ids[0], "correct", "lead", adjudication=True) == gold
    # Plain MLflow sees a HUMAN feedback marked as an adjudication.
    stored = next(a for a in _human(ids[0]) if a.assessment_id == gold.assessment_id)
    assert stored.metadata[ADJUDICATION_KEY] == "true"
    assert stored.source.source_id == "lead" and stored.overrides is None
    # Readers of reviewer labels do not see it; gold=True readers do.
    assert all(not lab.adjudication for lab in current_labels(eid, "correct"))
    assert [g.assessment_id for g in gold_labels(eid, "correct")] == [gold.assessment_id]
    # Resolved: it leaves the open list, and shows with its gold when asked.
    assert disputes(eid, "correct") == []
    (d,) = disputes(eid, "correct", include_resolved=True)
    assert d.gold == gold

    # A revision chains onto the gold label only; history keeps both versions.
    revised = adjudicate(ids[0], crit, "lead", "fail", "on reflection, 4.3 forbids it")
    assert revised.overrides == gold.assessment_id
    assert get_label(ids[0], "correct", "lead") == mine
    history = label_history(ids[0], "correct", "lead")
    assert [(h.adjudication, h.valid) for h in history] == [
        (False, True),
        (True, False),
        (True, True),
    ]


@pytest.mark.parametrize(
    ("who", "value", "rationale", "message"),
    [
        ("", "pass", "why", "Say who you are"),
        (None, "pass", "why", "Say who you are"),
        ("lead", None, "why", "Choose the gold value"),
        ("lead", "  ", "why", "Choose the gold value"),
        ("lead", "pass", None, "must say why"),
        ("lead", "pass", "   ", "must say why"),
        ("lead", "maybe", "why", "pass"),  # the criterion's own message on a bad value
    ],
)
def test_bad_adjudications_are_refused_and_write_nothing(disputed, who, value, rationale, message):
    _, crit, ids = disputed
    before = _human(ids[0])
    with pytest.raises(ValidationError, match=message):
        adjudicate(ids[0], crit, who, value, rationale)
    assert _human(ids[0]) == before


@pytest.mark.parametrize("which", [1, 2])
def test_a_trace_without_disagreement_cannot_be_adjudicated(disputed, which):
    _, crit, ids = disputed
    before = _human(ids[which])
    with pytest.raises(ValidationError, match="nothing to adjudicate"):
        adjudicate(ids[which], crit, "lead", "pass", "why")
    assert _human(ids[which]) == before


def test_gold_labels_are_left_out_of_reviewer_agreement(disputed):
    eid, crit, ids = disputed
    adjudicate(ids[0], crit, "chief", "pass", "settled")
    labels = current_labels(eid, "correct", gold=True)
    rows = [(lab.trace_id, lab.reviewer, lab.value, lab.adjudication) for lab in labels]
    matrix = reviewer_matrix(rows)
    assert matrix.reviewers == ("ann", "lead")
    (pair,) = matrix.pairs
    assert pair.n_overlap == 2 and pair.agreement == 0.5
    # The same through a DataFrame with an adjudication column.
    import pandas as pd

    frame = pd.DataFrame(rows, columns=["trace_id", "reviewer", "value", "adjudication"])
    assert reviewer_matrix(frame).reviewers == ("ann", "lead")
    assert in_disagreement(labels)


def _cli(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "core.cli", *args, "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode in (0, 2), out.stderr
    return {"rc": out.returncode, **json.loads(out.stdout.strip().splitlines()[-1])}


def test_cli_lists_disputes_records_gold_refuses_bad_input_and_lists_flags(disputed, experiment):
    _, _, ids = disputed
    listed = _cli("adjudicate", "--experiment", "test", "--criterion", "correct")
    assert [d["trace_id"] for d in listed["disputes"]] == [ids[0]]
    refused = _cli(
        "adjudicate", "--experiment", "test", "--criterion", "correct", "--trace", ids[0],
        "--value", "pass", "--as", "lead",
    )  # fmt: skip
    assert refused["rc"] == 2 and "must say why" in refused["message"]
    done = _cli(
        "adjudicate", "--experiment", "test", "--criterion", "correct", "--trace", ids[0],
        "--value", "pass", "--rationale", "policy 4.2", "--as", "lead",
    )  # fmt: skip
    assert done["adjudication"] is True and done["value"] is True
    assert _cli("adjudicate", "--experiment", "test", "--criterion", "correct")["disputes"] == []

    set_flag(ids[2], "correct", "ann", "unsure", "is a partial refund a pass?")
    flags = _cli("flags", "--experiment", "test", "--criterion", "correct")["flags"]
    assert [(f["trace_id"], f["reviewer"], f["kind"]) for f in flags] == [(ids[2], "ann", "unsure")]
    assert _cli("flags", "--experiment", "test", "--criterion", "other")["flags"] == []


def test_gold_comes_first_for_alignment_examples_and_the_humans_rater(disputed):
    from core.optimization.dataset import example_precedence, load_examples
    from core.views.agreement import Rater, load_ratings, ratings_of, reviewer_agreement

    eid, crit, ids = disputed
    before = {e.trace_id: e for e in load_examples(eid, "correct")}
    assert before[ids[0]].precedence == "primary_tiebreak"
    assert before[ids[1]].precedence == "majority" and before[ids[2]].precedence == "single"
    adjudicate(ids[0], crit, "chief", "fail", "the refund rule was broken")
    after = {e.trace_id: e for e in load_examples(eid, "correct")}
    ex = after[ids[0]]
    assert (ex.label, ex.rationale, ex.reviewer, ex.precedence) == (
        False,
        "the refund rule was broken",
        "chief",
        "gold",
    )
    assert example_precedence(after.values()) == {
        "gold": 1,
        "majority": 1,
        "primary_tiebreak": 0,
        "single": 1,
    }
    # Only ann's labels: gold still decides the traces ann labeled.
    only_ann = {e.trace_id: e for e in load_examples(eid, "correct", ["ann"])}
    assert only_ann[ids[0]].precedence == "gold" and len(only_ann) == 3
    only_lead = {e.trace_id: e for e in load_examples(eid, "correct", ["lead"])}
    assert set(only_lead) == {ids[0], ids[1]}

    ratings = load_ratings(eid, crit)
    t0 = next(t for t in ratings.traces if t.trace_id == ids[0])
    assert set(t0.humans) == {"ann", "lead"}  # gold is no reviewer
    humans = ratings_of(t0, Rater.humans(), ratings.primary_order)
    assert humans is not None and humans.value is False and humans.who == "gold: chief"
    assert reviewer_agreement(ratings).reviewers == ("ann", "lead")
