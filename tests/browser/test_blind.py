"""Blind review in a real Chromium: before saving, no value choice reveals the judge or others.

On a trace with a judge verdict and another reviewer's label, the rendered text of the main
area is compared across every value the reviewer can pick: it must be identical (only
which button is pressed differs). After the save, the verdict and the label are shown.
"""

from __future__ import annotations

import pytest

from core.labeling.labels import current_labels
from tests.browser.conftest import screenshot, wait_idle
from tests.browser.test_label_keyboard import FORM, form_trace, pressed, set_reviewer
from tests.optimization.demo_examples import CRITERION
from tests.support.judges import log_judge_verdict

pytestmark = [pytest.mark.browser, pytest.mark.slow]

JUDGE_RATIONALE = "JUDGE-SECRET: the reply promises a same-day refund."


def _main_text(page) -> str:
    return page.locator('[data-testid="stMain"]').inner_text()


def test_no_value_choice_reveals_the_judge_or_other_reviewers(page, dashboard):
    other = current_labels(dashboard.experiment_id, CRITERION, reviewer="maria.chen")[0]
    page.goto(dashboard.page_url(f"label?trace={other.trace_id}"))
    wait_idle(page)
    log_judge_verdict(other.trace_id, "pass", rationale=JUDGE_RATIONALE, source_id="judge-v9")
    set_reviewer(page, "blind.reviewer")
    assert form_trace(page) == other.trace_id

    texts = {"none": _main_text(page)}
    for key, name in (("1", "Pass"), ("2", "Fail"), ("1", "Pass again")):
        page.keyboard.press(key)
        page.keyboard.press("Escape")
        page.wait_for_timeout(400)  # time for any rerun a choice might (wrongly) cause
        wait_idle(page)
        assert pressed(page) == [name.split()[0]]
        texts[name] = _main_text(page)
    screenshot(page, "label-blind-before-save")
    first = texts["none"]
    for name, text in texts.items():
        assert text == first, f"the page text changed when choosing {name}"
    for secret in (JUDGE_RATIONALE, "judge-v9", "maria.chen"):
        assert secret not in first, secret

    # Save: the label stays (disagreeing or not) and the verdict and the others show.
    page.keyboard.press("Control+Enter")
    page.wait_for_function(
        """(sel) => document.querySelector(sel)?.dataset.state === 'ready'""", arg=FORM
    )
    wait_idle(page)
    if form_trace(page) != other.trace_id:  # moved on: go back to the saved trace
        page.keyboard.press("k")
        page.wait_for_function(
            """([sel, t]) => document.querySelector(sel)?.dataset.traceId === t""",
            arg=[FORM, other.trace_id],
        )
        wait_idle(page)
    after = _main_text(page)
    screenshot(page, "label-blind-after-save")
    assert JUDGE_RATIONALE in after and "judge-v9" in after and "maria.chen" in after
    assert page.recorder.errors == [], page.recorder.errors
