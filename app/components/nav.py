"""The page registry: every page of the dashboard, in menu order.

To add a page, append a ``PageSpec`` to ``PAGES`` (a file in ``app/app_pages/``); the
router in ``app/main.py`` needs no change.

Every page keeps its own URL (``/overview``, ``/label``, ...). Streamlit serves its default
page at ``/`` only and answers that page's own name with a "Page not found" popup, so no
listed page is Streamlit's default: a hidden root page takes ``/`` and forwards to the page
marked ``default`` here (see :func:`leave_root`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

PAGES_DIR = Path(__file__).resolve().parents[1] / "app_pages"
FAVICON = Path(__file__).resolve().parents[1] / "static" / "favicon.svg"
"""The tab icon, a local file (Streamlit inlines it as a data URL: nothing is fetched)."""
ROOT_URL_PATH = "root"
"""The hidden root page's reserved name (Streamlit serves a default page at ``/`` only)."""


@dataclass(frozen=True)
class PageSpec:
    """One page of the dashboard."""

    file: str
    """File name in ``app/app_pages/``."""
    title: str
    icon: str
    section: str
    """Menu section the page is listed under."""
    url_path: str
    default: bool = False
    """Where the app root (``/``) sends the browser."""
    needs_reviewer: str | None = None
    """What the page needs a reviewer for ("label"): the router asks to log in or pick a
    name ("Log in to label") before the page runs. None: anyone may open it."""


PAGES: list[PageSpec] = [
    PageSpec("overview.py", "Overview", ":material/dashboard:", "Review", "overview", default=True),
    PageSpec("traces.py", "Traces", ":material/table_rows:", "Review", "traces"),
    PageSpec(
        "label.py", "Label", ":material/rate_review:", "Review", "label", needs_reviewer="label"
    ),
    PageSpec("setup.py", "Setup", ":material/settings:", "Review", "setup"),
    # Readable without a name (disputes, flags); saving a gold label asks for one.
    PageSpec("adjudicate.py", "Adjudicate", ":material/gavel:", "Review", "adjudicate"),
    PageSpec("agreement.py", "Agreement", ":material/handshake:", "Analyze", "agreement"),
    PageSpec("scores.py", "Score", ":material/fact_check:", "Analyze", "score"),
    PageSpec("versions.py", "Versions", ":material/compare_arrows:", "Analyze", "versions"),
    PageSpec("align.py", "Align", ":material/tune:", "Align", "align"),
    PageSpec("optimize.py", "Optimize", ":material/auto_fix_high:", "Align", "optimize"),
    PageSpec("run_explorer.py", "Run explorer", ":material/query_stats:", "Align", "run_explorer"),
]


def page_path(file: str) -> str:
    """Path of a page file, for ``st.switch_page`` and ``st.page_link``."""
    return str(PAGES_DIR / file)


def default_spec() -> PageSpec:
    """The page the app root opens (the one marked ``default``, else the first)."""
    return next((spec for spec in PAGES if spec.default), PAGES[0])


def _root() -> None:
    # Only reached when main.py did not call leave_root (e.g. a bare st.navigation test).
    st.switch_page(page_path(default_spec().file))


def build_pages() -> dict[str, list[st.Page]]:
    """``st.navigation`` input: sections in first-seen order, pages in list order.

    The first section also holds the hidden root page (Streamlit's default page, served
    at ``/``), so every listed page keeps its own URL.
    """
    sections: dict[str, list[st.Page]] = {}
    for spec in PAGES:
        sections.setdefault(spec.section, []).append(
            st.Page(
                page_path(spec.file),
                title=spec.title,
                icon=spec.icon,
                url_path=spec.url_path,
            )
        )
    root = st.Page(
        _root,
        title=default_spec().title,
        url_path=ROOT_URL_PATH,
        default=True,
        visibility="hidden",
    )
    first = next(iter(sections))
    sections[first].insert(0, root)
    return sections


def spec_of(page: st.Page) -> PageSpec | None:
    """The ``PageSpec`` of the page ``st.navigation`` picked (None for the root page)."""
    return next((spec for spec in PAGES if spec.url_path == page.url_path), None)


def leave_root(page: st.Page) -> None:
    """At the app root (``/``), switch to the default page under its own URL.

    Call it right after ``st.navigation``, before anything is drawn.
    """
    if page.url_path == "":
        st.switch_page(page_path(default_spec().file))
