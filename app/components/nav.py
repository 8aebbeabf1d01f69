"""The page registry: every page of the dashboard, in menu order.

To add a page, append a ``PageSpec`` to ``PAGES`` (a file in ``app/app_pages/``); the
router in ``app/main.py`` needs no change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

PAGES_DIR = Path(__file__).resolve().parents[1] / "app_pages"


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


PAGES: list[PageSpec] = [
    PageSpec("overview.py", "Overview", ":material/dashboard:", "Review", "overview", default=True),
    PageSpec("traces.py", "Traces", ":material/table_rows:", "Review", "traces"),
    PageSpec("label.py", "Label", ":material/rate_review:", "Review", "label"),
    PageSpec("setup.py", "Setup", ":material/settings:", "Review", "setup"),
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


def build_pages() -> dict[str, list[st.Page]]:
    """``st.navigation`` input: sections in first-seen order, pages in list order."""
    sections: dict[str, list[st.Page]] = {}
    for spec in PAGES:
        sections.setdefault(spec.section, []).append(
            st.Page(
                page_path(spec.file),
                title=spec.title,
                icon=spec.icon,
                url_path=spec.url_path,
                default=spec.default,
            )
        )
    return sections
