"""In a real Chromium: a finished demo alignment in the Run explorer lists the held-out
examples it changed, with the human's and both judges' rationales as literal text."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.optimization import record
from core.optimization.engine import run_alignment
from core.optimization.recorder import MlflowRunRecorder
from core.views.runs import MARKS_LEGEND, load_run_view
from tests.browser.conftest import SCREENSHOTS, screenshot, wait_idle
from tests.optimization.demo_examples import demo_settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: Put in the first fixed example's human rationale: it must read as these characters.
MARKUP = '<b>bold</b> **stars** <img src=x onerror="window.__pwned=3"> [link](javascript:1)'


def _finished_run_with_markup(experiment_id: str) -> tuple[str, record.Prediction]:
    """A real demo GEPA alignment whose first fixed held-out example's human rationale is
    rewritten (through the run record's writer) to carry markup."""
    result = run_alignment(demo_settings(experiment_id, "gepa"))
    flips = load_run_view(result.run_id).test.flips()
    assert flips.fixed, "the demo alignment fixes held-out examples"
    target = flips.fixed[0].trace_id
    recorder = MlflowRunRecorder(result.run_id)
    test = record.read_run_record(recorder.client, result.run_id, "gepa").test
    assert test is not None
    preds = tuple(
        replace(p, human_rationale=MARKUP) if p.trace_id == target else p for p in test.predictions
    )
    record.write_test_metrics(recorder, replace(test, predictions=preds))
    (changed,) = [p for p in preds if p.trace_id == target]
    return result.run_id, changed


def test_the_run_explorer_shows_the_flips_with_rationales_as_text(page, dashboard):
    run_id, flip = _finished_run_with_markup(dashboard.experiment_id)
    view = load_run_view(run_id)
    flips = view.test.flips()
    page.goto(dashboard.page_url(f"run_explorer?run={run_id}"))
    wait_idle(page)
    main = page.locator('[data-testid="stMain"]')
    page.get_by_text(flips.summary).wait_for()
    page.get_by_text("Fixed: wrong → right").wait_for()
    # The flip reader opens on the first fixed example: human, seed and aligned judge.
    cards = {
        who: main.locator(f".st-key-explorer_flip_{who}") for who in ("human", "seed", "aligned")
    }
    for card in cards.values():
        card.wait_for()
    texts = {
        who: [t.inner_text() for t in card.locator('[data-testid="stText"]').all()]
        for who, card in cards.items()
    }
    assert texts["human"] == ["Pass" if flip.human else "Fail", MARKUP]
    assert texts["seed"][1] == flip.seed_rationale
    assert texts["aligned"][1] == flip.aligned_rationale
    # Literal characters: no element was made from the markup, no handler ran.
    assert cards["human"].locator("b, img").count() == 0
    assert page.evaluate("() => window.__pwned") is None
    # One star meaning, with its legend under the charts and the candidate selector.
    assert main.get_by_text(MARKS_LEGEND).count() == 4
    text = main.inner_text()
    assert "price unknown" in text and "$0" not in text
    # The link comes after the cards in the same script run: wait for it, do not count.
    main.locator(f'a[href*="label?trace={flip.trace_id}"]').first.wait_for()
    screenshot(page, "run-explorer-flips")
    # The page is taller than a full-page shot: one of the flips section itself.
    page.get_by_text("Fixed: wrong → right").scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    page.screenshot(path=str(SCREENSHOTS / "run-explorer-flips-section.png"))
    assert page.recorder.errors == [], page.recorder.errors
