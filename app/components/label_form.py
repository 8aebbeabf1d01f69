"""The Label page's form: value buttons, rationale, submit/skip/flag/navigation, all keyboard.

One Streamlit components-v2 component (inline HTML/CSS/JS from ``label_form/``, mounted in
the page's DOM: no iframe, no shadow root). It owns the keys and the focus while a reviewer
works (see ``label_form/label_form.js``) and keeps drafts in the browser's localStorage,
keyed by experiment, criterion, reviewer and trace. Python hears of one action at a time:
the page passes ``on_action`` and reads the action with :func:`action_of`.

Why a component and not native widgets: Streamlit's shortcuts do not fire while the focus
is in a text field, a rerun leaves the focus where it was (in the name box, in the
rationale), and every value click was a rerun whose output could depend on the value.
Here a value choice never reaches Python, so blind mode has nothing to leak through it.

DOM markers (tests and benchmark B8 rely on them; keep them stable):
``[data-testid="label-form"]`` is the form root; its ``data-trace-id`` is the trace the
form is on and ``data-state`` is ``ready`` (keys accepted) or ``busy`` (an action is on its
way to the server).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

_ASSETS = Path(__file__).with_name("label_form")
_KEY = "label_form"


def _asset(name: str) -> str:
    return (_ASSETS / name).read_text(encoding="utf-8")


_component = st.components.v2.component(
    "alignboard_label_form",
    html=_asset("label_form.html"),
    css=_asset("label_form.css"),
    js=_asset("label_form.js"),
    isolate_styles=False,
)


def draft_prefix(experiment_id: str, criterion: str, reviewer: str) -> str:
    """The localStorage key prefix of a reviewer's drafts (the trace id is appended)."""
    return f"alignboard.draft.{experiment_id}.{criterion}.{reviewer}."


def label_form(data: dict[str, Any], on_action: Callable[[], None]) -> None:
    """Mount the form with ``data`` (see ``label_form.js`` for the fields it reads)."""
    _component(key=_KEY, data=data, on_action_change=on_action)


def action_of() -> dict[str, Any] | None:
    """The action the form just sent (inside ``on_action``), or None."""
    state = st.session_state.get(_KEY)
    action = state.get("action") if state else None
    return action if isinstance(action, dict) else None
