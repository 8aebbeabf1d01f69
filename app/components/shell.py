"""The sidebar every page shares: experiment picker, reviewer identity, demo-model notice."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from app.components import data
from app.components.state import init_page_state
from core.views.overview import DEMO_NOTE

DEMO_EXPERIMENT = "alignboard-demo"


@dataclass(frozen=True)
class Context:
    """What every page works on."""

    experiment_id: str
    experiment_name: str
    reviewer: str
    """Empty until the user has said who they are."""
    signed_in: bool
    """Whether the identity comes from a login (``st.user``) rather than a typed name."""


def _auth_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def _logged_in_identity() -> str | None:
    if not _auth_configured():
        return None
    try:
        if not st.user.is_logged_in:
            return None
    except Exception:
        return None
    return str(st.user.get("email") or st.user.get("name") or "") or None


def _experiment_names() -> list[str]:
    return [name for _, name in data.experiments()]


def render_sidebar() -> None:
    """Draw the sidebar; the pages read the result with :func:`context`."""
    data.configure()
    names = _experiment_names()
    default = DEMO_EXPERIMENT if DEMO_EXPERIMENT in names else (names[0] if names else None)
    if st.session_state.get("shell_experiment") not in names:
        # First visit, or the experiment was deleted meanwhile.
        st.session_state["shell_experiment"] = default
    with st.sidebar:
        st.selectbox(
            "Experiment",
            names,
            key="shell_experiment",
            help="Every trace, label, judge and run lives in an MLflow experiment.",
        )
        _identity()
        _demo_notice()


def _identity() -> None:
    who = _logged_in_identity()
    if who:
        st.caption(f"Signed in as {who}")
        st.button("Log out", key="shell_logout", on_click=st.logout)
        return
    if _auth_configured():
        st.button("Log in", key="shell_login", on_click=st.login, type="primary")
    known = _known_reviewers()
    init_page_state("shell", {"reviewer": None})
    st.selectbox(
        "Your name (reviewer)",
        known,
        key="shell_reviewer",
        accept_new_options=True,
        placeholder="Pick or type your name",
        help="Your labels are saved under this name. It is remembered for this session.",
    )


def _known_reviewers() -> list[str]:
    eid = _experiment_id(st.session_state.get("shell_experiment"))
    if eid is None:
        return []
    names = set(data.reviewers(eid))
    current = st.session_state.get("shell_reviewer")
    if current:
        names.add(current)
    return sorted(names)


def _experiment_id(name: str | None) -> str | None:
    return next((i for i, n in data.experiments() if n == name), None)


def _demo_notice() -> None:
    eid = _experiment_id(st.session_state.get("shell_experiment"))
    if eid is None:
        return
    uses = data.demo_uses(eid)
    if uses:
        st.warning(
            "**Demo model in use.** " + DEMO_NOTE,
            icon=":material/science:",
        )
        st.caption("; ".join(uses[:3]) + (" ..." if len(uses) > 3 else ""))


def context() -> Context | None:
    """The experiment and reviewer chosen in the sidebar (None when there is no experiment)."""
    name = st.session_state.get("shell_experiment")
    eid = _experiment_id(name)
    if eid is None or name is None:
        return None
    who = _logged_in_identity()
    reviewer = who or (st.session_state.get("shell_reviewer") or "").strip()
    return Context(eid, name, reviewer, signed_in=bool(who))


def require_context() -> Context:
    """The context, or stop the page with a hint on how to get an experiment."""
    ctx = context()
    if ctx is None:
        st.info(
            "No experiments yet. Load the demo with `alignboard seed-demo`, or import traces "
            "with `alignboard import FILE --experiment NAME`."
        )
        st.stop()
    return ctx
