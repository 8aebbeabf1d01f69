"""In a real Chromium: a lead opens the Adjudicate page, reads both reviewers' labels, is
refused a gold label without a rationale, then records one; the trace leaves the list."""

from __future__ import annotations

import pytest

from core.labeling.adjudication import disputes
from core.labeling.labels import current_labels
from tests.browser.conftest import choose_reviewer, screenshot, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CRIT = "support_quality"
LEAD = "lead.browser"


def test_adjudicate_a_disagreement_in_the_browser(page, dashboard):
    first = disputes(dashboard.experiment_id, CRIT)[0]
    page.goto(dashboard.page_url(f"adjudicate?trace={first.trace_id}"))
    wait_idle(page, 120_000)  # the first page of a fresh server imports MLflow
    choose_reviewer(page, LEAD)
    main = page.locator('[data-testid="stMain"]')
    page.get_by_text("Disagreements").wait_for()
    text = main.inner_text()
    for lab in first.labels:
        assert lab.reviewer in text
    screenshot(page, "adjudicate-01-dispute")

    gold = page.locator('[data-testid="stSelectbox"]').filter(has_text="Gold value")
    gold.locator("input").click()
    page.keyboard.type("Pass")
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Save gold label").click()
    wait_idle(page)
    page.get_by_text("A gold label must say why").wait_for()
    assert not [
        lab for lab in current_labels(dashboard.experiment_id, CRIT, gold=True) if lab.adjudication
    ]

    page.locator('textarea[aria-label="Rationale (required)"]').fill(
        "The reply checks the order before promising anything."
    )
    gold.locator("input").click()
    page.keyboard.type("Pass")
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Save gold label").click()
    wait_idle(page)
    page.get_by_text("Gold label Pass recorded").wait_for()
    screenshot(page, "adjudicate-02-saved")
    golds = [
        lab for lab in current_labels(dashboard.experiment_id, CRIT, gold=True) if lab.adjudication
    ]
    assert [(g.trace_id, g.reviewer, g.value) for g in golds] == [(first.trace_id, LEAD, True)]
    assert first.trace_id not in {d.trace_id for d in disputes(dashboard.experiment_id, CRIT)}
    assert not page.recorder.errors, page.recorder.errors
