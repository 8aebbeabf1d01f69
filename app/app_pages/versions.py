"""Versions: any two versions of a judge or a registered prompt, side by side; aliases."""

from __future__ import annotations

from typing import Literal

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from app.components import charts, data, nav, prompt_outputs, shell
from app.components.state import init_page_state
from core.errors import AlignboardError
from core.views.formatting import interval, number, percent, when_ms
from core.views.optimize import DEMO_APP_NOTE
from core.views.overview import DEMO_NOTE
from core.views.versions import (
    Metrics,
    VersionComparison,
    VersionSide,
    alias_history_rows,
    alias_map,
    delta_vs_seed,
    rollback,
    rollback_plan,
    set_alias,
    side_html,
    undo,
)

#: The alias applications deploy (promotion is always explicit, never a run's doing).
PRODUCTION = "production"


def _launch_comparison(name: str, a: int, b: int) -> None:
    """Callback: score versions a and b together as a job (one core call)."""
    from core.optimization import jobs

    ss = st.session_state
    d = ss.get("versions_cmp_defaults") or {}
    try:
        run_id = jobs.launch_comparison(
            ctx.experiment_id,
            name,
            a,
            b,
            dataset=ss.get("versions_cmp_dataset") or d.get("dataset", ""),
            task_model=ss.get("versions_cmp_model") or d.get("task_model", ""),
            judges=[j for j in ss.get("versions_cmp_judges") or () if j],
            scorers=d.get("scorers") or (),
            mapping=dict(d.get("mapping") or ()),
            task_base_url=d.get("task_base_url"),
        )
    except AlignboardError as exc:
        ss["versions_cmp_error"] = str(exc)
        return
    ss["versions_cmp_error"] = None
    ss["versions_cmp_run"] = (name, a, b, run_id)


def _score_together(name: str, a: int, b: int) -> None:
    """Offer to score the two versions on held-out inputs, and follow that job."""
    from core.optimization import jobs

    ss = st.session_state
    running = ss.get("versions_cmp_run")
    if running and tuple(running[:3]) == (name, a, b):
        run_id = running[3]
        first = jobs.status(run_id)
        if first.status == "finished":
            # Scored: the comparison read before this point is stale; read it afresh.
            ss["versions_cmp_run"] = None
            data.version_comparison.clear()
            st.rerun()

        @st.fragment(run_every=2 if first.active else None)
        def _follow() -> None:
            now = jobs.status(run_id)
            if first.active and not now.active:
                # Finished: the comparison now finds this run.
                data.version_comparison.clear()
                st.rerun()
            st.caption(f"Scoring v{a} and v{b} together: run `{run_id}`, status **{now.status}**.")
            if now.status in ("failed", "interrupted"):
                st.error(now.error or f"The comparison run {now.status}.")

        _follow()
        return
    defaults = data.comparison_defaults(ctx.experiment_id, name)
    if defaults is None:
        st.caption(
            "To score them together, optimize this prompt once on the Optimize page: the "
            "comparison reuses that run's dataset, application model and judges."
        )
        return
    ss["versions_cmp_defaults"] = defaults.to_dict()
    with st.form("versions_cmp_form", border=True):
        st.markdown(f"**Score v{a} and v{b} together on held-out inputs**")
        st.text_input("Dataset source", value=defaults.dataset, key="versions_cmp_dataset")
        st.text_input("Application model", value=defaults.task_model, key="versions_cmp_model")
        st.multiselect(
            "Judges",
            list(defaults.judges),
            default=list(defaults.judges),
            key="versions_cmp_judges",
        )
        st.caption(
            f"From run `{defaults.run_id}`. Both versions run on the held-out rows of this "
            "dataset and are scored by these judges, as a background job; nothing is "
            "registered."
        )
        st.form_submit_button(
            "Score both", icon=":material/balance:", on_click=_launch_comparison, args=(name, a, b)
        )
    if ss.get("versions_cmp_error"):
        st.error(ss["versions_cmp_error"])


ctx = shell.require_context()
st.title("Versions")
ss = st.session_state
# A link (?prompt=NAME&a=1&b=2, e.g. from the Run explorer) opens that prompt's versions.
linked = init_page_state(
    "versions",
    {"flash": None, "error": None, "undo": None, "promote": None},
    query_params={"prompt": "link_prompt", "a": "link_a", "b": "link_b"},
)

subjects = data.version_subjects(ctx.experiment_id)
if not subjects:
    st.info(
        "No judge or prompt is registered yet. An alignment registers a new judge version "
        "(Align page, or `alignboard align`); prompts come from MLflow's prompt registry."
    )
    st.stop()

by_label = {s.label: s for s in subjects}
if "prompt" in linked:
    wanted = next((s for s in subjects if s.kind == "prompt" and s.name == linked["prompt"]), None)
    if wanted is not None:
        ss["versions_subject"] = wanted.label
        ss["versions_shown"] = (wanted.kind, wanted.name)  # keep the linked versions below
        for param in ("a", "b"):
            if (linked.get(param) or ss.get(f"versions_link_{param}") or "").isdigit():
                ss[f"versions_{param}"] = int(ss[f"versions_link_{param}"])
if ss.get("versions_subject") not in by_label:
    ss["versions_subject"] = next(iter(by_label))
subject = by_label[st.selectbox("Judge or prompt", list(by_label), key="versions_subject")]
summaries = data.version_summaries(ctx.experiment_id, subject.kind, subject.name)
if not summaries:
    st.info(f"{subject.kind.capitalize()} {subject.name!r} has no versions yet.")
    st.stop()
numbers = [s.version for s in summaries]
labels = {s.version: s.label for s in summaries}


def _version_label(version: int) -> str:
    return labels.get(version, f"v{version}")


# Defaults: the previous version on the left, the latest on the right. Reset when the
# subject changes (another judge's or prompt's v1 is not this one's) or the remembered
# versions do not exist for it.
changed = ss.get("versions_shown") != (subject.kind, subject.name)
ss["versions_shown"] = (subject.kind, subject.name)
for key, default in (
    ("versions_a", numbers[max(len(numbers) - 2, 0)]),
    ("versions_b", numbers[-1]),
):
    if changed or ss.get(key) not in numbers:
        ss[key] = default
pick = st.columns(2)
va = pick[0].selectbox("Version A", numbers, key="versions_a", format_func=_version_label)
vb = pick[1].selectbox("Version B", numbers, key="versions_b", format_func=_version_label)
if len(numbers) < 2:
    st.caption("Only one version so far: an alignment run registers the next one.")

# Both boxes have options and an index, so neither is ever empty.
assert va is not None and vb is not None
try:
    cmp: VersionComparison = data.version_comparison(
        ctx.experiment_id, subject.kind, subject.name, va, vb
    )
except AlignboardError as exc:
    st.error(str(exc))
    st.stop()


def _run(side: VersionSide) -> None:
    if not side.run_id:
        st.caption("Not produced by a run.")
        return
    status = f" · {side.run_status}" if side.run_status else ""
    has_explorer = any(p.url_path == "run_explorer" for p in nav.PAGES)
    if has_explorer:
        st.page_link(
            nav.page_path("run_explorer.py"),
            label=f"Run {side.run_id[:12]}{status}",
            icon=":material/insights:",
            query_params={"run": side.run_id},
        )
    else:
        st.markdown(f"[Run `{side.run_id[:12]}`{status}]({side.run_link})")
    if side.run_name:
        st.text(side.run_name)
    st.caption(f"Run usage: {side.usage}" if side.usage else "Run usage: none recorded.")


def _metrics(side: VersionSide, key: str) -> None:
    m: Metrics | None = side.metrics
    if m is None:
        st.caption(f"No held-out metrics: {side.metrics_missing or 'none recorded'}.")
        return
    cols = st.columns(4)
    seed_help = "Δ vs seed: against the seed judge (the run's start) on the same test split."
    cols[0].metric(
        "Accuracy",
        number(m.accuracy),
        delta=delta_vs_seed(m.accuracy, m.baseline_accuracy, digits=2),
        help=seed_help,
    )
    cols[0].caption(interval(m.accuracy_ci))
    cols[1].metric(
        "Cohen's kappa",
        number(m.cohen_kappa),
        delta=delta_vs_seed(m.cohen_kappa, m.baseline_kappa, digits=2),
        help=seed_help,
    )
    cols[1].caption(interval(m.cohen_kappa_ci))
    cols[2].metric("TPR", number(m.tpr))
    cols[3].metric("TNR", number(m.tnr))
    st.caption(
        f"Test split, {m.n if m.n is not None else '?'} traces"
        + (" (scalars recorded at registration)" if m.source == "registration" else "")
    )
    if m.confusion_counts:
        st.plotly_chart(
            charts.confusion_heatmap(
                list(m.confusion_labels),
                [list(r) for r in m.confusion_counts],
                "human",
                f"v{side.version}",
            ),
            key=key,
        )


# ---- side by side ------------------------------------------------------------------------
if cmp.identical:
    st.info("The two versions have the same text.", icon=":material/drag_handle:")
elif cmp.stats:
    st.caption(
        f":green[+{cmp.stats.words_added} words] · :red[-{cmp.stats.words_removed} words] · "
        f"{percent(cmp.stats.similarity)} unchanged, from v{cmp.a.version} to v{cmp.b.version}"
    )
left, right = st.columns(2, gap="medium")
sides: tuple[tuple[DeltaGenerator, VersionSide, Literal["a", "b"]], ...] = (
    (left, cmp.a, "a"),
    (right, cmp.b, "b"),
)
for col, side, which in sides:
    with col:
        st.subheader(f"v{side.version}")
        facts = [f for f in (side.optimizer, when_ms(side.created_ms)) if f]
        if side.aliases:
            facts.append("aliases: " + ", ".join(side.aliases))
        if facts:
            st.caption(" · ".join(facts))
        if side.note:
            st.text(side.note)
        _run(side)
        # side_html escapes every word of the text; only our <ins>/<del> markup remains.
        st.html(side_html(cmp.ops, which))

if subject.kind == "prompt":
    # Prompts are scored by the judges on the same held-out inputs, when a run did so.
    st.subheader("Held-out judge scores")
    pair = cmp.prompt_pair
    if pair is None or not pair.scored:
        st.info(
            (pair.note if pair is not None else None)
            or f"v{cmp.a.version} and v{cmp.b.version} were never scored together.",
            icon=":material/info:",
        )
        if cmp.a.version != cmp.b.version:
            _score_together(subject.name, cmp.a.version, cmp.b.version)
    else:
        st.caption(
            f"From run `{pair.run_id}`, which scored both versions on the same held-out "
            "inputs: mean judge score in [0, 1], with bootstrap 95% intervals."
        )
        if (pair.task_model or "").startswith("demo:/"):
            st.info(DEMO_NOTE + " " + DEMO_APP_NOTE, icon=":material/science:")
        prompt_outputs.scores_table(
            pair.scores, f"v{pair.version_a}", f"v{pair.version_b}", key="versions_prompt_scores"
        )
        st.subheader("Outputs side by side")
        if pair.outputs is not None and pair.outputs.available:
            prompt_outputs.side_by_side(pair.outputs, key="versions_pair")
        else:
            st.caption((pair.outputs.note if pair.outputs else None) or "No outputs recorded.")
else:
    st.subheader("Held-out agreement")
    left, right = st.columns(2, gap="medium")
    for col, side, which in ((left, cmp.a, "a"), (right, cmp.b, "b")):
        with col:
            st.markdown(f"**v{side.version}**")
            _metrics(side, key=f"versions_confusion_{which}")
    rows = cmp.metric_rows()
    if rows and cmp.a.metrics and cmp.b.metrics:
        st.dataframe(
            [
                {
                    "metric": r.metric,
                    # Counts read as counts, scores with the Run explorer's three decimals.
                    **{
                        head: number(v, digits=0 if r.metric == "test traces" else 3)
                        for head, v in (
                            (f"v{cmp.a.version}", r.a),
                            (f"v{cmp.b.version}", r.b),
                            (f"v{cmp.b.version} - v{cmp.a.version}", r.delta),
                        )
                    },
                }
                for r in rows
            ],
            hide_index=True,
            key="versions_metric_table",
        )

# ---- aliases -----------------------------------------------------------------------------
st.subheader("Aliases")
current = alias_map(summaries)
if current:
    st.dataframe(
        [{"alias": a, "version": f"v{v}"} for a, v in sorted(current.items())],
        hide_index=True,
        key="versions_alias_table",
    )
else:
    st.caption("No alias yet. Point `production` at the version you deploy.")


#: Who the alias history names for a change made here (the sidebar's reviewer or login).
WHO = ctx.reviewer or "dashboard user (no name in the sidebar)"


def _set_alias() -> None:
    alias, version = ss["versions_alias_name"], ss["versions_alias_version"]
    try:
        change = set_alias(ctx.experiment_id, subject.kind, subject.name, alias, version, who=WHO)
    except AlignboardError as exc:
        ss["versions_error"], ss["versions_flash"] = str(exc), None
        return
    data.after_alias()
    was = "" if change.previous_version is None else f" (was v{change.previous_version})"
    ss["versions_error"] = None
    ss["versions_flash"] = f"{change.alias} now points at v{change.version}{was}."
    ss["versions_undo"] = (subject.kind, subject.name, change.alias, change.previous_version)


def _rollback() -> None:
    alias = ss["versions_rb_alias"]
    try:
        change = rollback(ctx.experiment_id, subject.kind, subject.name, alias, who=WHO)
    except AlignboardError as exc:
        ss["versions_error"], ss["versions_flash"] = str(exc), None
        return
    data.after_alias()
    ss["versions_error"] = None
    ss["versions_flash"] = (
        f"Rolled {change.alias} back to v{change.version}, its previous target; it pointed "
        f"at v{change.previous_version}."
    )
    ss["versions_undo"] = (subject.kind, subject.name, change.alias, change.previous_version)


def _undo() -> None:
    kind, name, alias, previous = ss["versions_undo"]
    try:
        change = undo(ctx.experiment_id, kind, name, alias, previous, who=WHO)
    except AlignboardError as exc:
        ss["versions_error"], ss["versions_flash"] = str(exc), None
        return
    data.after_alias()
    ss["versions_undo"] = None
    ss["versions_error"] = None
    ss["versions_flash"] = f"Undone: {change.alias} points at v{change.version} again."


def _ask_promote(version: int) -> None:
    ss["versions_promote"] = (subject.name, version)
    ss["versions_error"] = ss["versions_flash"] = None


def _cancel_promote() -> None:
    ss["versions_promote"] = None


def _promote() -> None:
    name, version = ss["versions_promote"]
    try:
        change = set_alias(
            ctx.experiment_id, "prompt", name, PRODUCTION, version, action="promote", who=WHO
        )
    except AlignboardError as exc:
        ss["versions_error"], ss["versions_flash"] = str(exc), None
        return
    data.after_prompt_alias()
    ss["versions_promote"] = None
    ss["versions_error"] = None
    previous = change.previous_version
    was = "" if previous is None else f" (was v{previous})"
    ss["versions_flash"] = f"{PRODUCTION} now points at v{version}{was}."
    ss["versions_undo"] = ("prompt", name, PRODUCTION, previous)


if subject.kind == "prompt":
    st.page_link(
        nav.page_path("optimize.py"),
        label=f"Optimize from v{vb}",
        icon=":material/auto_fix_high:",
        query_params={"prompt": subject.name, "ref": f"{subject.name}@{vb}"},
    )
    with st.container(border=True):
        st.markdown(f"**Promote to {PRODUCTION}**")
        pending = ss.get("versions_promote")
        now_on = current.get(PRODUCTION)
        if pending and pending[0] == subject.name:
            st.warning(
                f"Point {PRODUCTION} of {subject.name} at v{pending[1]} (now "
                f"{'v' + str(now_on) if now_on is not None else 'unset'})? Applications that "
                f"load prompts:/{subject.name}@{PRODUCTION} get v{pending[1]} from their next "
                "load.",
                icon=":material/help:",
            )
            confirm = st.columns([1, 1, 4])
            confirm[0].button(
                "Yes, promote",
                key="versions_promote_confirm",
                type="primary",
                on_click=_promote,
                icon=":material/rocket_launch:",
            )
            confirm[1].button("Cancel", key="versions_promote_cancel", on_click=_cancel_promote)
        else:
            st.button(
                f"Promote v{vb} to {PRODUCTION}",
                key="versions_promote_ask",
                on_click=_ask_promote,
                args=(vb,),
                disabled=now_on == vb,
                icon=":material/upgrade:",
                help=f"v{vb} is already {PRODUCTION}." if now_on == vb else "Asks first.",
            )

set_col, rb_col = st.columns(2, gap="large")
with set_col, st.form("versions_alias_form", border=True):
    st.markdown("**Set an alias**")
    st.text_input("Alias", value="production", key="versions_alias_name")
    st.selectbox(
        "On version",
        numbers,
        index=len(numbers) - 1,
        key="versions_alias_version",
        format_func=_version_label,
    )
    st.form_submit_button("Set alias", on_click=_set_alias, icon=":material/sell:")

with rb_col, st.container(border=True):
    st.markdown("**Roll back**")
    if not current:
        st.caption("Set an alias first; roll back returns it to its previous target.")
    else:
        alias = st.selectbox("Alias", sorted(current), key="versions_rb_alias")
        # Per the alias history: where it pointed before its current target (never merely
        # "an earlier version"); refused, with the reason, when the history says nothing.
        plan = rollback_plan(ctx.experiment_id, subject.kind, subject.name, alias)
        st.button(
            plan.label,
            key="versions_rollback",
            on_click=_rollback,
            disabled=plan.target is None,
            icon=":material/undo:",
            help=plan.reason
            or f"Moves {alias} from v{plan.current} back to v{plan.target}, where it pointed "
            "before.",
        )
        if plan.reason:
            st.caption(plan.reason)

if ss["versions_error"]:
    st.error(ss["versions_error"])
elif ss["versions_flash"]:
    st.success(ss["versions_flash"])
pending_undo = ss["versions_undo"]
if (
    pending_undo
    and pending_undo[:2] == (subject.kind, subject.name)
    and pending_undo[3] is not None
):
    st.button(
        f"Undo: move {pending_undo[2]} back to v{pending_undo[3]}",
        key="versions_undo_button",
        on_click=_undo,
        icon=":material/history:",
    )

# ---- alias history -----------------------------------------------------------------------
st.subheader("Alias history")
history_rows = alias_history_rows(ctx.experiment_id, subject.kind, subject.name)
if history_rows:
    st.dataframe(
        history_rows,
        hide_index=True,
        key="versions_history_table",
        column_config={
            "run": st.column_config.LinkColumn("run", display_text="Run explorer"),
        },
    )
else:
    st.caption("No alias change recorded yet: setting, promoting or rolling back adds one.")
if subject.kind == "prompt":
    st.caption(
        "Prompts live in MLflow's workspace-wide registry; their alias history is kept in "
        "this experiment (the changes made from it)."
    )
