"""The live progress panel's shared pieces (Align and Optimize pages): the run's header
line with its Run explorer link, the budget bar, the live chart and the Cancel button."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from app.components import nav, run_charts, workers_notice
from core.views.formatting import duration
from core.views.runs import metric_series


def read_status(run_id: str) -> Any | None:
    """The job's status for a polling panel; None (with a warning saying so, retried at the
    next poll) when the MLflow store is unreachable."""
    from core.optimization import jobs

    return workers_notice.guarded(lambda: jobs.status(run_id))


def header(now: Any, run_id: str, title: str) -> None:
    """``title · run id · status · heartbeat``, and a link to the run in the Run explorer;
    under a queued run, a notice when no worker is alive to pick it up."""
    head = st.columns([3, 1], vertical_alignment="center")
    head[0].markdown(
        f"{title} · run `{run_id}` · status **{now.status}**"
        + (
            ""
            if now.heartbeat_age_s is None
            else f" · heartbeat {duration(now.heartbeat_age_s, 0)} ago"
        )
    )
    head[1].page_link(
        nav.page_path("run_explorer.py"),
        label="Open in Run explorer",
        icon=":material/query_stats:",
        query_params={"run": run_id},
    )
    workers_notice.queued(now)


def budget_bar(now: Any) -> tuple[int, int]:
    """The metric calls used against the budget (when there is one); returns both."""
    calls, cap = now.metric_calls or 0, now.budget or 0
    if cap:
        st.progress(min(calls / cap, 1.0), text=f"{calls:,} / {cap:,} metric calls used")
    return calls, cap


def live_chart(run_id: str, key: str) -> None:
    """The run's per-iteration metrics so far."""
    series = metric_series(run_id)
    if not series.empty:
        st.plotly_chart(run_charts.live_chart(series), key=key)


def cancel_button(
    now: Any, run_id: str, *, key: str, on_click: Callable[[str], None], help: str
) -> None:
    """Cancel (disabled once asked), and what a requested cancel means."""
    st.button(
        "Cancel",
        key=key,
        icon=":material/stop_circle:",
        on_click=on_click,
        args=(run_id,),
        disabled=now.cancel_requested,
        help=help,
    )
    if now.cancel_requested:
        st.caption("Cancel requested: the job stops at its next iteration boundary.")


def outcome_banner(now: Any, detail: str = "") -> None:
    """How a cancelled (or otherwise ended) run came out, in the same sentence as the CLI
    (:func:`core.views.job_status.outcome_line`): a cancelled run says plainly whether it
    registered a version. ``detail`` (e.g. the verdict text) follows the sentence."""
    from core.views.job_status import outcome_line

    line = outcome_line(now)
    text = f"**{line}.** {detail}".rstrip() if line and not line.endswith(".") else line
    if now.status == "cancelled" and now.judge_version is None and now.prompt_version is None:
        st.warning(text, icon=":material/block:")
    elif now.status == "cancelled":
        st.success(text, icon=":material/check_circle:")
    else:
        st.warning(text, icon=":material/pause_circle:")
