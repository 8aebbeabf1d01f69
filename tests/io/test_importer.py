"""Importing files: fast batched writes, verified counts, all-or-nothing validation."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time

import mlflow
import pytest

import core.io.importer as importer
from core.errors import ImportFileError
from core.io.formats import parse_import_file
from core.io.importer import import_file, trace_id_for
from core.io.records import MAX_FIELD_BYTES, MAX_LABELS_PER_RECORD
from core.labeling.criteria import create_criterion
from core.labeling.labels import current_labels, label_history
from core.labeling.traces import count_traces, get_trace

_TABLES = (
    "experiments",
    "trace_info",
    "trace_tags",
    "trace_request_metadata",
    "spans",
    "assessments",
)


def _checksum(store_uri: str) -> str:
    """Hash of every row of the tables an import writes to."""
    con = sqlite3.connect(store_uri.removeprefix("sqlite:///"))
    try:
        h = hashlib.sha256()
        for table in _TABLES:
            for row in sorted(map(repr, con.execute(f"SELECT * FROM {table}"))):
                h.update(row.encode())
        return h.hexdigest()
    finally:
        con.close()


def _jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


GOOD = [
    {
        "id": "a",
        "inputs": {"question": "Can I return a helmet?"},
        "outputs": "Yes, within 30 days.",
        "expectations": {"expected_response": "Yes"},
        "tags": {"topic": "returns"},
        "labels": [
            {"criterion": "correct", "value": "pass", "rationale": "policy", "reviewer": "ann"},
            {"criterion": "correct", "value": "no", "reviewer": "bob"},
        ],
    },
    {"id": "b", "inputs": "Where is my order?", "outputs": {"response": "Shipped."}},
    {"inputs": "no id here", "outputs": "fine"},
]


@pytest.fixture
def exp(experiment):
    create_criterion(experiment.experiment_id, "correct", "pass_fail", "Right?")
    return experiment


def test_jsonl_import_writes_traces_labels_and_expectations(tmp_path, exp, store_uri):
    eid = exp.experiment_id
    res = import_file(_jsonl(tmp_path / "in.jsonl", GOOD), exp.name)
    assert (res.traces_written, res.labels_written, res.skipped) == (3, 2, 0)
    assert res.expectations_written == 1
    assert res.trace_ids[:2] == (trace_id_for(eid, "a"), trace_id_for(eid, "b"))
    assert count_traces(eid) == 3

    labels = {(lab.reviewer, lab.value, lab.rationale) for lab in current_labels(eid)}
    assert labels == {("ann", True, "policy"), ("bob", False, None)}
    d = get_trace(res.trace_ids[0])
    assert d.inputs == {"question": "Can I return a helmet?"}
    assert d.outputs == {"response": "Yes, within 30 days."}
    assert d.expectations == {"expected_response": "Yes"}
    assert d.tags == {"topic": "returns", "alignboard.source_id": "a"}
    assert get_trace(res.trace_ids[1]).inputs == {"question": "Where is my order?"}
    # Plain MLflow sees complete traces with previews, spans and assessments.
    traces = mlflow.search_traces(locations=[eid], return_type="list")
    assert len(traces) == 3
    t = mlflow.get_trace(res.trace_ids[0])
    assert t.info.request_preview == '{"question": "Can I return a helmet?"}'
    assert t.data.spans[0].span_type == "CHAIN"
    assert t.info.state.value == "OK"
    assert t.data.request == '{"question": "Can I return a helmet?"}'


def test_reimport_is_detected_by_deterministic_ids(tmp_path, exp, store_uri):
    path = _jsonl(tmp_path / "in.jsonl", GOOD[:2])
    import_file(path, exp.name)
    before = _checksum(store_uri)
    with pytest.raises(ImportFileError, match="already imported") as info:
        import_file(path, exp.name)
    assert [e.line for e in info.value.errors] == [1, 2]
    assert _checksum(store_uri) == before
    more = _jsonl(tmp_path / "more.jsonl", [*GOOD[:2], {"id": "c", "inputs": "q", "outputs": "a"}])
    res = import_file(more, exp.name, on_existing="skip")
    assert (res.traces_written, res.skipped) == (1, 2)
    assert res.trace_ids == (trace_id_for(exp.experiment_id, "c"),)
    assert count_traces(exp.experiment_id) == 3
    assert len(current_labels(exp.experiment_id)) == 2


def test_csv_rows_sharing_an_id_are_one_trace_with_several_labels(tmp_path, exp):
    path = tmp_path / "in.csv"
    path.write_text(
        "id,inputs,outputs,expectations,criterion,value,rationale,reviewer\n"
        'q1,"{""question"": ""Hi""}",Hello,Say hello,correct,pass,"Greets, politely",ann\n'
        'q1,"{""question"": ""Hi""}",Hello,,correct,FAIL,,bob\n'
        "q2,plain question,plain answer,,,,,\n"
        ',"multi\nline",answer,,correct,yes,,ann\n',
        encoding="utf-8",
    )
    res = import_file(path, exp.name)
    assert (res.traces_written, res.labels_written) == (3, 3)
    eid = exp.experiment_id
    d = get_trace(trace_id_for(eid, "q1"))
    assert d.inputs == {"question": "Hi"}
    assert d.outputs == {"response": "Hello"}
    assert d.expectations == {"expected_response": "Say hello"}
    assert {(lab.reviewer, lab.value, lab.rationale) for lab in d.labels} == {
        ("ann", True, "Greets, politely"),
        ("bob", False, None),
    }
    assert get_trace(res.trace_ids[2]).inputs == {"question": "multi\nline"}


def test_a_thousand_traces_are_written_fast_and_all_stored(tmp_path, exp):
    n = 1000
    records = [
        {"id": f"r{i}", "inputs": f"question {i}", "outputs": f"answer {i}"} for i in range(n)
    ]
    records[0]["labels"] = [{"criterion": "correct", "value": True, "reviewer": "ann"}]
    res = import_file(_jsonl(tmp_path / "big.jsonl", records), exp.name)
    rate = n / res.seconds
    print(f"\nimport: {n} traces in {res.seconds:.2f} s = {rate:.0f} traces/s")
    assert res.traces_written == n
    assert count_traces(exp.experiment_id) == n
    # MLflow's own per-trace logging manages about 40 traces/s on this machine.
    assert rate > 100


BAD_CASES = {
    "malformed_json": (b'{"inputs": "q", "outputs": "a"}\n{"inputs": "q",\n', 2, "malformed JSON"),
    "not_an_object": (b'{"inputs": "q", "outputs": "a"}\n[1, 2]\n', 2, "expected a JSON object"),
    "json_array_file": (b'[{"inputs": "q", "outputs": "a"}]\n', 1, "looks like a JSON array"),
    "missing_inputs": (b'{"outputs": "a"}\n', 1, "missing inputs"),
    "missing_outputs": (b'{"inputs": "q"}\n', 1, "missing outputs"),
    "inputs_wrong_type": (b'{"inputs": 5, "outputs": "a"}\n', 1, "inputs must be a JSON object"),
    "tags_wrong_type": (b'{"inputs": "q", "outputs": "a", "tags": {"k": 1}}\n', 1, "string value"),
    "labels_wrong_type": (
        b'{"inputs": "q", "outputs": "a", "labels": {}}\n',
        1,
        "must be an array",
    ),
    "id_wrong_type": (b'{"id": 7, "inputs": "q", "outputs": "a"}\n', 1, "id must be"),
    "unknown_field": (b'{"input": "q", "outputs": "a"}\n', 1, r"unknown field\(s\) \['input'\]"),
    "non_utf8": (
        b'{"inputs": "q", "outputs": "a"}\n{"inputs": "caf\xe9", "outputs": "a"}\n',
        2,
        "not valid UTF-8: byte 0xe9 at column 16",
    ),
    "field_too_big": (
        json.dumps({"inputs": "x" * (MAX_FIELD_BYTES + 10), "outputs": "a"}).encode() + b"\n",
        1,
        "inputs is 256 KiB; the limit is 256 KiB",
    ),
    "too_many_labels": (
        json.dumps(
            {
                "inputs": "q",
                "outputs": "a",
                "labels": [
                    {"criterion": "correct", "value": True, "reviewer": f"r{i}"}
                    for i in range(MAX_LABELS_PER_RECORD + 1)
                ],
            }
        ).encode()
        + b"\n",
        1,
        "labels; the limit is",
    ),
    "unknown_criterion": (
        b'{"inputs": "q", "outputs": "a", "labels": [{"criterion": "tone", "value": "x", "reviewer": "ann"}]}\n',
        1,
        r"unknown criterion 'tone' \(existing: correct\); create it first: alignboard criterion create",
    ),
    "invalid_value": (
        b'{"inputs": "q", "outputs": "a", "labels": [{"criterion": "correct", "value": "maybe", "reviewer": "ann"}]}\n',
        1,
        "Invalid value 'maybe' for criterion 'correct'",
    ),
    "missing_reviewer": (
        b'{"inputs": "q", "outputs": "a", "labels": [{"criterion": "correct", "value": true}]}\n',
        1,
        "missing its reviewer",
    ),
    "duplicate_label": (
        b'{"inputs": "q", "outputs": "a", "labels": [{"criterion": "correct", "value": true, "reviewer": "ann"}, {"criterion": "correct", "value": false, "reviewer": "ann"}]}\n',
        1,
        "duplicate label",
    ),
    "duplicate_id": (
        b'{"id": "x", "inputs": "q", "outputs": "a"}\n\n{"id": "x", "inputs": "q2", "outputs": "a"}\n',
        3,
        r"duplicate id 'x' \(first used on line 1\)",
    ),
    "reserved_tag": (
        b'{"inputs": "q", "outputs": "a", "tags": {"mlflow.user": "x"}}\n',
        1,
        "reserved",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_jsonl_row_is_reported_and_nothing_is_written(tmp_path, exp, store_uri, case):
    data, line, message = BAD_CASES[case]
    import_file(_jsonl(tmp_path / "seed.jsonl", GOOD[:1]), exp.name)
    before = _checksum(store_uri)
    path = tmp_path / "bad.jsonl"
    path.write_bytes(data)
    with pytest.raises(ImportFileError) as info:
        import_file(path, exp.name)
    err = info.value
    assert any(e.line == line for e in err.errors), err.errors
    assert any(re.search(message, e.reason) for e in err.errors), err.errors
    assert "nothing was written" in str(err)
    assert _checksum(store_uri) == before


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.jsonl", b"", "the file is empty"),
        ("blank.jsonl", b"\n  \n", "the file is empty"),
        ("header_only.csv", b"inputs,outputs\n", "no records found"),
        ("data.xml", b"<x/>", "unsupported file type '.xml'"),
        ("cols.csv", b"inputs,answer\nq,a\n", "unknown column"),
        ("nooutputs.csv", b"id,inputs\n1,q\n", "missing required column 'outputs'"),
        (
            "mismatch.csv",
            b"id,inputs,outputs,criterion,value,reviewer\n"
            b"1,q,a,correct,pass,ann\n1,q,DIFFERENT,correct,pass,bob\n",
            "outputs differ from line 2",
        ),
        (
            "badjsoncell.csv",
            b'inputs,outputs\n"{not json",a\n',
            "inputs looks like JSON but is malformed",
        ),
        ("utf8.csv", b"inputs,outputs\nq,a\nq\xff,a\n", "not valid UTF-8: byte 0xff"),
        ("half_label.csv", b"inputs,outputs,criterion,value\nq,a,correct,\n", "missing its value"),
    ],
)
def test_bad_files_and_csv_rows_are_rejected_whole(
    tmp_path, exp, store_uri, name, content, message
):
    before = _checksum(store_uri)
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImportFileError, match=message):
        import_file(path, exp.name)
    assert _checksum(store_uri) == before


def test_every_bad_row_is_listed_at_once(tmp_path, exp):
    path = _jsonl(
        tmp_path / "many.jsonl",
        [
            {"inputs": "ok", "outputs": "ok"},
            {"outputs": "a"},
            {"inputs": "q"},
            {
                "inputs": "q",
                "outputs": "a",
                "labels": [{"criterion": "correct", "value": 3, "reviewer": "x"}],
            },
        ],
    )
    parsed = parse_import_file(path, experiment_id=exp.experiment_id)
    assert [e.line for e in parsed.errors] == [2, 3, 4]
    assert len(parsed.records) == 1
    assert not parsed.ok


def test_a_new_experiment_is_not_created_for_a_rejected_file(tmp_path, store_uri):
    path = _jsonl(
        tmp_path / "x.jsonl",
        [
            {
                "inputs": "q",
                "outputs": "a",
                "labels": [{"criterion": "c", "value": 1, "reviewer": "r"}],
            }
        ],
    )
    with pytest.raises(ImportFileError, match="unknown criterion 'c' \\(existing: none\\)"):
        import_file(path, "brand-new")
    assert mlflow.get_experiment_by_name("brand-new") is None


def test_failure_midway_deletes_what_was_written(tmp_path, exp, store_uri, monkeypatch):
    import_file(_jsonl(tmp_path / "seed.jsonl", GOOD[1:2]), exp.name)
    before = _checksum(store_uri)

    # Fail after the traces are stored, while the labels are being prepared: a fake at our
    # own boundary, MLflow itself is real.
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(importer, "new_label_assessment", boom)
    with pytest.raises(ImportFileError, match=r"disk full.*Rolled back: deleted 2 trace"):
        import_file(_jsonl(tmp_path / "in.jsonl", [GOOD[0], GOOD[2]]), exp.name)
    assert _checksum(store_uri) == before
    assert count_traces(exp.experiment_id) == 1


def test_imported_labels_can_be_relabeled(tmp_path, exp):
    from core.labeling.criteria import get_criterion
    from core.labeling.labels import set_label

    res = import_file(_jsonl(tmp_path / "in.jsonl", GOOD[:1]), exp.name)
    tid = res.trace_ids[0]
    set_label(tid, get_criterion(exp.experiment_id, "correct"), "ann", False, "changed my mind")
    history = label_history(tid, "correct", "ann")
    assert [(h.value, h.valid) for h in history] == [(True, False), (False, True)]
    assert time.time() * 1000 >= history[-1].created_ms
