"""Keyboard keys of the Label page, in one place so the form's handler and the legend agree.

The keys are handled by the label form component (``label_form/label_form.js``), not by
Streamlit's button shortcuts: those never fire while the focus is in a text field, so a
reviewer had to Tab out of the rationale before every value key.
"""

from __future__ import annotations

SUBMIT = "Ctrl+Enter"
NEXT = "J"
PREVIOUS = "K"
NEXT_PENDING = "N"
SKIP = "S"
FLAG = "F"
LEAVE_FIELD = "Esc"
MAX_VALUE_KEYS = 9


def value_key(index: int) -> str | None:
    """Key of the ``index``-th value (1-9), or None beyond nine."""
    return str(index + 1) if index < MAX_VALUE_KEYS else None


def legend(values: list[str]) -> str:
    """One line listing every key, shown under the label form."""
    parts = [f"{value_key(i)} {v}" for i, v in enumerate(values) if value_key(i)]
    parts += [
        f"{SUBMIT} submit & next",
        f"{SKIP} skip",
        f"{FLAG} flag",
        f"{NEXT} next",
        f"{PREVIOUS} previous",
        f"{NEXT_PENDING} next unlabeled",
    ]
    return (
        "Keys: " + " · ".join(parts) + f". After a value, typing goes into the rationale; "
        f"{SUBMIT} works from inside it, {LEAVE_FIELD} leaves it."
    )
