"""Align: choose a judge and an optimizer, check, launch a background job and watch it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from app.components import data, run_progress, run_usage, shell, stop_controls, workers_notice
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
from core.views.align import (
    BASE_URL_HELP,
    BASE_URL_PLACEHOLDER,
    current_statuses,
    realign_summary,
    run_option_label,
)
from core.views.formatting import duration, number, when
from core.views.overview import DEMO_NOTE
from core.views.runs import run_verdict

# The models and their servers: (model label, model key, what it does, base URL key).
_MODELS = (
    ("Judge model", "align_model", "provider:/model, e.g. openai:/gpt-4.1-mini", "align_base_url"),
    (
        "Reflection model",
        "align_reflection",
        "Proposes new instructions (GEPA) or distils guidelines (MemAlign).",
        "align_reflection_base_url",
    ),
    (
        "Embedding model (MemAlign only)",
        "align_embedding_model",
        "MemAlign: embeds the examples of its episodic memory; other optimizers ignore it.",
        "align_embedding_base_url",
    ),
)
# Every form field, kept across a visit to another page (Streamlit drops the values of
# widgets it does not draw; app/components/state.py puts them back).
_KEPT = (
    "criterion",
    "start",
    "instructions",
    "optimizer",
    "model",
    "reflection",
    "budget",
    "workers",
    "seed",
    "base_url",
    "reflection_base_url",
    "embedding_model",
    "embedding_base_url",
    "reviewers",
    "minibatch",
    "proposals",
    "retrieval_k",
    "register_worse",
    "register_cancelled",
    "kappa_reason",
    "watch",
    *stop_controls.KEPT,
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
        "proposals": 4,
        "retrieval_k": 5,
        "register_worse": False,
        "register_cancelled": False,
        **stop_controls.DEFAULTS,
        "kappa_reason": "",
        # One token per form render: a double click's second submission launches nothing.
        "token": uuid.uuid4().hex,
        "launch_lock": threading.Lock(),
    },
    keep=_KEPT,
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
        proposals_in_flight=int(ss["align_proposals"]),
        retrieval_k=int(ss["align_retrieval_k"]),
        reviewers=ss["align_reviewers"],
        register_if_worse=bool(ss["align_register_worse"]),
        register_if_cancelled=bool(ss["align_register_cancelled"]),
        stop=stop_controls.policy("align"),
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


def _request_realign(judge_name: str, version: int) -> None:
    # Run in the page body, under a spinner (a callback can draw none): see _realign_now.
    ss["align_realign_request"] = (judge_name, version)


def _realign_now(judge_name: str, version: int) -> None:
    """Realign a MemAlign version with the labels added since (a run and a new version)."""
    # Imported on use: the MemAlign runner is not needed to draw the page.
    from core.optimization.runners.memalign_versions import realign

    try:
        ss["align_realign_result"] = realign(ctx.experiment_id, judge_name, version=version)
        ss["align_realign_error"] = None
    except AlignboardError as exc:
        ss["align_realign_result"] = None
        ss["align_realign_error"] = (judge_name, str(exc))
    data.after_realign()


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

all_jobs = data.jobs(ctx.experiment_id)
# ---- Realign: a MemAlign version plus the labels added since ---------------------------
with st.container(border=True, key="align_realign_box"):
    st.markdown("**Realign with new labels** (MemAlign)")
    request = ss.pop("align_realign_request", None)
    if request is not None:
        with st.spinner(f"Realigning {request[0]} v{request[1]} with the new labels..."):
            _realign_now(*request)
        all_jobs = data.jobs(ctx.experiment_id)  # with the realign's run
    stamp = tuple((j.run_id, j.status) for j in all_jobs if j.judge_name == crit.name)
    offer = data.realign_offer(ctx.experiment_id, crit.name, stamp)
    done = ss.get("align_realign_result")
    if done is not None and done.judge_name == crit.name:
        st.success(realign_summary(done.to_dict()), icon=":material/check_circle:")
    failed = ss.get("align_realign_error")
    if failed is not None and failed[0] == crit.name:
        st.error(failed[1])
    st.caption(offer.message())
    if offer.version is not None:
        new = "" if not offer.new_labels else f" ({offer.new_labels} new)"
        st.button(
            f"Realign v{offer.version} with new labels{new}",
            key="align_realign",
            icon=":material/playlist_add:",
            disabled=not offer.can_realign,
            on_click=_request_realign,
            args=(crit.name, offer.version),
            help="Runs here, in this page (a MemAlign realign spends no judge calls while "
            "it adds to the memory), then scores the new version on the held-out split.",
        )

known_reviewers = data.reviewers(ctx.experiment_id)
# Names from another experiment would be refused by the multiselect.
ss["align_reviewers"] = [r for r in ss["align_reviewers"] if r in known_reviewers]
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
    optimizer = st.selectbox(
        "Optimizer",
        list(OPTIMIZER_CHOICES),
        key="align_optimizer",
        format_func=lambda k: OPTIMIZER_CHOICES[k],
    )
    for label, key, does, url_key in _MODELS:
        row: Sequence[DeltaGenerator] = st.columns(2)
        row[0].text_input(label, key=key, help=does)
        row[1].text_input(
            f"{label.removesuffix(' (MemAlign only)')} base URL",
            key=url_key,
            placeholder=BASE_URL_PLACEHOLDER,
            help=BASE_URL_HELP,
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
    stop_controls.draw("align", optimizer)
    with st.expander("Advanced: minibatch, retrieval, reviewers, cancelling"):
        memory = st.columns(2)
        memory[0].number_input(
            "Minibatch size",
            min_value=1,
            max_value=64,
            key="align_minibatch",
            help="GEPA: examples shown to the reflection model per iteration.",
        )
        memory[1].number_input(
            "Retrieval k",
            min_value=1,
            max_value=50,
            key="align_retrieval_k",
            help="MemAlign: examples retrieved from its memory per judgement.",
        )
        st.selectbox(
            "GEPA proposals",
            [4, 1],
            key="align_proposals",
            format_func=lambda n: "parallel: 4 at once" if n > 1 else "sequential: one at a time",
            help="GEPA: proposals evaluated and reflected on at once per iteration. "
            "Parallel keeps the judge workers busy; sequential is gepa's original loop.",
        )
        st.multiselect(
            "Only these reviewers' labels",
            known_reviewers,
            key="align_reviewers",
            placeholder="Everyone's labels",
            help="Align on some reviewers' labels only (e.g. when reviewers disagree).",
        )
        st.checkbox(
            "Register if cancelled",
            key="align_register_cancelled",
            help="Off: a cancelled run registers nothing. On: the best candidate found "
            "before the cancel is scored on the held-out split and registered like a "
            "finished run's.",
        )
    # What the confirmation below is about (newest first), for _confirmed_alongside.
    ss["align_active_seen"] = [j.run_id for j in active]
    if active:
        st.warning(
            # No status word here: the form is not redrawn while Progress polls, so
            # "queued" stayed on screen for a whole 13-minute run (B4 browser smoke).
            f"A {active[0].optimizer} run for **{crit.name}** is in progress (run "
            f"`{active[0].run_id}`; its live status is under Progress below). Launching "
            "now starts a second one.",
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
        if settings.optimizer == "memalign":
            # MemAlign distils every train label once; no metric-call budget applies.
            m[1].metric("Budget", "none", help="MemAlign reads each train label once.")
        else:
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
        now = run_progress.read_status(run_id)
        if now is None:
            return  # the store is unreachable: the warning says so, the next poll retries
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
        run_usage.usage_line(now, run_id)
        run_progress.live_chart(run_id, "align_live_chart")
        if now.active:
            run_progress.cancel_button(
                now,
                run_id,
                key="align_cancel",
                on_click=_cancel,
                help="Stops at the next iteration boundary; the best candidate so far is scored, "
                "and registered only with Register if cancelled.",
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
            if now.status == "cancelled":
                # The CLI's sentence: whether a version was registered, and why not.
                run_progress.outcome_banner(now)
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


@st.fragment(run_every=3 if any(j.active for j in all_jobs) else None)
def _recent(listed: list) -> None:
    # Polled while a listed run is active: those are read afresh (a cheap read each), so
    # a run that ends reads so within seconds here, whichever run the panel above follows.
    runs = workers_notice.guarded(lambda: current_statuses(listed))
    if runs is None:
        return  # the store is unreachable: the warning says so, the next poll retries
    if any(a.active and not b.active for a, b in zip(listed, runs, strict=True)):
        # One ended: redraw the page once (its version, the Realign offer, the polling).
        data.after_job_end()
        st.rerun()
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
            for j in runs
        ],
        hide_index=True,
        key="align_runs",
        column_config={
            "open": st.column_config.LinkColumn("explore", display_text="open", width="small"),
            "best val": st.column_config.NumberColumn(format="%.3f"),
        },
    )
    by_id = {j.run_id: j for j in runs}
    chosen = ss.get("align_watch")
    # Set on every draw, even unchanged: the browser shows the label it last sent for the
    # selection (with the status of then) unless the server sends the value again.
    ss["align_watch"] = chosen if chosen in by_id else (watched if watched in by_id else None)
    st.selectbox(
        "Watch a run here (interrupted runs can be resumed)",
        list(by_id),
        key="align_watch",
        placeholder="Pick a run to watch",
        on_change=_watch,
        format_func=lambda r: run_option_label(by_id[r], by_id[r].judge_name or "judge"),
    )


_recent(all_jobs)
