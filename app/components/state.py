"""A page's session state, initialised in one place, and the query parameters it follows.

Every key a page owns is ``<prefix>_<field>`` (``label_trace``, ``explorer_run``), so pages
never collide. A link such as ``label?trace=T`` is applied once: the value last taken
from the URL is remembered under ``<prefix>_qp_<param>``, so a reviewer who moves on
is not pulled back to ``T`` on every rerun while the URL still says it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st


def _seen_key(prefix: str, param: str) -> str:
    return f"{prefix}_qp_{param}"


def init_page_state(
    prefix: str,
    defaults: Mapping[str, Any],
    query_params: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Set a page's state defaults and take new values from the URL's query parameters.

    Call it once, at the top of the page, before any widget is drawn.

    Args:
        prefix: The page's key prefix (``"label"`` for ``label_trace``, ...).
        defaults: Field -> default value; set with ``setdefault`` under
            ``<prefix>_<field>``, so a value the user chose survives reruns.
        query_params: URL parameter -> field it sets (``{"trace": "trace"}``). A parameter
            in the URL that differs from the one last applied wins over the field's value.

    Returns:
        The parameters applied on this run (parameter -> value), so the page can react to
        a link it was just opened with (e.g. switch the work list to one holding the trace).
    """
    ss = st.session_state
    for field, default in defaults.items():
        ss.setdefault(f"{prefix}_{field}", default)
    applied: dict[str, str] = {}
    for param, field in (query_params or {}).items():
        wanted = st.query_params.get(param)
        if wanted and wanted != ss.get(_seen_key(prefix, param)):
            ss[_seen_key(prefix, param)] = wanted
            ss[f"{prefix}_{field}"] = wanted
            applied[param] = wanted
    return applied


def set_query_param(prefix: str, param: str, value: str) -> None:
    """Put the page's current ``value`` in the URL (shareable link) without re-applying it.

    Args:
        prefix: The page's key prefix, as given to ``init_page_state``.
        param: The URL parameter (``"trace"``).
        value: Its new value.
    """
    st.query_params[param] = value
    st.session_state[_seen_key(prefix, param)] = value
