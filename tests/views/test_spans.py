"""The span tree the Label page shows: structure, readable tool calls and documents, previews,
and the same tree for traces logged with MLflow's tracing API and for imported ones."""

from __future__ import annotations

import json

import mlflow

from core.labeling.traces import SpanView, TraceDetail, get_trace
from core.views.spans import (
    documents,
    fields,
    readable,
    shows_tree,
    span_count,
    span_duration,
    span_tree,
    summary,
    tool_calls_requested,
)

MS = 1_000_000


def _span(sid, parent, name, span_type=None, start=0, end=1, inputs=None, outputs=None, **kw):
    return SpanView(
        span_id=sid,
        name=name,
        span_type=span_type,
        inputs=inputs,
        outputs=outputs,
        start_ns=1_000 * MS + start * MS,
        end_ns=None if end is None else 1_000 * MS + end * MS,
        parent_id=parent,
        **kw,
    )


def _detail(*spans: SpanView) -> TraceDetail:
    root = spans[0]
    return TraceDetail(
        trace_id="tr-1",
        experiment_id="1",
        inputs=root.inputs,
        outputs=root.outputs,
        expectations={},
        spans=list(spans),
        tags={},
        labels=[],
        judge_feedback=[],
        request_time=1_000,
    )


COMPLETION_WITH_CALLS = {
    "choices": [
        {
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {
                            "name": "get_tracking",
                            "arguments": json.dumps({"tracking_number": "1Z9", "verbose": True}),
                        },
                    }
                ],
            }
        }
    ]
}


def _agent() -> TraceDetail:
    return _detail(
        _span("r", None, "agent", "AGENT", 0, 900, {"q": "where?"}, {"response": "shipped"}),
        # Listed out of start order: children are ordered by start time.
        _span(
            "t",
            "r",
            "get_tracking",
            "TOOL",
            300,
            420,
            {"tracking_number": "1Z9"},
            {"status": "lost in transit", "last_scan": "Memphis"},
        ),
        _span("l", "r", "plan", "LLM", 0, 300, {"messages": []}, COMPLETION_WITH_CALLS),
        _span(
            "d",
            "r",
            "search_policy",
            "RETRIEVER",
            420,
            500,
            {"query": "lost parcel"},
            [
                {
                    "page_content": "We replace lost parcels.",
                    "metadata": {"doc_uri": "kb/lost.md", "chunk_id": "1"},
                },
                {"page_content": "Second doc", "id": "doc-2"},
            ],
        ),
        _span(
            "e",
            "t",
            "carrier_api",
            None,
            310,
            None,
            "GET /track",
            None,
            status="ERROR",
            status_message="timeout",
        ),
    )


def test_the_tree_has_its_root_children_by_start_time_and_depths():
    (root,) = span_tree(_agent())
    assert root.name == "agent" and root.depth == 0 and root.span_type == "AGENT"
    assert [c.name for c in root.children] == ["plan", "get_tracking", "search_policy"]
    (carrier,) = root.children[1].children
    assert carrier.depth == 2 and carrier.span_type == "UNKNOWN"
    assert [n.name for n in root.walk()] == [
        "agent",
        "plan",
        "get_tracking",
        "carrier_api",
        "search_policy",
    ]
    assert root.duration_ms == 900 and root.children[1].start_ms == 300
    assert carrier.duration_ms is None and carrier.is_error and carrier.status_message == "timeout"
    assert span_count([root]) == 5 and shows_tree([root])


def test_tool_spans_are_calls_with_readable_arguments_and_result():
    (root,) = span_tree(_agent())
    tool = root.children[1]
    (call,) = tool.tool_calls
    assert call.name == "get_tracking"
    assert call.arguments.full == "tracking_number: 1Z9"
    assert call.result.full == "status: lost in transit\nlast_scan: Memphis"
    assert tool.inputs == () and tool.outputs == ()  # shown as the call, not twice


def test_an_llms_requested_tool_calls_are_readable():
    (root,) = span_tree(_agent())
    (call,) = root.children[0].tool_calls
    assert (call.name, call.call_id, call.result) == ("get_tracking", "call_1", None)
    # The JSON-string arguments OpenAI sends are parsed into key: value lines.
    assert call.arguments.full == "tracking_number: 1Z9\nverbose: true"
    anthropic = {
        "content": [
            {"type": "text", "text": "Let me check."},
            {
                "type": "tool_use",
                "id": "tu_1",
                "name": "lookup_order",
                "input": {"order_id": "NW-1"},
            },
        ]
    }
    (c,) = tool_calls_requested(anthropic)
    assert (c.name, c.arguments.full) == ("lookup_order", "order_id: NW-1")
    msgs = [{"role": "assistant", "content": "", "tool_calls": [{"name": "f", "arguments": "x("}]}]
    (raw,) = tool_calls_requested(msgs)
    assert raw.arguments.full == "x("  # not JSON: shown as it is
    assert tool_calls_requested({"response": "no calls"}) == []


def test_retrieved_documents_show_their_text_and_source():
    (root,) = span_tree(_agent())
    retriever = root.children[2]
    first, second = retriever.documents
    assert (first.text.full, first.source, first.metadata.full) == (
        "We replace lost parcels.",
        "kb/lost.md",
        "chunk_id: 1",
    )
    assert (second.source, second.metadata) == ("doc-2", None)
    assert retriever.outputs == ()
    assert [f.text.full for f in retriever.inputs] == ["query: lost parcel"]
    # Not documents: outputs stay outputs.
    assert documents([{"score": 1}]) == [] and documents("text") == []
    (d,) = documents({"documents": [{"content": "c", "metadata": {"source": "s3://x"}}]})
    assert d.source == "s3://x"


def test_inputs_and_outputs_read_as_text_and_long_ones_are_cut_short():
    chat = {"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "content": "{}"}]}
    (f,) = fields(chat)
    assert f.title == "messages" and f.text.full == "[user] hi\n\n[tool] {}"
    assert [x.text.full for x in fields({"a": 1, "b": "two"})] == ["a: 1\nb: two"]
    (nested,) = fields({"rows": [{"x": 1}]})
    assert json.loads(nested.text.full) == [{"x": 1}]
    assert fields(None) == ()
    # An assistant turn that only calls a tool reads as the call.
    (calls,) = fields(
        {
            "messages": [
                {"role": "user", "content": "where?"},
                COMPLETION_WITH_CALLS["choices"][0]["message"],
                {"role": "tool", "tool_call_id": "call_1", "content": "lost in transit"},
            ]
        }
    )
    assert calls.text.full == (
        "[user] where?\n\n[assistant] -> get_tracking(tracking_number: 1Z9 verbose: true)"
        "\n\n[tool] lost in transit"
    )
    (requested,) = fields(COMPLETION_WITH_CALLS)
    assert "-> get_tracking(" in requested.text.full
    (long,) = fields("word " * 500, limit=100)
    assert long.text.truncated and len(long.text.preview) <= 100
    assert long.text.full == "word " * 500
    assert readable("<b>x</b>") == "<b>x</b>"  # text stays text: the page escapes it


def test_single_span_traces_show_no_tree_and_orphans_are_roots():
    one = _detail(_span("r", None, "alignboard_import", "CHAIN", 0, 1, "q", "a"))
    assert not shows_tree(span_tree(one))
    assert [n.name for n in span_tree(one)] == ["alignboard_import"]
    orphan = _detail(
        _span("r", None, "root", "CHAIN"),
        _span("o", "missing", "orphan", "TOOL", 2, 3),
        _span("s", "s", "self", "TOOL", 4, 5),
    )
    roots = span_tree(orphan)
    assert [r.name for r in roots] == ["root", "orphan", "self"]
    assert span_count(roots) == 3 and shows_tree(roots)


def test_summaries_and_durations():
    assert [span_duration(x) for x in (None, 0.4, 120, 1840)] == [
        "running",
        "< 1 ms",
        "120 ms",
        "1.84 s",
    ]
    (root,) = span_tree(_agent())
    assert summary(root.children[1]) == "get_tracking · TOOL · 120 ms"
    assert summary(root.children[1].children[0]) == "carrier_api · UNKNOWN · running · error"


def test_a_trace_logged_with_mlflows_tracing_api_reads_as_a_tree(experiment):
    mlflow.set_experiment(experiment_id=experiment.experiment_id)
    with mlflow.start_span("order_agent", span_type="AGENT") as root:
        root.set_inputs({"messages": [{"role": "user", "content": "Where is NW-1?"}]})
        with mlflow.start_span("get_tracking", span_type="TOOL") as tool:
            tool.set_inputs({"order_id": "NW-1"})
            tool.set_outputs({"status": "lost in transit"})
        with mlflow.start_span("search_policy", span_type="RETRIEVER") as ret:
            ret.set_inputs({"query": "lost"})
            ret.set_outputs(
                [{"page_content": "Replace it.", "metadata": {"doc_uri": "kb/lost.md"}}]
            )
        root.set_outputs({"response": "It shipped."})
        trace_id = root.trace_id
    mlflow.flush_trace_async_logging()
    (node,) = span_tree(get_trace(trace_id))
    assert (node.name, node.span_type) == ("order_agent", "AGENT")
    tool_node, ret_node = node.children
    assert tool_node.tool_calls[0].result.full == "status: lost in transit"
    assert ret_node.documents[0].source == "kb/lost.md"
    assert all(n.status == "OK" for n in node.walk())


def test_the_demo_agent_traces_show_their_tool_evidence(demo_store):
    from core.io.demo_seed import AGENT_EXPERIMENT
    from core.labeling.traces import all_trace_ids
    from core.store.experiments import get_experiment

    eid = get_experiment(AGENT_EXPERIMENT).experiment_id
    ids = all_trace_ids(eid)
    assert len(ids) == 24
    lost = []
    for tid in ids:
        (root,) = span_tree(get_trace(tid))
        assert root.span_type == "AGENT" and shows_tree([root])
        kinds = [n.span_type for n in root.walk()]
        assert kinds.count("LLM") == 2 and "TOOL" in kinds
        results = [c.result.full for n in root.walk() for c in n.tool_calls if c.result]
        if any("lost in transit" in r for r in results):
            lost.append(tid)
    assert len(lost) == 6
