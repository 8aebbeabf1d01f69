"""Adjudicate: settle reviewers' disagreements with a gold label, and read reviewers' flags."""

from __future__ import annotations

import streamlit as st

from app.components import data, shell
from app.components.state import init_page_state
from app.components.trace_render import render_trace
from core.errors import AlignboardError
from core.labeling.adjudication import adjudicate
from core.labeling.criteria import display_value
from core.labeling.flags import clear_flag
from core.views.adjudication import dispute_table, flag_rows
from core.views.transcript import trace_view

ctx = shell.require_context()
ss = st.session_state
linked = init_page_state(
    "adj",
    {
        "show_resolved": False,
        "message": None,
        "error": None,
        "value": None,
        "rationale": "",
        "flag_message": None,
    },
    query_params={"trace": "trace"},
)
st.title("Adjudicate")
st.caption(
    "Where reviewers disagree, read every label and rationale side by side and record the "
    "gold label, with why. A gold label comes first wherever one human value per trace is "
    "needed (alignment, scores, export); it is never counted as a reviewer's label."
)
crits = data.criteria(ctx.experiment_id)
if not crits:
    st.info("No criteria yet: create one on the Setup page or with `alignboard criterion create`.")
    st.stop()
crit_names = [c.name for c in crits]
if ss.get("adj_criterion") not in crit_names:
    ss["adj_criterion"] = crit_names[0]


# ---- callbacks (one core call each) ----------------------------------------------------
def _save(crit, trace_id: str) -> None:
    """Record the form's gold label; a refusal leaves everything as it was."""
    try:
        gold = adjudicate(
            trace_id, crit, ctx.reviewer, ss.get("adj_value"), ss.get("adj_rationale")
        )
    except AlignboardError as exc:
        ss["adj_error"] = str(exc)
        ss["adj_message"] = None
        return
    ss["adj_error"] = None
    ss["adj_message"] = (
        f"Gold label {display_value(crit, gold.value)} recorded on {trace_id} by {gold.reviewer}."
    )
    ss["adj_value"] = None
    ss["adj_rationale"] = ""
    data.after_adjudicate(trace_id)


def _clear_flag(trace_id: str, criterion: str, reviewer: str) -> None:
    try:
        cleared = clear_flag(trace_id, criterion, reviewer)
    except AlignboardError as exc:
        ss["adj_flag_message"] = str(exc)
        return
    ss["adj_flag_message"] = (
        f"Cleared {reviewer}'s flag on {trace_id}." if cleared else "That flag was already cleared."
    )
    data.after_flag(trace_id, ctx.experiment_id, criterion, reviewer, False)


# ---- disputes --------------------------------------------------------------------------
top = st.columns([2, 1], vertical_alignment="bottom")
crit_name = top[0].selectbox("Criterion", crit_names, key="adj_criterion")
top[1].toggle("Show resolved", key="adj_show_resolved", help="Also list adjudicated traces.")
crit = next(c for c in crits if c.name == crit_name)
views = data.disputes(ctx.experiment_id, crit, bool(ss["adj_show_resolved"]))
if ss.get("adj_message"):
    st.success(ss["adj_message"], icon=":material/gavel:")
st.subheader("Disagreements")
if not views:
    st.success(
        f"No open disagreement on {crit.name}: every trace two or more reviewers labeled "
        "has one value, or has a gold label.",
        icon=":material/check:",
    )
else:
    open_n = sum(not v.resolved for v in views)
    st.caption(f"{open_n} open · {len(views) - open_n} resolved")
    st.dataframe(dispute_table(views), hide_index=True, key="adj_table")
    by_id = {v.trace_id: v for v in views}
    wanted = linked.get("trace")
    if wanted in by_id:
        ss["adj_trace"] = wanted
    if ss.get("adj_trace") not in by_id:
        ss["adj_trace"] = views[0].trace_id
    trace_id = st.selectbox(
        "Trace",
        list(by_id),
        key="adj_trace",
        format_func=lambda t: f"{t} · {by_id[t].status} · {by_id[t].preview[:60]}",
    )
    view = by_id[trace_id]
    left, right = st.columns([3, 2], gap="large")
    with left:
        detail = data.trace(trace_id)
        render_trace(trace_view(detail.inputs, detail.outputs), key=f"adj_{trace_id}")
    with right:
        st.markdown(f"**Labels on {crit.name}** ({view.values})")
        for row in view.labels:
            with st.container(border=True):
                st.text(f"{row.reviewer}: {row.value}")
                st.text(row.rationale or "(no rationale)")
                st.caption(row.when)
        if view.resolved:
            with st.container(border=True):
                st.markdown("**Gold label**")
                st.text(f"{view.gold_value} (by {view.gold_by}, {view.gold_when})")
                st.text(view.gold_rationale)
        if not ctx.reviewer:
            st.warning("Say who you are in the sidebar to adjudicate.", icon=":material/person:")
        with st.form("adj_form", border=True):
            if crit.kind == "numeric":
                if not isinstance(ss.get("adj_value"), str):
                    ss["adj_value"] = ""
                st.text_input("Gold value", key="adj_value", placeholder="a number")
            else:
                options: list = [True, False] if crit.kind == "pass_fail" else list(crit.options)
                if ss.get("adj_value") not in options:
                    ss["adj_value"] = None
                st.selectbox(
                    "Gold value",
                    options,
                    key="adj_value",
                    index=None,
                    placeholder="Choose the gold value",
                    format_func=lambda v: display_value(crit, v),
                )
            st.text_area(
                "Rationale (required)",
                key="adj_rationale",
                help="Why this is the right value: the gold label's reason, shown to the "
                "optimizer's reflection like any human rationale.",
            )
            st.form_submit_button(
                "Revise gold label" if view.resolved else "Save gold label",
                key="adj_save",
                type="primary",
                icon=":material/gavel:",
                on_click=_save,
                args=(crit, trace_id),
            )
if ss.get("adj_error"):
    st.error(ss["adj_error"], icon=":material/block:")

# ---- flags -----------------------------------------------------------------------------
st.subheader("Flagged traces")
flags = data.flags(ctx.experiment_id)
if ss.get("adj_flag_message"):
    st.info(ss["adj_flag_message"])
if not flags:
    st.caption("No reviewer has flagged a trace (unsure, broken trace) yet.")
else:
    st.dataframe(
        flag_rows(flags),
        hide_index=True,
        key="adj_flags",
        column_config={
            "trace": st.column_config.LinkColumn("trace", display_text="open in Label"),
        },
    )
    keys = list(range(len(flags)))
    pick = st.selectbox(
        "Flag",
        keys,
        key="adj_flag_pick",
        format_func=lambda i: (
            f"{flags[i].trace_id} · {flags[i].criterion} · {flags[i].reviewer} · {flags[i].kind}"
        ),
    )
    if pick is not None and pick < len(flags):
        f = flags[pick]
        st.button(
            "Clear flag",
            key="adj_flag_clear",
            icon=":material/flag:",
            on_click=_clear_flag,
            args=(f.trace_id, f.criterion, f.reviewer),
            help="The reviewer's flag is removed from the trace (the trace is back in their "
            "work list).",
        )
