"""Score: run a judge version on many traces as a background job, then see its verdicts:
their distribution, their drift against the humans, and the traces by verdict."""

from __future__ import annotations

import threading
import uuid
from typing import cast

import streamlit as st

from app.components import charts, data, nav, run_progress, shell
from app.components.state import init_page_state
from core.errors import AlignboardError
from core.optimization import jobs
from core.views import scores as sv
from core.views.formatting import interval, number, percent, when
from core.views.overview import DEMO_NOTE

_PERIODS = {"week": "week", "batch": "batch of traces", "run": "scoring run"}
_AGREEMENT = {
    "all": "all",
    "agree": "agrees",
    "disagree": "disagrees",
    "unlabeled": "no human label",
}

ctx = shell.require_context()
ss = st.session_state
init_page_state(
    "score",
    {
        "mode": "unlabeled",
        "split": "all",
        "queue": None,
        "days": (),
        "tags": "",
        "limit": 0,
        "workers": 8,
        "run": None,
        "message": None,
        "dist_by": "version",
        "drift_by": "batch",
        "batch": sv.DEFAULT_BATCH,
        "values": [],
        "agreement": "all",
        "held_out": False,
    },
    {"run": "run"},
)
if ss.get("score_experiment", ctx.experiment_id) != ctx.experiment_id:
    # Another experiment picked in the sidebar: its jobs, not the one watched before.
    ss["score_run"] = None
ss["score_experiment"] = ctx.experiment_id
ss.setdefault("score_token", uuid.uuid4().hex)
ss.setdefault("score_launch_lock", threading.Lock())

st.title("Score")
st.caption(
    "Run a registered judge version on many traces as a background job. Its verdicts are "
    "MLflow feedback on the traces (MLflow's UI shows them too); below, how they are "
    "distributed and how well the judge still agrees with the humans."
)
crits = data.criteria(ctx.experiment_id)
if not crits:
    st.info("No criteria yet: create one with `alignboard criterion create`.")
    st.stop()
crit_name = st.selectbox(
    "Judge (criterion)",
    [c.name for c in crits],
    key="score_criterion",
    help="A judge is named after the criterion it decides.",
)
crit = next(c for c in crits if c.name == crit_name)
refs = [r for r in data.judge_refs(ctx.experiment_id) if r.ref.split("@")[0] == crit.name]


def _form_settings():
    selection = sv.form_selection(
        ss["score_mode"],
        queue=ss["score_queue"],
        split=ss["score_split"],
        days=tuple(ss["score_days"] or ()),
        tags=ss["score_tags"],
        limit=int(ss["score_limit"] or 0),
    )
    from core.optimization.bulk_scoring import build_score_settings

    return build_score_settings(
        ctx.experiment_id, ss["score_ref"], selection, workers=int(ss["score_workers"])
    )


def _launch(token: str) -> None:
    # A double click submits twice: the token is checked and spent under a lock, so one
    # click starts one job.
    with ss["score_launch_lock"]:
        if ss.get("score_token") != token:
            return
        try:
            settings = _form_settings()
            check = data.score_check(settings)  # the check the page shows, cached
            if not check.ok:
                ss["score_message"] = "Not launched: fix the pre-flight errors shown above."
                return
            ss["score_run"] = jobs.launch(settings, check=check)
            ss["score_message"] = None
        except AlignboardError as exc:
            ss["score_message"] = str(exc)
            return
        ss["score_token"] = uuid.uuid4().hex
    data.after_score_launch()


def _cancel(run_id: str) -> None:
    jobs.cancel(run_id)
    data.after_score_launch()


def _resume(run_id: str) -> None:
    try:
        jobs.resume(run_id)
        ss["score_message"] = None
    except AlignboardError as exc:
        ss["score_message"] = str(exc)
    data.after_score_launch()


# ---- launch -------------------------------------------------------------------------
st.subheader("Score traces")
if not refs:
    st.info(
        f"No registered version of {crit.name} yet: align one on the Align page, then score "
        "traces with it here."
    )
else:
    if ss.get("score_ref") not in {r.ref for r in refs}:
        ss["score_ref"] = refs[0].ref
    by_ref = {r.ref: r for r in refs}
    if not ss.get("score_mode"):  # a segmented control can be clicked off: back to default
        ss["score_mode"] = "unlabeled"
    row = st.columns([3, 1], vertical_alignment="bottom")
    row[0].selectbox(
        "Judge version",
        list(by_ref),
        key="score_ref",
        format_func=lambda r: by_ref[r].label,
        help="An alias (production) is resolved to its version when you launch.",
    )
    row[1].number_input("Workers", 1, 64, key="score_workers", help="Judge calls at once.")
    st.segmented_control(
        "Traces",
        list(sv.MODE_LABELS),
        key="score_mode",
        format_func=lambda m: sv.MODE_LABELS[m],
        help="Unlabeled: no human label for this criterion yet (what a judge is for). "
        "Labeled: traces the humans labeled, to measure the judge against them.",
    )
    mode = ss["score_mode"]
    narrow = st.columns(4, vertical_alignment="bottom")
    if mode == "labeled":
        narrow[0].selectbox("Split", ["all", "train", "val", "test"], key="score_split")
    elif mode == "queue":
        narrow[0].selectbox(
            "Queue",
            data.review_queues(ctx.experiment_id),
            key="score_queue",
            placeholder="Pick a queue",
        )
    narrow[1].date_input(
        "Requested between (UTC)",
        key="score_days",
        help="Only traces whose request falls on these days (both included). Empty: any time.",
    )
    narrow[2].text_input(
        "Tags", key="score_tags", placeholder="key=value, key=value", help="All must match."
    )
    narrow[3].number_input("At most (0: all)", 0, 1_000_000, key="score_limit", step=100)

    check = None
    try:
        settings = _form_settings()
        check = data.score_check(settings)
    except AlignboardError as exc:
        st.error(str(exc))
    if check is not None:
        version = settings.judge_version
        m = st.columns(3)
        m[0].metric("Traces selected", f"{check.n_selected:,}", help=settings.selection.describe())
        m[1].metric(
            f"Already scored by v{version}",
            f"{check.n_already:,}",
            help="Skipped: scoring is idempotent.",
        )
        m[2].metric("To judge", f"{check.n_todo:,}")
        for f in check.findings:
            (st.error if f.level == "error" else st.warning)(f.message)
        if check.ok and not check.findings:
            st.success(f"Pre-flight passed: {settings.selection.describe()}.")
        if sv.is_demo_model(data.judge_model(ctx.experiment_id, crit.name, version)):
            st.info(
                f"**{crit.name} v{version} uses the demo judge.** " + DEMO_NOTE,
                icon=":material/science:",
            )
    st.button(
        "Launch scoring",
        key="score_launch",
        type="primary",
        icon=":material/rocket_launch:",
        disabled=check is None or not check.ok,
        on_click=_launch,
        args=(ss["score_token"],),
    )
    if ss.get("score_message"):
        st.error(ss["score_message"])

# ---- progress -----------------------------------------------------------------------
all_jobs = data.score_jobs(ctx.experiment_id)
watched = ss.get("score_run") or next((j.run_id for j in all_jobs if j.active), None)
if watched is not None:
    ss["score_run"] = watched
    st.subheader("Progress")
    first = jobs.status(watched)
    polling = first.active
    was = ss.get("score_seen")
    if any(j.run_id == watched and j.status != first.status for j in all_jobs) or (
        was is not None and was[0] == watched and was[1] != first.status
    ):
        # The job moved on since the page last looked (it ended, or died): what the cached
        # reads say about its runs and verdicts is behind.
        data.after_score_end()
        all_jobs = data.score_jobs(ctx.experiment_id)
        if not first.active and first.judge_version is not None:
            ss["score_version"] = first.judge_version  # show what the job just wrote
    ss["score_seen"] = (watched, first.status)

    @st.fragment(run_every=1 if polling else None)
    def _live(run_id: str) -> None:
        now = run_progress.read_status(run_id)
        if now is None:
            return  # the store is unreachable: the warning says so, the next poll retries
        if polling and not now.active:
            # Ended: redraw the whole page once (fresh verdicts), which stops the polling.
            data.after_score_end()
            st.rerun()
        version = "" if now.judge_version is None else f" v{now.judge_version}"
        run_progress.header(now, run_id, f"**{now.judge_name or 'judge'}{version}** · scoring")
        total = now.n_total or 0
        done = (now.n_scored or 0) + (now.n_skipped or 0) + (now.n_failed or 0)
        if total:
            st.progress(min(done / total, 1.0), text=f"{done:,} / {total:,} traces")
        k = st.columns(3)
        k[0].metric("Scored", f"{now.n_scored or 0:,}")
        k[1].metric("Skipped (already scored)", f"{now.n_skipped or 0:,}")
        k[2].metric("Failed", f"{now.n_failed or 0:,}")
        if now.active:
            run_progress.cancel_button(
                now,
                run_id,
                key="score_cancel",
                on_click=_cancel,
                help="Stops after the current batch; verdicts written so far stay.",
            )
        elif now.status == "finished":
            st.success(f"Finished: {now.n_scored or 0:,} verdicts written.")
        else:
            st.warning(f"**{now.status.capitalize()}.** {now.error or ''}")
            if now.status in ("interrupted", "failed", "cancelled"):
                st.button(
                    "Resume",
                    key="score_resume",
                    icon=":material/play_circle:",
                    on_click=_resume,
                    args=(run_id,),
                    help="Continue in the same run; traces already scored are skipped.",
                )

    _live(watched)

if all_jobs:
    with st.expander(f"Recent scoring runs ({len(all_jobs)})"):
        st.dataframe(
            [
                {
                    "started": when(j.started, seconds=True),
                    "status": j.status,
                    "version": j.judge_version,
                    "total": j.n_total,
                    "scored": j.n_scored,
                    "skipped": j.n_skipped,
                    "failed": j.n_failed,
                    "run id": j.run_id,
                }
                for j in all_jobs
            ],
            hide_index=True,
            key="score_runs",
        )

# ---- results ------------------------------------------------------------------------
st.subheader("Verdicts")
vs = data.verdicts(ctx.experiment_id, crit)
if not vs.verdicts:
    st.info(f"No verdicts of a registered {crit.name} version yet: score some traces above.")
    st.stop()
versions = vs.versions
if ss.get("score_version") not in versions:
    ss["score_version"] = versions[-1]
top = st.columns([1, 3], vertical_alignment="bottom")
version = top[0].selectbox(
    "Version", versions, key="score_version", format_func=lambda v: f"{crit.name} v{v}"
)
mine = vs.of_version(version)
if sv.is_demo_model(data.judge_model(ctx.experiment_id, crit.name, version)):
    top[1].info(f"**These are the demo judge's verdicts.** {DEMO_NOTE}", icon=":material/science:")

st.markdown("**Distribution**")
for key, default in (
    ("score_dist_by", "version"),
    ("score_drift_by", "batch"),
    ("score_agreement", "all"),
):
    if not ss.get(key):  # a segmented control clicked off: back to its default
        ss[key] = default
dist_by = (
    st.segmented_control(
        "Group by",
        ["version", "day", "week", "run"],
        key="score_dist_by",
        format_func=lambda g: "scoring run" if g == "run" else g,
        help="Day and week: by the trace's request time (UTC). Per version: every version side "
        "by side; otherwise the version picked above.",
    )
    or "version"
)
rows = sv.distribution(
    vs, cast(sv.DistributionBy, dist_by), version=None if dist_by == "version" else version
)
st.plotly_chart(
    charts.distribution_chart(rows, sv.value_order(vs), title=dist_by), key="score_dist_chart"
)

st.markdown("**Agreement with the humans over time (drift)**")
d = st.columns([2, 1], vertical_alignment="bottom")
drift_by = (
    d[0].segmented_control(
        "Period",
        list(sv.DRIFT_BY),
        key="score_drift_by",
        format_func=lambda g: _PERIODS[g],
        help="Week: by trace request time. Batch: consecutive labeled traces in arrival order. "
        "Run: the scoring run that wrote the verdict.",
    )
    or "batch"
)
if drift_by == "batch":
    d[1].number_input("Traces per batch", 2, 10_000, key="score_batch")
held_out = st.toggle(
    "Held-out traces only (test split)",
    key="score_held_out",
    help="Alignment learns from the train and validation splits, so a judge agrees best "
    "with the humans there. The test split was never shown to an optimizer.",
)
result = sv.drift(
    vs,
    version,
    cast(sv.DriftBy, drift_by),
    batch_size=int(ss["score_batch"]),
    held_out=held_out,
)
if result.overall is None:
    st.caption(
        f"None of v{version}'s {len(mine):,} verdicts is on a trace the humans labeled"
        + (" in the test split" if held_out else "")
        + ": score labeled traces (or label some of the scored ones) to see the drift."
    )
else:
    o = result.overall
    mc = st.columns(3)
    mc[0].metric("Labeled traces scored", f"{o.n:,} of {len(mine):,}")
    mc[1].metric("Accuracy", number(o.accuracy), help=interval(o.report.accuracy_ci) or None)
    mc[1].caption(interval(o.report.accuracy_ci))
    mc[2].metric("Cohen's kappa", number(o.kappa), help=interval(o.report.cohen_kappa_ci) or None)
    mc[2].caption(interval(o.report.cohen_kappa_ci))
    st.plotly_chart(charts.drift_chart(result), key="score_drift_chart")
    few = [p.period for p in result.points if p.too_few]
    if few:
        st.caption(
            f"Open markers: fewer than {result.min_pairs} labeled traces in the period "
            f"({', '.join(few[:5])}{' ...' if len(few) > 5 else ''}); read them as noise."
        )
    with st.expander("Drift figures"):
        st.dataframe(
            [
                {
                    "period": p.period,
                    "n": p.n,
                    "accuracy": p.accuracy,
                    "accuracy 95% CI": interval(p.report.accuracy_ci, label=False),
                    "kappa": p.kappa,
                    "kappa 95% CI": interval(p.report.cohen_kappa_ci, label=False),
                    "too few": p.too_few,
                }
                for p in result.points
            ],
            hide_index=True,
            key="score_drift_table",
            column_config={
                "accuracy": st.column_config.NumberColumn(format="%.2f"),
                "kappa": st.column_config.NumberColumn(format="%.2f"),
            },
        )

st.markdown("**Traces**")
f = st.columns([2, 2], vertical_alignment="bottom")
values_seen = [v for v in sv.value_order(vs) if any(vs.display(x.value) == v for x in mine)]
ss["score_values"] = [v for v in ss["score_values"] if v in values_seen]
f[0].multiselect("Verdict", values_seen, key="score_values", placeholder="Every verdict")
f[1].segmented_control(
    "Against the humans",
    list(sv.AGREEMENT_FILTERS),
    key="score_agreement",
    format_func=lambda a: _AGREEMENT[a],
)
table = sv.trace_rows(
    vs,
    version,
    values=ss["score_values"],
    agreement=cast(sv.AgreementFilter, ss["score_agreement"] or "all"),
)
share = percent(len(table) / len(mine)) if mine else ""
st.caption(f"{len(table):,} of {len(mine):,} verdicts ({share}), newest trace first.")
st.dataframe(
    [
        {
            "open": f"label?trace={r.trace_id}",
            "trace id": r.trace_id,
            "requested (UTC)": r.request_time,
            "request": r.request[:200],
            "verdict": r.verdict,
            "rationale": r.rationale,
            "human": r.human,
            "agrees": {True: "yes", False: "no", None: ""}[r.agrees],
        }
        for r in table
    ],
    hide_index=True,
    key="score_table",
    column_config={
        "open": st.column_config.LinkColumn("label", display_text="open", width="small"),
        "trace id": st.column_config.TextColumn(width="medium"),
        "request": st.column_config.TextColumn(width="medium"),
        "rationale": st.column_config.TextColumn(width="large"),
        "agrees": st.column_config.TextColumn(width="small"),
    },
)
st.page_link(nav.page_path("agreement.py"), label="Compare raters on the Agreement page")
