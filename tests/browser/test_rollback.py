"""In a real Chromium: on the Versions page, point production at v1, then v5, roll it back
with one click (to v1, its previous target, never v4), see the alias history, and check
through MLflow that production is v1 and that MLflow loads v1."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from core.optimization import alias_history, registry
from tests.browser.conftest import choose_reviewer, screenshot, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

JUDGE = "support_quality"
WHO = "pat.rollback"


def _register_five(experiment_id: str) -> None:
    from core.optimization.judging import build_judge
    from core.optimization.spec import JudgeSpec

    for i in range(1, 6):
        spec = JudgeSpec(
            JUDGE,
            f"Is {{{{ outputs }}}} a good answer to {{{{ inputs }}}}? Variant {i}.",
            "pass_fail",
            "demo:/judge",
        )
        registry.register_version(build_judge(spec), experiment_id, run_id=None, test_metrics={})


def _set_alias(page, version: int) -> None:
    form = page.locator('[data-testid="stForm"]').filter(has_text="Set an alias")
    form.get_by_label("Alias", exact=True).fill("production")
    box = form.locator('[data-testid="stSelectbox"]').filter(has_text="On version")
    box.locator("input").click()
    page.keyboard.type(f"v{version}")
    page.keyboard.press("Enter")
    form.get_by_role("button", name="Set alias").click()
    wait_idle(page)


def _history_cells(page) -> list[str]:
    grid = page.locator('[data-testid="stDataFrame"]').last  # the history is the last table
    cells = grid.locator('[role="gridcell"]')
    return [cells.nth(i).inner_text() for i in range(cells.count())]


def test_roll_back_production_from_v5_to_v1_with_clicks(page, dashboard):
    from mlflow.genai.scorers import get_scorer

    eid = dashboard.experiment_id
    _register_five(eid)
    page.goto(dashboard.page_url("versions"))
    wait_idle(page, 90_000)  # the first run of a fresh server also loads MLflow
    choose_reviewer(page, WHO)
    main = page.locator('[data-testid="stMain"]')
    expect(main).to_contain_text("No alias change recorded yet")

    _set_alias(page, 1)
    expect(main).to_contain_text("production now points at v1.")
    _set_alias(page, 5)
    expect(main).to_contain_text("production now points at v5 (was v1).")
    assert registry.get_alias(eid, JUDGE, "production") == 5
    screenshot(page, "rollback-01-v5")

    button = page.get_by_role("button", name="Roll back production to v1 (its previous target)")
    button.click()
    wait_idle(page)
    expect(main).to_contain_text("Rolled production back to v1, its previous target")
    # Nothing came before v1: the button is disabled and says why.
    expect(page.get_by_role("button", name="Roll back production")).to_be_disabled()
    expect(main).to_contain_text("no previous target")
    page.get_by_role("heading", name="Alias history").scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    cells = _history_cells(page)
    screenshot(page, "rollback-02-history")
    # Three entries, newest first: rollback v5 -> v1, set v1 -> v5, set (unset) -> v1.
    assert [c for c in cells if c in ("rollback", "set")] == ["rollback", "set", "set"], cells
    assert cells.count(WHO) == 3 and "unset" in cells, cells

    # MLflow agrees: the alias and the scorer version it names.
    assert registry.get_alias(eid, JUDGE, "production") == 1
    assert "Variant 1." in get_scorer(name=JUDGE, experiment_id=eid, version=1).instructions
    recorded = alias_history.history(eid, "judge", JUDGE, "production")
    assert [(c.action, c.version, c.who) for c in recorded] == [
        ("rollback", 1, WHO),
        ("set", 5, WHO),
        ("set", 1, WHO),
    ]
    assert not page.recorder.errors, page.recorder.errors
