"""End to end in a real Chromium against ``streamlit run``: label, align, explore, stay safe.

One test on purpose: the steps share one server and build on each other (the labels feed
the alignment, the alignment feeds the run explorer and the Versions page), and the
server start is the expensive part.
"""

from __future__ import annotations

import re
import time

import mlflow
import pytest

from core.labeling.labels import current_labels
from core.optimization import jobs, registry
from core.optimization.mlflow_judge import seed_judge
from tests.browser.conftest import (
    INJECTION_QUESTION,
    INJECTION_REPLY,
    choose_reviewer,
    screenshot,
    wait_idle,
)
from tests.optimization.demo_examples import CRITERION, demo_settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REVIEWER = "e2e.keyboard"
# Digits inside the rationale must type, not press the value keys 1/2.
RATIONALES = [
    ("1", 'Says "I\'ve started a return" 1 2: a return was started, as policy allows.'),
    ("2", 'Promises "guarantee it will arrive" by day 2: no guaranteed dates.'),
    ("1", 'Tells them to "please stop using" it 12 times over: safety first.'),
]
ALIGN_TIMEOUT_MS = 120_000
_TRACE_CAPTION = re.compile(
    r"Trace (tr-[0-9a-f]+) · (?:not labeled yet|labeled by you|flagged by you)"
)


def _open(page, url: str) -> None:
    page.goto(url)
    wait_idle(page)


def _progress_done(page) -> int:
    text = page.locator('[data-testid="stProgress"]').first.inner_text()
    return int(re.search(r"(\d+) / \d+ labeled", text).group(1))


def _current_trace(page) -> str:
    return _TRACE_CAPTION.search(page.locator('[data-testid="stMain"]').inner_text()).group(1)


def _focus_in_text_field(page) -> bool:
    return page.evaluate("() => ['INPUT', 'TEXTAREA'].includes(document.activeElement?.tagName)")


def _set_reviewer(page, name: str) -> None:
    choose_reviewer(page, name)
    page.locator('textarea[aria-label="Rationale"]').wait_for()


def _label_three_with_the_keyboard(page, dashboard) -> list[tuple[str, bool, str]]:
    _open(page, dashboard.page_url("label"))
    _set_reviewer(page, REVIEWER)
    screenshot(page, "03-label")
    done: list[tuple[str, bool, str]] = []
    for key, rationale in RATIONALES:
        trace_id = _current_trace(page)
        before = _progress_done(page)
        # No Tab anywhere: after a submit the focus is out of every text field, a value
        # key picks the value and moves the focus into the rationale.
        assert not _focus_in_text_field(page), page.evaluate(
            "() => [document.activeElement?.outerHTML.slice(0, 300), "
            "!!document.activeElement?.closest('[data-testid=stSidebar]')]"
        )
        page.keyboard.press(key)
        chosen = "Pass" if key == "1" else "Fail"
        page.locator('[data-testid="label-form"] button[aria-pressed="true"]').filter(
            has_text=chosen
        ).wait_for()
        assert page.evaluate(
            "() => document.activeElement?.getAttribute('aria-label') === 'Rationale'"
        )
        page.keyboard.type(rationale)
        page.keyboard.press("Control+Enter")
        page.wait_for_function(
            """([before]) => {
                const bar = document.querySelector('[data-testid="stProgress"]');
                const m = bar && bar.innerText.match(/(\\d+) \\/ \\d+ labeled/);
                return m && Number(m[1]) > before;
            }""",
            arg=[before],
        )
        wait_idle(page)
        assert _current_trace(page) != trace_id, "Ctrl+Enter did not move to the next trace"
        done.append((trace_id, key == "1", rationale))
    screenshot(page, "04-label-after-three")
    return done


def _assert_human_labels(dashboard, done) -> None:
    labels = {
        lab.trace_id: lab
        for lab in current_labels(dashboard.experiment_id, CRITERION, reviewer=REVIEWER)
    }
    assert set(labels) == {t for t, _, _ in done}
    for trace_id, value, rationale in done:
        assert labels[trace_id].value is value
        assert labels[trace_id].rationale == rationale
        mine = [
            a
            for a in mlflow.get_trace(trace_id).info.assessments
            if a.name == CRITERION and a.source.source_id == REVIEWER
        ]
        assert mine and all(a.source.source_type == "HUMAN" for a in mine)


def _launch_on_the_align_page(page, dashboard) -> str:
    _open(page, dashboard.page_url("align"))
    screenshot(page, "05-align")
    started = time.time()
    page.get_by_role("button", name="Launch alignment").click()
    page.get_by_text("Finished:").wait_for(timeout=ALIGN_TIMEOUT_MS)
    wait_idle(page)
    screenshot(page, "06-align-finished")
    runs = jobs.list_jobs(dashboard.experiment_id)
    assert runs and runs[0].status == "finished", runs[:1]
    assert runs[0].started >= started - 5 and runs[0].optimizer == "gepa"
    assert runs[0].judge_version is not None
    return runs[0].run_id


def _explore(page, dashboard, run_id: str) -> None:
    _open(page, dashboard.page_url(f"run_explorer?run={run_id}"))
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    chart.wait_for()
    assert page.locator(".js-plotly-plot").count() >= 1
    page.locator("ins, del").first.wait_for()
    screenshot(page, "07-run-explorer")


def _versions(page, dashboard, run_id: str) -> None:
    # A hand-edited second version, so the page has a word diff to show.
    eid = dashboard.experiment_id
    latest = registry.list_versions(eid, CRITERION)[-1]
    edited = (
        latest.instructions + '\n- If the response contains "price match", the verdict is fail.'
    )
    judge = seed_judge(demo_settings(eid, "gepa").judge.with_instructions(edited))
    new = registry.register_version(judge, eid, run_id=None, test_metrics={})
    _open(page, dashboard.page_url("versions"))
    page.locator("ins").first.wait_for()
    assert page.locator("ins").filter(has_text="price match").count() >= 1
    # The run link is drawn after the diff in the same script run: wait, do not count.
    page.locator(f'a[href*="run={run_id}"]').first.wait_for()
    screenshot(page, "08-versions")

    # Alias on the aligned version, then on the latest; roll back returns it to the aligned
    # one (its previous target in the alias history).
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text="On version")
    box.locator("input").click()
    page.keyboard.type(f"v{latest.version}")
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Set alias").click()
    page.get_by_text(f"production now points at v{latest.version}").wait_for()
    wait_idle(page)
    box.locator("input").click()
    page.keyboard.type(f"v{new}")
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Set alias").click()
    page.get_by_text(f"production now points at v{new}").wait_for()
    assert registry.get_alias(eid, CRITERION, "production") == new
    page.get_by_role("button", name="Roll back").click()
    page.get_by_text(f"Rolled production back to v{latest.version}").wait_for()
    assert registry.get_alias(eid, CRITERION, "production") == latest.version
    wait_idle(page)
    screenshot(page, "11-versions-rolled-back")


def _assert_injection_is_inert(page, dashboard) -> None:
    # A fresh page load is a fresh Streamlit session: say who we are again.
    _open(page, dashboard.page_url(f"label?trace={dashboard.injection_trace_id}"))
    _set_reviewer(page, REVIEWER)
    main = page.locator('[data-testid="stMain"]')
    page.get_by_text("window.__pwned=1", exact=False).first.wait_for()
    page.wait_for_timeout(500)  # give an onerror handler time to fire, if it could
    screenshot(page, "09-label-injection")
    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    assert page.recorder.dialogs == []
    # None of the trace's markup became an element.
    assert page.locator('img[src="x"]').count() == 0
    assert (
        page.evaluate(
            """() => [...document.querySelectorAll('script, style')]
                   .filter(e => e.textContent.includes('__pwned')
                             || e.textContent.includes('body{display:none}')).length"""
        )
        == 0
    )
    assert main.locator("h1", has_text="big").count() == 0
    assert main.locator('a[href^="javascript:"]').count() == 0
    assert main.locator("strong", has_text="bold").count() == 0
    # ... and the page was not restyled away: the literal text is there and visible.
    # (Streamlit's body has no box of its own, so ask for its computed style.)
    assert page.evaluate("() => getComputedStyle(document.body).display") != "none"
    assert main.is_visible()
    text = main.inner_text()
    for literal in (
        "<script>window.__pwned=1</script>",
        '<img src=x onerror="window.__pwned=2">',
        "<style>body{display:none}</style>",
        "<h1>big</h1>",
        "**bold**",
        "[link](javascript:alert(1))",
    ):
        assert literal in text, literal
    assert INJECTION_QUESTION.split()[0] in text and INJECTION_REPLY.split()[0] in text
    page.get_by_text("<h1>big</h1>", exact=False).first.wait_for(state="visible")


def test_label_align_explore_and_injection_in_a_real_browser(page, dashboard):
    # Injection first: it checks a page nobody has touched yet in this session.
    _assert_injection_is_inert(page, dashboard)

    for i, name in enumerate(("overview", "traces"), start=1):
        _open(page, dashboard.page_url(name))
        screenshot(page, f"0{i}-{name}")

    done = _label_three_with_the_keyboard(page, dashboard)
    _assert_human_labels(dashboard, done)

    _open(page, dashboard.page_url("agreement"))
    screenshot(page, "10-agreement")

    run_id = _launch_on_the_align_page(page, dashboard)
    _explore(page, dashboard, run_id)
    _versions(page, dashboard, run_id)
    assert page.recorder.errors == [], page.recorder.errors
