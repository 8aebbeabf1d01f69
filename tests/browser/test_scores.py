"""In a real Chromium: launch a bulk scoring of the demo from the Score page, wait for the
job, see the distribution and drift charts and the traces table, filter it by verdict."""

from __future__ import annotations

import re
import time

import pytest

from core.labeling.criteria import get_criterion
from core.optimization import jobs
from core.optimization.score_spec import KIND_SCORE
from core.views.scores import load_verdicts
from tests.browser.conftest import screenshot, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

JOB_TIMEOUT_S = 120
CRIT = "support_quality"


def _register_demo_judge(experiment_id: str) -> None:
    """The aligned demo judge as ``support_quality`` v1 @production (as ``prompt_demo``)."""
    from core.optimization.judging import build_judge
    from core.optimization.registry import register_version, set_alias
    from core.optimization.spec import JudgeSpec
    from tests.conftest import aligned_demo_instructions

    spec = JudgeSpec(CRIT, aligned_demo_instructions(), "pass_fail", "demo:/judge")
    version = register_version(
        build_judge(spec), experiment_id, run_id=None, test_metrics={}, optimizer="gepa"
    )
    set_alias(experiment_id, CRIT, "production", version)


def _shown(main) -> tuple[int, int]:
    """``(shown, total)`` from the table's caption ``"12 of 85 verdicts (14%) ..."``."""
    match = re.search(r"([\d,]+) of ([\d,]+) verdicts", main.inner_text())
    assert match, main.inner_text()[-2000:]
    return int(match.group(1).replace(",", "")), int(match.group(2).replace(",", ""))


def test_score_the_demo_from_the_page_and_filter_the_verdicts(page, dashboard):
    _register_demo_judge(dashboard.experiment_id)
    page.goto(dashboard.page_url("score"))
    wait_idle(page)
    main = page.locator('[data-testid="stMain"]')
    page.get_by_text("Pre-flight passed").wait_for()
    modes = page.locator('[data-testid="stButtonGroup"]').filter(has_text="Unlabeled")
    modes.get_by_text("All", exact=True).click()
    wait_idle(page)
    page.get_by_text("Pre-flight passed: all traces").wait_for()
    assert "stand-in, not an LLM" in main.inner_text()
    screenshot(page, "score-01-form")
    started = time.time()
    page.get_by_role("button", name="Launch scoring").click()
    wait_idle(page)

    deadline = time.monotonic() + 30
    runs: list = []
    while not runs and time.monotonic() < deadline:
        runs = [
            j
            for j in jobs.list_jobs(dashboard.experiment_id, kind=KIND_SCORE)
            if (j.started or 0) >= started - 1
        ]
        time.sleep(0.3)
    assert len(runs) == 1, runs
    final = jobs.wait(runs[0].run_id, timeout_s=JOB_TIMEOUT_S)
    assert final.status == "finished", final.error
    # The progress fragment notices the end and redraws the page with the results.
    page.get_by_text(f"Finished: {final.n_scored:,} verdicts written").wait_for(timeout=30_000)
    wait_idle(page)
    page.get_by_text("Agreement with the humans over time").wait_for()
    page.locator(".js-plotly-plot").nth(1).wait_for(timeout=30_000)  # distribution, drift
    assert "These are the demo judge's verdicts" in main.inner_text()
    assert page.locator('[data-testid="stDataFrame"]').count() >= 1
    shown, total = _shown(main)
    assert shown == total == final.n_total
    screenshot(page, "score-02-results")

    # Filter the table to the Fail verdicts.
    box = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Verdict")
    box.locator("input").click()
    page.keyboard.type("Fail")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    wait_idle(page)
    crit = get_criterion(dashboard.experiment_id, CRIT)
    fails = [v for v in load_verdicts(dashboard.experiment_id, crit).of_version(1) if not v.value]
    deadline = time.monotonic() + 15
    while _shown(main)[0] != len(fails) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert _shown(main) == (len(fails), total)
    assert 0 < len(fails) < total
    screenshot(page, "score-03-filtered")
    assert not page.recorder.errors, page.recorder.errors  # type: ignore[attr-defined]
