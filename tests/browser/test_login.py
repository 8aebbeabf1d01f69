"""Login end to end: ``st.login`` against a loopback OIDC provider, in Chromium.

The dashboard subprocess gets a secrets file (``STREAMLIT_SECRETS_FILES``) whose ``[auth]``
section points at :mod:`tests.support.oidc`; the provider approves every login as one
user. The test clicks "Log in", comes back signed in as that user, labels a trace on the
Label page and reads the label's source id back through MLflow, then logs out.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.browser.conftest import screenshot, wait_idle
from tests.support.oidc import OidcProvider, OidcUser, oidc_provider

pytestmark = pytest.mark.browser

#: A cold page (first load of the store) can take long on a busy machine.
IDLE_MS = 120_000


@pytest.fixture(autouse=True)
def _patient(page):
    page.set_default_timeout(IDLE_MS)


USER = OidcUser(email="ana.reviewer@example.com", name="Ana Reviewer", sub="ana-1")
RATIONALE = "Signed-in label: the reply answers the question."


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcProvider]:
    with oidc_provider(user=USER, client_id="alignboard-login-test") as provider:
        yield provider


@pytest.fixture(scope="module")
def _auth_secrets(idp: OidcProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Point the dashboard started next at a secrets.toml with ``[auth]``.

    The provider's keys sit directly under ``[auth]`` (``st.login()``); named providers
    (``[auth.NAME]``, ``st.login(NAME)``) are covered by tests/app/test_shell.py.
    """
    folder = tmp_path_factory.mktemp("auth-secrets")
    secrets = folder / "secrets.toml"
    # Streamlit fills in {port} with server.port, so the file works on any free port.
    secrets.write_text(
        idp.secrets_toml("http://127.0.0.1:{port}/oauth2callback", provider=None),
        encoding="utf-8",
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STREAMLIT_SECRETS_FILES", str(secrets))
        yield


@pytest.fixture(scope="module")
def dashboard(_auth_secrets, dashboard):
    """The shared dashboard fixture, started with the auth secrets above (order matters)."""
    return dashboard


def _sidebar(page):
    return page.locator('[data-testid="stSidebar"]')


def _signed_in_as(page) -> str | None:
    """The identity the sidebar shows under "Signed in as" (None when not signed in)."""
    lines = [ln.strip() for ln in _sidebar(page).inner_text().splitlines() if ln.strip()]
    if "Signed in as" not in lines:
        return None
    return lines[lines.index("Signed in as") + 1]


def _human_sources(trace_id: str, criterion: str) -> list[tuple[str, object, str | None]]:
    import mlflow

    trace = mlflow.get_trace(trace_id)
    out = []
    for a in trace.info.assessments or []:
        if a.name == criterion and str(a.source.source_type).endswith("HUMAN"):
            value = getattr(a, "value", None)
            if value is None and getattr(a, "feedback", None) is not None:
                value = a.feedback.value
            out.append((a.source.source_id, value, a.rationale))
    return out


def test_login_labels_as_the_provider_user_and_logout(page, dashboard, idp):
    page.goto(dashboard.page_url("label"))
    wait_idle(page, IDLE_MS)
    side = _sidebar(page)
    # With [auth] there is no name box at all: the reviewer can only be the login.
    assert side.get_by_text("Your name (reviewer)").count() == 0
    assert page.locator(".st-key-shell_reviewer").count() == 0
    main = page.locator('[data-testid="stMain"]')
    assert "Log in to label" in main.inner_text()
    screenshot(page, "login-before")

    logins_before, logouts_before = idp.logins, idp.logouts
    side.get_by_role("button", name="Log in").click()
    # Streamlit -> /auth/login -> provider /authorize -> /oauth2callback -> / -> /overview
    page.wait_for_url(re.compile(r"/overview$"), timeout=IDLE_MS)
    wait_idle(page, IDLE_MS)
    assert _signed_in_as(page) == USER.email
    assert idp.logins == logins_before + 1
    assert "POST /token" in idp.requests and "GET /jwks" in idp.requests
    assert page.locator(".st-key-shell_reviewer").count() == 0
    screenshot(page, "login-signed-in")

    # Label one trace; its HUMAN feedback must carry exactly the login as source id.
    tid = dashboard.injection_trace_id
    page.goto(dashboard.page_url(f"label?trace={tid}"))
    wait_idle(page, IDLE_MS)
    assert _signed_in_as(page) == USER.email
    assert "Log in to label" not in main.inner_text()
    before = {crit: _human_sources(tid, crit) for crit in _criteria(dashboard)}
    page.locator('[data-testid="label-form"][data-state="ready"]').wait_for()
    page.keyboard.press("1")
    # The first value is chosen in the form and the focus moved into the rationale.
    page.locator(
        '[data-testid="label-form"] button[data-index="0"][aria-pressed="true"]'
    ).wait_for()
    page.keyboard.type(RATIONALE)
    page.keyboard.press("Control+Enter")
    wait_idle(page, IDLE_MS)
    new = _wait_for_new_labels(tid, before, dashboard)
    screenshot(page, "login-labeled")
    assert [(src, why) for src, _, why in new] == [(USER.email, RATIONALE)], new

    side.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/overview$"), timeout=IDLE_MS)
    wait_idle(page, IDLE_MS)
    assert idp.logouts == logouts_before + 1
    assert _signed_in_as(page) is None
    assert side.get_by_role("button", name="Log in").count() == 1
    # A new session after logout is not signed in either (the cookie is gone).
    page.goto(dashboard.page_url("label"))
    wait_idle(page, IDLE_MS)
    assert "Log in to label" in main.inner_text()
    assert not page.recorder.errors, page.recorder.errors


def _wait_for_new_labels(tid: str, before: dict, dashboard) -> list:
    """HUMAN labels on ``tid`` that were not there ``before`` (polls: the save is async)."""
    deadline = time.monotonic() + IDLE_MS / 1000
    while True:
        after = {crit: _human_sources(tid, crit) for crit in _criteria(dashboard)}
        new = [label for crit in after for label in after[crit] if label not in before[crit]]
        if new or time.monotonic() > deadline:
            return new
        time.sleep(0.5)


def _criteria(dashboard) -> list[str]:
    from core.labeling.criteria import list_criteria

    return [c.name for c in list_criteria(dashboard.experiment_id)]
