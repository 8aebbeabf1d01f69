"""Exporting labels: JSONL/CSV round trips through the importer, and label history."""

from __future__ import annotations

import csv
import json

import pytest

from core.errors import ValidationError
from core.io.export import export_labels
from core.io.importer import import_file
from core.labeling.criteria import create_criterion, get_criterion
from core.labeling.labels import current_labels, set_label
from core.labeling.traces import get_trace
from core.store.experiments import get_or_create_experiment

RECORDS = [
    {
        "id": "a",
        "inputs": {"messages": [{"role": "user", "content": "Is it café-safe? ünïcode"}]},
        "outputs": "Yes.",
        "expectations": {"expected_facts": ["safe"]},
        "tags": {"topic": "safety"},
        "labels": [
            {
                "criterion": "correct",
                "value": "pass",
                "rationale": 'says "safe"',
                "reviewer": "ann",
            },
            {"criterion": "tone", "value": "polite", "reviewer": "bob"},
        ],
    },
    {"id": "b", "inputs": "q", "outputs": "a", "labels": []},
]


def _criteria(eid):
    create_criterion(eid, "correct", "pass_fail", "Right?")
    create_criterion(eid, "tone", "categorical", "Tone?", options=["polite", "rude"])


@pytest.fixture
def source(tmp_path, experiment):
    eid = experiment.experiment_id
    _criteria(eid)
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    res = import_file(path, experiment.name)
    # A relabel: the export must carry the current value only (unless history is asked).
    set_label(res.trace_ids[0], get_criterion(eid, "correct"), "ann", "fail", "changed")
    return eid, res.trace_ids


def _snapshot(eid):
    labels = sorted(
        (get_trace(lab.trace_id).source_id, lab.criterion, lab.reviewer, lab.value, lab.rationale)
        for lab in current_labels(eid)
    )
    traces = {}
    for lab_trace in {lab.trace_id for lab in current_labels(eid)}:
        d = get_trace(lab_trace)
        traces[d.source_id] = (d.inputs, d.outputs, d.expectations, d.tags)
    return labels, traces


def test_jsonl_export_reimports_into_another_experiment_unchanged(tmp_path, source):
    eid, _ = source
    out = tmp_path / "out.jsonl"
    assert export_labels(eid, out, fmt="jsonl") == 2
    other = get_or_create_experiment("copy")
    _criteria(other.experiment_id)
    res = import_file(out, "copy")
    assert (res.traces_written, res.labels_written) == (2, 2)
    assert _snapshot(other.experiment_id) == _snapshot(eid)
    labels, _ = _snapshot(other.experiment_id)
    assert ("a", "correct", "ann", False, "changed") in labels


def test_csv_export_has_one_row_per_current_label_and_reimports(tmp_path, source):
    eid, ids = source
    out = tmp_path / "out.csv"
    assert export_labels(eid, out) == 2
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert {(r["criterion"], r["reviewer"], r["value"]) for r in rows} == {
        ("correct", "ann", "False"),
        ("tone", "bob", "polite"),
    }
    assert {r["trace_id"] for r in rows} == {ids[0]}
    other = get_or_create_experiment("copy")
    _criteria(other.experiment_id)
    res = import_file(out, "copy")
    assert (res.traces_written, res.labels_written) == (1, 2)
    assert _snapshot(other.experiment_id) == _snapshot(eid)


def test_history_and_criterion_filters(tmp_path, source):
    eid, _ = source
    out = tmp_path / "h.csv"
    assert export_labels(eid, out, criterion="correct", include_history=True) == 2
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [(r["value"], r["current"]) for r in rows] == [("True", "False"), ("False", "True")]
    assert rows[1]["overrides"] == rows[0]["assessment_id"]
    jl = tmp_path / "h.jsonl"
    assert export_labels(eid, jl, fmt="jsonl", include_history=True) == 3
    assert export_labels(eid, tmp_path / "c.jsonl", fmt="jsonl", criterion="tone") == 2
    first = json.loads((tmp_path / "c.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert [lab["criterion"] for lab in first["labels"]] == ["tone"]
    with pytest.raises(ValidationError, match="Unknown export format"):
        export_labels(eid, tmp_path / "x", fmt="xml")
