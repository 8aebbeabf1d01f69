"""The Label page in a real Chromium: a whole queue worked with value keys, typing and Ctrl+Enter.

After the reviewer is chosen (typed into the sidebar box + Enter), these tests only use
``page.keyboard``: no Tab, no click. They check what was saved through MLflow's API.
"""

from __future__ import annotations

import mlflow
import pytest

from core.labeling.labels import current_labels, get_label
from tests.browser.conftest import choose_reviewer, screenshot, wait_idle
from tests.optimization.demo_examples import CRITERION

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FORM = '[data-testid="label-form"]'
# Digits and the letters of the action keys (j k n s f) must type into the rationale.
RATIONALES = [
    f'Reply {i}: quotes "refund in {i + 2} days", j k n s f 1 2 are just text.' for i in range(10)
]


def set_reviewer(page, name: str) -> None:
    """Choose the reviewer in the sidebar, then wait for the form to take the keyboard."""
    choose_reviewer(page, name)
    page.locator(f'{FORM}[data-state="ready"]').wait_for()


def form_trace(page) -> str:
    return page.locator(FORM).get_attribute("data-trace-id")


def wait_for_trace_change(page, before: str) -> str:
    page.wait_for_function(
        """([sel, before]) => {
            const f = document.querySelector(sel);
            return f && f.dataset.traceId !== before && f.dataset.state === 'ready';
        }""",
        arg=[FORM, before],
    )
    wait_idle(page)
    return form_trace(page)


def focus_tag(page) -> str:
    return page.evaluate(
        "() => (document.activeElement?.tagName || '') + '.' + "
        "(document.activeElement?.className || '')"
    )


def rationale_value(page) -> str:
    return page.locator(f"{FORM} textarea.ab-lf-rationale").input_value()


def pressed(page) -> list[str]:
    return page.evaluate(
        """(sel) => [...document.querySelectorAll(sel + ' .ab-lf-values button')]
            .filter(b => b.getAttribute('aria-pressed') === 'true')
            .map(b => b.firstChild.textContent)""",
        FORM,
    )


def test_a_queue_is_labeled_with_value_keys_typing_and_ctrl_enter(page, dashboard):
    reviewer = "kb.reviewer"
    page.goto(dashboard.page_url("label"))
    wait_idle(page)
    set_reviewer(page, reviewer)
    # The focus is not left in the name box: value keys work at once.
    assert "INPUT" not in focus_tag(page), focus_tag(page)
    done = []
    for i, rationale in enumerate(RATIONALES):
        trace_id = form_trace(page)
        key = "1" if i % 2 == 0 else "2"
        page.keyboard.press(key)
        # Choosing a value moves the focus into the rationale: typing goes there.
        assert focus_tag(page).startswith("TEXTAREA"), focus_tag(page)
        page.keyboard.type(rationale)
        page.keyboard.press("Control+Enter")
        nxt = wait_for_trace_change(page, trace_id)
        assert nxt != trace_id
        # After a submit the focus is out of every input, ready for the next value key.
        assert not focus_tag(page).startswith(("TEXTAREA", "INPUT")), focus_tag(page)
        assert rationale_value(page) == ""
        done.append((trace_id, key == "1", rationale))
    screenshot(page, "label-keyboard-ten")

    labels = {
        lab.trace_id: lab
        for lab in current_labels(dashboard.experiment_id, CRITERION, reviewer=reviewer)
    }
    assert set(labels) == {t for t, _, _ in done}
    for trace_id, value, rationale in done:
        assert labels[trace_id].value is value
        assert labels[trace_id].rationale == rationale  # every keystroke, none lost
        mine = [
            a
            for a in mlflow.get_trace(trace_id).info.assessments
            if a.name == CRITERION and a.source.source_id == reviewer
        ]
        assert mine and all(a.source.source_type == "HUMAN" for a in mine)
    assert page.recorder.errors == [], page.recorder.errors


def test_ctrl_enter_without_a_value_saves_nothing_and_keeps_the_rationale(page, dashboard):
    reviewer = "kb.novalue"
    page.goto(dashboard.page_url("label"))
    wait_idle(page)
    set_reviewer(page, reviewer)
    trace_id = form_trace(page)
    page.keyboard.press("Enter")  # Enter goes into the rationale
    page.keyboard.type("half a thought")
    page.keyboard.press("Control+Enter")
    page.locator(FORM).get_by_text("Choose a value first").wait_for()
    assert form_trace(page) == trace_id
    assert rationale_value(page) == "half a thought"
    page.wait_for_timeout(500)
    assert get_label(trace_id, CRITERION, reviewer) is None
    # Then a value key (after leaving the field) and Ctrl+Enter save it, rationale and all.
    page.keyboard.press("Escape")
    page.keyboard.press("2")
    page.keyboard.press("Control+Enter")
    wait_for_trace_change(page, trace_id)
    saved = get_label(trace_id, CRITERION, reviewer)
    assert saved is not None and saved.value is False and saved.rationale == "half a thought"


def test_a_draft_survives_j_k_and_a_reload_and_is_cleared_once_saved(page, dashboard):
    reviewer = "kb.drafts"
    page.goto(dashboard.page_url("label"))
    wait_idle(page)
    set_reviewer(page, reviewer)
    trace_id = form_trace(page)
    page.keyboard.press("2")
    page.keyboard.type("draft: not finished")
    page.keyboard.press("Escape")  # leave the rationale: J/K are navigation again
    page.keyboard.press("j")
    other = wait_for_trace_change(page, trace_id)
    assert pressed(page) == [] and rationale_value(page) == ""
    page.keyboard.press("k")
    assert wait_for_trace_change(page, other) == trace_id
    assert pressed(page) == ["Fail"] and rationale_value(page) == "draft: not finished"

    # A reload is a new Streamlit session; the draft is in this browser's localStorage.
    page.goto(dashboard.page_url(f"label?trace={trace_id}"))
    wait_idle(page)
    # The reviewer's name is remembered across the reload (a cookie; see shell.py).
    page.locator(f'{FORM}[data-state="ready"]').wait_for()
    assert form_trace(page) == trace_id
    assert pressed(page) == ["Fail"] and rationale_value(page) == "draft: not finished"
    assert get_label(trace_id, CRITERION, reviewer) is None  # a draft is not a label

    page.keyboard.press("Control+Enter")  # submit works outside the rationale too
    wait_for_trace_change(page, trace_id)
    saved = get_label(trace_id, CRITERION, reviewer)
    assert saved.value is False and saved.rationale == "draft: not finished"
    drafts = page.evaluate("() => Object.keys(localStorage)")
    assert not [k for k in drafts if k.endswith("." + trace_id)], drafts
    after = form_trace(page)
    page.keyboard.press("k")
    assert wait_for_trace_change(page, after) == trace_id
    # Back on it: the form shows the saved label (no draft left to win over it).
    assert pressed(page) == ["Fail"] and rationale_value(page) == "draft: not finished"


def test_skip_and_flag_from_the_keyboard(page, dashboard):
    from core.labeling.flags import list_flags

    reviewer = "kb.flags"
    page.goto(dashboard.page_url("label"))
    wait_idle(page)
    set_reviewer(page, reviewer)
    first = form_trace(page)
    page.keyboard.press("s")  # skip: no label, next trace
    second = wait_for_trace_change(page, first)
    assert get_label(first, CRITERION, reviewer) is None
    page.keyboard.press("f")  # the flag panel, focus in its comment
    assert page.evaluate("() => document.activeElement?.getAttribute('aria-label')") == (
        "Flag comment"
    )
    page.keyboard.press("Alt+b")  # broken trace
    page.keyboard.press("Control+Enter")  # no comment: refused in the form
    page.locator(FORM).get_by_text("Say what is broken").wait_for()
    page.keyboard.type("The reply is cut off mid-sentence.")
    page.keyboard.press("Control+Enter")
    third = wait_for_trace_change(page, second)
    assert third not in (first, second)
    flags = [f for f in list_flags(dashboard.experiment_id) if f.reviewer == reviewer]
    assert [(f.trace_id, f.kind, f.comment) for f in flags] == [
        (second, "broken", "The reply is cut off mid-sentence.")
    ]
    page.keyboard.press("k")
    assert wait_for_trace_change(page, third) == second
    main = page.locator('[data-testid="stMain"]')
    main.get_by_text("You flagged this:").wait_for()
    assert "The reply is cut off mid-sentence." in main.inner_text()
    assert page.recorder.errors == [], page.recorder.errors


def test_another_reviewer_on_the_same_trace_gets_their_own_form_and_the_keys(page, dashboard):
    # A lead who labels under two names, or a shared laptop: the second name must not see
    # (or save) the first one's draft, and the value keys must work right after Enter,
    # also when the same name is typed again (which reruns nothing on the server).
    page.goto(dashboard.page_url("label"))
    wait_idle(page)
    set_reviewer(page, "kb.first")
    trace_id = form_trace(page)
    page.keyboard.press("1")
    page.keyboard.type("first reviewer's draft")
    page.keyboard.press("Escape")

    set_reviewer(page, "kb.second")
    page.wait_for_function(
        "(sel) => document.querySelector(sel + ' textarea.ab-lf-rationale').value === ''", arg=FORM
    )
    assert form_trace(page) == trace_id
    assert pressed(page) == [] and rationale_value(page) == ""
    page.keyboard.press("2")  # no Tab, no click: straight from the name box
    assert pressed(page) == ["Fail"], pressed(page)
    assert focus_tag(page).startswith("TEXTAREA"), focus_tag(page)
    page.keyboard.type("second reviewer's own")
    page.keyboard.press("Escape")

    set_reviewer(page, "kb.first")
    page.wait_for_function(
        "(sel) => document.querySelector(sel + ' textarea.ab-lf-rationale').value !== ''", arg=FORM
    )
    assert pressed(page) == ["Pass"] and rationale_value(page) == "first reviewer's draft"
    # The same name again: nothing reruns, and the keys are still the form's.
    choose_reviewer(page, "kb.first")
    page.keyboard.press("2")
    assert pressed(page) == ["Fail"], (pressed(page), focus_tag(page))
    assert rationale_value(page) == "first reviewer's draft"
    assert get_label(trace_id, CRITERION, "kb.first") is None
    assert get_label(trace_id, CRITERION, "kb.second") is None
    assert page.recorder.errors == [], page.recorder.errors
