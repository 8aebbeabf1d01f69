"""Setup: the team lead's page. Criteria (create, edit, rules), review queues (from a
filter, traces in and out, reviewers, rule overrides, MLflow status) and the team's
progress. Each form is one core call in its callback; a refusal is shown and nothing is
written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from app.components import data, shell
from app.components.state import init_page_state
from core.errors import AlignboardError
from core.labeling import criteria as crit_mod
from core.labeling import queues as queue_mod
from core.labeling import rules as rules_mod
from core.views import setup as setup_view

KINDS = list(crit_mod.KINDS)
POLICIES = list(rules_mod.RATIONALE_POLICIES)
BLIND_CHOICES = [setup_view.INHERIT, "blind", "not blind"]

ctx = shell.require_context()
init_page_state(
    "setup",
    {
        "msg_criteria": None,
        "msg_queues": None,
        "msg_progress": None,
        "edit_loaded": None,
        "rules_loaded": None,
        "queue_loaded": None,
    },
)
ss = st.session_state
eid = ctx.experiment_id


def _run(section: str, action: Callable[[], str]) -> None:
    """Call one core action; keep its message (or the refusal) for ``section``."""
    try:
        text = action()
    except AlignboardError as exc:
        ss[f"setup_msg_{section}"] = ("error", str(exc))
        return
    data.after_setup()
    ss[f"setup_msg_{section}"] = ("success", text)


def _show(section: str) -> None:
    msg = ss.get(f"setup_msg_{section}")
    if not msg:
        return
    kind, text = msg
    # Messages quote names and values people typed: shown as typed, never as markdown.
    (st.error if kind == "error" else st.success)(setup_view.plain(text))


def _kind_text(kind: str) -> str:
    return setup_view.KIND_TEXT[kind]


def _filter_text(kind: str) -> str:
    return queue_mod.FILTER_TEXT[kind]


def _number(key: str, label: str) -> float | None:
    return setup_view.parse_number(ss.get(key), label)


# ---- criteria --------------------------------------------------------------------------


def _create_criterion() -> None:
    def action() -> str:
        kind = ss["setup_new_kind"]
        crit = crit_mod.create_criterion(
            eid,
            (ss["setup_new_name"] or "").strip(),
            kind,
            ss["setup_new_instructions"],
            options=setup_view.parse_options(ss["setup_new_options"])
            if kind == "categorical"
            else None,
            min_value=_number("setup_new_min", "Minimum") if kind == "numeric" else None,
            max_value=_number("setup_new_max", "Maximum") if kind == "numeric" else None,
            positive_label=ss["setup_new_pos"],
            negative_label=ss["setup_new_neg"],
        )
        ss["setup_edit_name"] = crit.name
        ss["setup_edit_loaded"] = None
        ss["setup_rules_loaded"] = None
        return f"Created criterion {crit.name} ({setup_view.KIND_TEXT[crit.kind]})."

    _run("criteria", action)


def _load_edit(crit: crit_mod.Criterion) -> None:
    """Put the criterion's current definition into the edit form's fields."""
    ss["setup_edit_kind"] = crit.kind
    ss["setup_edit_instructions"] = crit.instructions
    ss["setup_edit_pos"] = crit.positive_label
    ss["setup_edit_neg"] = crit.negative_label
    ss["setup_edit_options"] = "\n".join(crit.options)
    ss["setup_edit_min"] = (
        "" if crit.min_value is None else crit_mod.display_value(crit, crit.min_value)
    )
    ss["setup_edit_max"] = (
        "" if crit.max_value is None else crit_mod.display_value(crit, crit.max_value)
    )
    ss["setup_edit_loaded"] = crit.name


def _edit_criterion(name: str) -> None:
    def action() -> str:
        kind = ss["setup_edit_kind"]
        crit = crit_mod.update_criterion(
            eid,
            name,
            kind=kind,
            instructions=ss["setup_edit_instructions"],
            options=setup_view.parse_options(ss["setup_edit_options"])
            if kind == "categorical"
            else None,
            min_value=_number("setup_edit_min", "Minimum") if kind == "numeric" else crit_mod.KEEP,
            max_value=_number("setup_edit_max", "Maximum") if kind == "numeric" else crit_mod.KEEP,
            positive_label=ss["setup_edit_pos"] if kind == "pass_fail" else None,
            negative_label=ss["setup_edit_neg"] if kind == "pass_fail" else None,
        )
        ss["setup_edit_loaded"] = None  # show what MLflow now holds
        return f"Saved criterion {crit.name}."

    _run("criteria", action)


def _load_rules(name: str, rules: rules_mod.LabelRules) -> None:
    ss["setup_rules_policy"] = rules.rationale_policy
    ss["setup_rules_blind"] = rules.blind
    ss["setup_rules_kappa"] = (
        "" if rules.min_reviewer_kappa is None else f"{rules.min_reviewer_kappa:g}"
    )
    ss["setup_rules_loaded"] = name


def _save_rules(name: str) -> None:
    def action() -> str:
        rules = rules_mod.set_criterion_rules(
            eid,
            name,
            rationale_policy=ss["setup_rules_policy"],
            blind=bool(ss["setup_rules_blind"]),
            min_reviewer_kappa=(ss["setup_rules_kappa"] or "").strip() or None,
        )
        ss["setup_rules_loaded"] = None
        return f"Rules of {name}: {setup_view.rules_text(rules)}."

    _run("criteria", action)


def _criteria_tab() -> None:
    _show("criteria")
    rows = data.setup_criteria(eid)
    if rows:
        st.dataframe(
            [r.to_dict() for r in rows],
            hide_index=True,
            key="setup_criteria_table",
            column_config={
                "instructions": st.column_config.TextColumn(width="large"),
                "rules": st.column_config.TextColumn(width="medium"),
            },
        )
    else:
        st.info("No criteria yet: create the first one below.")

    with (
        st.expander("New criterion", expanded=not rows, icon=":material/add:"),
        st.form("setup_new_criterion_form"),
    ):
        c = st.columns([2, 1])
        c[0].text_input(
                "Name", key="setup_new_name", placeholder="answer_correct",
                help="Letters, digits and underscores; becomes the judge's and the labels' name.",
            )  # fmt: skip
        c[1].selectbox("Kind", KINDS, key="setup_new_kind", format_func=_kind_text)
        st.text_area(
            "Instructions",
            key="setup_new_instructions",
            placeholder="Does {{ outputs }} answer {{ inputs }} correctly and politely?",
            help="What reviewers and the judge decide. Template variables: {{ inputs }}, "
            "{{ outputs }}, {{ expectations }}, {{ trace }}.",
        )
        p = st.columns(2)
        p[0].text_input("Pass label (pass/fail)", value="Pass", key="setup_new_pos")
        p[1].text_input("Fail label (pass/fail)", value="Fail", key="setup_new_neg")
        st.text_area(
            "Options (categorical): one per line or comma-separated",
            key="setup_new_options",
            height=80,
        )
        n = st.columns(2)
        n[0].text_input("Minimum (numeric, optional)", key="setup_new_min")
        n[1].text_input("Maximum (numeric, optional)", key="setup_new_max")
        st.form_submit_button("Create criterion", type="primary", on_click=_create_criterion)

    if not rows:
        return
    names = [r.name for r in rows]
    if ss.get("setup_edit_name") not in names:
        ss["setup_edit_name"] = names[0]
    name = st.selectbox("Criterion to edit", names, key="setup_edit_name")
    crits = {c.name: c for c in data.criteria(eid)}
    crit = crits.get(name)
    if crit is None:
        return
    if ss.get("setup_edit_loaded") != crit.name:
        _load_edit(crit)
    rules = data.criterion_rules(eid, crit.name)
    if ss.get("setup_rules_loaded") != crit.name:
        _load_rules(crit.name, rules)

    left, right = st.columns([3, 2])
    with left, st.form("setup_edit_criterion_form"):
        st.markdown("**Edit criterion**")
        st.caption(
            "Saved to the same MLflow label schema. A change the existing labels would not "
            "fit (another kind, dropping an option in use, a range leaving labeled values "
            "out) is refused."
        )
        st.selectbox("Kind", KINDS, key="setup_edit_kind", format_func=_kind_text)
        st.text_area("Instructions", key="setup_edit_instructions", height=150)
        p = st.columns(2)
        p[0].text_input("Pass label (pass/fail)", key="setup_edit_pos")
        p[1].text_input("Fail label (pass/fail)", key="setup_edit_neg")
        st.text_area("Options (categorical)", key="setup_edit_options", height=80)
        n = st.columns(2)
        n[0].text_input("Minimum (numeric)", key="setup_edit_min")
        n[1].text_input("Maximum (numeric)", key="setup_edit_max")
        st.form_submit_button(
            "Save criterion", on_click=_edit_criterion, args=(crit.name,), type="primary"
        )
    with right, st.form("setup_rules_form"):
        st.markdown("**Labeling rules**")
        st.caption("Set by the lead for every reviewer; a queue may override the first two.")
        st.radio(
            "Rationale required",
            POLICIES,
            key="setup_rules_policy",
            format_func=_policy_text,
        )
        st.checkbox(
            "Blind review (hide the judge's verdict and other reviewers' labels until saved)",
            key="setup_rules_blind",
        )
        st.text_input(
            "Minimum reviewer kappa (optional)",
            key="setup_rules_kappa",
            help="Alignment on this criterion is blocked while reviewer agreement is below "
            "this, unless the engineer overrides it with a written reason. Empty: no minimum.",
        )
        st.form_submit_button("Save rules", on_click=_save_rules, args=(crit.name,))


# ---- queues ----------------------------------------------------------------------------


def _new_filter() -> queue_mod.TraceFilter:
    kind = ss["setup_q_filter"]
    if kind == "unlabeled":
        return queue_mod.TraceFilter("unlabeled", criterion=ss.get("setup_q_unlabeled"))
    if kind == "text":
        return queue_mod.TraceFilter("text", text=ss.get("setup_q_text"))
    if kind == "tag":
        return queue_mod.TraceFilter("tag", text=ss.get("setup_q_tag"))
    if kind == "ids":
        return queue_mod.TraceFilter(
            "ids", trace_ids=queue_mod.parse_trace_ids(ss.get("setup_q_ids"))
        )
    return queue_mod.TraceFilter("all")


def _create_queue() -> None:
    def action() -> str:
        flt = _new_filter()
        q, n = queue_mod.create_queue_from_filter(
            eid,
            ss["setup_q_name"],
            ss["setup_q_criteria"],
            setup_view.parse_reviewers(ss["setup_q_reviewers"]),
            flt,
        )
        ss["setup_queue"] = q.name
        ss["setup_queue_loaded"] = None
        return (
            f"Created queue {q.name} with {n} traces ({flt.describe()}) for "
            f"{', '.join(q.reviewers)}."
        )

    _run("queues", action)


def _queue_action(name: str, act: Callable[[queue_mod.Queue], str]) -> None:
    # The queue is read fresh: another lead may have changed it since the page drew it.
    _run("queues", lambda: act(queue_mod.get_queue(eid, name)))


def _add(q: queue_mod.Queue) -> str:
    n = queue_mod.add_traces(q, queue_mod.parse_trace_ids(ss["setup_add_ids"]), check=True)
    ss["setup_add_ids"] = ""
    return f"Added {n} traces to {q.name}."


def _remove(q: queue_mod.Queue) -> str:
    n = queue_mod.remove_traces(q, queue_mod.parse_trace_ids(ss["setup_remove_ids"]))
    ss["setup_remove_ids"] = ""
    return f"Removed {n} traces from {q.name}; their labels stay."


def _reviewers(q: queue_mod.Queue) -> str:
    updated = queue_mod.update_reviewers(
        q,
        add=setup_view.parse_reviewers(ss["setup_rev_add"]),
        remove=ss["setup_rev_remove"],
    )
    ss["setup_rev_add"] = ""
    ss["setup_queue_loaded"] = None
    return f"Reviewers of {q.name}: {', '.join(updated.reviewers)}."


def _queue_rules(q: queue_mod.Queue) -> str:
    policy = ss["setup_qr_policy"]
    blind = ss["setup_qr_blind"]
    over = rules_mod.set_queue_rules(
        eid,
        q.name,
        rationale_policy=None if policy == setup_view.INHERIT else policy,
        blind=None if blind == setup_view.INHERIT else blind == "blind",
    )
    return f"Rule overrides of {q.name}: {setup_view.queue_rules_text(over)}."


def _sync(q: queue_mod.Queue) -> str:
    complete = queue_mod.sync_done(q)
    return f"{complete} items of {q.name} are complete in MLflow (labeled by every reviewer)."


def _policy_text(p: Any) -> str:
    return p if p == setup_view.INHERIT else rules_mod.POLICY_TEXT[p]


def _queues_tab() -> None:
    _show("queues")
    crit_names = [c.name for c in data.criteria(eid)]
    queues = data.setup_queues(eid)
    if queues:
        st.dataframe(
            [
                {
                    "queue": q.name,
                    "criteria": ", ".join(q.criteria),
                    "reviewers": ", ".join(q.reviewers),
                }
                for q in queues
            ],
            hide_index=True,
            key="setup_queues_table",
        )
    with st.expander("New queue", expanded=not queues, icon=":material/add:"):
        if not crit_names:
            st.info("Create a criterion first: a queue asks its reviewers for criteria.")
        with st.form("setup_new_queue_form"):
            c = st.columns(2)
            c[0].text_input("Queue name", key="setup_q_name", placeholder="first-pass")
            c[1].multiselect("Criteria", crit_names, key="setup_q_criteria")
            known = ", ".join(data.reviewers(eid)[:5])
            st.text_input(
                "Reviewers (comma-separated, at least one)",
                key="setup_q_reviewers",
                placeholder=known or "maria.chen, dev.patel",
            )
            st.radio(
                "Start with",
                list(queue_mod.FILTER_KINDS),
                key="setup_q_filter",
                format_func=_filter_text,
                horizontal=True,
            )
            f = st.columns(3)
            f[0].selectbox("Unlabeled for criterion", crit_names, key="setup_q_unlabeled")
            f[1].text_input("Text the traces contain", key="setup_q_text")
            f[2].text_input("Tag (key=value)", key="setup_q_tag", placeholder="topic=returns")
            st.text_area(
                "Trace ids (one per line; pasted from the Traces page or a spreadsheet)",
                key="setup_q_ids",
                height=80,
            )
            st.form_submit_button("Create queue", type="primary", on_click=_create_queue)

    if not queues:
        return
    names = [q.name for q in queues]
    if ss.get("setup_queue") not in names:
        ss["setup_queue"] = names[-1]
    name = st.selectbox("Queue to manage", names, key="setup_queue")
    q = next(x for x in queues if x.name == name)
    over = data.queue_rules(eid, q.name)
    if ss.get("setup_queue_loaded") != q.name:
        ss["setup_qr_policy"] = over.rationale_policy or setup_view.INHERIT
        ss["setup_qr_blind"] = (
            setup_view.INHERIT if over.blind is None else ("blind" if over.blind else "not blind")
        )
        ss["setup_rev_remove"] = []
        ss["setup_queue_loaded"] = q.name
    st.caption(
        setup_view.plain(
            f"Criteria: {', '.join(q.criteria)} · reviewers: {', '.join(q.reviewers) or 'nobody'}"
            f" · rule overrides: {setup_view.queue_rules_text(over)}"
        )
    )
    a, b = st.columns(2)
    with a, st.form("setup_add_form"):
        st.text_area("Trace ids to add (one per line)", key="setup_add_ids", height=80)
        st.form_submit_button(
            "Add traces", on_click=_queue_action, args=(q.name, _add), icon=":material/add:"
        )
    with b, st.form("setup_remove_form"):
        st.text_area("Trace ids to remove (one per line)", key="setup_remove_ids", height=80)
        st.form_submit_button(
            "Remove traces",
            on_click=_queue_action,
            args=(q.name, _remove),
            icon=":material/remove:",
        )
    a, b = st.columns(2)
    with a, st.form("setup_reviewers_form"):
        st.text_input("Assign reviewers (comma-separated)", key="setup_rev_add")
        st.multiselect("Unassign reviewers", list(q.reviewers), key="setup_rev_remove")
        st.form_submit_button("Update reviewers", on_click=_queue_action, args=(q.name, _reviewers))
    with b, st.form("setup_queue_rules_form"):
        st.selectbox(
            "Rationale required (this queue)",
            [setup_view.INHERIT, *POLICIES],
            key="setup_qr_policy",
            format_func=_policy_text,
        )
        st.selectbox("Blind review (this queue)", BLIND_CHOICES, key="setup_qr_blind")
        st.form_submit_button(
            "Save queue rules", on_click=_queue_action, args=(q.name, _queue_rules)
        )
    st.button(
        "Sync status to MLflow",
        key="setup_sync",
        on_click=_queue_action,
        args=(q.name, _sync),
        icon=":material/sync:",
        help="Mark complete in MLflow's Review tab every item all assigned reviewers have "
        "labeled (and pending again one a newly assigned reviewer has not).",
    )


# ---- team progress ---------------------------------------------------------------------


def _progress_tab() -> None:
    progress = data.team_progress(eid)
    if not progress:
        st.info("No queues yet: create one on the Queues tab.")
        return
    st.dataframe(
        setup_view.progress_rows(progress),
        hide_index=True,
        key="setup_progress_table",
    )
    st.caption(
        "done: items with the reviewer's label on every queue criterion. Complete in "
        "MLflow: items every assigned reviewer labeled. Flagged: marked unsure or broken."
    )


st.title("Setup")
st.caption(
    "Criteria, review queues and the rules reviewers label by; each change is written to "
    "MLflow (label schemas, review queues, experiment tags)."
)
tabs = st.tabs(["Criteria", "Queues", "Team progress"])
with tabs[0]:
    _criteria_tab()
with tabs[1]:
    _queues_tab()
with tabs[2]:
    _progress_tab()
