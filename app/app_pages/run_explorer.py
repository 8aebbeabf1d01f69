"""Run explorer: what one alignment or prompt optimization did, iteration by iteration and
candidate by candidate; for prompts, the outputs of both prompts side by side."""

from __future__ import annotations

import re

import streamlit as st

from app.components import charts, data, nav, prompt_outputs, run_charts, shell
from app.components.state import init_page_state, set_query_param
from core.errors import AlignboardError
from core.optimization import jobs
from core.optimization.runners.memalign_versions import unalign
from core.optimization.stopping import STOP_HELP
from core.views.adjudication import precedence_line
from core.views.diffs import diff_html
from core.views.formatting import interval, number, percent, when
from core.views.optimize import DEMO_APP_NOTE
from core.views.overview import DEMO_NOTE
from core.views.prompt_runs import build_outputs, build_scores, prompt_label
from core.views.runs import (
    BEST_MARK,
    FRONTIER_MARK,
    MARKS_LEGEND,
    NOT_RECORDED,
    Flips,
    build_guard_view,
)
from core.views.split_size import split_size_warning

ctx = shell.require_context()
ss = st.session_state
# A link (?run=...) that was followed wins over the last selection.
init_page_state("explorer", {}, query_params={"run": "run"})
st.title("Run explorer")
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.:-]+$")


def _trace_link(trace_id: str) -> str:
    return f"label?trace={trace_id}"


# ---- which run -------------------------------------------------------------------------
# Alignments and prompt optimizations, newest first.
all_jobs = sorted(
    [*data.jobs(ctx.experiment_id), *data.prompt_runs(ctx.experiment_id)],
    key=lambda j: j.started or 0,
    reverse=True,
)
by_id = {j.run_id: j for j in all_jobs}
ids = list(by_id)
if ss.get("explorer_run") and ss["explorer_run"] not in by_id:
    ids.insert(0, ss["explorer_run"])  # e.g. a run of another experiment, by link
if not ids:
    st.info(
        "No alignment runs or prompt optimizations in this experiment yet. Launch one on the "
        "Align or Optimize page."
    )
    st.page_link(nav.page_path("align.py"), label="Go to Align", icon=":material/tune:")
    st.stop()
if ss.get("explorer_run") not in ids:
    ss["explorer_run"] = ids[0]
# The job lists are cached for a few seconds: a run they saw queued or running may have
# moved on since. Those (and the selected run) are read again, so the picker shows each
# run's status now, the same one the page below reports.
fresh = data.current_statuses(
    tuple(sorted({rid for rid, j in by_id.items() if j.active} | {ss["explorer_run"]}))
)


def _on_pick() -> None:
    set_query_param("explorer", "run", ss["explorer_run"])


def _label(rid: str) -> str:
    j = by_id.get(rid)
    if j is None:
        return rid
    if getattr(j, "is_prompt", False):
        what = f"optimize {prompt_label(j)}"
    else:
        what = f"{j.judge_name}" + (f" v{j.judge_version}" if j.judge_version else "")
    now = fresh.get(rid)
    state = now.status if now is not None else j.status
    return f"{when(j.started)} · {j.optimizer} · {what} · {state} · {rid[:8]}"


run_id = st.selectbox("Run", ids, key="explorer_run", format_func=_label, on_change=_on_pick)
try:
    status = fresh[run_id] if run_id in fresh else jobs.status(run_id)
except AlignboardError as exc:
    st.error(str(exc))
    st.stop()
# The status (and, while running, the iteration) keys the cache: a run that moves on is
# read afresh, a finished one is read once.
view = data.run_view(run_id, f"{status.status}:{status.iteration}")
info = view.info
words = view.labels  # judge- or prompt-flavoured names of what the run evolves and scores

# ---- header ----------------------------------------------------------------------------
model_key = "task_model" if view.is_prompt else "judge_model"
models = [info.params.get(k, "") for k in (model_key, "reflection_model")]
if any(m.startswith("demo:/") for m in models):
    note = DEMO_NOTE + (" " + DEMO_APP_NOTE if view.is_prompt else "")
    st.info("**This run used the demo model.** " + note, icon=":material/science:")
if status.active:
    st.warning(
        f"This run is still {status.status}: what follows is its state so far. "
        f"Watch it live on the {'Optimize' if view.is_prompt else 'Align'} page.",
        icon=":material/hourglass_top:",
    )
    st.button("Refresh", key="explorer_refresh", icon=":material/refresh:")
elif status.error:
    st.error(f"{status.status}: {status.error}")
if view.verdict_text:
    # The held-out verdict: was the aligned judge better than the seed on the test split?
    show = st.warning if view.verdict_tone == "warning" else st.info
    show(view.verdict_text, icon=":material/balance:")
    if small := split_size_warning(view.verdict):
        st.warning(small.text, icon=":material/straighten:")
# Why the search stopped (budget, perfect score, no improvement, time, cost, cancel).
if view.stop_text:
    st.caption(view.stop_text.replace("$", "\\$"), help=STOP_HELP)
# Which human value each example used (gold, majority, tiebreak, single reviewer).
sources = precedence_line(view.result)
if sources:
    st.caption(sources)
m = st.columns(5)
m[0].metric("Status", status.status)
m[1].metric("Optimizer", info.optimizer or "-")
made = info.prompt_version if view.is_prompt else info.judge_version
m[2].metric(words.version, f"v{made}" if made else "-")
if view.is_memalign:
    # MemAlign spends no judge calls while aligning: its budget means nothing here.
    m[3].metric("Guidelines", len(view.guidelines))
    m[4].metric("Episodes", len(view.episodes))
else:
    m[3].metric(
        "Metric calls",
        f"{status.metric_calls or 0:,}" + (f" / {info.budget:,}" if info.budget else ""),
    )
    m[4].metric("Candidates", len(view.candidates) if view.has_candidates else "-")
what = (
    f"prompt `{info.prompt_name}` from {info.params.get('prompt', '?')} · scored by "
    f"{info.params.get('judges', '?')} · "
    if view.is_prompt
    else ""
)
st.caption(
    f"Run `{info.run_id}` ({info.name}) · {what}{words.model} `{models[0]}` · reflection "
    f"model `{models[1]}`"
)
# Model usage from the run's metrics (totals once it ended, the latest iteration's so far
# while it runs); unpriced models read "price unknown", never $0.
usage = info.usage
st.caption(
    "Usage"
    + (" so far" if status.active else "")
    + ": "
    + (usage.replace("$", "\\$") if usage else "nothing recorded yet")
)

# ---- iterations ------------------------------------------------------------------------
if view.has_candidates:
    st.subheader("Iterations")
    st.caption(
        "Each point is a candidate, at the metric calls spent when it was found; the green "
        f"step line is the best validation score ({words.score}) so far, the dotted one the "
        "Pareto aggregate (mean over validation examples of the best score any candidate "
        "reached)."
    )
    st.plotly_chart(
        run_charts.iteration_chart(
            view.progress,
            title=(
                "Validation judge score by budget"
                if view.is_prompt
                else "Validation score by budget"
            ),
        ),
        key="explorer_iterations",
    )
    st.caption(MARKS_LEGEND)

    st.subheader("Pareto frontier")
    fm = view.frontier
    front = ", ".join(f"#{c}" for c in fm.frontier) or "none"
    best = f"#{fm.best}" if fm.best is not None else "none"
    st.caption(
        f"Candidates x validation examples. Best: {best} ({BEST_MARK}); frontier: {front} "
        f"({FRONTIER_MARK}). Pareto aggregate {number(fm.aggregate, 3)}."
    )
    if not fm.empty:
        st.plotly_chart(run_charts.frontier_heatmap(fm), key="explorer_frontier")
        st.caption(MARKS_LEGEND)
        st.dataframe(
            [
                {
                    "example": f"ex{j + 1}",
                    "trace": None if view.is_prompt else _trace_link(tid),
                    f"{words.example} id": tid,
                    "best score": fm.best_scores[j],
                    "candidates at best": ", ".join(
                        f"#{cid}"
                        for cid, row in zip(fm.candidate_ids, fm.best_on_example, strict=True)
                        if row[j]
                    ),
                }
                for j, tid in enumerate(fm.example_ids)
            ],
            hide_index=True,
            key="explorer_examples",
            column_config={
                # Prompt runs' examples are dataset rows, not traces: the column is hidden.
                "trace": None
                if view.is_prompt
                else st.column_config.LinkColumn("trace", display_text="open", width="small")
            },
        )

    st.subheader("Lineage")
    st.plotly_chart(run_charts.lineage_tree(view.lineage), key="explorer_lineage")
    st.caption(MARKS_LEGEND)

    # ---- candidate detail --------------------------------------------------------------
    st.subheader("Candidate")
    cands = {c.id: c for c in view.candidates}
    if ss.get("explorer_candidate") not in cands:
        ss["explorer_candidate"] = view.best_id if view.best_id is not None else min(cands)

    cid = st.selectbox(
        "Candidate",
        list(cands),
        key="explorer_candidate",
        format_func=lambda c: cands[c].choice_label,
    )
    st.caption(MARKS_LEGEND)
    cand = cands[cid]
    st.markdown(f"**{words.text}**")
    st.code(cand.instructions, language=None, wrap_lines=True)
    parent = cand.parent_ids[0] if cand.parent_ids else None
    diffs = [("parent", view.diff(cid, parent)), ("seed", view.diff(cid, view.seed_id))]
    cols = st.columns(2)
    for col, (name, d) in zip(cols, diffs, strict=True):
        with col:
            if d is None:
                st.markdown(f"**Diff vs {name}**")
                st.caption("This is the seed: nothing to compare with.")
                continue
            st.markdown(f"**Diff vs {name} #{d.against}**")
            st.caption(
                f"+{d.stats.words_added} words, -{d.stats.words_removed} words "
                f"({percent(d.stats.similarity)} unchanged). Green: added; struck red: removed."
            )
            st.html(diff_html(list(d.ops)))

    wl = view.wins_and_losses(cid)
    if wl.parent_id is not None:
        st.markdown(
            f"**Against parent #{wl.parent_id}**: won {len(wl.won)}, lost {len(wl.lost)}, "
            f"same on {wl.tied} validation examples."
        )
        cols = st.columns(2)
        for col, (title, rows, key) in zip(
            cols,
            (("Won", wl.won, "explorer_won"), ("Lost", wl.lost, "explorer_lost")),
            strict=True,
        ):
            with col:
                st.markdown(f"*{title}*")
                if not rows:
                    st.caption("none")
                    continue
                st.dataframe(
                    [
                        {
                            "trace": None if view.is_prompt else _trace_link(o.trace_id),
                            f"{words.example} id": o.trace_id,
                            "parent": o.parent_score,
                            "this": o.score,
                        }
                        for o in rows
                    ],
                    hide_index=True,
                    key=key,
                    column_config={
                        "trace": None
                        if view.is_prompt
                        else st.column_config.LinkColumn(display_text="open", width="small")
                    },
                )
elif not view.is_memalign:
    st.caption("This run recorded no candidates (yet): nothing to chart per iteration.")


# ---- prompt runs: outputs side by side -------------------------------------------------
def _send_outputs(which: str) -> None:
    from core.optimization import prompt_review

    try:
        result = prompt_review.send_outputs_to_queue(
            ctx.experiment_id,
            run_id,
            which=which,
            queue=ss.get("explorer_queue_name") or "",
            reviewers=list(ss.get("explorer_queue_reviewers") or []),
        )
        ss["explorer_queue_result"] = result.to_dict()
        ss["explorer_queue_error"] = None
    except AlignboardError as exc:
        ss["explorer_queue_error"] = str(exc)
        ss["explorer_queue_result"] = None
    data.after_send_outputs()


if view.is_prompt:
    st.subheader("Outputs side by side")
    if info.prompt_name and info.prompt_version and info.base_version:
        st.page_link(
            nav.page_path("versions.py"),
            label=f"Compare v{info.base_version} and v{info.prompt_version} on the Versions page",
            icon=":material/compare_arrows:",
            query_params={
                "prompt": info.prompt_name,
                "a": str(info.base_version),
                "b": str(info.prompt_version),
            },
        )
    chosen_id = ss.get("explorer_candidate") if view.has_candidates else None
    side = build_outputs(
        view.run_record.test if view.run_record is not None else None,
        candidate_id=chosen_id,
        best_id=view.best_id,
        seed_id=view.seed_id,
        label=None
        if chosen_id is None
        else f"#{chosen_id}" + (" (best)" if chosen_id == view.best_id else ""),
    )
    if not side.available:
        st.info(side.note or "No held-out outputs.", icon=":material/info:")
    else:
        prompt_outputs.side_by_side(side, key="explorer_pair")
        with st.form("explorer_queue_form", border=True):
            st.markdown(
                f"**Send the test outputs of this version ({side.label}) to a review queue**"
            )
            st.caption(
                "Creates an MLflow trace per held-out output (tagged with the prompt version and "
                "this run) in a review queue, so experts can check whether the judge's praise holds."
            )
            qcols = st.columns(2)
            qcols[0].text_input(
                "Queue name", key="explorer_queue_name", placeholder="northwind-v2-review"
            )
            qcols[1].multiselect(
                "Reviewers", data.reviewers(ctx.experiment_id), key="explorer_queue_reviewers"
            )
            st.form_submit_button(
                "Send the test outputs of this version to a review queue",
                icon=":material/outbox:",
                on_click=_send_outputs,
                args=("after",),
            )
        if ss.get("explorer_queue_error"):
            st.error(ss["explorer_queue_error"])
        elif ss.get("explorer_queue_result"):
            sent = ss["explorer_queue_result"]
            versions = ", ".join((sent.get("prompt_versions") or {}).values())
            st.success(
                f"Sent {len(sent.get('trace_ids') or ())} output(s) of {versions} to review "
                f"queue {sent.get('queue')} for {', '.join(sent.get('reviewers') or [])} "
                f"({sent.get('created', 0)} new trace(s)). They label them on the Label page; "
                "the Agreement page then shows the judge's agreement with them.",
                icon=":material/check_circle:",
            )
            st.page_link(
                nav.page_path("label.py"), label="Go to Label", icon=":material/rate_review:"
            )

# ---- validation uncertainty and proposals ----------------------------------------------
guard = build_guard_view(view.run_record) if view.run_record is not None else None
if guard is not None and not guard.empty:
    if guard.scores:
        st.subheader("Validation uncertainty")
        n_val = max(s.n for s in guard.scores)
        rule = (
            f"This run returns the {guard.rule}."
            if guard.rule
            else "This run was recorded without the noise-aware selection rule."
        )
        st.caption(
            f"Each candidate's validation score on {n_val} examples with a 95% interval, and "
            f"its wins and losses against the seed, example by example. {rule}"
        )
        if guard.kept_seed_over is not None:
            st.info(
                f"Candidate #{guard.kept_seed_over} has the highest validation score, but its "
                "margin over the seed is within validation noise: the seed stays the result.",
                icon=":material/balance:",
            )
        st.dataframe(
            [
                {
                    "candidate": f"#{s.id}" + (" seed" if s.is_seed else ""),
                    "val score": s.val_score,
                    "95% interval": "" if s.ci is None else f"{s.ci[0]:.2f} to {s.ci[1]:.2f}",
                    "wins vs seed": s.wins,
                    "losses vs seed": s.losses,
                    "sign-test p": s.p_value,
                    "beats seed": None if s.is_seed else s.beats_seed,
                    "returned": s.chosen,
                }
                for s in guard.scores
            ],
            hide_index=True,
            key="explorer_uncertainty",
            column_config={
                "val score": st.column_config.NumberColumn(format="%.3f"),
                "sign-test p": st.column_config.NumberColumn(format="%.3f"),
            },
        )
    if guard.proposals:
        st.subheader("Proposals")
        rejected = guard.rejected
        accepted = sum(1 for p in guard.proposals if p.status == "accepted")
        st.caption(
            f"{len(guard.proposals)} proposals from the reflection model: {accepted} accepted, "
            f"{len(rejected)} rejected, {len(guard.degenerate)} of them as degenerate before "
            f"any evaluation ({guard.saved_metric_calls} "
            f"{'row' if view.is_prompt else 'judge'} evaluations saved)."
        )
        if rejected:
            st.dataframe(
                [
                    {
                        "iteration": p.iteration,
                        "parent": None if p.parent_id is None else f"#{p.parent_id}",
                        "degenerate": p.degenerate,
                        "reason": p.reason,
                        "why": p.message,
                        "proposed text": " ".join(p.proposed_text.split())[:200],
                    }
                    for p in rejected
                ],
                hide_index=True,
                key="explorer_rejected",
                column_config={"why": st.column_config.TextColumn(width="large")},
            )

            def _proposal_label(i: int) -> str:
                p = rejected[i]
                return f"iteration {p.iteration} · {p.reason or 'rejected'}"

            picked = st.selectbox(
                "Rejected proposal",
                list(range(len(rejected))),
                key="explorer_rejected_pick",
                format_func=_proposal_label,
            )
            chosen_p = rejected[picked if picked is not None else 0]
            cols = st.columns(2)
            with cols[0]:
                st.markdown("**Reflection output (raw)**")
                st.code(chosen_p.reflection_output or "(none recorded)", language=None)
            with cols[1]:
                st.markdown("**Proposed text**")
                st.code(chosen_p.proposed_text or "(empty)", language=None, wrap_lines=True)

# ---- test split ------------------------------------------------------------------------
_FLIP_COLUMNS = {
    "trace": st.column_config.LinkColumn("trace", display_text="open", width="small"),
    **{
        k: st.column_config.TextColumn(width="large")
        for k in ("human rationale", "seed rationale", "aligned rationale")
    },
}
_FLIP_GROUPS = (
    ("Fixed: wrong → right", "fixed", "explorer_flips_fixed"),
    ("Broken: right → wrong", "broken", "explorer_flips_broken"),
    ("A judge call failed", "failed", "explorer_flips_failed"),
)


def _show_flips(flips: Flips) -> None:
    """Which held-out examples the alignment changed, with every rationale as text."""
    st.markdown(f"**{flips.summary}.**")
    if not flips.recorded:
        st.caption(f"This run's record keeps the verdicts but not the rationales: {NOT_RECORDED}.")
    for title, group, key in _FLIP_GROUPS:
        rows = getattr(flips, group)
        if not rows and group == "failed":
            continue
        st.markdown(f"*{title} ({len(rows)})*")
        if not rows:
            st.caption("none")
            continue
        st.dataframe(
            [f.row() for f in rows],
            hide_index=True,
            key=key,
            column_config=_FLIP_COLUMNS,
        )
    changed = {f.trace_id: f for f in flips.changed}
    if not changed:
        return
    # The table cuts long rationales: one flip in full, as plain text (never markup).
    if ss.get("explorer_flip") not in changed:
        ss["explorer_flip"] = next(iter(changed))  # another run: start at its first flip
    tid = st.selectbox(
        "Read a flip in full",
        list(changed),
        key="explorer_flip",
        format_func=lambda t: f"{changed[t].change} · {t}",
    )
    flip = changed[tid if tid in changed else next(iter(changed))]
    cols = st.columns(3)
    for col, (who, value, why) in zip(
        cols,
        (
            ("Human", flip.human, flip.human_rationale),
            ("Seed judge", flip.seed, flip.seed_rationale),
            ("Aligned judge", flip.aligned, flip.aligned_rationale),
        ),
        strict=True,
    ):
        with col, st.container(border=True, key=f"explorer_flip_{who.split()[0].lower()}"):
            st.markdown(f"**{who}**")
            st.text(value)
            st.text(why)
    if _SAFE_ID.match(flip.trace_id):
        st.page_link(
            nav.page_path("label.py"),
            label="Open this trace in Label",
            icon=":material/rate_review:",
            query_params={"trace": flip.trace_id},
        )


st.subheader("Test split: before and after")
test = view.test
scores = build_scores(view.run_record.test if view.run_record is not None else None)
if view.is_prompt:
    if not scores:
        st.caption(test.note or "No held-out scores yet (they are computed when the run ends).")
    else:
        st.caption(
            "Mean judge score (in [0, 1]) of the seed prompt's and the best prompt's outputs on "
            "the held-out inputs the optimizer never saw, with bootstrap 95% intervals."
        )
        prompt_outputs.scores_table(scores, "seed", "best", key="explorer_prompt_scores")
elif not test.available:
    st.caption(test.note or "No test-split scores recorded.")
else:
    st.caption(
        f"The seed judge and the aligned judge on {test.n} held-out traces the optimizer "
        "never saw, against the human labels."
    )

    st.dataframe(
        [
            {
                "metric": r.metric,
                "before (seed)": r.before,
                "before 95% CI": interval(r.before_ci, label=False),
                "after (aligned)": r.after,
                "after 95% CI": interval(r.after_ci, label=False),
                "change vs seed": r.change,
            }
            for r in test.rows
        ],
        hide_index=True,
        key="explorer_test",
        column_config={
            k: st.column_config.NumberColumn(format="%.3f")
            for k in ("before (seed)", "after (aligned)", "change vs seed")
        },
    )
    cols = st.columns(2)
    for col, (name, conf, key) in zip(
        cols,
        (
            ("Before (seed judge)", test.before_confusion, "explorer_conf_before"),
            ("After (aligned judge)", test.after_confusion, "explorer_conf_after"),
        ),
        strict=True,
    ):
        with col:
            st.markdown(f"**{name}**")
            if conf is None:
                st.caption("not scored")
                continue
            fig = charts.confusion_heatmap(
                list(conf.labels), [list(r) for r in conf.counts], "human", "judge"
            )
            st.plotly_chart(fig, key=key)
    if test.predictions:
        _show_flips(test.flips())
        st.markdown("**Per held-out trace**")
        st.dataframe(test.prediction_rows(), hide_index=True, key="explorer_predictions")
    if test.note:
        st.caption(test.note)

# ---- MemAlign --------------------------------------------------------------------------
if view.is_memalign:
    if view.unaligned:
        st.info(f"This run unaligned {len(view.unaligned)} trace(s): {', '.join(view.unaligned)}")
    st.subheader(f"Guidelines ({len(view.guidelines)})")
    st.caption("Semantic memory: rules distilled from the human rationales, with their sources.")
    with st.container(height=420 if len(view.guidelines) > 6 else "content"):
        for g in view.guidelines:
            st.text(f"{g.index + 1}. {g.text}")
            links = [f"[{t}]({_trace_link(t)})" for t in g.source_trace_ids if _SAFE_ID.match(t)]
            if links:
                st.caption("from " + ", ".join(links))
    st.subheader(f"Episodic memory ({len(view.episodes)})")
    st.dataframe(
        [
            {
                "trace": _trace_link(e.trace_id) if e.trace_id else None,
                "trace id": e.trace_id,
                "label": e.label,
                "rationale": e.rationale,
                "inputs": e.inputs[:300],
                "outputs": e.outputs[:300],
            }
            for e in view.episodes
        ],
        hide_index=True,
        key="explorer_episodes",
        column_config={
            "trace": st.column_config.LinkColumn(display_text="open", width="small"),
            "rationale": st.column_config.TextColumn(width="large"),
        },
    )

    st.subheader("Unalign")
    choices = list(
        dict.fromkeys(
            [e.trace_id for e in view.episodes if e.trace_id]
            + [t for g in view.guidelines for t in g.source_trace_ids]
        )
    )
    episodes = {e.trace_id: e for e in view.episodes if e.trace_id}

    def _trace_label(t: str) -> str:
        e = episodes.get(t)
        return t if e is None else f"{t} · {e.label} · {(e.rationale or '')[:60]}"

    def _unalign() -> None:
        try:
            result = unalign(
                ctx.experiment_id,
                info.judge_name,
                ss.get("explorer_unalign") or [],
                version=info.judge_version,
            )
            ss["explorer_unalign_result"] = result.to_dict()
            ss["explorer_unalign_error"] = None
            ss["explorer_unalign"] = []
        except AlignboardError as exc:
            ss["explorer_unalign_error"] = str(exc)
            ss["explorer_unalign_result"] = None
        data.after_unalign()

    st.caption(
        "Forget traces (e.g. mislabeled ones): their episodes go, and every guideline all of "
        "whose sources go. The result is registered as a new version; this one is unchanged."
    )
    st.multiselect("Traces to unalign", choices, key="explorer_unalign", format_func=_trace_label)
    st.button(
        "Unalign and register a new version",
        key="explorer_unalign_go",
        icon=":material/remove_circle:",
        on_click=_unalign,
        disabled=not ss.get("explorer_unalign") or info.judge_version is None,
    )
    if ss.get("explorer_unalign_error"):
        st.error(ss["explorer_unalign_error"])
    res = ss.get("explorer_unalign_result")
    if res:
        extra = f"test accuracy {number(res.get('test_accuracy_before'))} -> " + number(
            res.get("test_accuracy_after")
        )
        st.success(
            f"Registered {res['judge_name']} v{res['judge_version']} (run {res['run_id']}): "
            f"{extra}.",
            icon=":material/check_circle:",
        )
        st.page_link(
            nav.page_path("run_explorer.py"),
            label="Open the new run",
            icon=":material/query_stats:",
            query_params={"run": res["run_id"]},
        )

# ---- final instructions ----------------------------------------------------------------
st.subheader(words.final)
st.code(view.final_instructions or "(not written yet)", language=None, wrap_lines=True)
