"""Align: choose a judge and an optimizer, check, launch a background job and watch it."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import streamlit as st

from app.components import data, nav, run_charts, shell
from core.errors import AlignboardError
from core.optimization import jobs
from core.optimization.settings import (
    DEFAULT_JUDGE_MODEL,
    DEFAULT_REFLECTION_MODEL,
    OPTIMIZER_CHOICES,
    alignment_settings,
    uses_demo,
)
from core.views.overview import DEMO_NOTE
from core.views.runs import metric_series, run_verdict

ctx = shell.require_context()
ss = st.session_state
st.title("Align")
st.caption(
    "Turn a criterion's human labels into a better LLM judge. The alignment runs as a "
    "background job recorded in an MLflow run: you can leave this page, and it keeps going."
)
crits = data.criteria(ctx.experiment_id)
if not crits:
    st.info("No criteria yet: create one with `alignboard criterion create`.")
    st.stop()


# ---- callbacks (one core call each) ----------------------------------------------------
def _launch(settings) -> None:
    try:
        ss["align_run"] = jobs.launch(settings)
        ss["align_message"] = None
    except AlignboardError as exc:
        ss["align_message"] = str(exc)
    data.after_launch()


def _cancel(run_id: str) -> None:
    jobs.cancel(run_id)
    data.after_launch()


def _resume(run_id: str) -> None:
    try:
        jobs.resume(run_id)
        ss["align_message"] = None
    except AlignboardError as exc:
        ss["align_message"] = str(exc)
    data.after_launch()


def _watch() -> None:
    ss["align_run"] = ss.get("align_watch")


# ---- the judge -------------------------------------------------------------------------
st.subheader("1. Judge")
pick = st.columns([1, 2])
crit_name = pick[0].selectbox(
    "Criterion",
    [c.name for c in crits],
    key="align_criterion",
    help="The judge is named after its criterion and learns from that criterion's labels.",
)
crit = next(c for c in crits if c.name == crit_name)
points = data.starting_points(ctx.experiment_id, crit)
by_key = {p.key: p for p in points}
if ss.get("align_start") not in by_key:
    ss["align_start"] = points[0].key
start_key = pick[1].selectbox(
    "Start from",
    list(by_key),
    key="align_start",
    format_func=lambda k: by_key[k].label,
    help="A new judge from the criterion's instructions, or any registered version of it.",
)
source = (ctx.experiment_id, crit.name, start_key)
if ss.get("align_source") != source:
    # A new starting point replaces the text (edits to the previous one are dropped).
    ss["align_instructions"] = by_key[start_key].instructions
    ss["align_source"] = source

ss.setdefault("align_optimizer", "gepa")
ss.setdefault("align_model", DEFAULT_JUDGE_MODEL)
ss.setdefault("align_reflection", DEFAULT_REFLECTION_MODEL)
ss.setdefault("align_budget", 0)
ss.setdefault("align_workers", 8)
ss.setdefault("align_seed", 0)
with st.form("align_form", border=True):
    instructions = st.text_area(
        "Instructions (editable)",
        key="align_instructions",
        height=260,
        help="Use MLflow's template variables: {{ inputs }}, {{ outputs }}, {{ expectations }}.",
    )
    st.markdown("**2. Optimizer and models**")
    row = st.columns([2, 1, 1])
    optimizer = row[0].selectbox(
        "Optimizer",
        list(OPTIMIZER_CHOICES),
        key="align_optimizer",
        format_func=lambda k: OPTIMIZER_CHOICES[k],
    )
    model = row[1].text_input(
        "Judge model", key="align_model", help="provider:/model, e.g. openai:/gpt-4.1-mini"
    )
    reflection = row[2].text_input(
        "Reflection model",
        key="align_reflection",
        help="Proposes new instructions (GEPA) or distils guidelines (MemAlign).",
    )
    row = st.columns(3)
    budget = row[0].number_input(
        "Budget (metric calls, 0 = auto)",
        min_value=0,
        step=10,
        key="align_budget",
        help="Judge evaluations the search may spend; auto is about 10x the training set.",
    )
    workers = row[1].number_input(
        "Workers", min_value=1, max_value=64, key="align_workers", help="Judge calls in flight."
    )
    seed = row[2].number_input("Seed", min_value=0, step=1, key="align_seed")
    register_worse = st.checkbox(
        "Register even if it scores worse on held-out traces",
        key="align_register_worse",
        help="By default a judge that scores below the seed on the test split is recorded "
        "but not registered.",
    )
    st.form_submit_button("Apply and check", key="align_check", icon=":material/fact_check:")

settings = alignment_settings(
    ctx.experiment_id,
    crit,
    instructions=instructions,
    optimizer=optimizer,
    model=model,
    reflection_model=reflection,
    max_metric_calls=int(budget),
    workers=int(workers),
    seed=int(seed),
)
if register_worse:
    settings = replace(settings, register_if_worse=True)
if uses_demo(settings):
    st.info(
        "**The demo model is selected.** " + DEMO_NOTE + " Name a real model (e.g. "
        "`openai:/gpt-4.1-mini`) to align a real judge.",
        icon=":material/science:",
    )

# ---- pre-flight and estimate -----------------------------------------------------------
st.subheader("3. Pre-flight")
check = data.alignment_check(settings)
for f in check.errors:
    st.error(f.message, icon=":material/block:")
for f in check.warnings:
    st.warning(f.message, icon=":material/warning:")
if not check.findings:
    st.success("Pre-flight passed: nothing blocks this alignment.", icon=":material/check:")
m = st.columns(5)
m[0].metric("Labeled: train / val / test", f"{check.n_train} / {check.n_val} / {check.n_test}")
m[1].metric("Budget", f"{check.budget:,} calls")
m[2].metric("Estimated LLM calls", f"~{check.llm_calls:,}", help=check.explanation)
m[3].metric(
    "Estimated time",
    f"~{check.seconds:,.0f} s" if check.seconds >= 1 else "< 1 s",
    help=f"At {check.latency_s:g} s per call plus the job's start-up; real providers vary.",
)
m[4].metric("Optimizer", optimizer)
st.caption(check.explanation)
st.button(
    "Launch alignment",
    key="align_launch",
    type="primary",
    icon=":material/rocket_launch:",
    disabled=not check.can_launch,
    on_click=_launch,
    args=(settings,),
    help=None if check.can_launch else "Fix the pre-flight errors above first.",
)
if ss.get("align_message"):
    st.error(ss["align_message"])

# ---- live progress ---------------------------------------------------------------------
all_jobs = data.jobs(ctx.experiment_id)
watched = ss.get("align_run") or next((j.run_id for j in all_jobs if j.active), None)
if watched is None and all_jobs and all_jobs[0].status == "interrupted":
    # The newest run died (killed, machine restarted): show it, with its Resume button.
    watched = all_jobs[0].run_id
if watched is not None:
    # Keep following it once it ends, or the panel (and its Resume button) would vanish.
    ss["align_run"] = watched
st.subheader("4. Progress")
if watched is None:
    st.caption("Launch an alignment, or pick one of the runs below to watch it.")
else:
    first = jobs.status(watched)
    polling = first.active
    if any(j.run_id == watched and j.status != first.status for j in all_jobs):
        # The cached list is behind (the job just ended, or died): read it afresh so the
        # runs below agree with the panel.
        data.after_job_end()
        all_jobs = data.jobs(ctx.experiment_id)

    @st.fragment(run_every=2 if polling else None)
    def _live(run_id: str) -> None:
        now = jobs.status(run_id)
        if polling and not now.active:
            # The job just ended: redraw the whole page once, which stops the polling.
            data.after_job_end()
            st.rerun()
        head = st.columns([3, 1], vertical_alignment="center")
        head[0].markdown(
            f"**{now.judge_name or 'judge'}** · {now.optimizer or ''} · run `{run_id}` · "
            f"status **{now.status}**"
            + (
                ""
                if now.heartbeat_age_s is None
                else f" · heartbeat {now.heartbeat_age_s:.0f} s ago"
            )
        )
        head[1].page_link(
            nav.page_path("run_explorer.py"),
            label="Open in Run explorer",
            icon=":material/query_stats:",
            query_params={"run": run_id},
        )
        calls, cap = now.metric_calls or 0, now.budget or 0
        if now.optimizer == "memalign":
            st.caption(
                f"MemAlign step {now.iteration or 0}: it spends no judge calls while aligning, "
                "so the budget does not apply."
            )
        elif cap:
            st.progress(min(calls / cap, 1.0), text=f"{calls:,} / {cap:,} metric calls used")
        k = st.columns(3)
        k[0].metric("Iteration", now.iteration if now.iteration is not None else "-")
        k[1].metric(
            "Current best (val)", "-" if now.best_score is None else f"{now.best_score:.3f}"
        )
        k[2].metric("Judge version", "-" if now.judge_version is None else f"v{now.judge_version}")
        series = metric_series(run_id)
        if not series.empty:
            st.plotly_chart(run_charts.live_chart(series), key="align_live_chart")
        if now.active:
            st.button(
                "Cancel",
                key="align_cancel",
                icon=":material/stop_circle:",
                on_click=_cancel,
                args=(run_id,),
                disabled=now.cancel_requested,
                help="Stops at the next iteration boundary; the best candidate so far is kept.",
            )
            if now.cancel_requested:
                st.caption("Cancel requested: the job stops at its next iteration boundary.")
        elif now.status == "finished":
            verdict = run_verdict(run_id)
            if verdict.registered is False:
                st.warning(
                    f"Finished: nothing registered. {verdict.text}",
                    icon=":material/gpp_maybe:",
                )
            else:
                st.success(
                    f"Finished: {now.judge_name} v{now.judge_version} registered. {verdict.text}",
                    icon=":material/check_circle:",
                )
        else:
            st.warning(
                f"**{now.status.capitalize()}.** {now.error or ''}",
                icon=":material/pause_circle:",
            )
            if now.status in ("interrupted", "failed", "cancelled"):
                st.button(
                    "Resume",
                    key="align_resume",
                    icon=":material/play_circle:",
                    on_click=_resume,
                    args=(run_id,),
                    help="Continue in the same run (gepa picks up after its last iteration).",
                )

    _live(watched)

# ---- recent runs -----------------------------------------------------------------------
st.subheader("Recent runs")
if not all_jobs:
    st.caption("No alignment runs in this experiment yet.")
    st.stop()


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


st.dataframe(
    [
        {
            "open": f"run_explorer?run={j.run_id}",
            "started": _when(j.started),
            "status": j.status,
            "optimizer": j.optimizer,
            "judge": j.judge_name,
            "version": j.judge_version,
            "iteration": j.iteration,
            "metric calls": j.metric_calls,
            "budget": j.budget,
            "best val": j.best_score,
            "run id": j.run_id,
        }
        for j in all_jobs
    ],
    hide_index=True,
    key="align_runs",
    column_config={
        "open": st.column_config.LinkColumn("explore", display_text="open", width="small"),
        "best val": st.column_config.NumberColumn(format="%.3f"),
    },
)
by_id = {j.run_id: j for j in all_jobs}
ids = list(by_id)
if ss.get("align_watch") not in by_id:
    ss["align_watch"] = watched if watched in by_id else None
st.selectbox(
    "Watch a run here (interrupted runs can be resumed)",
    ids,
    key="align_watch",
    placeholder="Pick a run to watch",
    on_change=_watch,
    format_func=lambda r: (
        f"{_when(by_id[r].started)} · {by_id[r].optimizer} · {by_id[r].judge_name} · "
        f"{by_id[r].status} · {r[:8]}"
    ),
)
