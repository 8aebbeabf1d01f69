"""The shared sidebar (identity) and the router, through AppTest and as plain functions."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.components import nav
from app.components.shell import (
    MAX_NAME_LENGTH,
    NAME_COOKIE,
    auth_providers,
    clean_name,
    commit_name,
    remember_script,
    remembered_name,
)

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
AUTH = {
    "redirect_uri": "http://127.0.0.1:8501/oauth2callback",
    "cookie_secret": "a-long-enough-cookie-secret",
    "client_id": "alignboard",
    "client_secret": "s3cret",
    "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
}
EMAIL = "ana.reviewer@example.com"


# --- plain functions -------------------------------------------------------------------


def test_auth_providers_default_and_named_sections():
    assert auth_providers(None) == []
    assert auth_providers({}) == []
    assert auth_providers({"redirect_uri": "x", "cookie_secret": "y"}) == []
    assert auth_providers(AUTH) == ["default"]
    named = {
        "redirect_uri": "x",
        "cookie_secret": "y",
        "google": {"client_id": "g", "client_secret": "s", "server_metadata_url": "u"},
        "okta": {"server_metadata_url": "u2", "client_id": "o"},
        "expose_tokens": ["id"],
    }
    assert auth_providers(named) == ["google", "okta"]
    assert auth_providers({**named, "client_id": "d"}) == ["default", "google", "okta"]


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("  maria.chen ", "maria.chen"),
        ("Ana   Reviewer", "Ana Reviewer"),
        ("Zoë Ø", "Zoë Ø"),
        (None, None),
        ("", None),
        ("   ", None),
    ],
)
def test_clean_name_normalises(raw, name):
    assert clean_name(raw) == (name, None)


@pytest.mark.parametrize("raw", ["x" * (MAX_NAME_LENGTH + 1), "ana\x00", "a\u200bb"])
def test_clean_name_refuses_names_nobody_can_be(raw):
    name, error = clean_name(raw)
    assert name is None and error


def test_remembered_name_reads_the_percent_encoded_cookie():
    assert remembered_name({}) is None
    assert remembered_name({NAME_COOKIE: "maria.chen"}) == "maria.chen"
    assert remembered_name({NAME_COOKIE: "Zo%C3%AB%20Ana"}) == "Zoë Ana"
    assert remembered_name({NAME_COOKIE: "x" * 500}) is None  # refused, not truncated
    assert remembered_name({"other": "x"}) is None


def test_remember_script_cannot_be_closed_by_a_name():
    script = remember_script("</script><img src=x onerror=alert(1)>")
    assert script.count("</script>") == 1 and script.endswith("</script>")
    assert "<img" not in script
    assert NAME_COOKIE in script and "max-age=31536000" in script
    assert "max-age=0" in remember_script(None)  # clearing the name deletes the cookie
    assert "blur()" in script


def test_nav_urls_are_unique_and_the_root_is_hidden():
    paths = [spec.url_path for spec in nav.PAGES]
    assert len(paths) == len(set(paths)) and nav.ROOT_URL_PATH not in paths
    assert nav.default_spec().url_path == "overview"
    assert nav.FAVICON.is_file() and nav.FAVICON.suffix == ".svg"


# --- AppTest -----------------------------------------------------------------------------


def _app(*, auth: dict | None = None, user: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if auth is not None:
        at.secrets["auth"] = auth
    if user is not None:
        at.user = user
    return at


def _sidebar_text(at: AppTest) -> str:
    parts = [*at.sidebar.caption, *at.sidebar.text, *at.sidebar.markdown, *at.sidebar.error]
    return "\n".join(str(p.value) for p in parts)


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_without_auth_the_reviewer_is_the_typed_name(demo_store):
    at = _app()
    at.session_state["shell_reviewer"] = "maria.chen"
    at.run()
    _ok(at)
    assert at.selectbox(key="shell_reviewer").value == "maria.chen"
    assert not [b for b in at.sidebar.button if b.key and b.key.startswith("shell_login")]
    at.switch_page("app_pages/label.py").run()
    _ok(at)
    assert at.title[0].value == "Label"
    assert not [i for i in at.info if "Pick or type" in str(i.value)]


def test_without_auth_and_without_a_name_label_asks_for_one(demo_store):
    at = _app()
    at.run()
    at.switch_page("app_pages/label.py").run()
    _ok(at)
    assert "Pick or type your name" in at.info[0].value


def test_a_refused_typed_name_says_why_and_is_not_remembered():
    state: dict = {"shell_reviewer": "x" * 200}
    commit_name(state)
    assert state["shell_reviewer"] is None
    assert "at most 80 characters" in state["shell_name_error"]
    assert "shell_remember" not in state  # nothing is sent to the cookie


def test_a_chosen_name_is_normalised_and_queued_for_the_cookie():
    state: dict = {"shell_reviewer": "  new   reviewer "}
    commit_name(state)
    assert state == {"shell_reviewer": "new reviewer", "shell_remember": "new reviewer"}


def test_the_cookie_script_is_drawn_once_per_choice(demo_store):
    at = _app()
    at.session_state["shell_reviewer"] = "new reviewer"
    at.session_state["shell_remember"] = "new reviewer"
    at.run()
    _ok(at)
    html = [h for h in at.get("html") if NAME_COOKIE in h.proto.body]
    assert len(html) == 1 and '"new reviewer"' in html[0].proto.body
    at.run()  # the next run does not write (or blur) again
    assert not [h for h in at.get("html") if NAME_COOKIE in h.proto.body]
    assert at.selectbox(key="shell_reviewer").value == "new reviewer"


def test_a_refused_name_error_is_shown_in_the_sidebar(demo_store):
    at = _app()
    at.session_state["shell_name_error"] = "A reviewer name has at most 80 characters."
    at.run()
    _ok(at)
    assert "at most 80 characters" in _sidebar_text(at)


def test_with_auth_logged_out_there_is_no_name_box_and_label_asks_to_log_in(demo_store):
    at = _app(auth=AUTH, user={"is_logged_in": False})
    # A name left in the session (typed before auth was configured) counts for nothing.
    at.session_state["shell_reviewer"] = "maria.chen"
    at.run()
    _ok(at)
    assert not [s for s in at.sidebar.selectbox if s.key == "shell_reviewer"]
    assert [b.label for b in at.sidebar.button] == ["Log in"]
    at.switch_page("app_pages/label.py").run()
    _ok(at)
    assert at.title[0].value == "Label"
    assert "Log in to label" in at.info[0].value
    assert not at.get("text_area")  # the label form did not run


def test_with_auth_logged_in_the_reviewer_is_the_login(demo_store):
    at = _app(auth=AUTH, user={"is_logged_in": True, "email": EMAIL, "name": "Ana"})
    at.session_state["shell_reviewer"] = "maria.chen"
    at.run()
    _ok(at)
    assert "Signed in as" in _sidebar_text(at) and EMAIL in _sidebar_text(at)
    assert [b.label for b in at.sidebar.button] == ["Log out"]
    assert not [s for s in at.sidebar.selectbox if s.key == "shell_reviewer"]
    at.switch_page("app_pages/label.py").run()
    _ok(at)
    assert not [i for i in at.info if "Log in" in str(i.value)]
    assert at.title[0].value == "Label"


def _context_probe() -> None:
    import streamlit as st

    from app.components import shell

    shell.render_sidebar()
    ctx = shell.context()
    st.text(repr(None if ctx is None else (ctx.reviewer, ctx.signed_in, ctx.login_required)))


@pytest.mark.parametrize(
    ("auth", "user", "typed", "expected"),
    [
        (None, None, "maria.chen", ("maria.chen", False, False)),
        (None, None, "  spaced   name ", ("spaced name", False, False)),
        (AUTH, {"is_logged_in": False}, "maria.chen", ("", False, True)),
        (AUTH, {"is_logged_in": True, "email": EMAIL}, "maria.chen", (EMAIL, True, True)),
        (AUTH, {"is_logged_in": True, "name": "Ana", "sub": "a1"}, None, ("Ana", True, True)),
        (AUTH, {"is_logged_in": True, "sub": "a1"}, None, ("a1", True, True)),
    ],
)
def test_context_reviewer_is_the_login_whenever_auth_is_configured(
    demo_store, auth, user, typed, expected
):
    at = AppTest.from_function(_context_probe, default_timeout=60)
    if auth is not None:
        at.secrets["auth"] = auth
    if user is not None:
        at.user = user
    if typed is not None:
        at.session_state["shell_reviewer"] = typed
    at.run()
    _ok(at)
    assert at.main.text[-1].value == repr(expected)


def test_with_named_providers_there_is_one_login_button_each(demo_store):
    auth = {
        "redirect_uri": AUTH["redirect_uri"],
        "cookie_secret": AUTH["cookie_secret"],
        "google": {k: AUTH[k] for k in ("client_id", "client_secret", "server_metadata_url")},
        "okta": {k: AUTH[k] for k in ("client_id", "client_secret", "server_metadata_url")},
    }
    at = _app(auth=auth, user={"is_logged_in": False}).run()
    _ok(at)
    assert [b.label for b in at.sidebar.button] == ["Log in with google", "Log in with okta"]


def test_auth_without_any_provider_says_what_is_missing(demo_store):
    at = _app(auth={"redirect_uri": "x", "cookie_secret": "y"}, user={"is_logged_in": False})
    at.run()
    _ok(at)
    assert "names no provider" in _sidebar_text(at)
    assert not at.sidebar.button


def test_the_test_providers_secrets_parse_as_one_provider_each():
    import tomllib

    from tests.support.oidc import OidcUser, oidc_provider

    with oidc_provider(user=OidcUser(email="a@example.com", name="A")) as idp:
        default = tomllib.loads(idp.secrets_toml("http://127.0.0.1:{port}/oauth2callback"))
        named = tomllib.loads(idp.secrets_toml("http://x/oauth2callback", provider="corp"))
        metadata = idp.metadata()
    assert auth_providers(default["auth"]) == ["default"]
    assert auth_providers(named["auth"]) == ["corp"]
    assert named["auth"]["corp"]["server_metadata_url"].endswith("/openid-configuration")
    assert (
        metadata["issuer"] == idp.issuer and "S256" in metadata["code_challenge_methods_supported"]
    )
