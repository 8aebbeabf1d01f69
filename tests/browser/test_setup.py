"""In a real Chromium: the lead creates a criterion and a queue with a reviewer on the
Setup page; MLflow's own API sees both."""

from __future__ import annotations

import pytest
from mlflow.genai import label_schemas as ls
from mlflow.genai import review_queues as rq

from tests.browser.conftest import screenshot, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _form(page, button: str):
    return page.locator('[data-testid="stForm"]').filter(
        has=page.get_by_role("button", name=button)
    )


def test_lead_creates_a_criterion_and_a_queue_through_the_ui(page, dashboard):
    page.goto(dashboard.page_url("setup"))
    wait_idle(page, timeout_ms=90_000)  # the first run loads MLflow; slow on a busy machine
    main = page.locator('[data-testid="stMain"]')
    main.get_by_text("New criterion", exact=True).click()
    form = _form(page, "Create criterion")
    form.locator('input[aria-label="Name"]').fill("tone")
    kind = form.locator('[data-testid="stSelectbox"]').filter(has_text="Kind")
    kind.locator("input").click()
    page.keyboard.type("categorical")
    page.keyboard.press("Enter")
    form.locator('textarea[aria-label="Instructions"]').fill(
        "Is the tone of {{ outputs }} right for {{ inputs }}?"
    )
    form.locator(
        'textarea[aria-label="Options (categorical): one per line or comma-separated"]'
    ).fill("warm, neutral, curt")
    form.get_by_role("button", name="Create criterion").click()
    wait_idle(page)
    page.get_by_text("Created criterion tone (categorical).").wait_for()
    screenshot(page, "setup-01-criterion")
    schema = ls.get_label_schema("tone", experiment_id=dashboard.experiment_id)
    assert schema.input.options == ["warm", "neutral", "curt"]
    assert schema.instruction == "Is the tone of {{ outputs }} right for {{ inputs }}?"

    page.get_by_role("tab", name="Queues").click()
    main.get_by_text("New queue", exact=True).click()
    form = _form(page, "Create queue")
    form.locator('input[aria-label="Queue name"]').fill("tone-pass")
    crit = form.locator('[data-testid="stMultiSelect"]').filter(has_text="Criteria")
    crit.locator("input").click()
    page.keyboard.type("tone")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    # The choice must have landed (on a loaded machine the dropdown can open late).
    crit.get_by_text("tone", exact=True).wait_for(timeout=30_000)
    form.locator('input[aria-label="Reviewers (comma-separated, at least one)"]').fill("ana.lopez")
    form.get_by_role("button", name="Create queue").click()
    # Adding all 85 traces to the queue is ~170 store writes: slow on a busy machine.
    wait_idle(page, timeout_ms=120_000)
    created = page.get_by_text("Created queue tone-pass with", exact=False)
    try:
        created.wait_for(timeout=30_000)
    except Exception as exc:  # say what the page showed instead
        alerts = page.locator('[data-testid="stAlert"]').all_inner_texts()
        raise AssertionError(f"no 'Created queue' message; alerts on the page: {alerts}") from exc
    screenshot(page, "setup-02-queue")
    native = rq.get_review_queue(name="tone-pass", experiment_id=dashboard.experiment_id)
    assert native.users == ["ana.lopez"]
    assert native.schema_ids == [schema.schema_id]
    items = list(rq.list_review_queue_items(native.queue_id, max_results=1000))
    assert len(items) >= 84  # every trace of the demo (and the injection trace)

    # A queue with no reviewers is refused on screen, and nothing is written.
    form = _form(page, "Create queue")
    if not form.is_visible():  # the expander may have closed on the rerun
        main.get_by_text("New queue", exact=True).click()
    form.locator('input[aria-label="Queue name"]').fill("nobody")
    form.locator('input[aria-label="Reviewers (comma-separated, at least one)"]').fill("")
    form.get_by_role("button", name="Create queue").click()
    wait_idle(page)
    page.get_by_text("A queue with no reviewers has nobody to label it", exact=False).wait_for()
    names = {q.name for q in rq.list_review_queues(experiment_id=dashboard.experiment_id)}
    assert "nobody" not in names
    assert not page.recorder.errors
