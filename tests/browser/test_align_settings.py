"""In a real Chromium: the Align form keeps its choices across the sidebar's pages, and the
run picker shows a run's current status, not the one it had when it was picked.

The form's edits reach the server when the form is submitted ("Apply and check" or
Launch): that is what a form is, and what is kept.
"""

from __future__ import annotations

import re
import time

import pytest

from core.optimization import jobs
from tests.browser.conftest import screenshot, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

JOB_TIMEOUT_S = 240
URL = "http://127.0.0.1:8080/v1"


def _main(page):
    return page.locator('[data-testid="stMain"]')


def _optimizer_box(page):
    return _main(page).locator('[data-testid="stSelectbox"]').filter(has_text="Optimizer")


def _choose_optimizer(page, label: str) -> None:
    _optimizer_box(page).locator("input").click()
    page.keyboard.type(label)
    page.keyboard.press("Enter")


def _base_url(page):
    return _main(page).get_by_role("textbox", name="Judge model base URL")


def _go(page, title: str) -> None:
    """Click a page in the sidebar's navigation, as a user does."""
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title).click()
    wait_idle(page)
    page.get_by_role("heading", name=title).first.wait_for()
    wait_idle(page)


def test_memalign_and_a_base_url_are_still_there_after_another_page(page, dashboard):
    page.goto(dashboard.page_url("align"))
    wait_idle(page)
    _choose_optimizer(page, "MemAlign")
    # A judge served by a local OpenAI-compatible server.
    _main(page).get_by_role("textbox", name="Judge model", exact=True).fill("openai:/qwen2.5")
    _base_url(page).fill(URL)
    page.get_by_role("button", name="Apply and check").click()
    wait_idle(page)
    text = _main(page).inner_text()
    assert re.search(r"Optimizer\s+memalign", text), text
    assert _optimizer_box(page).locator("input").input_value().startswith("MemAlign"), (
        _optimizer_box(page).inner_html()
    )
    _go(page, "Overview")
    assert _optimizer_box(page).count() == 0  # the Align form is gone from the page
    _go(page, "Align")
    screenshot(page, "align-settings-01-back")
    assert _optimizer_box(page).locator("input").input_value().startswith("MemAlign"), (
        _optimizer_box(page).inner_html()
    )
    assert _base_url(page).input_value() == URL
    assert _main(page).get_by_role("textbox", name="Judge model", exact=True).input_value() == (
        "openai:/qwen2.5"
    )
    # The check on screen is of the kept settings, not of a fresh GEPA form.
    assert re.search(r"Optimizer\s+memalign", _main(page).inner_text())


def test_the_watched_runs_label_says_finished_once_it_has(page, dashboard):
    page.goto(dashboard.page_url("align"))
    wait_idle(page)
    _choose_optimizer(page, "MemAlign")
    started = time.time()
    page.get_by_role("button", name="Launch alignment").click()
    wait_idle(page)
    deadline = time.monotonic() + 60
    runs: list = []
    while not runs and time.monotonic() < deadline:
        runs = [
            j for j in jobs.list_jobs(dashboard.experiment_id) if (j.started or 0) >= started - 1
        ]
        time.sleep(0.3)
    assert len(runs) == 1, runs
    run_id = runs[0].run_id
    picker = _main(page).locator('[data-testid="stSelectbox"]').filter(has_text="Watch a run here")
    # Picked (the page follows the run it launched) while the run was queued or running.
    shown = picker.locator("input").input_value()
    assert run_id[:8] in shown and re.search(r"· (queued|running) ·", shown), shown
    final = jobs.wait(run_id, timeout_s=JOB_TIMEOUT_S)
    assert final.status == "finished", final.error
    page.get_by_text("Finished:").wait_for(timeout=60_000)
    wait_idle(page)
    screenshot(page, "align-settings-02-finished")
    shown = picker.locator("input").input_value()
    assert run_id[:8] in shown and "· finished ·" in shown, shown
