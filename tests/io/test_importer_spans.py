"""Importing traces with spans: both shapes round-trip through a real MLflow store, every
malformed span tree is rejected by line with nothing written, and record timestamps stick."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import mlflow
import pytest
from mlflow.entities import SpanType

from core.errors import ImportFileError
from core.io.export import export_labels
from core.io.formats import parse_import_file
from core.io.importer import import_file, trace_id_for
from core.io.span_records import MAX_SPAN_FIELD_BYTES, MAX_SPANS_PER_RECORD, SPAN_TYPES
from core.labeling.traces import count_traces, get_trace
from core.store.experiments import get_or_create_experiment
from tests.io.test_importer import _checksum, _jsonl

TS = "2026-03-02T14:05:00Z"
TS_MS = int(datetime(2026, 3, 2, 14, 5, tzinfo=UTC).timestamp() * 1000)

NESTED = {
    "id": "agent-1",
    "timestamp": TS,
    "tags": {"topic": "shipping"},
    "spans": {
        "name": "order_agent",
        "span_type": "agent",  # any case
        "inputs": {"messages": [{"role": "user", "content": "Where is NW-1?"}]},
        "outputs": {"response": "It has shipped."},
        "duration_ms": 900,
        "children": [
            {
                "name": "plan",
                "span_type": "LLM",
                "inputs": {"messages": [{"role": "user", "content": "Where is NW-1?"}]},
                "outputs": {"choices": [{"message": {"role": "assistant", "content": "ok"}}]},
                "duration_ms": 300,
                "attributes": {"model": "gpt-4o-mini", "temperature": 0},
            },
            {
                "name": "get_tracking",
                "span_type": "TOOL",
                "inputs": {"order_id": "NW-1"},
                "outputs": {"status": "lost in transit"},
                "duration_ms": 120,
                "children": [
                    {
                        "name": "carrier_api",
                        "inputs": "GET /track/NW-1",
                        "status": "ERROR",
                        "status_message": "timeout",
                        "start_ms": 310,
                        "duration_ms": 50,
                    }
                ],
            },
            {
                "name": "search_policy",
                "span_type": "RETRIEVER",
                "inputs": {"query": "lost parcel"},
                "outputs": [
                    {
                        "page_content": "We replace lost parcels.",
                        "metadata": {"doc_uri": "kb/lost.md"},
                    }
                ],
            },
        ],
    },
}

# The same tree, flat and out of order (a child before its parent), as backends export.
FLAT = {
    "id": "agent-2",
    "inputs": {"question": "Where is NW-2?"},
    "outputs": "Shipped.",
    "spans": [
        {
            "span_id": "c",
            "parent_id": "b",
            "trace_id": "agent-2",
            "name": "carrier_api",
            "start_ms": 12,
            "duration_ms": 3,
        },
        {
            "span_id": "a",
            "parent_id": None,
            "trace_id": "agent-2",
            "name": "root",
            "duration_ms": 40,
        },
        {
            "span_id": "b",
            "parent_id": "a",
            "name": "get_tracking",
            "span_type": "TOOL",
            "inputs": {"order_id": "NW-2"},
            "outputs": {"status": "delivered"},
            "start_ms": 10,
            "duration_ms": 20,
        },
        {"span_id": 7, "parent_id": "a", "name": "answer", "span_type": "LLM", "start_ms": 30},
    ],
}


@pytest.fixture
def exp(experiment):
    return experiment


def _spans(trace_id: str) -> dict[str, object]:
    """MLflow's own read of a trace's spans, by name."""
    return {s.name: s for s in mlflow.get_trace(trace_id).data.spans}


def test_span_types_are_mlflows():
    assert set(SPAN_TYPES) == {v for k, v in vars(SpanType).items() if not k.startswith("_")}


def test_nested_spans_round_trip_through_mlflow(tmp_path, exp):
    res = import_file(_jsonl(tmp_path / "n.jsonl", [NESTED]), exp.name)
    (tid,) = res.trace_ids
    assert tid == trace_id_for(exp.experiment_id, "agent-1")
    trace = mlflow.get_trace(tid)
    assert trace.info.request_time == TS_MS
    assert trace.info.tags["topic"] == "shipping"
    spans = _spans(tid)
    assert set(spans) == {"order_agent", "plan", "get_tracking", "carrier_api", "search_policy"}
    root, plan, tool = spans["order_agent"], spans["plan"], spans["get_tracking"]
    carrier, search = spans["carrier_api"], spans["search_policy"]
    assert root.parent_id is None
    assert plan.parent_id == tool.parent_id == search.parent_id == root.span_id
    assert carrier.parent_id == tool.span_id
    assert [root.span_type, plan.span_type, tool.span_type, carrier.span_type] == [
        "AGENT",
        "LLM",
        "TOOL",
        "UNKNOWN",
    ]
    assert search.span_type == "RETRIEVER"
    # The record's inputs/outputs are the root span's (taken from it here).
    assert root.inputs == NESTED["spans"]["inputs"]
    assert root.outputs == {"response": "It has shipped."}
    assert tool.inputs == {"order_id": "NW-1"} and tool.outputs == {"status": "lost in transit"}
    assert carrier.inputs == "GET /track/NW-1" and carrier.outputs is None
    assert search.outputs[0]["metadata"]["doc_uri"] == "kb/lost.md"
    assert plan.attributes["model"] == "gpt-4o-mini" and plan.attributes["temperature"] == 0
    assert carrier.status.status_code.value == "ERROR" and carrier.status.description == "timeout"
    # Times: the root starts the trace; children without a start follow their previous
    # sibling; a span without a duration lasts until its last child ends (0 ms for a leaf).
    t0 = root.start_time_ns

    def ms(span) -> tuple[float, float]:
        return (span.start_time_ns - t0) / 1e6, (span.end_time_ns - span.start_time_ns) / 1e6

    assert t0 // 1_000_000 == TS_MS
    assert ms(root) == (0, 900)
    assert ms(plan) == (0, 300)
    assert ms(tool) == (300, 120)
    assert ms(carrier) == (310, 50)
    assert ms(search) == (420, 0)
    # Our own read agrees, and the trace reads as a normal one.
    detail = get_trace(tid)
    assert detail.inputs == NESTED["spans"]["inputs"]
    assert detail.source_id == "agent-1"
    assert {s.name: s.status for s in detail.spans}["carrier_api"] == "ERROR"
    assert {s.name: s.attributes for s in detail.spans}["plan"] == {
        "model": "gpt-4o-mini",
        "temperature": 0,
    }


def test_flat_spans_round_trip_through_mlflow(tmp_path, exp):
    res = import_file(_jsonl(tmp_path / "f.jsonl", [FLAT]), exp.name)
    (tid,) = res.trace_ids
    spans = _spans(tid)
    root, tool, carrier, answer = (
        spans[n] for n in ("root", "get_tracking", "carrier_api", "answer")
    )
    assert root.parent_id is None
    assert tool.parent_id == answer.parent_id == root.span_id
    assert carrier.parent_id == tool.span_id
    assert root.span_type == "CHAIN" and tool.span_type == "TOOL" and answer.span_type == "LLM"
    # Top-level inputs/outputs given on the record become the root span's.
    assert root.inputs == {"question": "Where is NW-2?"}
    assert root.outputs == {"response": "Shipped."}
    assert tool.outputs == {"status": "delivered"}
    t0 = root.start_time_ns
    assert (carrier.start_time_ns - t0) / 1e6 == 12
    assert (answer.start_time_ns - t0) / 1e6 == 30
    assert (root.end_time_ns - t0) / 1e6 == 40
    # Span ids are MLflow's (64-bit hex), not the file's; a re-import gives the same ones.
    assert all(re.fullmatch(r"[0-9a-f]{16}", s.span_id) for s in spans.values())


def test_records_with_and_without_spans_import_together(tmp_path, exp):
    plain = {"id": "plain", "inputs": "q", "outputs": "a"}
    res = import_file(_jsonl(tmp_path / "m.jsonl", [plain, NESTED, FLAT]), exp.name)
    assert res.traces_written == 3
    assert [len(mlflow.get_trace(t).data.spans) for t in res.trace_ids] == [1, 5, 4]
    assert mlflow.get_trace(res.trace_ids[0]).data.spans[0].name == "alignboard_import"


def test_exported_spans_reimport_as_the_same_tree(tmp_path, exp):
    import_file(_jsonl(tmp_path / "n.jsonl", [NESTED, FLAT]), exp.name)
    out = tmp_path / "export.jsonl"
    export_labels(exp.experiment_id, out, fmt="jsonl")
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert {len(r["spans"]) for r in lines} == {5, 4}
    assert lines[0]["timestamp"].startswith("2026-03-02T14:05:00")
    other = get_or_create_experiment("copy")
    res = import_file(out, "copy")
    assert count_traces(other.experiment_id) == 2

    def shape(tid: str) -> set[tuple]:
        spans = mlflow.get_trace(tid).data.spans
        names = {s.span_id: s.name for s in spans}
        return {
            (
                s.name,
                names.get(s.parent_id),
                s.span_type,
                json.dumps(s.inputs, sort_keys=True),
                json.dumps(s.outputs, sort_keys=True),
                s.end_time_ns - s.start_time_ns,
                s.status.status_code.value,
            )
            for s in spans
        }

    originals = [trace_id_for(exp.experiment_id, i) for i in ("agent-1", "agent-2")]
    copies = [trace_id_for(other.experiment_id, i) for i in ("agent-1", "agent-2")]
    assert set(res.trace_ids) == set(copies)
    for a, b in zip(originals, copies, strict=True):
        assert shape(a) == shape(b)
        assert mlflow.get_trace(a).info.request_time == mlflow.get_trace(b).info.request_time


# --- timestamps ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (TS, TS_MS),
        ("2026-03-02T15:05:00+01:00", TS_MS),
        ("2026-03-02T14:05:00", TS_MS),  # no zone: UTC
        ("2026-03-02 14:05:00.250Z", TS_MS + 250),
        (TS_MS, TS_MS),
        (float(TS_MS), TS_MS),
    ],
)
def test_a_record_timestamp_is_the_traces_request_time(tmp_path, exp, value, expected):
    rec = {"id": "t", "inputs": "q", "outputs": "a", "timestamp": value}
    (tid,) = import_file(_jsonl(tmp_path / "t.jsonl", [rec]), exp.name).trace_ids
    assert mlflow.get_trace(tid).info.request_time == expected
    assert get_trace(tid).request_time == expected


def test_records_without_a_timestamp_are_imported_now_in_file_order(tmp_path, exp):
    before = int(datetime.now(UTC).timestamp() * 1000)
    recs = [
        {"id": "new-1", "inputs": "q", "outputs": "a"},
        {"id": "old", "inputs": "q", "outputs": "a", "timestamp": TS},
        {"id": "new-2", "inputs": "q", "outputs": "a"},
    ]
    ids = import_file(_jsonl(tmp_path / "t.jsonl", recs), exp.name).trace_ids
    times = [mlflow.get_trace(t).info.request_time for t in ids]
    assert times[1] == TS_MS
    assert before - 60_000 < times[0] < times[2]


# --- malformed span trees: rejected by line, nothing written ---------------------------------

OK_LINE = {"id": "fine", "inputs": "q", "outputs": "a"}


def _flat(*spans, **extra):
    return {"id": "bad", "inputs": "q", "outputs": "a", "spans": list(spans), **extra}


def _s(sid, parent, **kw):
    return {"span_id": sid, "parent_id": parent, "name": f"n{sid}", **kw}


BAD_SPANS = {
    "cycle": (
        _flat(_s("r", None), _s("a", "b"), _s("b", "c"), _s("c", "a")),
        r"spans 'a' -> 'b' -> 'c' -> 'a' form a cycle",
    ),
    "self_parent": (_flat(_s("r", None), _s("a", "a")), r"spans 'a' -> 'a' form a cycle"),
    "only_a_cycle": (_flat(_s("a", "b"), _s("b", "a")), r"form a cycle"),
    "missing_parent": (
        _flat(_s("r", None), _s("a", "ghost")),
        r"span 'a' names parent_id 'ghost', which is not in this trace",
    ),
    "two_roots_flat": (_flat(_s("r", None), _s("s", None)), r"2 root spans \('r', 's'\)"),
    "two_roots_nested": (
        {"id": "bad", "inputs": "q", "outputs": "a", "spans": [{"name": "x"}, {"name": "y"}]},
        r"2 root spans \('x', 'y'\)",
    ),
    "duplicate_id": (
        _flat(_s("r", None), _s("a", "r"), _s("a", "r")),
        r"duplicate span_id 'a' \(spans\[1\] and spans\[2\]\)",
    ),
    "other_trace": (
        _flat(_s("r", None, trace_id="bad"), _s("a", "r", trace_id="someone-else")),
        r"span 'a' belongs to trace 'someone-else', not this one",
    ),
    "other_trace_no_record_id": (
        {
            "inputs": "q",
            "outputs": "a",
            "spans": [_s("r", None, trace_id="t1"), _s("a", "r", trace_id="t2")],
        },
        r"span 'a' belongs to trace 't2'.*root span's trace_id is 't1'",
    ),
    "bad_span_type": (
        _flat(_s("r", None, span_type="ROBOT")),
        r"span_type 'ROBOT' is not a span type",
    ),
    "span_type_not_text": (_flat(_s("r", None, span_type=3)), r"span_type number is not"),
    "no_name": (
        {"id": "bad", "spans": {"inputs": "q", "outputs": "a"}},
        r"span spans needs a name",
    ),
    "name_not_text": (_flat({"span_id": "r", "parent_id": None, "name": 5}), r"needs a name"),
    "no_span_id": (_flat({"parent_id": None, "name": "r"}, _s("a", "r")), r"has no span_id"),
    "children_not_array": (
        {"id": "bad", "inputs": "q", "outputs": "a", "spans": {"name": "r", "children": {}}},
        r"children must be an array, got object",
    ),
    "child_not_object": (
        {"id": "bad", "inputs": "q", "outputs": "a", "spans": {"name": "r", "children": ["x"]}},
        r"span spans.children\[0\] must be an object, got string",
    ),
    "mixed_shapes": (
        {
            "id": "bad",
            "inputs": "q",
            "outputs": "a",
            "spans": {"name": "r", "children": [{"name": "c", "parent_id": "r"}]},
        },
        r"use either children \(nested\) or span_id/parent_id \(flat\)",
    ),
    "negative_start": (_flat(_s("r", None, start_ms=-5)), r"start_ms must not be negative"),
    "duration_text": (_flat(_s("r", None, duration_ms="1s")), r"duration_ms must be a number"),
    "bad_status": (_flat(_s("r", None, status="MAYBE")), r"status must be OK or ERROR"),
    "reserved_attribute": (
        _flat(_s("r", None, attributes={"mlflow.spanType": "x"})),
        r"attribute\(s\) \['mlflow.spanType'\] are MLflow's own",
    ),
    "attributes_not_object": (
        _flat(_s("r", None, attributes=[1])),
        r"attributes must be an object",
    ),
    "unknown_span_field": (_flat(_s("r", None, kind="x")), r"unknown field\(s\) \['kind'\]"),
    "spans_not_array": (
        {"id": "bad", "inputs": "q", "outputs": "a", "spans": "x"},
        r"spans must be an array",
    ),
    "spans_empty": (
        {"id": "bad", "inputs": "q", "outputs": "a", "spans": []},
        r"spans is an empty array",
    ),
    "span_field_too_big": (
        _flat(_s("r", None), _s("a", "r", outputs="x" * (MAX_SPAN_FIELD_BYTES + 10))),
        r"span 'a': outputs is \d+ KiB; the limit is 256 KiB",
    ),
    "too_many_spans": (
        _flat(_s("r", None), *(_s(f"c{i}", "r") for i in range(MAX_SPANS_PER_RECORD))),
        rf"the limit is {MAX_SPANS_PER_RECORD} per trace",
    ),
    "too_deep": (
        {
            "id": "bad",
            "inputs": "q",
            "outputs": "a",
            "spans": json.loads(
                '{"name": "r", "children": [' * 70 + '{"name": "leaf"}' + "]}" * 70
            ),
        },
        r"nested \d+ deep; the limit is 64",
    ),
    "inputs_twice_differ": (
        {"id": "bad", "inputs": "q", "outputs": "a", "spans": {"name": "r", "inputs": "other"}},
        r"inputs differs from the root span's inputs",
    ),
    "no_inputs_anywhere": (
        {"id": "bad", "spans": {"name": "r", "outputs": "a"}},
        r"missing inputs",
    ),
    "name_twice_differ": (
        {"id": "bad", "name": "x", "inputs": "q", "outputs": "a", "spans": {"name": "r"}},
        r"name 'x' differs from the root span's name 'r'",
    ),
    "timestamp_seconds": (
        {"id": "bad", "inputs": "q", "outputs": "a", "timestamp": 1772460300},
        r"timestamp 1772460300 is out of range \(seconds\? give milliseconds\)",
    ),
    "timestamp_not_iso": (
        {"id": "bad", "inputs": "q", "outputs": "a", "timestamp": "last tuesday"},
        r"timestamp 'last tuesday' is not ISO-8601",
    ),
    "timestamp_bool": (
        {"id": "bad", "inputs": "q", "outputs": "a", "timestamp": True},
        r"timestamp must be an ISO-8601 string or epoch milliseconds, got boolean",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SPANS))
def test_a_malformed_span_tree_is_rejected_by_line_and_nothing_is_written(
    tmp_path, exp, store_uri, case
):
    record, message = BAD_SPANS[case]
    import_file(_jsonl(tmp_path / "seed.jsonl", [OK_LINE]), exp.name)
    before = _checksum(store_uri)
    # A good record first, so a write of it would show: the file is all or nothing.
    good = {**NESTED, "id": "good-one"}
    path = _jsonl(tmp_path / "bad.jsonl", [good, record])
    with pytest.raises(ImportFileError) as info:
        import_file(path, exp.name)
    err = info.value
    assert err.errors and {e.line for e in err.errors} == {2}, err.errors
    assert any(re.search(message, e.reason) for e in err.errors), [e.reason for e in err.errors]
    assert "nothing was written" in str(err)
    assert _checksum(store_uri) == before
    assert count_traces(exp.experiment_id) == 1


def test_every_problem_of_a_span_tree_is_listed_at_once(tmp_path):
    record = _flat(
        _s("r", None),
        _s("s", None),
        _s("a", "ghost", span_type="ROBOT"),
        _s("b", "r", trace_id="elsewhere", start_ms=-1),
        _s("b", "r"),
    )
    parsed = parse_import_file(_jsonl(tmp_path / "x.jsonl", [OK_LINE, record]))
    reasons = [e.reason for e in parsed.errors]
    assert {e.line for e in parsed.errors} == {2}
    for expected in (
        "2 root spans",
        "names parent_id 'ghost'",
        "span_type 'ROBOT'",
        "belongs to trace 'elsewhere'",
        "start_ms must not be negative",
        "duplicate span_id 'b'",
    ):
        assert any(expected in r for r in reasons), (expected, reasons)
    assert [r.source_id for r in parsed.records] == ["fine"]


def test_the_parsed_record_holds_its_spans_root_first_with_times(tmp_path):
    parsed = parse_import_file(_jsonl(tmp_path / "f.jsonl", [FLAT]))
    assert parsed.ok, parsed.errors
    (rec,) = parsed.records
    assert [s.key for s in rec.spans] == ["a", "b", "c", "7"]
    assert [s.parent for s in rec.spans] == [None, 0, 1, 0]
    assert [(s.start_ns, s.duration_ns) for s in rec.spans] == [
        (0, 40_000_000),
        (10_000_000, 20_000_000),
        (12_000_000, 3_000_000),
        (30_000_000, 0),
    ]
    assert rec.timestamp_ms is None
    assert rec.to_dict()["spans"][1]["name"] == "get_tracking"


def test_agent_traces_are_written_in_batches_bounded_by_spans(tmp_path, exp, monkeypatch):
    from mlflow.tracing.client import TracingClient

    import core.io.importer as importer

    calls: list[int] = []
    real = TracingClient.log_spans

    def counting(self, location, spans):
        calls.append(len(spans))
        return real(self, location, spans)

    monkeypatch.setattr(importer, "BATCH_SPANS", 6)
    monkeypatch.setattr(TracingClient, "log_spans", counting)
    recs = [{**NESTED, "id": f"a{i}"} for i in range(5)]
    res = import_file(_jsonl(tmp_path / "b.jsonl", recs), exp.name)
    assert res.traces_written == 5 and count_traces(exp.experiment_id) == 5
    # Two traces (10 spans) reach the bound; the last trace goes alone.
    assert calls == [10, 10, 5]


def test_a_tree_nested_too_deep_to_parse_is_refused_not_a_crash(tmp_path):
    deep = '{"name": "r", "children": [' * 3000 + '{"name": "leaf"}' + "]}" * 3000
    path = tmp_path / "deep.jsonl"
    path.write_text(
        json.dumps(OK_LINE) + "\n" + '{"inputs": "q", "outputs": "a", "spans": ' + deep + "}\n",
        encoding="utf-8",
    )
    parsed = parse_import_file(path)
    assert [(e.line, e.reason) for e in parsed.errors] == [(2, "JSON nested too deeply to read")]
