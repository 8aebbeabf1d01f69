"""Label: a reviewer works through their queue, one trace at a time, mostly from the keyboard."""

from __future__ import annotations

import streamlit as st

from app.components import data, keys, shell
from app.components.span_tree import render_span_tree
from app.components.state import init_page_state, set_query_param
from app.components.trace_render import render_trace
from core.errors import AlignboardError
from core.labeling.criteria import Criterion, display_value
from core.labeling.session import (
    ALL_TRACES,
    RATIONALE_POLICIES,
    Session,
    judge_verdict,
    others_labels,
    own_label,
    rationale_required,
    submit_label,
    value_options,
)
from core.views.spans import shows_tree, span_tree
from core.views.transcript import trace_view

POLICY_TEXT = {
    "disagree": "when my value disagrees with the judge",
    "always": "always",
    "never": "never (optional)",
}

ctx = shell.require_context()
st.title("Label")
if not ctx.reviewer:
    st.info("Pick or type your name in the sidebar to start labeling.", icon=":material/person:")
    st.stop()
crits = data.criteria(ctx.experiment_id)
if not crits:
    st.warning(
        "This experiment has no criteria yet: create one with `alignboard criterion create`."
    )
    st.stop()

ss = st.session_state
# A link from another page (?trace=...) opens that trace, once.
linked = init_page_state(
    "label",
    {
        "trace": None,
        "value": None,
        "rationale": "",
        "loaded": None,
        "flash": None,
        "error": None,
        "blind": True,
        "policy": "disagree",
    },
    query_params={"trace": "trace"},
)

queues = data.queues_for(ctx.experiment_id, ctx.reviewer)
lists = [*queues, ALL_TRACES]
if ss.get("label_queue") not in lists:
    ss["label_queue"] = lists[0]
crit_names = [c.name for c in crits]


def _follow_queue() -> None:
    """Pick the work list's own criterion when the chosen one is not among those it asks for."""
    asked = [
        c for c in data.queue_criteria(ctx.experiment_id, ss["label_queue"]) if c in crit_names
    ]
    if asked and ss.get("label_criterion") not in asked:
        ss["label_criterion"] = asked[0]


if ss.get("label_criterion") not in crit_names:
    ss["label_criterion"] = crit_names[0]
    # A first visit opens the default work list with a criterion it accepts.
    _follow_queue()


def _reset_position() -> None:
    ss["label_trace"] = None


def _change_work_list() -> None:
    _reset_position()
    _follow_queue()


# A linked trace is resolved before the widgets are drawn, since it may switch the work
# list to "All traces".
wanted = linked.get("trace")
if wanted:
    try:
        current = data.session(
            ctx.experiment_id, ss["label_criterion"], ctx.reviewer, ss["label_queue"]
        )
        found = current.position(wanted) is not None
    except AlignboardError:
        found = False
    if not found:
        ss["label_queue"] = ALL_TRACES

top = st.columns([2, 2, 1, 2], vertical_alignment="bottom")
top[0].selectbox(
    "Work list",
    lists,
    key="label_queue",
    format_func=lambda q: q or "All traces",
    on_change=_change_work_list,
)
top[1].selectbox("Criterion", crit_names, key="label_criterion", on_change=_reset_position)
top[2].toggle(
    "Blind mode",
    key="label_blind",
    help="Hide other reviewers' labels until you have labeled the trace yourself.",
)
top[3].selectbox(
    "Rationale required",
    RATIONALE_POLICIES,
    key="label_policy",
    format_func=lambda p: POLICY_TEXT.get(p, p),
)

crit: Criterion = next(c for c in crits if c.name == ss["label_criterion"])
try:
    session: Session = data.session(ctx.experiment_id, crit.name, ctx.reviewer, ss["label_queue"])
except AlignboardError as exc:
    st.error(str(exc))
    st.stop()
if not session.trace_ids:
    st.info("This work list is empty. Add traces to the queue, or pick another list.")
    st.stop()
if session.position(ss["label_trace"]) is None:
    ss["label_trace"] = session.start()
trace_id: str = ss["label_trace"]


def _load_form(tid: str) -> None:
    """Pre-fill the form with the reviewer's current label on ``tid`` (empty if none)."""
    mine = own_label(data.trace(tid), crit.name, ctx.reviewer)
    ss["label_value"] = mine.value if mine else None
    ss["label_rationale"] = (mine.rationale or "") if mine else ""
    if crit.kind == "numeric":
        ss["label_number"] = float(mine.value) if mine else None
    ss["label_loaded"] = (tid, crit.name, ctx.reviewer)


def _go(tid: str | None) -> None:
    if tid is None:
        return
    ss["label_trace"] = tid
    ss["label_error"] = None
    ss["label_flash"] = None
    set_query_param("label", "trace", tid)
    _load_form(tid)


def _set_value(value) -> None:
    ss["label_value"] = value
    ss["label_error"] = None


def _submit(tid: str, sess: Session) -> None:
    value = ss["label_number"] if crit.kind == "numeric" else ss["label_value"]
    verdict = judge_verdict(data.trace(tid), crit)
    try:
        submit_label(
            tid,
            crit,
            ctx.reviewer,
            value,
            ss["label_rationale"],
            verdict=verdict,
            policy=ss["label_policy"],
        )
    except AlignboardError as exc:
        ss["label_error"] = str(exc)
        return
    data.after_label(tid, ctx.experiment_id, crit.name, ctx.reviewer)
    after = sess.with_done(tid)
    nxt = after.next_pending(tid) or after.next_id(tid)
    flash = f"Saved {display_value(crit, value)}."
    if after.complete:
        flash += " Every trace in this list is labeled; you can still edit any of them."
    _go(nxt or tid)
    ss["label_flash"] = flash


if ss["label_loaded"] != (trace_id, crit.name, ctx.reviewer):
    _load_form(trace_id)

detail = data.trace(trace_id)
pos = session.position(trace_id) or 0
done = session.done_count
st.progress(
    done / session.total,
    text=f"{done} / {session.total} labeled · trace {pos + 1} of {session.total}",
)

nav = st.columns([1, 1, 1, 2])
for col, (label, key, icon, shortcut, target) in zip(
    nav,
    (
        ("Previous", "label_prev", ":material/arrow_back:", keys.PREVIOUS,
         session.previous_id(trace_id)),
        ("Next", "label_next", ":material/arrow_forward:", keys.NEXT, session.next_id(trace_id)),
        ("Next unlabeled", "label_next_pending", ":material/skip_next:", keys.NEXT_PENDING,
         session.next_pending(trace_id)),
    ),
    strict=False,
):  # fmt: skip
    col.button(
        label,
        key=key,
        icon=icon,
        shortcut=shortcut,
        on_click=_go,
        args=(target,),
        disabled=target is None,
        width="stretch",
    )
status = "labeled by you" if trace_id in session.done else "not labeled yet"
nav[3].caption(f"Trace `{trace_id}` · {status}")

left, right = st.columns([3, 2], gap="large")
with left:
    render_trace(trace_view(detail.inputs, detail.outputs), key=f"label_{trace_id}")
    # An agent's steps (tool calls, retrievals) under the conversation; a trace of one
    # span has nothing more to show.
    spans = span_tree(detail)
    if shows_tree(spans):
        render_span_tree(spans)

with right:
    st.subheader(crit.name)
    with st.container(height=220, border=True):
        st.text(crit.instructions)

    options = value_options(crit)
    if options:
        cols = st.columns(len(options))
        for i, (value, text) in enumerate(options):
            cols[i].button(
                text,
                key=f"label_value_{i}",
                shortcut=keys.value_key(i),
                type="primary" if ss["label_value"] == value else "secondary",
                on_click=_set_value,
                args=(value,),
                width="stretch",
            )
        current_value = ss["label_value"]
    else:
        st.number_input(
            "Value",
            key="label_number",
            min_value=crit.min_value,
            max_value=crit.max_value,
        )
        current_value = ss.get("label_number")

    verdict = judge_verdict(detail, crit)
    required = rationale_required(crit, current_value, verdict, ss["label_policy"])
    if required:
        st.caption(
            ":orange[**Rationale required**]"
            + (
                ": your value disagrees with the judge's verdict."
                if ss["label_policy"] == "disagree"
                else "."
            )
        )
    else:
        st.caption("Rationale optional. Quoting the phrase that decided it helps the judge learn.")
    st.text_area(
        "Rationale",
        key="label_rationale",
        height=140,
        placeholder='Why? Quote the phrase that decided it, e.g. "I\'ve issued your refund".',
    )
    st.button(
        "Submit & next",
        key="label_submit",
        type="primary",
        icon=":material/check:",
        shortcut=keys.SUBMIT,
        on_click=_submit,
        args=(trace_id, session),
        disabled=current_value is None,
        width="stretch",
    )
    keys.legend([text for _, text in options])
    if ss["label_error"]:
        st.error(ss["label_error"])
    elif ss["label_flash"]:
        st.success(ss["label_flash"])

    view = others_labels(detail, crit.name, ctx.reviewer, blind=ss["label_blind"])
    st.markdown("**Other reviewers**")
    if view.hidden:
        st.caption(f"{view.hidden} other label(s) hidden until you label this trace (blind mode).")
    elif not view.labels:
        st.caption("No other reviewer has labeled this trace.")
    for lab in view.labels:
        with st.container(border=True):
            st.text(f"{lab.reviewer}: {display_value(crit, lab.value)}")
            if lab.rationale:
                st.text(lab.rationale)
    if verdict is not None:
        st.markdown("**Judge**")
        if ss["label_blind"] and trace_id not in session.done:
            st.caption("A judge has a verdict on this trace; it is shown once you have labeled it.")
        else:
            with st.container(border=True):
                st.text(f"{verdict.source}: {display_value(crit, verdict.value)}")
                if verdict.rationale:
                    st.text(verdict.rationale)
