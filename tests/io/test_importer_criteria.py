"""Import that names unknown criteria (inferred, created on request) and fills a queue."""

from __future__ import annotations

import json

import mlflow
import pytest

from core.errors import ImportFileError, ValidationError
from core.io.importer import import_file, plan_import
from core.io.records import MAX_INFERRED_OPTIONS, PLACEHOLDER_INSTRUCTIONS, infer_criterion
from core.io.uploads import preview_upload
from core.labeling.criteria import create_criterion, get_criterion, list_criteria
from core.labeling.labels import current_labels
from core.labeling.queues import create_queue, get_queue, list_queues, queue_items
from core.labeling.traces import count_traces
from tests.io.test_importer import _checksum


def _jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def _records(criterion: str, values, instructions: str | None = None) -> list[dict]:
    out = []
    for i, v in enumerate(values):
        lab = {"criterion": criterion, "value": v, "reviewer": f"r{i % 2}"}
        if instructions and i == 0:
            lab["instructions"] = instructions
        out.append({"id": f"t{i}", "inputs": f"q{i}", "outputs": f"a{i}", "labels": [lab]})
    return out


# ---- inference (pure) ------------------------------------------------------------------


def test_pass_fail_words_and_booleans_infer_pass_fail():
    c = infer_criterion("tone", ["pass", "FAIL", True, "yes", "no"], [])
    assert c.kind == "pass_fail" and c.labels == 5
    assert c.instructions == PLACEHOLDER_INSTRUCTIONS.format(name="tone")
    assert not c.instructions_from_file


def test_numbers_infer_numeric_with_the_observed_range():
    c = infer_criterion("score", [3, "4.5", 1, "2"], ["How good, 1-5?"])
    assert (c.kind, c.min_value, c.max_value) == ("numeric", 1.0, 4.5)
    assert c.instructions == "How good, 1-5?" and c.instructions_from_file
    assert c.describe() == "range: 1 to 4.5"


def test_words_infer_categorical_with_the_distinct_values():
    c = infer_criterion("quality", ["good", "partial", "Bad", "GOOD", "bad"], [])
    assert c.kind == "categorical"
    assert c.options == ("good", "partial", "Bad")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["pass", 3], "mix kinds"),
        ([True, "partial"], "mix kinds"),
        ([f"v{i}" for i in range(MAX_INFERRED_OPTIONS + 1)], "at most 20"),
        (["partial", "partial"], "at least two options"),
    ],
)
def test_values_that_cannot_be_inferred_are_refused_with_a_reason(values, message):
    with pytest.raises(ValidationError, match=message):
        infer_criterion("c", values, [])


def test_conflicting_instructions_are_refused():
    with pytest.raises(ValidationError, match="different instructions"):
        infer_criterion("c", [True, False], ["one", "two"])


# ---- import ----------------------------------------------------------------------------


def test_without_the_flag_an_unknown_criterion_is_refused_naming_the_flag(
    tmp_path, experiment, store_uri
):
    path = _jsonl(tmp_path / "x.jsonl", _records("tone", ["pass", "fail"]))
    before = _checksum(store_uri)
    with pytest.raises(ImportFileError, match="--create-criteria"):
        import_file(path, experiment.name)
    assert _checksum(store_uri) == before


def test_create_criteria_creates_the_inferred_criteria_then_imports(tmp_path, experiment):
    eid = experiment.experiment_id
    records = _records("quality", ["good", "bad", "partial"], instructions="Is it good?")
    for i, rec in enumerate(records):
        rec["labels"].append({"criterion": "score", "value": i + 1, "reviewer": "ann"})
    path = _jsonl(tmp_path / "x.jsonl", records)

    plan = plan_import(path, eid)
    assert {n.name: n.kind for n in plan.new_criteria} == {
        "quality": "categorical",
        "score": "numeric",
    }
    assert not plan.ok  # the flag is not given

    res = import_file(path, experiment.name, create_criteria=True)
    assert sorted(res.criteria_created) == ["quality", "score"]
    assert (res.traces_written, res.labels_written) == (3, 6)
    quality = get_criterion(eid, "quality")
    assert quality.options == ("good", "bad", "partial")
    assert quality.instructions == "Is it good?"
    score = get_criterion(eid, "score")
    assert (score.min_value, score.max_value) == (1.0, 3.0)
    assert score.instructions.startswith("TODO")
    assert sorted(lab.value for lab in current_labels(eid, "score")) == [1.0, 2.0, 3.0]


def test_create_criteria_into_a_new_experiment(tmp_path, store_uri):
    path = _jsonl(tmp_path / "x.jsonl", _records("tone", [True, False]))
    res = import_file(path, "fresh", create_criteria=True)
    assert res.criteria_created == ("tone",)
    assert get_criterion(res.experiment_id, "tone").kind == "pass_fail"


@pytest.mark.parametrize(
    ("values", "message"),
    [(["pass", 3, "fail"], "mix kinds"), ([f"v{i}" for i in range(25)], "at most 20")],
)
def test_uninferable_values_write_nothing_even_with_the_flag(
    tmp_path, experiment, store_uri, values, message
):
    path = _jsonl(tmp_path / "x.jsonl", _records("c", values))
    before = _checksum(store_uri)
    with pytest.raises(ImportFileError, match=message):
        import_file(path, experiment.name, create_criteria=True)
    assert _checksum(store_uri) == before
    assert list_criteria(experiment.experiment_id) == []


def test_preview_shows_the_criteria_to_create_and_is_ok_only_with_the_flag(experiment):
    data = "".join(json.dumps(r) + "\n" for r in _records("tone", ["pass", "fail"])).encode()
    off = preview_upload(data, "x.jsonl", experiment.experiment_id)
    assert not off.ok and off.errors
    assert off.criteria_table() == [
        {
            "criterion": "tone",
            "kind": "pass_fail",
            "options / range": "Pass / Fail",
            "labels": 2,
            "instructions": "placeholder: edit it after the import",
        }
    ]
    on = preview_upload(data, "x.jsonl", experiment.experiment_id, create_criteria=True)
    assert on.ok and not on.errors and on.labels == 2
    assert list_criteria(experiment.experiment_id) == []  # a preview writes nothing


# ---- queue -----------------------------------------------------------------------------


def test_import_into_a_new_queue_with_reviewers(tmp_path, experiment):
    eid = experiment.experiment_id
    create_criterion(eid, "correct", "pass_fail", "Right?")
    path = _jsonl(
        tmp_path / "x.jsonl", [{"id": f"n{i}", "inputs": "q", "outputs": "a"} for i in range(4)]
    )
    res = import_file(path, experiment.name, queue="week-1", reviewers=["ann", "bob"])
    assert (res.queue, res.queue_created, res.queued) == ("week-1", True, 4)
    q = get_queue(eid, "week-1")
    assert q.reviewers == ("ann", "bob") and q.criteria == ("correct",)
    assert {i.trace_id for i in queue_items(q)} == set(res.trace_ids)


def test_import_into_an_existing_queue_also_queues_skipped_traces(tmp_path, experiment):
    eid = experiment.experiment_id
    create_criterion(eid, "correct", "pass_fail", "Right?")
    q = create_queue(eid, "old", ["correct"], ["ann"])
    first = _jsonl(tmp_path / "a.jsonl", [{"id": "x", "inputs": "q", "outputs": "a"}])
    import_file(first, experiment.name)
    both = _jsonl(
        tmp_path / "b.jsonl",
        [{"id": "x", "inputs": "q", "outputs": "a"}, {"id": "y", "inputs": "q", "outputs": "a"}],
    )
    res = import_file(both, experiment.name, on_existing="skip", queue="old")
    assert (res.traces_written, res.skipped, res.queued, res.queue_created) == (1, 1, 2, False)
    assert len(queue_items(q)) == 2


def test_a_new_queue_without_reviewers_writes_nothing(tmp_path, experiment, store_uri):
    create_criterion(experiment.experiment_id, "correct", "pass_fail", "Right?")
    path = _jsonl(tmp_path / "x.jsonl", [{"id": "z", "inputs": "q", "outputs": "a"}])
    before = _checksum(store_uri)
    with pytest.raises(ValidationError, match="at least one reviewer"):
        import_file(path, experiment.name, queue="nobody")
    assert _checksum(store_uri) == before
    assert list_queues(experiment.experiment_id) == []
    assert count_traces(experiment.experiment_id) == 0


def test_cli_import_create_criteria_and_queue(tmp_path, experiment, capsys):
    from core.cli import main

    path = _jsonl(tmp_path / "x.jsonl", _records("tone", ["pass", "fail", "pass"]))
    assert main(["import", path, "--experiment", experiment.name]) != 0
    assert "--create-criteria" in capsys.readouterr().err
    code = main(
        [
            "import",
            path,
            "--experiment",
            experiment.name,
            "--create-criteria",
            "--queue",
            "q1",
            "--reviewers",
            "ann, bob",
            "--json",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["criteria_created"] == ["tone"] and out["queue"] == "q1" and out["queued"] == 3
    assert get_queue(experiment.experiment_id, "q1").reviewers == ("ann", "bob")
    assert mlflow.get_experiment_by_name(experiment.name) is not None
