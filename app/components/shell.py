"""The sidebar every page shares: experiment picker, reviewer identity, demo-model notice.

Identity has two modes:

* **Login** (an ``[auth]`` section in ``.streamlit/secrets.toml``): the reviewer is the
  logged-in user (``st.user``) and nothing else; there is no name box, and pages that need
  a reviewer ask to log in (:func:`require_reviewer`).
* **Typed name** (no ``[auth]``): the reviewer picks or types a name. It is remembered in
  a plain browser cookie so a reload or a new tab keeps it. That is a convenience, not
  security: anyone can type any name.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote

import streamlit as st

from app.components import data
from app.components.state import init_page_state
from core.errors import StoreUnavailableError
from core.store import config
from core.views.overview import DEMO_NOTE

DEMO_EXPERIMENT = "alignboard-demo"
NAME_COOKIE = "alignboard_reviewer"
"""Browser cookie holding the typed reviewer name (readable by scripts; not a credential)."""
NAME_COOKIE_MAX_AGE_S = 365 * 24 * 3600
MAX_NAME_LENGTH = 80
_PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")


@dataclass(frozen=True)
class Context:
    """What every page works on."""

    experiment_id: str
    experiment_name: str
    reviewer: str
    """Empty until the user has said who they are (or, with login, has logged in)."""
    signed_in: bool
    """Whether the identity comes from a login (``st.user``) rather than a typed name."""
    login_required: bool = False
    """Whether login is configured: then ``reviewer`` is only ever the logged-in user."""


def auth_providers(auth: Mapping[str, Any] | None) -> list[str]:
    """The login providers an ``[auth]`` secrets section configures, in file order.

    ``"default"`` stands for credentials written directly under ``[auth]``; every
    ``[auth.NAME]`` table with a client id or metadata URL is provider ``NAME`` (what
    ``st.login(NAME)`` takes).
    """
    if not auth:
        return []
    names = ["default"] if any(k in auth for k in _PROVIDER_KEYS) else []
    for key, value in auth.items():
        if isinstance(value, Mapping) and any(k in value for k in _PROVIDER_KEYS):
            names.append(str(key))
    return names


def clean_name(raw: object) -> tuple[str | None, str | None]:
    """A typed reviewer name, normalised, or the reason it is refused.

    Returns ``(name, None)`` for a usable name (surrounding blanks stripped, inner runs of
    blanks collapsed), ``(None, None)`` for no name at all and ``(None, message)`` for a
    name that cannot be a reviewer id.
    """
    if raw is None:
        return None, None
    text = " ".join(str(raw).split())
    if not text:
        return None, None
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        return None, "A reviewer name cannot contain control characters."
    if len(text) > MAX_NAME_LENGTH:
        return None, f"A reviewer name has at most {MAX_NAME_LENGTH} characters."
    return text, None


def remembered_name(cookies: Mapping[str, str]) -> str | None:
    """The reviewer name a previous session left in the browser cookie, if usable."""
    raw = cookies.get(NAME_COOKIE)
    if not raw:
        return None
    name, _ = clean_name(unquote(raw))
    return name


def remember_script(name: str | None) -> str:
    """HTML+JS that stores ``name`` in the cookie (None deletes it) and leaves the name box.

    Blurring the reviewer box once a choice is committed hands the keyboard back to the
    page, so the Label page's value keys work right away.
    """
    # json.dumps makes a JS string literal; "<" is escaped so a name cannot close the tag.
    literal = json.dumps(name or "").replace("<", "\\u003c")
    max_age = NAME_COOKIE_MAX_AGE_S if name else 0
    return (
        "<style>.st-key-shell_js{display:none}</style><script>(() => {"
        f"document.cookie = {json.dumps(NAME_COOKIE)} + '=' + encodeURIComponent({literal})"
        f" + '; path=/; max-age={max_age}; samesite=lax';"
        "const el = document.activeElement;"
        "if (el && el.closest && el.closest('.st-key-shell_reviewer')) el.blur();"
        "})();</script>"
    )


def _auth_section() -> Mapping[str, Any] | None:
    try:
        if "auth" not in st.secrets:
            return None
        section = st.secrets["auth"]
    except Exception:  # no secrets file at all, or one that does not parse
        return None
    return section if isinstance(section, Mapping) else None


def _auth_configured() -> bool:
    return _auth_section() is not None


def _logged_in_identity() -> str | None:
    if not _auth_configured():
        return None
    try:
        if not st.user.is_logged_in:
            return None
        user = st.user.to_dict()
    except Exception:
        return None
    for claim in ("email", "name", "sub"):
        if user.get(claim):
            return str(user[claim])
    return None


def _experiment_names() -> list[str]:
    return [name for _, name in data.experiments()]


def render_sidebar() -> None:
    """Draw the sidebar; the pages read the result with :func:`context`."""
    data.configure()
    try:
        config.check_store()
    except StoreUnavailableError as exc:
        # The store is down: one clear line, not a spinner for minutes of retries.
        st.error(str(exc))
        st.caption("The store is unreachable: nothing was changed. Retry once it is back.")
        st.button("Retry", key="shell_store_retry")
        st.stop()
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
    auth = _auth_section()
    if auth is not None:
        _login_identity(auth)
    else:
        _typed_identity()


def _login(provider: str) -> None:
    try:
        st.login(provider)
    except Exception as exc:  # misconfigured [auth]: say so instead of a traceback
        st.session_state["shell_login_error"] = str(exc)


def _login_identity(auth: Mapping[str, Any]) -> None:
    who = _logged_in_identity()
    if who:
        st.caption("Signed in as")
        st.text(who)  # as text: an address is user data, not markdown (no autolink)
        st.button("Log out", key="shell_logout", on_click=st.logout, icon=":material/logout:")
        return
    providers = auth_providers(auth)
    if not providers:
        st.error(
            "Login is configured (`[auth]` in secrets.toml) but names no provider: add "
            "`client_id`, `client_secret` and `server_metadata_url` under `[auth]` or "
            "`[auth.NAME]`."
        )
        return
    for provider in providers:
        st.button(
            "Log in" if len(providers) == 1 else f"Log in with {provider}",
            key=f"shell_login_{provider}",
            on_click=_login,
            args=(provider,),
            type="primary",
            icon=":material/login:",
            width="stretch",
        )
    st.caption("Log in to label: your labels are saved under your login.")
    error = st.session_state.pop("shell_login_error", None)
    if error:
        st.error(f"Login failed: {error}")


def _typed_identity() -> None:
    ss = st.session_state
    if "shell_reviewer" not in ss:
        # A new session (reload, new tab): take the name the browser remembers.
        ss["shell_reviewer"] = remembered_name(st.context.cookies)
    init_page_state("shell", {"reviewer": None})
    st.selectbox(
        "Your name (reviewer)",
        _known_reviewers(),
        key="shell_reviewer",
        accept_new_options=True,
        placeholder="Pick or type your name",
        on_change=_name_chosen,
        help=(
            "Your labels are saved under this name. This browser remembers it (a cookie) "
            "for your next visit; it is a convenience, not a login."
        ),
    )
    error = ss.pop("shell_name_error", None)
    if error:
        st.error(error)
    pending = ss.pop("shell_remember", None)
    if pending is not None:
        with st.container(key="shell_js"):
            st.html(remember_script(pending or None), unsafe_allow_javascript=True)


def _name_chosen() -> None:
    # Session state is a mutable mapping in all but its declared type.
    commit_name(cast("MutableMapping[str, Any]", st.session_state))


def commit_name(state: MutableMapping[str, Any]) -> None:
    """Take the name just chosen in the reviewer box (``shell_reviewer`` in ``state``).

    A usable name is normalised and queued for the cookie (``shell_remember``; "" deletes
    it); a refused one is cleared and its reason left in ``shell_name_error``.
    """
    name, error = clean_name(state.get("shell_reviewer"))
    if error:
        state["shell_name_error"] = error
        state["shell_reviewer"] = None
        return
    state["shell_reviewer"] = name
    # "" (not None) so the render still runs the script: it deletes the cookie then.
    state["shell_remember"] = name or ""


def _known_reviewers() -> list[str]:
    eid = _experiment_id(st.session_state.get("shell_experiment"))
    names = set(data.reviewers(eid)) if eid is not None else set()
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
    """The experiment and reviewer chosen in the sidebar (None when there is no experiment).

    With login configured the reviewer is the logged-in user or empty; a name left in
    session state (typed earlier, or set by a test) is ignored.
    """
    name = st.session_state.get("shell_experiment")
    eid = _experiment_id(name)
    if eid is None or name is None:
        return None
    if _auth_configured():
        who = _logged_in_identity()
        return Context(eid, name, who or "", signed_in=bool(who), login_required=True)
    typed, _ = clean_name(st.session_state.get("shell_reviewer"))
    return Context(eid, name, typed or "", signed_in=False)


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


def require_reviewer(ctx: Context, action: str = "label") -> str:
    """The reviewer, or stop the page saying how to become one ("Log in to label").

    Args:
        ctx: The page's context.
        action: What the page needs a reviewer for, as in "Log in to <action>".
    """
    if ctx.reviewer:
        return ctx.reviewer
    if ctx.login_required:
        st.info(f"Log in to {action}: use **Log in** in the sidebar.", icon=":material/login:")
    else:
        st.info(f"Pick or type your name in the sidebar to {action}.", icon=":material/person:")
    st.stop()
    raise AssertionError("unreachable")  # st.stop raises; this keeps type checkers sure
