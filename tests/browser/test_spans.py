"""The span tree on the Label page in a real Chromium: it expands, shows a tool's output as
literal text, and nothing an agent trace carries runs or becomes an element."""

from __future__ import annotations

import json

import pytest

from tests.browser.conftest import screenshot, wait_idle
from tests.browser.test_e2e import _set_reviewer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REVIEWER = "e2e.spans"
IMG = '<img src=x onerror="window.__pwned=1">'
SCRIPT = "<script>window.__pwned=2</script>"
LINK = "[track it](javascript:window.__pwned=3)"
PICTURE = "![pixel](http://127.0.0.1:9/pixel.png)"
PAYLOAD = f"lost in transit {IMG} {SCRIPT} {LINK} {PICTURE}"


def _import_agent_trace(dashboard) -> str:
    from core.io.demo_seed import DEMO_EXPERIMENT
    from core.io.importer import import_file

    record = {
        "id": "e2e-agent-injection",
        "timestamp": "2026-10-20T10:00:00Z",
        "spans": {
            "name": "order_tracking_agent",
            "span_type": "AGENT",
            "inputs": {"messages": [{"role": "user", "content": "Where is order NW-1?"}]},
            "outputs": {"response": "Your order has shipped and is on its way."},
            "duration_ms": 800,
            "children": [
                {
                    "name": "get_tracking",
                    "span_type": "TOOL",
                    "inputs": {"tracking_number": "1Z999"},
                    "outputs": {"status": PAYLOAD},
                    "duration_ms": 120,
                },
                {
                    "name": "search_policy",
                    "span_type": "RETRIEVER",
                    "inputs": {"query": "lost parcel"},
                    "outputs": [
                        {"page_content": f"Policy text {IMG}", "metadata": {"doc_uri": SCRIPT}}
                    ],
                    "start_ms": 120,
                    "duration_ms": 60,
                },
            ],
        },
    }
    path = dashboard.home / "agent_injection.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    result = import_file(path, DEMO_EXPERIMENT)
    assert result.traces_written == 1, result
    return result.trace_ids[0]


def test_the_span_tree_expands_and_its_injected_payload_stays_text(page, dashboard):
    trace_id = _import_agent_trace(dashboard)
    page.goto(dashboard.page_url(f"label?trace={trace_id}"))
    wait_idle(page)
    _set_reviewer(page, REVIEWER)
    main = page.locator('[data-testid="stMain"]')
    main.get_by_text("Spans", exact=True).wait_for()
    tool = main.locator("details.ab-span", has_text="get_tracking").last
    summary = tool.locator("summary").first
    summary.wait_for(state="visible")
    # Closed until opened: the tool's result is not shown yet.
    assert tool.get_attribute("open") is None
    assert not main.get_by_text("window.__pwned=1", exact=False).first.is_visible()
    summary.click()
    page.wait_for_function(
        """() => [...document.querySelectorAll('details.ab-span')]
               .some(d => d.open && d.textContent.includes('get_tracking')
                          && d.dataset.depth === '1')"""
    )
    page.wait_for_timeout(500)  # give an onerror handler time to fire, if it could
    # The literal payload is there and visible, as text.
    result = tool.locator("pre", has_text="lost in transit").first
    result.wait_for(state="visible")
    text = result.inner_text()
    for literal in (IMG, SCRIPT, LINK, PICTURE):
        assert literal in text, literal
    main.locator("details.ab-span", has_text="search_policy").last.locator("summary").first.click()
    main.get_by_text("Policy text", exact=False).first.wait_for(state="visible")
    screenshot(page, "12-label-spans-injection")
    # Nothing ran, and none of the payload became an element.
    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    assert page.recorder.dialogs == []
    assert page.locator('img[src="x"]').count() == 0
    assert page.locator('img[src*="pixel.png"]').count() == 0
    assert main.locator('a[href^="javascript:"]').count() == 0
    assert (
        page.evaluate(
            """() => [...document.querySelectorAll('script')]
                   .filter(e => e.textContent.includes('__pwned')).length"""
        )
        == 0
    )
    assert page.recorder.errors == [], page.recorder.errors


def test_a_single_span_trace_shows_no_tree(page, dashboard):
    page.goto(dashboard.page_url(f"label?trace={dashboard.injection_trace_id}"))
    wait_idle(page)
    _set_reviewer(page, REVIEWER)
    main = page.locator('[data-testid="stMain"]')
    main.get_by_text("window.__pwned=1", exact=False).first.wait_for()
    assert main.locator("details.ab-span").count() == 0
    assert main.get_by_text("Spans", exact=True).count() == 0
