"""A page's session state, initialised in one place, and the query parameters it follows.

Every key a page owns is ``<prefix>_<field>`` (``label_trace``, ``explorer_run``), so pages
never collide. A link such as ``label?trace=T`` is applied once: the value last taken
from the URL is remembered under ``<prefix>_qp_<param>``, so a reviewer who moves on
is not pulled back to ``T`` on every rerun while the URL still says it.

Streamlit forgets a widget's value once the widget is not drawn (the user opened another
page): the fields a page names in ``keep`` are copied, at every run of the page, to a plain
session-state dict (``<prefix>__kept``) that Streamlit never cleans, and put back when the
page is drawn again, so a form looks as the user left it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import streamlit as st


def _seen_key(prefix: str, param: str) -> str:
    return f"{prefix}_qp_{param}"


def _kept_key(prefix: str) -> str:
    return f"{prefix}__kept"


def keep_widget_values(prefix: str, fields: Iterable[str]) -> None:
    """Remember the page's widget values, and restore the ones Streamlit dropped.

    Call it before the widgets are drawn (``init_page_state`` does, for its ``keep``). A
    field whose widget key is in the session state is copied aside; one whose key is gone
    (its widget was not drawn by the last run: another page was open) gets the copy back,
    which the widget then shows.

    Args:
        prefix: The page's key prefix.
        fields: The fields (``optimizer`` for ``align_optimizer``) to keep.
    """
    ss = st.session_state
    kept: dict[str, Any] = ss.setdefault(_kept_key(prefix), {})
    for field in fields:
        key = f"{prefix}_{field}"
        if key in ss:
            kept[field] = ss[key]
        elif field in kept:
            ss[key] = kept[field]


def init_page_state(
    prefix: str,
    defaults: Mapping[str, Any],
    query_params: Mapping[str, str] | None = None,
    keep: Iterable[str] = (),
) -> dict[str, str]:
    """Set a page's state defaults and take new values from the URL's query parameters.

    Call it once, at the top of the page, before any widget is drawn.

    Args:
        prefix: The page's key prefix (``"label"`` for ``label_trace``, ...).
        defaults: Field -> default value; set with ``setdefault`` under
            ``<prefix>_<field>``, so a value the user chose survives reruns.
        query_params: URL parameter -> field it sets (``{"trace": "trace"}``). A parameter
            in the URL that differs from the one last applied wins over the field's value.
        keep: Fields held by widgets whose values must survive a visit to another page
            (see :func:`keep_widget_values`); restored before the defaults are applied.

    Returns:
        The parameters applied on this run (parameter -> value), so the page can react to
        a link it was just opened with (e.g. switch the work list to one holding the trace).
    """
    ss = st.session_state
    keep_widget_values(prefix, keep)
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
