"""Optimize: evolve the application's registered prompt against the aligned judge(s)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from app.components import data, nav, run_progress, run_usage, shell, stop_controls, workers_notice
from app.components.state import init_page_state, keep_widget_values
from core.errors import AlignboardError
from core.optimization import jobs
from core.optimization.prompt_preflight import build_prompt_settings
from core.optimization.prompt_spec import AGGREGATIONS, BUILTIN_SCORERS, PROMPT_OPTIMIZERS
from core.views.align import (
    BASE_URL_HELP,
    BASE_URL_PLACEHOLDER,
    current_statuses,
    run_option_label,
)
from core.views.formatting import duration, number, when
from core.views.optimize import (
    DEMO_APP_NOTE,
    OPTIMIZER_LABELS,
    SCORER_LABELS,
    SOURCE_KINDS,
    dataset_name_for,
    default_field,
    default_judges,
    parse_tag_filter,
    save_upload_as_dataset,
    source_text,
    uses_demo,
)
from core.views.overview import DEMO_NOTE
from core.views.prompt_runs import prompt_label, same_active_run
from core.views.runs import run_verdict

# Every form field, kept across a visit to another page (Streamlit drops the values of
# widgets it does not draw; app/components/state.py puts them back). The variable mapping's
# fields (map_<variable>) are kept once the prompt's variables are known.
_KEPT = (
    "prompt",
    "ref",
    "source_kind",
    "dataset",
    "path",
    "queue",
    "tags",
    "upload_name",
    "task_model",
    "task_base_url",
    "task_temperature",
    "task_max_tokens",
    "reflection",
    "reflection_base_url",
    "judges",
    "scorers",
    "optimizer",
    "budget",
    "workers",
    "seed",
    "minibatch",
    "aggregation",
    "alias",
    "register_worse",
    "register_cancelled",
    "watch",
    *stop_controls.KEPT,
)

ctx = shell.require_context()
ss = st.session_state
init_page_state(
    "optimize",
    {
        "source_kind": "dataset",
        "path": "",
        "queue": "",
        "tags": "",
        "task_model": "demo:/app",
        "task_base_url": "",
        "task_temperature": None,
        "task_max_tokens": None,
        "reflection": "demo:/reflect",
        "reflection_base_url": "",
        "scorers": [],
        "optimizer": "gepa",
        "budget": 0,
        "workers": 8,
        "seed": 0,
        "minibatch": 3,
        "aggregation": "mean",
        "alias": "candidate",
        "register_worse": False,
        "register_cancelled": False,
        **stop_controls.DEFAULTS,
        # One token per form render: a double click's second submission launches nothing.
        "token": uuid.uuid4().hex,
        # Created with the session's state, before any callback can run.
        "launch_lock": threading.Lock(),
    },
    # A link (?prompt=NAME&ref=NAME@3, e.g. from the Versions page) picks that version.
    query_params={"prompt": "prompt", "ref": "ref"},
    keep=_KEPT,
)
st.title("Optimize")
st.caption(
    "Evolve the application's prompt from the MLflow Prompt Registry against your aligned "
    "judge(s). The optimization runs as a background job recorded in an MLflow run; the "
    "best prompt is registered as a new version with proof on held-out inputs."
)
names = data.prompt_names()
if not names:
    st.info(
        "No prompt in the Prompt Registry yet: register one with "
        "`alignboard prompt register NAME --template-file F` (the demo seeds one)."
    )
    st.stop()

# ---- 1. the prompt (outside the form: the mapping below depends on it) -----------------
st.subheader("1. Prompt")
pick: Sequence[DeltaGenerator] = st.columns([2, 1])
if ss.get("optimize_prompt") not in names:
    ss["optimize_prompt"] = names[0]
name = pick[0].selectbox("Prompt", names, key="optimize_prompt")
refs = {r.ref: r for r in data.prompt_refs(name)}
if ss.get("optimize_ref") not in refs:
    ss["optimize_ref"] = next(iter(refs))
ref = pick[1].selectbox(
    "Version or alias",
    list(refs),
    key="optimize_ref",
    format_func=lambda r: refs[r].label,
    help="The run optimizes the version this names now, even if the alias moves later.",
)
try:
    prompt = data.prompt_choice(ref)
except AlignboardError as exc:
    st.error(str(exc))
    st.stop()
st.code(prompt.template, language=None, wrap_lines=True)
st.caption(
    f"{prompt.name} v{prompt.version} · variables: "
    + (", ".join("{{ " + v + " }}" for v in prompt.variables) or "none")
)


# ---- 2. the dataset (outside the form: the mapping's fields come from it) --------------
def _save_upload() -> None:
    """Store the uploaded file as an evaluation dataset and optimize on it."""
    upload = ss.get("optimize_upload")
    if upload is None:
        return
    try:
        saved = save_upload_as_dataset(
            upload.getvalue(),
            upload.name,
            ss.get("optimize_upload_name") or dataset_name_for(upload.name),
            experiment_id=ctx.experiment_id,
        )
    except AlignboardError as exc:
        ss["optimize_upload_error"] = str(exc)
        return
    ss["optimize_upload_error"] = None
    data.after_dataset_saved()
    ss["optimize_source_kind"] = "dataset"
    ss["optimize_dataset"] = saved.partition(":")[2]


st.subheader("2. Dataset")
kind = st.radio(
    "Source",
    list(SOURCE_KINDS),
    key="optimize_source_kind",
    format_func=lambda k: SOURCE_KINDS[k],
    horizontal=True,
)
queue, tags_text = "", ""
if kind == "dataset":
    datasets = data.eval_datasets(ctx.experiment_id)
    if not datasets:
        st.caption("This experiment has no MLflow evaluation dataset: use its traces or a file.")
    if ss.get("optimize_dataset") not in datasets:
        ss["optimize_dataset"] = datasets[0] if datasets else None
    chosen = st.selectbox("Evaluation dataset", datasets, key="optimize_dataset")
    source = source_text("dataset", dataset=chosen or "")
elif kind == "experiment":
    filters = st.columns(2)
    queue_names = data.review_queues(ctx.experiment_id)
    if ss.get("optimize_queue") not in ["", *queue_names]:
        ss["optimize_queue"] = ""
    queue = (
        filters[0].selectbox(
            "Only traces in this review queue",
            ["", *queue_names],
            key="optimize_queue",
            format_func=lambda q: q or "(every trace)",
        )
        or ""
    )
    tags_text = filters[1].text_input(
        "Only traces with these tags (optional)",
        key="optimize_tags",
        placeholder="topic=returns, channel=email",
    )
    source = source_text("experiment", experiment=ctx.experiment_name)
else:
    source = source_text(
        "file",
        path=st.text_input(
            "File path (JSONL or CSV) on the machine running the jobs",
            key="optimize_path",
            placeholder="/data/inputs.jsonl",
            help="One record per row with `inputs` as an object, optional `id` and "
            "`expectations`: the trace import format without outputs.",
        ),
    )
    with st.container(border=True):
        st.markdown("**Or upload a file** (it becomes an MLflow evaluation dataset)")
        up = st.columns([2, 1, 1], vertical_alignment="bottom")
        upload = up[0].file_uploader(
            "JSONL or CSV", type=["jsonl", "json", "csv"], key="optimize_upload"
        )
        if upload is not None and not ss.get("optimize_upload_name"):
            ss["optimize_upload_name"] = dataset_name_for(upload.name)
        up[1].text_input("Dataset name", key="optimize_upload_name")
        up[2].button(
            "Save as dataset",
            key="optimize_upload_save",
            icon=":material/upload:",
            disabled=upload is None,
            on_click=_save_upload,
        )
if ss.get("optimize_upload_error"):
    st.error(ss["optimize_upload_error"])
try:
    tag_filter = parse_tag_filter(tags_text)
except AlignboardError as exc:
    st.error(str(exc))
    tag_filter = {}
fields = data.dataset_fields(source, queue or None, tuple(sorted(tag_filter.items())))
if fields.error:
    st.error(fields.error, icon=":material/block:")
else:
    st.caption(
        f"`{source}`: {fields.rows} rows ({fields.with_expectations} with expectations); "
        f"input fields: {', '.join(fields.paths) or 'none'}."
    )
paths = list(fields.paths)
keep_widget_values("optimize", [f"map_{var}" for var in prompt.variables])
# A mapping chosen for another dataset may name fields this one lacks: start it again.
for var in prompt.variables:
    key = f"optimize_map_{var}"
    if ss.get(key) not in ["", *paths]:
        ss[key] = default_field(var, paths) or ""

judge_choices = {j.ref: j for j in data.judge_refs(ctx.experiment_id)}
if "optimize_judges" not in ss:
    ss["optimize_judges"] = default_judges(list(judge_choices.values()))
# Judges of another experiment would be refused by the multiselect.
ss["optimize_judges"] = [j for j in ss["optimize_judges"] if j in judge_choices]


# ---- callbacks (one core call each) ----------------------------------------------------
def _mapping() -> dict[str, str]:
    return {v: ss[f"optimize_map_{v}"] for v in prompt.variables if ss.get(f"optimize_map_{v}")}


def _form_settings():
    """The settings the form's values describe (the committed ones, in a callback)."""
    return build_prompt_settings(
        ctx.experiment_id,
        prompts=[ss["optimize_ref"]],
        dataset=source,
        task_model=ss["optimize_task_model"],
        judges=list(ss["optimize_judges"]),
        optimizer=ss["optimize_optimizer"],
        reflection_model=ss["optimize_reflection"],
        scorers=list(ss["optimize_scorers"]),
        mapping=_mapping(),
        dataset_queue=queue or None,
        dataset_tags=tag_filter or None,
        task_base_url=ss["optimize_task_base_url"],
        reflection_base_url=ss["optimize_reflection_base_url"],
        task_temperature=ss["optimize_task_temperature"],
        task_max_tokens=ss["optimize_task_max_tokens"],
        max_metric_calls=int(ss["optimize_budget"]) or None,
        workers=int(ss["optimize_workers"]),
        seed=int(ss["optimize_seed"]),
        minibatch_size=int(ss["optimize_minibatch"]),
        alias=ss["optimize_alias"],
        aggregation=ss["optimize_aggregation"],
        register_if_worse=bool(ss["optimize_register_worse"]),
        register_if_cancelled=bool(ss["optimize_register_cancelled"]),
        stop=stop_controls.policy("optimize"),
    )


def _launch(token: str) -> None:
    """Check and launch what the form holds now (Launch submits the form first)."""
    # The two submissions of a double click can run their callbacks at the same time (seen
    # in Chromium): the token is checked and spent under the session's own lock.
    with ss["optimize_launch_lock"]:
        if ss.get("optimize_token") != token:
            # A second click on a form already launched: nothing more to do.
            return
        _launch_now()
        # Spent only now: a click cut short before launching can be repeated.
        ss["optimize_token"] = uuid.uuid4().hex
    data.after_prompt_launch()


def _launch_now() -> None:
    try:
        settings = _form_settings()
        check = data.prompt_check(settings)  # the same check the page shows, cached
        # Read afresh: the second click of a double click must see the run the first made.
        same = same_active_run(settings)
        if same is not None and not ss.get(_alongside_key(same)):
            ss["optimize_message"] = (
                f"Not launched: run `{same}` with exactly these settings is still going "
                "(see Progress below). Tick 'Run another alongside it' to start a second one."
            )
        elif check.ok:
            ss["optimize_run"] = jobs.launch(settings, check=list(check.findings))
            ss["optimize_message"] = None
        else:
            ss["optimize_message"] = "Not launched: fix the pre-flight errors shown above first."
    except AlignboardError as exc:
        ss["optimize_message"] = str(exc)


def _alongside_key(run_id: str) -> str:
    return f"optimize_alongside_{run_id}"


def _cancel(run_id: str) -> None:
    jobs.cancel(run_id)
    data.after_prompt_launch()


def _watch() -> None:
    ss["optimize_run"] = ss.get("optimize_watch")


# ---- the form: mapping, models, judges, optimizer; pre-flight; Launch ------------------
with st.form("optimize_form", border=True):
    st.markdown("**3. Variable mapping**")
    if not prompt.variables:
        st.caption("The prompt has no template variables: every row gets the same request.")
    map_columns = st.columns(3)
    for i, var in enumerate(prompt.variables):
        map_columns[i % 3].selectbox(
            "{{ " + var + " }} from field",
            ["", *paths],
            key=f"optimize_map_{var}",
            format_func=lambda p: p or "(choose a field)",
            help="Which input field fills this variable (by default the same-named one).",
        )
    st.markdown("**4. Application, scorers and optimizer**")
    st.selectbox(
        "Optimizer",
        list(PROMPT_OPTIMIZERS),
        key="optimize_optimizer",
        format_func=lambda k: OPTIMIZER_LABELS[k],
    )
    for label, key, does, url_key in (
        (
            "Application model",
            "optimize_task_model",
            "The model the prompt is for: provider:/model, e.g. openai:/gpt-4.1-mini; "
            "demo:/app is the offline stand-in.",
            "optimize_task_base_url",
        ),
        (
            "Reflection model",
            "optimize_reflection",
            "Proposes new prompts.",
            "optimize_reflection_base_url",
        ),
    ):
        row: Sequence[DeltaGenerator] = st.columns(2)
        row[0].text_input(label, key=key, help=does)
        row[1].text_input(
            f"{label} base URL", key=url_key, placeholder=BASE_URL_PLACEHOLDER, help=BASE_URL_HELP
        )
    sampling = st.columns(2)
    sampling[0].number_input(
        "Application temperature",
        min_value=0.0,
        max_value=2.0,
        step=0.1,
        value=None,
        key="optimize_task_temperature",
        placeholder="the model's default",
        help="Blank: the model's default (0.8 on llama.cpp's server, so the seed's "
        "held-out score varies from run to run). 0 makes replies repeatable.",
    )
    sampling[1].number_input(
        "Application max tokens",
        min_value=1,
        step=64,
        value=None,
        key="optimize_task_max_tokens",
        placeholder="the model's default",
        help="Most tokens per application reply; blank: the model's default.",
    )
    scorer_row = st.columns(2)
    scorer_row[0].multiselect(
        "Judges (registered versions or aliases)",
        list(judge_choices),
        key="optimize_judges",
        format_func=lambda r: judge_choices[r].label,
        placeholder="Choose a registered judge",
        help="Their verdicts score the application's outputs; align one on the Align page.",
    )
    scorer_row[1].multiselect(
        "Built-in scorers",
        list(BUILTIN_SCORERS),
        key="optimize_scorers",
        format_func=lambda s: SCORER_LABELS[s],
        placeholder="None",
        help="They use each row's expectations; rows without them are skipped.",
    )
    if not judge_choices:
        st.caption(
            "No judge is registered in this experiment yet: align one on the Align page "
            "first (the point is to optimize against a judge your experts agree with), or "
            "use a built-in scorer."
        )
        st.page_link(nav.page_path("align.py"), label="Go to Align", icon=":material/tune:")
    knobs = st.columns(4)
    knobs[0].number_input(
        "Budget (metric calls, 0 = auto)",
        min_value=0,
        step=10,
        key="optimize_budget",
        help="Row evaluations (one application call plus its scorer calls); auto is about "
        "10x the training set.",
    )
    knobs[1].number_input(
        "Workers", min_value=1, max_value=64, key="optimize_workers", help="Calls in flight."
    )
    knobs[2].number_input("Seed", min_value=0, step=1, key="optimize_seed")
    knobs[3].text_input(
        "Alias for the new version",
        key="optimize_alias",
        help="Promotion to production is a separate step (Versions page).",
    )
    st.checkbox(
        "Register even if it scores worse on held-out inputs",
        key="optimize_register_worse",
        help="By default a prompt that scores below the seed on the test split is recorded "
        "but not registered.",
    )
    stop_controls.draw("optimize", ss["optimize_optimizer"])
    with st.expander("Advanced: minibatch, aggregation, cancelling"):
        adv = st.columns(2)
        adv[0].number_input(
            "Minibatch size",
            min_value=1,
            max_value=64,
            key="optimize_minibatch",
            help="GEPA: rows shown to the reflection model per iteration.",
        )
        adv[1].selectbox(
            "Aggregation",
            list(AGGREGATIONS),
            key="optimize_aggregation",
            help="How several scorers' [0, 1] scores combine into the one score maximised.",
        )
        st.checkbox(
            "Register if cancelled",
            key="optimize_register_cancelled",
            help="Off: a cancelled run registers nothing. On: the best prompt found before "
            "the cancel is scored on the held-out inputs and registered like a finished "
            "run's.",
        )
    # What the form holds as of its last submission: what Launch checks and launches.
    try:
        settings = _form_settings()
        settings_error = None
        with st.spinner("Checking the optimization..."):
            check = data.prompt_check(settings)
    except AlignboardError as exc:
        settings, check, settings_error = None, None, str(exc)
    same = data.same_active_prompt_run(settings) if settings is not None else None
    if same is not None:
        st.warning(
            f"Run `{same}` with exactly these settings is still going (see Progress below): "
            "launching again repeats it.",
            icon=":material/sync:",
        )
        st.checkbox("Run another alongside it", key=_alongside_key(same))
    models = [ss["optimize_task_model"], ss["optimize_reflection"]]
    if uses_demo(models):
        st.info(
            "**A demo model is selected.** " + DEMO_NOTE + " " + DEMO_APP_NOTE,
            icon=":material/science:",
        )

    st.markdown("**5. Preview: the first rendered prompts**")
    if check is not None and check.preview:
        for column, text in zip(st.columns(len(check.preview)), check.preview, strict=True):
            # As text: a rendered prompt holds the dataset's words, never markup to run.
            column.code(text, language=None, wrap_lines=True)
    else:
        st.caption("Nothing to preview until the prompt, dataset and mapping check out.")

    st.markdown("**6. Pre-flight and estimate**")
    if check is None:
        st.error(settings_error or "The settings cannot be checked.", icon=":material/block:")
    else:
        for f in check.findings:
            if f.level == "error":
                st.error(f.message, icon=":material/block:")
        for f in check.findings:
            if f.level != "error":
                st.warning(f.message, icon=":material/warning:")
        if not check.findings:
            st.success(
                "Pre-flight passed: nothing blocks this optimization.", icon=":material/check:"
            )
        m = st.columns(5)
        m[0].metric("Rows: train / val / test", f"{check.n_train} / {check.n_val} / {check.n_test}")
        m[1].metric("Budget", f"{check.budget:,} calls")
        m[2].metric(
            "Estimated calls",
            f"~{check.app_calls + check.judge_calls + check.reflection_calls:,}",
            help=f"{check.app_calls:,} application, {check.judge_calls:,} scorer, "
            f"~{check.reflection_calls:,} reflection calls at most.",
        )
        m[3].metric("Estimated time", duration(check.seconds, approx=True))
        m[4].metric("Estimated tokens", f"~{check.tokens:,}")
        st.caption(
            check.explanation + " Edits in the form apply when you click Apply and check "
            "or Launch; Launch always starts what the form shows."
        )
    can_launch = check is not None and check.ok
    buttons = st.columns([1, 1, 3])
    buttons[0].form_submit_button(
        "Apply and check",
        key="optimize_check",
        icon=":material/fact_check:",
        help="Update the preview, the pre-flight and the estimate without launching.",
    )
    buttons[1].form_submit_button(
        "Launch optimization",
        key="optimize_launch",
        type="primary",
        icon=":material/rocket_launch:",
        disabled=not can_launch,
        on_click=_launch,
        args=(ss["optimize_token"],),
        help=(
            "Checks and launches exactly what the form shows."
            if can_launch
            else "Fix the pre-flight errors above first."
        ),
    )
if ss.get("optimize_message"):
    st.error(ss["optimize_message"])

# ---- 7. live progress ------------------------------------------------------------------
all_runs = data.prompt_runs(ctx.experiment_id)
watched = ss.get("optimize_run") or next((r.run_id for r in all_runs if r.active), None)
if watched is not None and watched not in {r.run_id for r in all_runs}:
    # A run of another experiment (the sidebar moved on) or of a store that is gone.
    watched = next((r.run_id for r in all_runs if r.active), None)
if watched is not None:
    # Keep following it once it ends, or the panel would vanish.
    ss["optimize_run"] = watched
st.subheader("7. Progress")
if watched is None:
    st.caption("Launch an optimization, or pick one of the runs below to watch it.")
else:
    first = jobs.status(watched)
    polling = first.active
    if any(r.run_id == watched and r.status != first.status for r in all_runs):
        # The cached list is behind (the job just ended): read it afresh.
        data.after_prompt_job_end()
        all_runs = data.prompt_runs(ctx.experiment_id)

    @st.fragment(run_every=2 if polling else None)
    def _live(run_id: str) -> None:
        now = run_progress.read_status(run_id)
        if now is None:
            return  # the store is unreachable: the warning says so, the next poll retries
        if polling and not now.active:
            # The job just ended: redraw the whole page once, which stops the polling.
            data.after_prompt_job_end()
            st.rerun()
        run_progress.header(now, run_id, f"**{now.optimizer or 'optimization'}**")
        calls, cap = run_progress.budget_bar(now)
        k = st.columns(4)
        k[0].metric("Status", now.status)
        k[1].metric("Iteration", now.iteration if now.iteration is not None else "-")
        k[2].metric("Best validation score", number(now.best_score, 3, missing="-"))
        k[3].metric("Calls used / budget", f"{calls:,} / {cap:,}" if cap else f"{calls:,}")
        run_usage.usage_line(now, run_id)
        run_progress.live_chart(run_id, "optimize_live_chart")
        if now.active:
            run_progress.cancel_button(
                now,
                run_id,
                key="optimize_cancel",
                on_click=_cancel,
                help="Stops at the next iteration boundary; the best prompt so far is kept "
                "and scored on the held-out inputs.",
            )
        elif now.status == "finished":
            verdict = run_verdict(run_id)
            if now.prompt_version is None:
                st.warning(
                    f"Finished: nothing registered. {verdict.text}", icon=":material/gpp_maybe:"
                )
            else:
                st.success(
                    f"Finished: {now.prompt_name} v{now.prompt_version} registered. {verdict.text}",
                    icon=":material/check_circle:",
                )
        elif now.status == "cancelled":
            # The CLI's sentence: whether a version was registered, and why not.
            run_progress.outcome_banner(now)
        else:
            st.warning(
                f"**{now.status.capitalize()}.** {now.error or ''}", icon=":material/pause_circle:"
            )

    _live(watched)

# ---- recent runs -----------------------------------------------------------------------
st.subheader("Recent optimization runs")
if not all_runs:
    st.caption("No prompt optimization runs in this experiment yet.")
    st.stop()


@st.fragment(run_every=3 if any(r.active for r in all_runs) else None)
def _recent(listed: list) -> None:
    # Polled while a listed run is active: those are read afresh, so a run that ends
    # reads so within seconds, whichever run the panel above follows.
    runs = workers_notice.guarded(lambda: current_statuses(listed))
    if runs is None:
        return  # the store is unreachable: the warning says so, the next poll retries
    if any(a.active and not b.active for a, b in zip(listed, runs, strict=True)):
        data.after_prompt_job_end()
        st.rerun()
    st.dataframe(
        [
            {
                "open": f"run_explorer?run={r.run_id}",
                "started": when(r.started, seconds=True),
                "status": r.status,
                "optimizer": r.optimizer,
                "prompt": prompt_label(r),
                "iteration": r.iteration,
                "metric calls": r.metric_calls,
                "budget": r.budget,
                "best val": r.best_score,
                "run id": r.run_id,
            }
            for r in runs
        ],
        hide_index=True,
        key="optimize_runs",
        column_config={
            "open": st.column_config.LinkColumn("explore", display_text="open", width="small"),
            "best val": st.column_config.NumberColumn(format="%.3f"),
        },
    )
    by_id = {r.run_id: r for r in runs}
    chosen = ss.get("optimize_watch")
    # Set on every draw, even unchanged: the browser shows the label it last sent for the
    # selection (with the status of then) unless the server sends the value again.
    ss["optimize_watch"] = chosen if chosen in by_id else (watched if watched in by_id else None)
    st.selectbox(
        "Watch a run here",
        list(by_id),
        key="optimize_watch",
        placeholder="Pick a run to watch",
        on_change=_watch,
        format_func=lambda r: run_option_label(by_id[r], prompt_label(by_id[r])),
    )


_recent(all_runs)
