"""The span tree's markup: every text escaped, so trace content never becomes an element."""

from __future__ import annotations

from html.parser import HTMLParser

from app.components.span_tree import tree_html
from core.labeling.traces import SpanView, TraceDetail
from core.views.spans import span_tree

PAYLOAD = (
    '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script> '
    "[click](javascript:alert(1)) ![x](http://e.invalid/x.png) </pre></details><b>out</b> \" '"
)
ALLOWED_TAGS = {"div", "details", "summary", "pre", "b", "span"}
ALLOWED_ATTRS = {"style", "class", "open", "data-span-type", "data-depth"}


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []
        self.depth = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_data(self, data):
        self.text.append(data)


def _hostile_trace() -> TraceDetail:
    def span(sid, parent, name, span_type, inputs=None, outputs=None, **kw):
        return SpanView(sid, name, span_type, inputs, outputs, 0, 5_000_000, parent, **kw)

    spans = [
        span("r", None, "agent " + PAYLOAD, "AGENT", {"q": PAYLOAD}, {"r": PAYLOAD}),
        span(
            "t",
            "r",
            "tool " + PAYLOAD,
            "TOOL",
            {PAYLOAD: PAYLOAD},
            {"status": PAYLOAD},
            status="ERROR",
            status_message=PAYLOAD,
            attributes={PAYLOAD: PAYLOAD},
        ),
        span(
            "d",
            "r",
            "docs",
            "RETRIEVER",
            {"query": PAYLOAD},
            [{"page_content": PAYLOAD, "metadata": {"doc_uri": PAYLOAD, "k": PAYLOAD}}],
        ),
        span("l", "r", "llm", PAYLOAD, {"messages": [{"role": PAYLOAD, "content": PAYLOAD}]}, "x"),
        span("long", "r", "long", "LLM", None, "a " * 2000 + PAYLOAD),
    ]
    return TraceDetail("tr-x", "1", None, None, {}, spans, {}, [], [], 0)


def test_no_trace_text_becomes_markup():
    markup = tree_html(span_tree(_hostile_trace()))
    parsed = _Collect()
    parsed.feed(markup)
    tags = {t for t, _ in parsed.tags}
    assert tags <= ALLOWED_TAGS, tags
    for tag, attrs in parsed.tags:
        for name, value in attrs:
            assert name in ALLOWED_ATTRS, (tag, name)
            assert "__pwned" not in (value or "") and "javascript" not in (value or "")
    # b only wraps names, never a payload's own <b>out</b>.
    text = "".join(parsed.text)
    assert text.count("window.__pwned=1") >= 8
    assert PAYLOAD in text
    for raw in ("<img", "<script", "</pre></details><b>"):
        assert raw not in markup


def test_the_tree_nests_and_opens_only_the_root():
    markup = tree_html(span_tree(_hostile_trace()))
    parsed = _Collect()
    parsed.feed(markup)
    details = [dict(a) for t, a in parsed.tags if t == "details" and "data-depth" in dict(a)]
    assert [d["data-depth"] for d in details] == ["0", "1", "1", "1", "1"]
    assert ["open" in d for d in details] == [True, False, False, False, False]
    assert markup.count("<details") == markup.count("</details>")
    # The long output keeps its preview visible and the rest one click away.
    assert "Show all (" in markup
