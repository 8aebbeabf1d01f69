"""Human labels: MLflow HUMAN feedback, one current version per reviewer, full history."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.entities import AssessmentSource, AssessmentSourceType

from core.errors import NotFoundError, ValidationError
from core.io.importer import import_file
from core.labeling.criteria import create_criterion
from core.labeling.labels import (
    MAX_RATIONALE_CHARS,
    current_labels,
    delete_label,
    get_label,
    label_history,
    set_label,
)

ROOT = Path(__file__).resolve().parents[2]


def _traces(tmp_path, experiment, n=3) -> list[str]:
    path = tmp_path / "t.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"t{i}", "inputs": f"q{i}", "outputs": f"a{i}"}) + "\n"
            for i in range(n)
        )
    )
    return list(import_file(path, experiment.name).trace_ids)


@pytest.fixture
def setup(tmp_path, experiment):
    crit = create_criterion(experiment.experiment_id, "correct", "pass_fail", "Right?")
    return experiment.experiment_id, crit, _traces(tmp_path, experiment)


def _human(trace_id: str):
    return [
        a
        for a in mlflow.get_trace(trace_id).info.assessments
        if a.source.source_type == AssessmentSourceType.HUMAN and a.name == "correct"
    ]


def test_label_is_human_feedback_visible_through_plain_mlflow(setup):
    eid, crit, ids = setup
    lab = set_label(ids[0], crit, "ann", "pass", "  quotes the policy ")
    assert (lab.value, lab.rationale, lab.reviewer, lab.valid) == (
        True,
        "quotes the policy",
        "ann",
        True,
    )

    (a,) = _human(ids[0])
    assert a.value is True
    assert a.source.source_id == "ann"
    assert a.rationale == "quotes the policy"
    found = mlflow.search_traces(
        locations=[eid], filter_string="feedback.correct IS NOT NULL", return_type="list"
    )
    assert [t.info.trace_id for t in found] == [ids[0]]


def test_relabel_keeps_one_current_label_and_readable_history(setup):
    _, crit, ids = setup
    first = set_label(ids[0], crit, "ann", True, "first")
    second = set_label(ids[0], crit, "ann", "fail", "second")
    third = set_label(ids[0], crit, "ann", "pass", "third")

    assert get_label(ids[0], "correct", "ann").assessment_id == third.assessment_id
    history = label_history(ids[0], "correct", "ann")
    assert [h.rationale for h in history] == ["first", "second", "third"]
    assert [h.valid for h in history] == [False, False, True]
    assert [h.overrides for h in history] == [None, first.assessment_id, second.assessment_id]
    # MLflow itself agrees: one valid assessment, the older ones invalidated.
    assert sorted(a.valid for a in _human(ids[0])) == [False, False, True]
    assert [lab.value for lab in current_labels(setup[0], criterion="correct")] == [True]


def test_reviewers_label_independently(setup):
    eid, crit, ids = setup
    set_label(ids[0], crit, "ann", True)
    set_label(ids[0], crit, "bob", False)
    set_label(ids[0], crit, "bob", True)
    set_label(ids[1], crit, "bob", False)

    labels = {(lab.trace_id, lab.reviewer): lab.value for lab in current_labels(eid)}
    assert labels == {(ids[0], "ann"): True, (ids[0], "bob"): True, (ids[1], "bob"): False}
    assert len(label_history(ids[0], "correct")) == 3
    assert [lab.trace_id for lab in current_labels(eid, reviewer="bob", trace_ids=[ids[1]])] == [
        ids[1]
    ]
    assert current_labels(eid, criterion="other") == []


def test_judge_feedback_with_the_same_name_is_not_a_label(setup):
    eid, crit, ids = setup
    mlflow.log_feedback(
        trace_id=ids[2],
        name="correct",
        value=False,
        source=AssessmentSource(source_type=AssessmentSourceType.LLM_JUDGE, source_id="judge"),
    )
    set_label(ids[0], crit, "ann", True)
    assert [lab.trace_id for lab in current_labels(eid, criterion="correct")] == [ids[0]]
    assert get_label(ids[2], "correct", "judge") is None
    assert label_history(ids[2], "correct") == []


@pytest.mark.parametrize(
    ("reviewer", "value", "rationale", "message"),
    [
        ("", True, None, "reviewer name is required"),
        ("   ", True, None, "reviewer name is required"),
        ("ann", "perhaps", None, "Invalid value"),
        ("ann", True, "x" * (MAX_RATIONALE_CHARS + 1), "Rationale is"),
    ],
)
def test_bad_labels_are_rejected_and_nothing_is_written(setup, reviewer, value, rationale, message):
    eid, crit, ids = setup
    with pytest.raises(ValidationError, match=message):
        set_label(ids[0], crit, reviewer, value, rationale)
    assert current_labels(eid) == []


def test_labeling_an_unknown_trace_is_not_found(setup):
    _, crit, _ = setup
    with pytest.raises(NotFoundError, match="No trace"):
        set_label("tr-" + "0" * 32, crit, "ann", True)


def test_delete_label_restores_the_previous_version(setup):
    _, crit, ids = setup
    set_label(ids[0], crit, "ann", True, "old")
    set_label(ids[0], crit, "ann", False, "new")
    assert delete_label(ids[0], "correct", "ann")
    assert get_label(ids[0], "correct", "ann").rationale == "old"
    assert delete_label(ids[0], "correct", "ann")
    assert get_label(ids[0], "correct", "ann") is None
    assert not delete_label(ids[0], "correct", "ann")


_RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from core.labeling.criteria import get_criterion
    from core.labeling.labels import set_label
    eid, trace_id, who, go, n = sys.argv[1:6]
    crit = get_criterion(eid, "correct")
    Path(go + "." + who).touch()
    while not Path(go).exists():
        time.sleep(0.005)
    for i in range(int(n)):
        set_label(trace_id, crit, "ann", i % 2 == 0, f"{who}-{i}")
    """
)


def test_concurrent_relabels_from_two_processes_converge_to_one_current_label(setup, tmp_path):
    eid, _, ids = setup
    go = tmp_path / "go"
    n = 12
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, eid, ids[0], who, str(go), str(n)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for who in ("p1", "p2")
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"go.{who}").exists() for who in ("p1", "p2")):
        assert time.monotonic() < deadline, "racers did not start"
        time.sleep(0.01)
    go.touch()  # both are ready: release them at once
    assert [p.wait(timeout=120) for p in procs] == [0, 0]

    history = label_history(ids[0], "correct", "ann")
    assert len(history) == 2 * n
    assert sum(h.valid for h in history) == 1
    assert len([a for a in _human(ids[0]) if a.valid]) == 1
    # One linear chain: every version but the first overrides a distinct predecessor.
    overridden = [h.overrides for h in history if h.overrides]
    assert len(overridden) == 2 * n - 1 == len(set(overridden))
    current = get_label(ids[0], "correct", "ann")
    assert current.assessment_id not in overridden
