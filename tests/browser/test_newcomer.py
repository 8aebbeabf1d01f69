"""In a real Chromium, the steps a newcomer takes after the README's first commands."""

from __future__ import annotations

import pytest

from core.labeling.criteria import create_criterion
from tests.browser.conftest import screenshot, wait_idle
from tests.browser.test_e2e import _set_reviewer

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_label_opens_the_default_queue_with_its_criterion_after_a_second_criterion(page, dashboard):
    # The README's `criterion create` step: a criterion that sorts before the demo's own.
    create_criterion(dashboard.experiment_id, "helpfulness", "pass_fail", "Is the answer helpful?")
    page.goto(dashboard.page_url("label"))
    wait_idle(page)
    _set_reviewer(page, "newcomer")  # waits for the rationale box of a trace
    screenshot(page, "newcomer-01-label")
    main = page.locator('[data-testid="stMain"]')
    assert "pick one of those criteria" not in main.inner_text()
    criterion = page.locator('[data-testid="stSelectbox"]').filter(has_text="Criterion")
    # The label form is headed by the criterion it labels.
    page.get_by_role("heading", name="support_quality").wait_for()
    # Choosing "All traces" and the new criterion is still possible.
    work_list = page.locator('[data-testid="stSelectbox"]').filter(has_text="Work list")
    work_list.locator("input").click()
    page.keyboard.type("All traces")
    page.keyboard.press("Enter")
    wait_idle(page)
    criterion.locator("input").click()
    page.keyboard.type("helpfulness")
    page.keyboard.press("Enter")
    wait_idle(page)
    page.locator('textarea[aria-label="Rationale"]').wait_for()
    page.get_by_role("heading", name="helpfulness").wait_for()
    assert not page.recorder.errors
