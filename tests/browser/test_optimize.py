"""In a real Chromium: launch a prompt optimization from the Optimize page on the demo
(a double click starts one run), wait for it to finish, and find its chart, a template
diff and the outputs side by side in the Run explorer, then both versions on the Versions
page."""

from __future__ import annotations

import re
import time

import pytest
from mlflow import MlflowClient
from playwright.sync_api import expect

from core.optimization import jobs
from core.views.prompt_runs import list_prompt_runs
from tests.browser.conftest import screenshot, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

JOB_TIMEOUT_S = 240
PROMPT = "northwind-support"


def _register_aligned_judge(experiment_id: str) -> None:
    """The aligned demo judge as ``support_quality`` v1 @production (as ``prompt_demo``)."""
    from core.optimization.judging import build_judge
    from core.optimization.registry import register_version, set_alias
    from core.optimization.spec import JudgeSpec
    from tests.conftest import aligned_demo_instructions

    spec = JudgeSpec("support_quality", aligned_demo_instructions(), "pass_fail", "demo:/judge")
    version = register_version(
        build_judge(spec),
        experiment_id,
        run_id=None,
        test_metrics={"test_kappa_after": 0.85, "test_accuracy_after": 0.93},
        optimizer="gepa",
    )
    set_alias(experiment_id, "support_quality", "production", version)


def _new_runs(experiment_id: str, since: float, timeout_s: float = 60) -> list:
    deadline = time.monotonic() + timeout_s
    while True:
        found = [r for r in list_prompt_runs(experiment_id) if (r.started or 0) >= since - 1]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_an_optimization_launched_from_the_page_shows_chart_diff_and_outputs(page, dashboard):
    _register_aligned_judge(dashboard.experiment_id)
    page.goto(dashboard.page_url("optimize"))
    wait_idle(page)
    main = page.locator('[data-testid="stMain"]')
    # The form as it opens on the demo: the judge's production alias, the mapping preview.
    page.get_by_text("Pre-flight passed").wait_for()
    # Polled, not read once: a rerun still in flight can show the page without its form.
    expect(main).to_contain_text("support_quality: production -> v1", timeout=30_000)
    expect(main).to_contain_text("stand-in application, not an LLM")
    page.get_by_role("spinbutton", name="Budget (metric calls, 0 = auto)").fill("60")
    screenshot(page, "optimize-01-form")
    started = time.time()
    # A double click: the second submission carries the spent token and launches nothing.
    page.get_by_role("button", name="Launch optimization").dblclick()
    wait_idle(page)
    runs = _new_runs(dashboard.experiment_id, started)
    time.sleep(2)  # a second launch, if the double click made one, is written by now
    runs = _new_runs(dashboard.experiment_id, started)
    assert len(runs) == 1, runs
    run_id = runs[0].run_id
    assert MlflowClient().get_run(run_id).data.params["max_metric_calls"] == "60"
    final = jobs.wait(run_id, timeout_s=JOB_TIMEOUT_S)
    assert final.status == "finished", final.error
    page.get_by_text(f"{PROMPT} v{final.prompt_version} registered").wait_for(timeout=60_000)
    screenshot(page, "optimize-02-finished")

    page.get_by_role("link", name="Open in Run explorer").click()
    wait_idle(page)
    page.get_by_text("Outputs side by side").wait_for(timeout=60_000)
    wait_idle(page)
    # The iteration chart (and the frontier and lineage) are drawn.
    assert page.locator(".js-plotly-plot").count() >= 3
    # A word diff of the best template against its parent and the seed: rules were added.
    page.locator("ins").first.wait_for()
    assert page.locator("ins").filter(has_text=re.compile("Never")).count() >= 1
    # Both prompts' outputs on every held-out input, each with the judge's verdict.
    text = main.inner_text()
    assert re.search(r"Prompt version\s+v2", text)
    outputs = main.locator('[data-testid="stCode"]').filter(has_text="[demo stand-in] ")
    test_size = int(MlflowClient().get_run(run_id).data.metrics.get("test_size", 0))
    assert test_size > 0 and outputs.count() == 2 * test_size
    assert text.count("support_quality v1: fail") + text.count("support_quality v1: pass") == (
        2 * test_size
    )
    screenshot(page, "optimize-03-run-explorer")

    # On to the Versions page: the run's two versions, their scores and outputs.
    page.get_by_role("link", name=f"Compare v1 and v{final.prompt_version}").click()
    wait_idle(page)
    page.get_by_text("Held-out judge scores").wait_for(timeout=60_000)
    wait_idle(page)
    assert main.locator("ins").filter(has_text=re.compile("Never")).count() >= 1
    outputs = main.locator('[data-testid="stCode"]').filter(has_text="[demo stand-in] ")
    assert outputs.count() == 2 * test_size
    screenshot(page, "optimize-04-versions")
    assert not page.recorder.errors, page.recorder.errors  # type: ignore[attr-defined]
