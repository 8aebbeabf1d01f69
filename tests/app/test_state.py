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


def _opened(**params: str) -> AppTest:
    at = AppTest.from_function(_page)
    for name, value in params.items():
        at.query_params[name] = value
    return at.run()


def _user_picks(at: AppTest, run: str) -> tuple[object, object]:
    """The user sets the run by hand, the page reruns: (run now, parameters applied)."""
    at.session_state["demo_run"] = run
    at.run()
    return at.session_state["demo_run"], at.session_state["demo_applied"]


def test_defaults_are_set_under_the_page_prefix_and_survive_reruns():
    at = _opened()
    assert at.session_state["demo_run"] is None
    assert at.session_state["demo_flash"] == "hello"
    assert at.session_state["demo_tokens"] == [None]
    assert at.session_state["demo_applied"] == {}
    at.session_state["demo_flash"] = "changed"
    at.run()
    assert at.session_state["demo_flash"] == "changed"


def test_a_linked_parameter_wins_once_then_the_users_choice_stays():
    at = _opened(run="a")
    assert at.session_state["demo_run"] == "a"
    assert at.session_state["demo_applied"] == {"run": "a"}
    # The URL still says "a": that must not pull the user back.
    assert _user_picks(at, "c") == ("c", {})
    # A new link (another value) wins again.
    at.query_params["run"] = "d"
    at.run()
    assert at.session_state["demo_run"] == "d"


def test_set_query_param_writes_the_url_without_reapplying_it():
    at = _opened(run="a")
    at.button(key="demo_pick").click().run()
    assert at.query_params["run"] == "b"
    assert at.session_state["demo_run"] == "b"
    assert _user_picks(at, "c") == ("c", {})
