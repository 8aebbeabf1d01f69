"""Keyboard shortcuts of the Label page, in one place so buttons and the legend agree.

Streamlit ignores a shortcut without Ctrl/Cmd/Alt while the focus is in a text field
(plain letters, digits, Enter and arrows type into the field instead), and always fires
one with such a modifier. So value and navigation keys are plain keys (safe while
writing a rationale) and submit is ``Ctrl+Enter`` (works from inside the rationale).
"""

from __future__ import annotations

import streamlit as st

SUBMIT = "Ctrl+Enter"
NEXT = "J"
PREVIOUS = "K"
NEXT_PENDING = "N"
MAX_VALUE_KEYS = 9


def value_key(index: int) -> str | None:
    """Shortcut of the ``index``-th value button (1-9), or None beyond nine."""
    return str(index + 1) if index < MAX_VALUE_KEYS else None


def legend(values: list[str]) -> None:
    """One line listing every key, shown under the label form."""
    parts = [f"`{value_key(i)}` {v}" for i, v in enumerate(values) if value_key(i)]
    parts += [
        f"`{SUBMIT}` submit & next",
        f"`{NEXT}` next",
        f"`{PREVIOUS}` previous",
        f"`{NEXT_PENDING}` next unlabeled",
    ]
    st.caption(
        "Keys: " + " · ".join(parts) + ". Letters and digits type into the rationale while "
        f"it has the focus; click outside it (or press Tab) to use them again. `{SUBMIT}` "
        "works everywhere."
    )
