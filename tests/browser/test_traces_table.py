"""In a real Chromium: the Traces table shows whole trace ids and the response as text,
rows selected in it become a review queue (checked through MLflow's API), and its link
opens the Label page on that trace."""

from __future__ import annotations

import pytest

from core.labeling.queues import get_queue, queue_items
from core.labeling.traces import all_trace_ids, get_trace
from core.views.traces import value_text
from tests.browser.conftest import screenshot, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROW_PX = 35  # Streamlit's dataframe row (and header) height
QUEUE = "browser-picked"


def _grid(page):
    return page.locator('[data-testid="stDataFrame"]').first


def _cells(page) -> list[str]:
    """The texts of the table's cells that the grid renders for assistive technology."""
    cells = _grid(page).locator('[role="gridcell"]')
    return [cells.nth(i).inner_text() for i in range(cells.count())]


def _scroll_grid(page, left: int) -> None:
    """Scroll the table sideways (the grid renders only the columns in view)."""
    _grid(page).locator(".dvn-scroller").evaluate(f"e => {{ e.scrollLeft = {left}; }}")
    page.wait_for_timeout(400)


def _click_row_marker(page, row: int) -> None:
    """Tick a row's selection checkbox (the grid is a canvas: click where it is drawn)."""
    box = _grid(page).bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 12, box["y"] + ROW_PX + ROW_PX * row + ROW_PX / 2)
    wait_idle(page)


def test_full_ids_text_selection_to_queue_and_link_to_label(page, dashboard):
    ids = all_trace_ids(dashboard.experiment_id)
    page.goto(dashboard.page_url("traces"))
    wait_idle(page, 90_000)  # the first run of a fresh server also loads MLflow
    _grid(page).wait_for()
    page.wait_for_timeout(500)
    cells = _cells(page)
    # Whole ids, as MLflow has them (35 characters: never cut).
    assert ids[0] in cells and ids[1] in cells, cells[:12]
    assert f"label?trace={ids[0]}" in cells
    screenshot(page, "traces-01-table")
    _scroll_grid(page, 5000)
    far = _cells(page)
    _scroll_grid(page, 0)
    response = value_text(get_trace(ids[0]).outputs)
    assert response and not response.startswith("{")
    assert response in far, far[:12]
    assert not any(c.lstrip().startswith(("{", "[")) for c in cells + far)

    for row in (0, 2, 3):
        _click_row_marker(page, row)
    page.get_by_text("3 selected trace(s)").wait_for()
    page.get_by_label("Queue name", exact=True).fill(QUEUE)
    page.keyboard.press("Tab")
    reviewers = page.locator('[data-testid="stMultiSelect"]').filter(
        has_text="Reviewers (at least one)"
    )
    reviewers.locator("input").click()
    page.keyboard.type("ann.browser")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    wait_idle(page)
    screenshot(page, "traces-02-selection")
    page.get_by_role("button", name="Create queue from selection").click()
    wait_idle(page)
    page.get_by_text(f"Created queue {QUEUE} with 3 traces").wait_for()
    q = get_queue(dashboard.experiment_id, QUEUE)
    assert q.reviewers == ("ann.browser",) and q.criteria == ("support_quality",)
    assert {i.trace_id for i in queue_items(q)} == {ids[0], ids[2], ids[3]}

    # The link column opens the Label page on that trace (in a new tab).
    box = _grid(page).bounding_box()
    assert box is not None
    # On the link's text, past the row markers and the id column; the grid takes a click
    # as a link's only once the pointer has hovered it.
    link = (box["x"] + 360, box["y"] + ROW_PX + ROW_PX / 2)
    page.mouse.move(*link)
    page.wait_for_timeout(300)
    with page.context.expect_page() as opened:
        page.mouse.click(*link)
    label = opened.value
    label.wait_for_load_state()
    wait_idle(label)
    assert f"trace={ids[0]}" in label.url
    main = label.locator('[data-testid="stMain"]')
    if "Pick or type your name" in main.inner_text():
        box_ = label.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').filter(
            has_text="Your name"
        )
        box_.locator("input").click()
        label.keyboard.type("ann.browser")
        label.keyboard.press("Enter")
        wait_idle(label)
    label.get_by_text(ids[0]).first.wait_for()
    screenshot(label, "traces-03-label")
    assert not page.recorder.errors, page.recorder.errors
