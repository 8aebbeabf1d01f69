"""Identity without login, page URLs and "nothing fetched off-host", in Chromium.

* A typed reviewer name survives a reload and a new tab (a browser cookie read back by a
  new session), and choosing it hands the keyboard back to the page (the Label page's
  value keys work at once).
* Every page of ``nav.PAGES`` opens from its own URL without a "Page not found" popup,
  and the app root lands on the default page's URL.
* Loading pages requests nothing outside 127.0.0.1 (favicon included).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from app.components import nav
from app.components.shell import NAME_COOKIE
from tests.browser.conftest import screenshot, wait_idle

pytestmark = pytest.mark.browser

#: A cold page (first load of the store) can take long on a busy machine.
IDLE_MS = 120_000


@pytest.fixture(autouse=True)
def _patient(page):
    page.set_default_timeout(IDLE_MS)


NAME = "zoe.tester"
OTHER = "yann.other"


def _name_box(page):
    return page.locator(".st-key-shell_reviewer")


def _shown_name(page) -> str:
    return _name_box(page).locator("input").input_value() or _name_box(page).inner_text()


def _choose_name(page, name: str, *, accepted: bool = True) -> None:
    """Type ``name`` into the reviewer box and press Enter; wait for the rerun's effect.

    An accepted name is written to the cookie by the rerun (so waiting for the cookie
    also waits for the blur that comes with it); a refused one shows an error.
    """
    box = _name_box(page).locator("input")
    box.click()
    box.fill(name)
    page.keyboard.press("Enter")
    if accepted:
        page.wait_for_function(
            "([c, v]) => document.cookie.split('; ').includes(c + '=' + encodeURIComponent(v))",
            arg=[NAME_COOKIE, name],
        )
    else:
        page.locator('[data-testid="stSidebar"] [data-testid="stAlert"]').wait_for()
    wait_idle(page, IDLE_MS)


def _focus(page) -> dict:
    return page.evaluate(
        """() => {
            const el = document.activeElement;
            return {
                tag: el ? el.tagName : null,
                inSidebar: !!(el && el.closest && el.closest('[data-testid="stSidebar"]')),
            };
        }"""
    )


def test_typed_name_survives_reload_and_new_tab_and_frees_the_keyboard(page, dashboard):
    page.goto(dashboard.page_url("label"))
    wait_idle(page, IDLE_MS)
    assert "Pick or type your name" in page.locator('[data-testid="stMain"]').inner_text()
    _choose_name(page, NAME)
    assert NAME in _shown_name(page)

    # The choice is committed: the focus left the name box, so keys reach the page.
    focus = _focus(page)
    assert focus["tag"] not in ("INPUT", "TEXTAREA"), focus
    assert not focus["inSidebar"], focus
    page.keyboard.press("1")
    # The Label page's first value key chose the first value (its button is pressed).
    page.locator(
        '[data-testid="label-form"] button[data-index="0"][aria-pressed="true"]'
    ).wait_for()
    wait_idle(page, IDLE_MS)
    assert NAME in _shown_name(page)  # "1" did not type into the name box
    screenshot(page, "identity-name-chosen")

    cookies = {c["name"]: c for c in page.context.cookies()}
    assert NAME_COOKIE in cookies and cookies[NAME_COOKIE]["value"] == NAME

    # A reload is a new Streamlit session: the name comes back from the cookie.
    page.reload()
    wait_idle(page, IDLE_MS)
    assert NAME in _shown_name(page)
    assert "Pick or type your name" not in page.locator('[data-testid="stMain"]').inner_text()

    # So does a new tab of the same browser (opened on another page's link).
    tab = page.context.new_page()
    try:
        tab.goto(dashboard.page_url("traces"))
        wait_idle(tab, IDLE_MS)
        assert NAME in _shown_name(tab)
        # A new choice replaces the remembered one.
        _choose_name(tab, OTHER)
        assert OTHER in _shown_name(tab)
    finally:
        tab.close()
    third = page.context.new_page()
    try:
        third.goto(dashboard.page_url("overview"))
        wait_idle(third, IDLE_MS)
        assert OTHER in _shown_name(third)
    finally:
        third.close()
    assert not page.recorder.errors, page.recorder.errors


def test_a_name_nobody_can_be_is_refused_and_not_remembered(page, dashboard):
    page.goto(dashboard.page_url("overview"))
    wait_idle(page, IDLE_MS)
    _choose_name(page, "x" * 200, accepted=False)
    side = page.locator('[data-testid="stSidebar"]')
    assert "at most 80 characters" in side.inner_text()
    assert NAME_COOKIE not in {c["name"] for c in page.context.cookies()}


@pytest.mark.parametrize("spec", nav.PAGES, ids=lambda s: s.url_path)
def test_every_page_opens_from_its_own_url(page, dashboard, spec):
    page.goto(dashboard.page_url(spec.url_path))
    wait_idle(page, IDLE_MS)
    body = page.locator("body").inner_text()
    assert "Page not found" not in body, spec
    assert urlsplit(page.url).path == f"/{spec.url_path}"
    assert not page.recorder.dialogs and not page.recorder.errors, page.recorder.__dict__


def test_the_root_lands_on_the_default_page_url(page, dashboard):
    page.goto(dashboard.url + "/")
    page.wait_for_url(re.compile(rf"/{nav.default_spec().url_path}$"), timeout=IDLE_MS)
    wait_idle(page, IDLE_MS)
    assert "Page not found" not in page.locator("body").inner_text()
    assert page.locator("h1").first.inner_text().strip() == nav.default_spec().title


def test_pages_fetch_nothing_off_host(page, dashboard):
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    page.on("websocket", lambda ws: seen.append(ws.url))
    for spec in nav.PAGES:
        page.goto(dashboard.page_url(spec.url_path))
        wait_idle(page, IDLE_MS)
        page.wait_for_timeout(500)  # late requests: fonts, the favicon
    off_host = [
        url
        for url in seen
        if urlsplit(url).scheme not in ("data", "blob", "about")
        and urlsplit(url).hostname != "127.0.0.1"
    ]
    assert seen and not off_host, off_host
    # The tab icon is the local SVG, inlined: not a font-CDN image.
    icon = page.evaluate(
        "() => [...document.querySelectorAll('link[rel~=\"icon\"]')].map(l => l.href)"
    )
    assert icon and all(h.startswith("data:image/svg+xml") for h in icon), icon
