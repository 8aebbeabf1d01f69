"""Label: a reviewer works through their queue, one trace at a time, from the keyboard.

The form (value keys, rationale, submit, skip, flag, navigation, drafts) is the label_form
component; it sends one action at a time, which the work area applies with ``_apply``
(AppTest drives the same path by putting an action in ``st.session_state["label_do"]``).
The work area is a fragment, so a submit reruns it alone, not the page around it.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from app.components import data, keys, shell
from app.components.label_form import action_of, draft_prefix, label_form
from app.components.span_tree import render_span_tree
from app.components.state import init_page_state, set_query_param
from app.components.trace_render import render_trace
from core.errors import AlignboardError
from core.labeling.criteria import Criterion, display_value
from core.labeling.flags import FLAG_TEXT, clear_flag, flags_of, set_flag
from core.labeling.rules import LabelRules
from core.labeling.session import (
    ALL_TRACES,
    Session,
    judge_verdict,
    mark_done_later,
    others_labels,
    own_label,
    submit_label,
    value_options,
)
from core.labeling.traces import TraceDetail
from core.views.spans import shows_tree, span_tree
from core.views.transcript import trace_view

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
        "flash": None,
        "error": None,
        "ask": None,
        "form_n": 0,
        "ack": None,
        "clear_draft": None,
        "marks": [],
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


def _session(criterion: str) -> Session:
    """The reviewer's session, with the traces they flagged (skipped by "next unlabeled")."""
    base = data.session(ctx.experiment_id, criterion, ctx.reviewer, ss["label_queue"])
    return base.with_flagged(data.flagged(ctx.experiment_id, criterion, ctx.reviewer))


# A linked trace is resolved before the widgets are drawn, since it may switch the work
# list to "All traces".
wanted = linked.get("trace")
if wanted:
    try:
        found = _session(ss["label_criterion"]).position(wanted) is not None
    except AlignboardError:
        found = False
    if not found:
        ss["label_queue"] = ALL_TRACES

top = st.columns([2, 2, 3], vertical_alignment="bottom")
top[0].selectbox(
    "Work list",
    lists,
    key="label_queue",
    format_func=lambda q: q or "All traces",
    on_change=_change_work_list,
)
top[1].selectbox("Criterion", crit_names, key="label_criterion", on_change=_reset_position)
crit: Criterion = next(c for c in crits if c.name == ss["label_criterion"])
rules: LabelRules = data.label_rules(ctx.experiment_id, crit.name, ss["label_queue"])


def rules_caption(r: LabelRules) -> str:
    """The rules in force, in one line (the reviewer cannot change them)."""
    review = "Blind review" if r.blind else "Open review (other labels shown)"
    policy = {
        "always": "rationale required: always",
        "disagree_humans": "rationale required: when you disagree with another reviewer "
        "(asked after saving)",
        "optional": "rationale optional",
    }[r.rationale_policy]
    return f"{review} · {policy} · set by your lead on the Setup page"


top[2].caption(rules_caption(rules))

try:
    first = _session(crit.name)
except AlignboardError as exc:
    st.error(str(exc))
    st.stop()
if not first.trace_ids:
    st.info("This work list is empty. Add traces to the queue, or pick another list.")
    st.stop()
if first.position(ss["label_trace"]) is None:
    ss["label_trace"] = first.start()

options = value_options(crit)


def _go(tid: str | None) -> None:
    if tid is None or tid == ss["label_trace"]:
        return
    ss["label_trace"] = tid
    ss["label_ask"] = None
    set_query_param("label", "trace", tid)


def _reveal_line(detail: TraceDetail, value: Any) -> str:
    """What the reviewer may see once they have saved: the judge and the other reviewers.

    ``detail`` is the trace as read before the save: the others' labels and the verdict
    are the same, and not reading it again keeps a submit to one write and one read.
    """
    parts = []
    verdict = judge_verdict(detail, crit)
    if verdict is not None:
        parts.append(f"judge: {display_value(crit, verdict.value)}")
    parts += [
        f"{lab.reviewer}: {display_value(crit, lab.value)}"
        for lab in others_labels(detail, crit.name, ctx.reviewer, blind=False).labels
    ]
    return f"Saved {display_value(crit, value)}." + (
        f" On that trace, {' · '.join(parts)}." if parts else ""
    )


def _submit(act: dict[str, Any], session: Session) -> None:
    tid = act["trace_id"]
    if crit.kind == "numeric":
        value = act.get("number")
    else:
        index = act.get("index")
        value = options[index][0] if isinstance(index, int) and 0 <= index < len(options) else None
    detail = data.trace(tid)
    try:
        out = submit_label(
            tid,
            crit,
            ctx.reviewer,
            value,
            act.get("rationale"),
            policy=rules.rationale_policy,
            others=detail.labels,
        )
    except AlignboardError as exc:
        ss["label_error"] = str(exc)
        return
    data.after_label(tid, ctx.experiment_id, crit.name, ctx.reviewer)
    ss["label_clear_draft"] = {"trace_id": tid, "n": act.get("n")}
    queue = data.queue_object(ctx.experiment_id, ss["label_queue"], crit.name)
    if queue is not None:
        # In the background: the label is saved; the queue item's status follows.
        ss["label_marks"] = [*ss["label_marks"], mark_done_later(queue, tid, ctx.reviewer)]
    if out.needs_rationale:
        names = ", ".join(sorted({lab.reviewer for lab in out.disagrees_with}))
        ss["label_ask"] = (
            f"Saved {display_value(crit, out.label.value)}, but {names} labeled this trace "
            f"differently: add a rationale (the lead asks for one), then {keys.SUBMIT}."
        )
        ss["label_form_n"] += 1  # reload the form from the saved label
        return
    after = session.with_done(tid)
    flash = _reveal_line(detail, out.label.value)
    if after.next_pending(tid) is None:
        flash += " Every trace in this list is labeled (or flagged); you can still edit any."
    _go(after.next_pending(tid) or after.next_id(tid) or tid)
    ss["label_flash"] = flash


def _apply(act: dict[str, Any]) -> None:
    """Apply one action of the form: submit, skip, prev, next, next_pending, flag, clear_flag."""
    session = _session(crit.name)
    ss["label_ack"] = act.get("n")
    ss["label_error"] = ss["label_flash"] = None
    ss["label_clear_draft"] = None
    name, tid = act.get("action"), str(act.get("trace_id") or "")
    if session.position(tid) is None:
        ss["label_error"] = "That trace is no longer in this work list; pick another one."
        return
    if name == "submit":
        _submit(act, session)
    elif name == "skip":
        _go(session.next_pending(tid) or session.next_id(tid))
        ss["label_flash"] = "Skipped (no label)."
    elif name == "next":
        _go(session.next_id(tid))
    elif name == "prev":
        _go(session.previous_id(tid))
    elif name == "next_pending":
        _go(session.next_pending(tid))
    elif name == "flag":
        try:
            flag = set_flag(tid, crit.name, ctx.reviewer, act.get("kind", ""), act.get("comment"))
        except AlignboardError as exc:
            ss["label_error"] = str(exc)
            return
        data.after_flag(tid, ctx.experiment_id, crit.name, ctx.reviewer, True)
        _go(session.with_flagged(session.flagged | {tid}).next_pending(tid))
        ss["label_flash"] = f"Flagged as {FLAG_TEXT[flag.kind]}."
    elif name == "clear_flag":
        clear_flag(tid, crit.name, ctx.reviewer)
        data.after_flag(tid, ctx.experiment_id, crit.name, ctx.reviewer, False)
        ss["label_flash"] = "Flag cleared."
    else:
        ss["label_error"] = f"Unknown action {name!r}."


def _on_action() -> None:
    act = action_of()
    if act:
        ss["label_do"] = act


def _clear_flag(tid: str) -> None:
    ss["label_do"] = {"action": "clear_flag", "trace_id": tid}


def _queue_messages() -> list[str]:
    """Failures of the background queue updates that finished since the last run."""
    pending, failed = [], []
    for fut in ss["label_marks"]:
        if not fut.done():
            pending.append(fut)
        elif fut.result():
            failed.append(fut.result())
    ss["label_marks"] = pending
    return failed


@st.fragment
def work_area() -> None:
    """Everything a submit changes: the trace, the form, the progress, the reveal."""
    act = ss.pop("label_do", None)
    # Each action carries a unique ``n``: one delivered twice is applied once.
    if act and (act.get("n") is None or act.get("n") != ss["label_ack"]):
        _apply(act)
    session = _session(crit.name)
    if session.position(ss["label_trace"]) is None:
        ss["label_trace"] = session.start()
    trace_id: str = ss["label_trace"]
    detail = data.trace(trace_id)
    mine = own_label(detail, crit.name, ctx.reviewer)
    my_flag = next(
        (
            f
            for f in flags_of(trace_id, detail.tags)
            if f.criterion == crit.name and f.reviewer == ctx.reviewer
        ),
        None,
    )
    pos = session.position(trace_id) or 0
    done = session.done_count
    st.progress(
        done / session.total,
        text=f"{done} / {session.total} labeled · trace {pos + 1} of {session.total}",
    )
    status = (
        "labeled by you"
        if trace_id in session.done
        else "flagged by you"
        if my_flag
        else "not labeled yet"
    )
    st.caption(f"Trace `{trace_id}` · {status}")

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
        saved: dict[str, Any] = {"value": None, "rationale": ""}
        if mine is not None:
            saved["rationale"] = mine.rationale or ""
            if crit.kind == "numeric":
                saved["value"] = mine.value
            else:
                saved["value"] = next(
                    (i for i, (v, _) in enumerate(options) if v == mine.value), None
                )
        label_form(
            {
                "trace_id": trace_id,
                # A new reviewer or criterion on the same trace is a new form too (its
                # own saved label and draft, and the focus leaves the name box).
                "form_key": f"{trace_id}:{ss['label_form_n']}:{crit.name}:{ctx.reviewer}",
                "draft_prefix": draft_prefix(ctx.experiment_id, crit.name, ctx.reviewer),
                "kind": "numeric" if crit.kind == "numeric" else "choice",
                "options": [text for _, text in options],
                "min": crit.min_value,
                "max": crit.max_value,
                "saved": saved,
                "policy": rules.rationale_policy,
                "ask": ss["label_ask"] if mine is not None else None,
                "error": ss["label_error"],
                "flash": ss["label_flash"],
                "ack": ss["label_ack"],
                "clear_draft": ss["label_clear_draft"],
                "can_prev": session.previous_id(trace_id) is not None,
                "can_next": session.next_id(trace_id) is not None,
                "can_next_pending": session.next_pending(trace_id) is not None,
                "keys_text": keys.legend([text for _, text in options]),
            },
            _on_action,
        )
        if my_flag is not None:
            with st.container(border=True):
                st.markdown(f"**You flagged this:** {FLAG_TEXT[my_flag.kind]}")
                if my_flag.comment:
                    st.text(my_flag.comment)
                st.button(
                    "Clear flag",
                    key="label_clear_flag",
                    icon=":material/flag:",
                    on_click=_clear_flag,
                    args=(trace_id,),
                )
        for msg in _queue_messages():
            st.caption(f":orange[{msg}]")

        # Blind review: before the reviewer's own label is saved, nothing here depends on
        # what others (or the judge) said, not even whether they said anything.
        if rules.blind and mine is None:
            st.caption(
                "Blind review: the judge's verdict and other reviewers' labels are shown "
                "once you have saved your label."
            )
            return
        view = others_labels(detail, crit.name, ctx.reviewer, blind=False)
        st.markdown("**Other reviewers**")
        if not view.labels:
            st.caption("No other reviewer has labeled this trace.")
        for lab in view.labels:
            with st.container(border=True):
                st.text(f"{lab.reviewer}: {display_value(crit, lab.value)}")
                if lab.rationale:
                    st.text(lab.rationale)
        verdict = judge_verdict(detail, crit)
        if verdict is not None:
            st.markdown("**Judge**")
            with st.container(border=True):
                st.text(f"{verdict.source}: {display_value(crit, verdict.value)}")
                if verdict.rationale:
                    st.text(verdict.rationale)


work_area()
