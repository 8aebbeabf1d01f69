"""Align: choose a judge and an optimizer, check, launch a background job and watch it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from app.components import data, run_progress, shell
from app.components.state import init_page_state
from core.errors import AlignboardError
from core.optimization import jobs
from core.optimization.settings import (
    DEFAULT_EMBEDDING_MODEL,
    DEFAULT_JUDGE_MODEL,
    DEFAULT_REFLECTION_MODEL,
    OPTIMIZER_CHOICES,
    build_settings,
    uses_demo,
    with_kappa_override,
)
from core.views.adjudication import gate_findings, only_gate_blocks
from core.views.formatting import duration, number, when
from core.views.overview import DEMO_NOTE
from core.views.runs import run_verdict

# The advanced section's model servers: (label, session key, what the server serves).
_BASE_URL_INPUTS = (
    (
        "Judge model base URL",
        "align_base_url",
        "An OpenAI-compatible server (vLLM, llama.cpp) serving the judge model.",
    ),
    (
        "Reflection model base URL",
        "align_reflection_base_url",
        "An OpenAI-compatible server serving the reflection model.",
    ),
    (
        "Embedding model base URL",
        "align_embedding_base_url",
        "MemAlign: an OpenAI-compatible server serving the embedding model.",
    ),
)

ctx = shell.require_context()
ss = st.session_state
init_page_state(
    "align",
    {
        "optimizer": "gepa",
        "model": DEFAULT_JUDGE_MODEL,
        "reflection": DEFAULT_REFLECTION_MODEL,
        "budget": 0,
        "workers": 8,
        "seed": 0,
        "base_url": "",
        "reflection_base_url": "",
        "embedding_model": DEFAULT_EMBEDDING_MODEL,
        "embedding_base_url": "",
        "reviewers": [],
        "minibatch": 3,
        "retrieval_k": 5,
        "register_worse": False,
        "kappa_reason": "",
        # One token per form render: a double click's second submission launches nothing.
        "token": uuid.uuid4().hex,
        "launch_lock": threading.Lock(),
    },
)
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
def _form_settings(crit):
    """The settings the form's values describe (the committed ones, in a callback)."""
    return build_settings(
        ctx.experiment_id,
        crit,
        optimizer=ss["align_optimizer"],
        instructions=ss["align_instructions"],
        model=ss["align_model"],
        reflection_model=ss["align_reflection"],
        base_url=ss["align_base_url"],
        reflection_base_url=ss["align_reflection_base_url"],
        embedding_model=ss["align_embedding_model"],
        embedding_base_url=ss["align_embedding_base_url"],
        max_metric_calls=int(ss["align_budget"]),
        workers=int(ss["align_workers"]),
        seed=int(ss["align_seed"]),
        minibatch_size=int(ss["align_minibatch"]),
        retrieval_k=int(ss["align_retrieval_k"]),
        reviewers=ss["align_reviewers"],
        register_if_worse=bool(ss["align_register_worse"]),
    )


def _launch(crit, token: str) -> None:
    """Check and launch what the form holds now (Launch submits the form first)."""
    # The two submissions of a double click can run their callbacks at the same time (seen
    # in Chromium on the Optimize page): the token is checked and spent under a lock.
    with ss["align_launch_lock"]:
        if ss.get("align_token") != token:
            # A second click on a form already launched: nothing more to do.
            return
        _launch_now(crit)
        # Spent only now: a click cut short before launching can be repeated.
        ss["align_token"] = uuid.uuid4().hex
    data.after_launch()


def _launch_anyway(crit, token: str) -> None:
    """Launch past the reviewer agreement gate, for the written reason (recorded in the run)."""
    with ss["align_launch_lock"]:
        if ss.get("align_token") != token:
            return
        _launch_now(crit, override=True)
        ss["align_token"] = uuid.uuid4().hex
    data.after_launch()


def _launch_now(crit, override: bool = False) -> None:
    try:
        settings = _form_settings(crit)
        if override:
            # Refuses a blank reason or a missing name before anything is checked or written.
            settings = with_kappa_override(settings, ss.get("align_kappa_reason"), ctx.reviewer)
        check = data.alignment_check(settings)  # the same check the page shows, cached
        if check.can_launch:
            ss["align_run"] = jobs.launch(
                settings, check=check, allow_concurrent=_confirmed_alongside(crit)
            )
            ss["align_message"] = None
        else:
            ss["align_message"] = "Not launched: fix the pre-flight errors shown above first."
    except AlignboardError as exc:
        ss["align_message"] = str(exc)


def _concurrent_key(run_id: str) -> str:
    return f"align_concurrent_{run_id}"


def _confirmed_alongside(crit) -> bool:
    """True when the user ticked "Run another alongside it" for exactly the runs now active.

    The box is keyed by the newest run the page showed, and the confirmation holds only
    while the active runs are the ones the page showed: the second click of a double click
    re-sends the ticked box of the run before, which confirms nothing about the run the
    first click just started (whether or not the page has been drawn again since).
    """
    seen = list(ss.get("align_active_seen") or ())
    now = {j.run_id for j in jobs.active_runs(ctx.experiment_id, crit.name)}
    return bool(seen) and now == set(seen) and bool(ss.get(_concurrent_key(seen[0])))


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

known_reviewers = data.reviewers(ctx.experiment_id)
# Names from another experiment would be refused by the multiselect.
ss["align_reviewers"] = [r for r in ss["align_reviewers"] if r in known_reviewers]
all_jobs = data.jobs(ctx.experiment_id)
active = [j for j in all_jobs if j.active and j.judge_name == crit.name]
with st.form("align_form", border=True):
    st.text_area(
        "Instructions (editable)",
        key="align_instructions",
        height=260,
        help="Use MLflow's template variables: {{ inputs }}, {{ outputs }}, {{ expectations }}, "
        "or {{ trace }} for a judge that reads the trace's spans (tool calls, retrievals) "
        "through MLflow's judge tools.",
    )
    st.markdown("**2. Optimizer and models**")
    row: Sequence[DeltaGenerator] = st.columns([2, 1, 1])
    optimizer = row[0].selectbox(
        "Optimizer",
        list(OPTIMIZER_CHOICES),
        key="align_optimizer",
        format_func=lambda k: OPTIMIZER_CHOICES[k],
    )
    row[1].text_input(
        "Judge model", key="align_model", help="provider:/model, e.g. openai:/gpt-4.1-mini"
    )
    row[2].text_input(
        "Reflection model",
        key="align_reflection",
        help="Proposes new instructions (GEPA) or distils guidelines (MemAlign).",
    )
    knobs = st.columns(3)
    knobs[0].number_input(
        "Budget (metric calls, 0 = auto)",
        min_value=0,
        step=10,
        key="align_budget",
        help="Judge evaluations the search may spend; auto is about 10x the training set.",
    )
    knobs[1].number_input(
        "Workers", min_value=1, max_value=64, key="align_workers", help="Judge calls in flight."
    )
    knobs[2].number_input("Seed", min_value=0, step=1, key="align_seed")
    st.checkbox(
        "Register even if it scores worse on held-out traces",
        key="align_register_worse",
        help="By default a judge that scores below the seed on the test split is recorded "
        "but not registered.",
    )
    with st.expander("Advanced: model servers, embeddings, reviewers"):
        for column, (label, key, serves) in zip(st.columns(3), _BASE_URL_INPUTS, strict=True):
            column.text_input(label, key=key, placeholder="http://localhost:8000/v1", help=serves)
        memory = st.columns([2, 1, 1])
        memory[0].text_input(
            "Embedding model",
            key="align_embedding_model",
            help="MemAlign: embeds the examples of its episodic memory.",
        )
        memory[1].number_input(
            "Minibatch size",
            min_value=1,
            max_value=64,
            key="align_minibatch",
            help="GEPA: examples shown to the reflection model per iteration.",
        )
        memory[2].number_input(
            "Retrieval k",
            min_value=1,
            max_value=50,
            key="align_retrieval_k",
            help="MemAlign: examples retrieved from its memory per judgement.",
        )
        st.multiselect(
            "Only these reviewers' labels",
            known_reviewers,
            key="align_reviewers",
            placeholder="Everyone's labels",
            help="Align on some reviewers' labels only (e.g. when reviewers disagree).",
        )
    # What the confirmation below is about (newest first), for _confirmed_alongside.
    ss["align_active_seen"] = [j.run_id for j in active]
    if active:
        st.warning(
            f"A {active[0].optimizer} run for **{crit.name}** is {active[0].status} (run "
            f"`{active[0].run_id}`, see Progress below). Launching now starts a second one.",
            icon=":material/sync:",
        )
        st.checkbox(
            "Run another alongside it",
            key=_concurrent_key(active[0].run_id),
            help="Both runs register their own version of the judge.",
        )
    # What the form holds as of its last submission: what Launch checks and launches.
    try:
        settings = _form_settings(crit)
        settings_error = None
        with st.spinner("Checking the alignment..."):
            check = data.alignment_check(settings)
    except AlignboardError as exc:
        settings, check, settings_error = None, None, str(exc)
    if settings is not None and uses_demo(settings):
        st.info(
            "**The demo model is selected.** " + DEMO_NOTE + " Name a real model (e.g. "
            "`openai:/gpt-4.1-mini`) to align a real judge.",
            icon=":material/science:",
        )

    # ---- pre-flight and estimate (of exactly what Launch starts) -----------------------
    st.markdown("**3. Pre-flight**")
    if check is None:
        st.error(settings_error or "The settings cannot be checked.", icon=":material/block:")
    else:
        for f in check.errors:
            st.error(f.message, icon=":material/block:")
        for f in check.warnings:
            st.warning(f.message, icon=":material/warning:")
        if not check.findings:
            st.success("Pre-flight passed: nothing blocks this alignment.", icon=":material/check:")
        gate = gate_findings(check.findings)
        if gate:
            with st.container(border=True):
                st.markdown("**Reviewer agreement gate**")
                st.caption(
                    "The minimum reviewer kappa set for this criterion blocks the alignment. "
                    "Adjudicate the disagreements and settle the guideline, or launch anyway: "
                    "your reason and your name are recorded with the run."
                )
                st.text_area(
                    "Reason to launch anyway (required, recorded in the run)",
                    key="align_kappa_reason",
                    height=80,
                )
                st.form_submit_button(
                    "Launch anyway",
                    key="align_launch_anyway",
                    icon=":material/warning:",
                    disabled=not only_gate_blocks(check.findings),
                    on_click=_launch_anyway,
                    args=(crit, ss["align_token"]),
                    help=(
                        "Launch past the agreement gate with the reason above."
                        if only_gate_blocks(check.findings)
                        else "Fix the other pre-flight errors first."
                    ),
                )
        m = st.columns(5)
        m[0].metric(
            "Labeled: train / val / test", f"{check.n_train} / {check.n_val} / {check.n_test}"
        )
        m[1].metric("Budget", f"{check.budget:,} calls")
        m[2].metric("Estimated LLM calls", f"~{check.llm_calls:,}", help=check.explanation)
        m[3].metric(
            "Estimated time",
            duration(check.seconds, approx=True),
            help=f"At {check.latency_s:g} s per call plus the job's start-up; real providers vary.",
        )
        m[4].metric("Optimizer", optimizer)
        st.caption(
            check.explanation + " Edits in the form apply when you click Apply and check "
            "or Launch; Launch always starts what the form shows."
        )
    can_launch = check is not None and check.can_launch
    buttons = st.columns([1, 1, 3])
    buttons[0].form_submit_button(
        "Apply and check",
        key="align_check",
        icon=":material/fact_check:",
        help="Update the pre-flight and the estimate without launching.",
    )
    buttons[1].form_submit_button(
        "Launch alignment",
        key="align_launch",
        type="primary",
        icon=":material/rocket_launch:",
        disabled=not can_launch,
        on_click=_launch,
        args=(crit, ss["align_token"]),
        help=(
            "Checks and launches exactly what the form shows."
            if can_launch
            else "Fix the pre-flight errors above first."
        ),
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
        run_progress.header(now, run_id, f"**{now.judge_name or 'judge'}** · {now.optimizer or ''}")
        if now.optimizer == "memalign":
            st.caption(
                f"MemAlign step {now.iteration or 0}: it spends no judge calls while aligning, "
                "so the budget does not apply."
            )
        else:
            run_progress.budget_bar(now)
        k = st.columns(3)
        k[0].metric("Iteration", now.iteration if now.iteration is not None else "-")
        k[1].metric("Current best (val)", number(now.best_score, 3, missing="-"))
        k[2].metric("Judge version", "-" if now.judge_version is None else f"v{now.judge_version}")
        run_progress.live_chart(run_id, "align_live_chart")
        if now.active:
            run_progress.cancel_button(
                now,
                run_id,
                key="align_cancel",
                on_click=_cancel,
                help="Stops at the next iteration boundary; the best candidate so far is kept.",
            )
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


st.dataframe(
    [
        {
            "open": f"run_explorer?run={j.run_id}",
            "started": when(j.started, seconds=True),
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
    # No status in the label: the browser keeps a keyed selectbox's option labels from an
    # earlier run of the page, so a status there goes stale (the table above has it).
    format_func=lambda r: (
        f"{when(by_id[r].started, seconds=True)} · {by_id[r].optimizer} · {by_id[r].judge_name} · "
        f"{r[:8]}"
    ),
)
