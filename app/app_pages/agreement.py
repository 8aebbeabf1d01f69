"""Agreement: reviewers with each other, and judges with the humans, on any split."""

from __future__ import annotations

import streamlit as st

from app.components import charts, data, nav, shell
from app.components.state import init_page_state
from core.agreement.reviewers import ReviewerMatrix
from core.errors import AlignboardError
from core.optimization import jobs
from core.optimization.scoring import version_source_id
from core.views.agreement import (
    DEFAULT_SPLIT,
    JUDGE_VS_HUMANS,
    NO_JUDGE_VERDICTS,
    SPLIT_CHOICES,
    Rater,
    compare_raters,
    confusion_rows,
    default_pair,
    disagreements,
    kappa_grid,
    pair_heading,
    raters,
    reviewer_agreement,
)
from core.views.formatting import interval, number

init_page_state("agree", {"score_msg": None, "score_run": None, "score_seen": None})
ctx = shell.require_context()
st.title("Agreement")
crits = data.criteria(ctx.experiment_id)
if not crits:
    st.info("No criteria yet: create one with `alignboard criterion create`.")
    st.stop()

ss = st.session_state
top = st.columns([2, 3], vertical_alignment="bottom")
crit_name = top[0].selectbox("Criterion", [c.name for c in crits], key="agree_criterion")
crit = next(c for c in crits if c.name == crit_name)
split = top[1].segmented_control(
    "Split",
    SPLIT_CHOICES,
    key="agree_split",
    default=DEFAULT_SPLIT,
    help="Traces are assigned to train/val/test by a hash of their id; alignments train "
    "on train, pick on val, and report on test. The page opens on test: the traces no "
    "alignment trained on.",
)
split = split or DEFAULT_SPLIT


def _scoring_ended(run_id: str) -> None:
    """A "Score version" job ended: say what it did and compare that version with the humans.

    Runs before the raters' pickers are drawn (so it may set them) and before the ratings
    are read (so they include the new verdicts).
    """
    now = jobs.status(run_id)
    ss["agree_score_seen"] = run_id
    data.after_score_end()
    if now.status != "finished":
        ss["agree_score_msg"] = ("error", f"Scoring {now.status}: {now.error or 'no reason given'}")
        return
    source_id = version_source_id(now.judge_name or crit.name, int(now.judge_version or 0))
    failed = f", {now.n_failed} failed" if now.n_failed else ""
    ss["agree_score_msg"] = (
        "ok",
        f"{source_id}: judged {now.n_scored or 0} trace(s), {now.n_skipped or 0} already "
        f"judged{failed}.",
    )
    # Show the version just measured against the humans.
    ss["agree_reference"] = Rater.humans()
    ss["agree_predicted"] = Rater.judge(source_id)


if ss.get("agree_score_experiment", ctx.experiment_id) != ctx.experiment_id:
    # Another experiment picked in the sidebar: the job watched before is not its own.
    ss["agree_score_run"] = None
ss["agree_score_experiment"] = ctx.experiment_id
_watched = ss["agree_score_run"]
if _watched and ss["agree_score_seen"] != _watched and not jobs.status(_watched).active:
    _scoring_ended(_watched)
ratings = data.ratings(ctx.experiment_id, crit)


# ---- reviewers -------------------------------------------------------------------------
st.subheader("Reviewers")
matrix: ReviewerMatrix | None
try:
    matrix = reviewer_agreement(ratings, split)
except AlignboardError as exc:
    st.info(str(exc))
    matrix = None
if matrix is not None:
    m = st.columns(3)
    m[0].metric(
        "Fleiss' kappa",
        number(matrix.fleiss_kappa),
        help="Overall agreement of all reviewers, over traces labeled by two or more.",
    )
    m[1].metric("Traces labeled by 2+", matrix.fleiss_n_traces)
    m[2].metric("Reviewers", len(matrix.reviewers))
    if len(matrix.reviewers) < 2:
        st.caption("Only one reviewer has labeled on this split: nothing to compare yet.")
    else:
        left, right = st.columns([3, 2])
        names, grid = kappa_grid(matrix)
        left.plotly_chart(charts.kappa_heatmap(names, grid), key="agree_kappa_chart")
        right.dataframe(
            [
                {
                    "reviewer A": p.reviewer_a,
                    "reviewer B": p.reviewer_b,
                    "overlap n": p.n_overlap,
                    "agreement": p.agreement,
                    "Cohen's kappa": p.cohen_kappa,
                }
                for p in matrix.pairs
            ],
            hide_index=True,
            key="agree_pairs",
            column_config={
                "agreement": st.column_config.NumberColumn(format="%.2f"),
                "Cohen's kappa": st.column_config.NumberColumn(format="%.3f"),
            },
        )

# ---- judge (or any rater) vs humans -----------------------------------------------------
choices = raters(ratings)
pair = default_pair(ratings, split)
# The heading names what is compared now: the pickers' current values (kept in session
# state from the last run) or, on first view, the default pair.
_ref_now, _pred_now = ss.get("agree_reference"), ss.get("agree_predicted")
if (
    isinstance(_ref_now, Rater)
    and isinstance(_pred_now, Rater)
    and {_ref_now, _pred_now} <= set(choices)
):
    heading = pair_heading(_ref_now, _pred_now)
else:
    heading = pair.heading if pair is not None else JUDGE_VS_HUMANS
st.subheader(heading)
if pair is not None and not pair.has_judge:
    # Before anything is scored: say so, rather than pass two humans off as a judge check.
    st.info(
        f"{NO_JUDGE_VERDICTS} (non-human feedback named {crit.name}). Meanwhile this compares "
        "two reviewers with each other.",
        icon=":material/info:",
    )
versions = data.judge_versions(ctx.experiment_id, crit.name)


def _score_version() -> None:
    """Launch a bulk-scoring job of the version on the split's labeled traces."""
    from core.optimization.bulk_scoring import build_score_settings, check_scoring
    from core.optimization.score_spec import TraceSelection

    version = ss["agree_score_version"]
    selection = TraceSelection(mode="labeled", split=ss["agree_split"] or DEFAULT_SPLIT)
    try:
        settings = build_score_settings(ctx.experiment_id, f"{crit.name}@{version}", selection)
        check = check_scoring(settings)
        errors = [f.message for f in check.findings if f.level == "error"]
        if errors:
            ss["agree_score_msg"] = ("error", " ".join(errors))
            return
        ss["agree_score_run"] = jobs.launch(settings, check=check)
    except AlignboardError as exc:
        ss["agree_score_msg"] = ("error", str(exc))
        return
    ss["agree_score_msg"] = None
    ss["agree_score_seen"] = None
    data.after_score_launch()


if versions:
    with st.form("agree_score_form", border=False):
        row = st.columns([2, 1], vertical_alignment="bottom")
        row[0].selectbox(
            "Measure a registered version on this split",
            [v.version for v in versions],
            index=len(versions) - 1,
            format_func=lambda n: f"{crit.name} v{n}",
            key="agree_score_version",
            help="Scores that version on the labeled traces of the split, as a background "
            "job (traces it already judged are skipped), and stores its verdicts as judge "
            "feedback; it then appears below as a rater.",
        )
        row[1].form_submit_button("Score version", on_click=_score_version)
    if _watched and ss["agree_score_seen"] != _watched:

        @st.fragment(run_every=1)
        def _scoring(run_id: str) -> None:
            now = jobs.status(run_id)
            if not now.active:
                st.rerun()  # the whole page: it reports the end and compares the version
            total = now.n_total or 0
            done = (now.n_scored or 0) + (now.n_skipped or 0) + (now.n_failed or 0)
            st.progress(
                min(done / total, 1.0) if total else 0.0,
                text=f"Scoring {now.judge_name} v{now.judge_version}: {done:,} / {total:,} "
                f"traces ({now.status})",
            )

        _scoring(_watched)
    kind, msg = ss["agree_score_msg"] or (None, None)
    if kind == "error":
        st.error(msg)
    elif kind == "ok":
        st.success(msg)
if len(choices) < 2 or pair is None:
    st.info("Nothing to compare yet: label some traces first.")
    st.stop()

humans = [r for r in choices if r.kind != "judge"]
pick = st.columns(2)
reference: Rater = pick[0].selectbox(
    "Reference (humans)",
    humans,
    index=humans.index(pair.reference),
    key="agree_reference",
    format_func=lambda r: r.label,
    help="The humans: each trace's gold label, else the majority of its reviewers' labels, "
    "ties to the primary reviewer (the labels alignments train and test against).",
)
predicted: Rater = pick[1].selectbox(
    "Compared with",
    choices,
    index=choices.index(pair.predicted),
    key="agree_predicted",
    format_func=lambda r: r.label,
)
if reference == predicted:
    st.info("Pick two different raters.")
    st.stop()
try:
    report = compare_raters(ratings, reference, predicted, split)
except AlignboardError as exc:
    st.info(str(exc))
    st.stop()

mc = st.columns(5)
mc[0].metric("Traces compared", report.n)
mc[1].metric("Accuracy", number(report.accuracy), help=interval(report.accuracy_ci) or None)
mc[1].caption(interval(report.accuracy_ci))
mc[2].metric(
    "Cohen's kappa", number(report.cohen_kappa), help=interval(report.cohen_kappa_ci) or None
)
mc[2].caption(interval(report.cohen_kappa_ci))
if crit.kind == "pass_fail":
    mc[3].metric(
        "TPR", number(report.tpr), help=f"Share of the reference's {crit.positive_label}s matched."
    )
    mc[4].metric(
        "TNR", number(report.tnr), help=f"Share of the reference's {crit.negative_label}s matched."
    )
labels, counts = confusion_rows(report, crit)
if labels:
    st.plotly_chart(
        charts.confusion_heatmap(labels, counts, reference.label, predicted.label),
        key="agree_confusion_chart",
    )

# ---- disagreements ---------------------------------------------------------------------
rows = disagreements(ratings, reference, predicted, split)
st.subheader(f"Disagreements ({len(rows)})")
if not rows:
    st.caption("They agree on every trace both rated.")
    st.stop()
st.dataframe(
    [
        {
            "open": f"label?trace={d.trace_id}",
            "split": d.split,
            "request": d.request_preview[:160],
            reference.label: d.value_a,
            f"{reference.label} rationale": d.rationale_a,
            predicted.label: d.value_b,
            f"{predicted.label} rationale": d.rationale_b,
        }
        for d in rows
    ],
    hide_index=True,
    key="agree_disagreements",
    column_config={
        "open": st.column_config.LinkColumn("trace", display_text="open", width="small"),
        "request": st.column_config.TextColumn(width="medium"),
        f"{reference.label} rationale": st.column_config.TextColumn(width="large"),
        f"{predicted.label} rationale": st.column_config.TextColumn(width="large"),
    },
)
by_id = {d.trace_id: d for d in rows}
go = st.columns([3, 2], vertical_alignment="bottom")
chosen = go[0].selectbox(
    "Open a disagreement in the Label page",
    list(by_id),
    key="agree_open",
    format_func=lambda t: f"{t} · {by_id[t].request_preview[:60]}",
)
go[1].page_link(
    nav.page_path("label.py"),
    label="Open in Label",
    icon=":material/rate_review:",
    query_params={"trace": chosen},
)
