"""In a real Chromium: Launch starts exactly what the Align form shows, once per click.

The form's edits are not applied ("Apply and check" is never clicked): Launch is the
form's own submit button, so it checks and launches the values on screen.
"""

from __future__ import annotations

import re
import time

import pytest
from mlflow import MlflowClient

from core.optimization import jobs
from tests.browser.conftest import screenshot, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

JOB_TIMEOUT_S = 240


def _choose_optimizer(page, label: str) -> None:
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Optimizer")
    box.locator("input").click()
    page.keyboard.type(label)
    page.keyboard.press("Enter")


def _set_budget(page, value: int) -> None:
    field = page.get_by_role("spinbutton", name="Budget (metric calls, 0 = auto)")
    field.fill(str(value))


def _new_runs(experiment_id: str, since: float, timeout_s: float = 60) -> list:
    """Alignment runs started since ``since`` (epoch s), waiting for at least one."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [j for j in jobs.list_jobs(experiment_id) if (j.started or 0) >= since - 1]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _stop(run_ids) -> None:
    for run_id in run_ids:
        jobs.cancel(run_id)
    for run_id in run_ids:
        jobs.wait(run_id, timeout_s=JOB_TIMEOUT_S)


def test_launch_without_apply_starts_the_memalign_run_with_the_budget_on_screen(page, dashboard):
    page.goto(dashboard.page_url("align"))
    wait_idle(page)
    _choose_optimizer(page, "MemAlign")
    _set_budget(page, 130)
    screenshot(page, "align-launch-01-edited")
    started = time.time()
    page.get_by_role("button", name="Launch alignment").click()
    wait_idle(page)
    runs = _new_runs(dashboard.experiment_id, started)
    assert len(runs) == 1, runs
    run = runs[0]
    assert run.optimizer == "memalign"
    params = MlflowClient().get_run(run.run_id).data.params
    assert params["optimizer"] == "memalign" and params["max_metric_calls"] == "130"
    # What the page shows now is the check of what was launched.
    main = page.locator('[data-testid="stMain"]')
    assert re.search(r"Optimizer\s+memalign", main.inner_text())
    # MemAlign reads each train label once: no metric-call budget applies, and it says so.
    assert re.search(r"Budget\s+none", main.inner_text())
    final = jobs.wait(run.run_id, timeout_s=JOB_TIMEOUT_S)
    assert final.status == "finished", final.error
    page.get_by_text("Finished:").wait_for(timeout=60_000)
    screenshot(page, "align-launch-02-finished")


def test_a_double_click_alongside_an_active_run_starts_one_more_run(page, dashboard):
    page.goto(dashboard.page_url("align"))
    wait_idle(page)
    _choose_optimizer(page, "GEPA: reflective")
    _set_budget(page, 5000)  # long enough to still be running during the clicks below
    started = time.time()
    page.get_by_role("button", name="Launch alignment").click()
    wait_idle(page)
    first = _new_runs(dashboard.experiment_id, started)
    launched = [j.run_id for j in first]
    try:
        assert len(first) == 1 and first[0].optimizer == "gepa"
        # The page names the active run and asks before another one alongside it.
        page.get_by_text("Launching now starts a second one").wait_for()
        page.get_by_text("Run another alongside it").click()
        page.get_by_role("button", name="Launch alignment").dblclick()
        wait_idle(page)
        time.sleep(2)  # a second launch, if the double click made one, is written by now
        wait_idle(page)
        now = _new_runs(dashboard.experiment_id, started)
        launched = [j.run_id for j in now]
        screenshot(page, "align-launch-03-double-click")
        assert len(now) == 2, [(j.run_id, j.status) for j in now]
    finally:
        _stop(launched)
