"""The run panel's outcome banner: a cancelled run says plainly whether it registered."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def _page() -> None:
    from types import SimpleNamespace

    import streamlit as st

    from app.components import run_progress

    ended = st.session_state.get("ended") or {}
    now = SimpleNamespace(
        status="cancelled",
        judge_version=ended.get("version"),
        prompt_version=None,
        not_registered_reason=ended.get("reason"),
        register_if_cancelled=ended.get("keep"),
        error=None,
        is_prompt=False,
        is_score=False,
    )
    run_progress.outcome_banner(now, "Best so far vs the seed: accuracy 0.60 vs 0.50.")


def test_a_cancelled_run_without_the_choice_says_nothing_was_registered():
    at = AppTest.from_function(_page)
    at.session_state["ended"] = {"reason": "cancelled", "keep": False}
    at.run()
    assert not at.exception
    assert [w.value for w in at.warning] == [
        "**Cancelled — no version registered (cancelled runs are not registered; relaunch "
        'with "Register if cancelled" to keep the best so far).** Best so far vs the seed: '
        "accuracy 0.60 vs 0.50."
    ]


def test_a_cancelled_run_with_the_choice_names_its_version():
    at = AppTest.from_function(_page)
    at.session_state["ended"] = {"version": 6, "keep": True}
    at.run()
    assert not at.exception and not at.warning
    assert at.success[0].value.startswith(
        "**Cancelled — registered v6 (Register if cancelled was on).**"
    )
