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


def _form_page() -> None:
    import streamlit as st

    from app.components.state import init_page_state

    init_page_state("form", {"optimizer": "gepa", "url": ""}, keep=("optimizer", "url"))
    if st.session_state.get("form_shown", True):
        st.selectbox("Optimizer", ["gepa", "memalign"], key="form_optimizer")
        st.text_input("Base URL", key="form_url")


def test_kept_widget_values_survive_runs_that_do_not_draw_the_widgets():
    at = AppTest.from_function(_form_page).run()
    at.selectbox(key="form_optimizer").set_value("memalign")
    at.text_input(key="form_url").set_value("http://127.0.0.1:8080/v1").run()
    # Another page is open: the widgets are not drawn, and Streamlit drops their values.
    at.session_state["form_shown"] = False
    at.run()
    assert "form_optimizer" not in at.session_state
    at.session_state["form_shown"] = True
    at.run()
    assert at.selectbox(key="form_optimizer").value == "memalign"
    assert at.text_input(key="form_url").value == "http://127.0.0.1:8080/v1"


def _unkept_page() -> None:
    import streamlit as st

    from app.components.state import init_page_state

    init_page_state("plain", {"optimizer": "gepa"})
    if st.session_state.get("plain_shown", True):
        st.selectbox("Optimizer", ["gepa", "memalign"], key="plain_optimizer")


def test_without_keep_the_default_comes_back():
    """What ``keep`` fixes: Streamlit's own behaviour resets the widget to its default."""
    at = AppTest.from_function(_unkept_page).run()
    at.selectbox(key="plain_optimizer").set_value("memalign").run()
    at.session_state["plain_shown"] = False
    at.run()
    at.session_state["plain_shown"] = True
    at.run()
    assert at.selectbox(key="plain_optimizer").value == "gepa"
