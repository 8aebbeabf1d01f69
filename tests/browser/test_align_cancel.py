"""In a real Chromium: cancel a running alignment from the Align page; the banner says
plainly that no version was registered, and MLflow agrees (no new judge version, the
run tagged with why)."""

from __future__ import annotations

import time

import pytest
from mlflow import MlflowClient
from playwright.sync_api import expect

from core.optimization import jobs
from core.optimization.registry import list_versions
from tests.browser.conftest import screenshot, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

JOB_TIMEOUT_S = 240


def test_cancel_on_the_align_page_registers_nothing_and_says_so(page, dashboard):
    before = {v.version for v in list_versions(dashboard.experiment_id, "support_quality")}
    page.goto(dashboard.page_url("align"))
    wait_idle(page)
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Optimizer")
    box.locator("input").click()
    page.keyboard.type("GEPA: reflective")
    page.keyboard.press("Enter")
    # Long enough to still be running when Cancel is clicked: a big budget, early stop off
    # (the demo judge reaches a perfect validation score within a few iterations).
    page.get_by_role("spinbutton", name="Budget (metric calls, 0 = auto)").fill("5000")
    page.get_by_text("Early stop:", exact=False).first.click()
    page.get_by_text("At a perfect score", exact=True).click()
    page.get_by_role("spinbutton", name="Patience (proposals)").fill("0")
    page.get_by_role("spinbutton", name="Patience (proposals)").press("Tab")
    wait_idle(page)
    started = time.time()
    page.get_by_role("button", name="Launch alignment").click()
    wait_idle(page)
    deadline = time.monotonic() + 60
    runs: list = []
    while not runs and time.monotonic() < deadline:
        runs = [
            j for j in jobs.list_jobs(dashboard.experiment_id) if (j.started or 0) >= started - 1
        ]
        time.sleep(0.5)
    assert len(runs) == 1, runs
    run_id = runs[0].run_id
    params = MlflowClient().get_run(run_id).data.params
    assert (params.get("stop_at_score"), params.get("stop_patience")) == ("off", "off"), params
    try:
        while jobs.status(run_id).status != "running" and time.monotonic() < deadline + 60:
            time.sleep(0.5)
        cancel = page.get_by_role("button", name="Cancel", exact=True)
        cancel.wait_for(timeout=60_000)
        cancel.click()
        wait_idle(page)
        final = jobs.wait(run_id, timeout_s=JOB_TIMEOUT_S)
    finally:
        jobs.cancel(run_id)
    assert final.status == "cancelled", (final.status, final.error)
    main = page.locator('[data-testid="stMain"]')
    expect(main).to_contain_text("Cancelled — no version registered", timeout=60_000)
    screenshot(page, "align-cancel-01-banner")
    # What the banner says is what MLflow holds: no new version, the reason on the run.
    after = {v.version for v in list_versions(dashboard.experiment_id, "support_quality")}
    assert after == before
    tags = MlflowClient().get_run(run_id).data.tags
    assert tags.get("alignboard.not_registered_reason") == "cancelled"
    assert final.judge_version is None
