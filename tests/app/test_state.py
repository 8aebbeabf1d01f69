"""init_page_state: page-prefixed defaults, and a link's query parameter applied once."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def _page() -> None:
    import streamlit as st

    from app.components.state import init_page_state, set_query_param

    applied = init_page_state(
        "demo", {"run": None, "flash": "hello", "tokens": [None]}, query_params={"run": "run"}
    )
    st.session_state["demo_applied"] = applied
    if st.button("pick b", key="demo_pick"):
        st.session_state["demo_run"] = "b"
        set_query_param("demo", "run", "b")


def test_defaults_are_set_under_the_page_prefix_and_survive_reruns():
    at = AppTest.from_function(_page).run()
    assert at.session_state["demo_run"] is None
    assert at.session_state["demo_flash"] == "hello"
    assert at.session_state["demo_tokens"] == [None]
    assert at.session_state["demo_applied"] == {}
    at.session_state["demo_flash"] = "changed"
    at.run()
    assert at.session_state["demo_flash"] == "changed"


def test_a_linked_parameter_wins_once_then_the_users_choice_stays():
    at = AppTest.from_function(_page)
    at.query_params["run"] = "a"
    at.run()
    assert at.session_state["demo_run"] == "a"
    assert at.session_state["demo_applied"] == {"run": "a"}
    # The user moves on; the URL still says "a", which must not pull them back.
    at.session_state["demo_run"] = "c"
    at.run()
    assert at.session_state["demo_run"] == "c"
    assert at.session_state["demo_applied"] == {}
    # A new link (another value) wins again.
    at.query_params["run"] = "d"
    at.run()
    assert at.session_state["demo_run"] == "d"


def test_set_query_param_writes_the_url_without_reapplying_it():
    at = AppTest.from_function(_page)
    at.query_params["run"] = "a"
    at.run()
    at.button(key="demo_pick").click().run()
    assert at.query_params["run"] == "b"
    assert at.session_state["demo_run"] == "b"
    at.session_state["demo_run"] = "c"
    at.run()
    assert at.session_state["demo_run"] == "c"
    assert at.session_state["demo_applied"] == {}
