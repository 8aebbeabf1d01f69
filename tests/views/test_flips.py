"""Held-out flips, the one star meaning and the usage line of the Run explorer's views:
pure builders on constructed records, and a real demo alignment."""

from __future__ import annotations

from core.labeling.labels import current_labels
from core.optimization import record
from core.optimization.engine import run_alignment
from core.optimization.record import RATIONALE_CHARS, Prediction, TestMetrics
from core.views.formatting import MISSING
from core.views.runs import (
    BEST_MARK,
    FRONTIER_MARK,
    NO_RATIONALE,
    NOT_RECORDED,
    build_candidates,
    build_frontier,
    build_lineage,
    build_test,
    flips,
    load_run_view,
    usage_line,
)
from tests.optimization.demo_examples import CRITERION, ListRecorder, demo_settings


def _pred(tid, human, seed, aligned, why=("h", "s", "a")):
    h, s, a = why
    return Prediction(tid, human, seed, aligned, s, a, h)


def test_prediction_keeps_capped_rationales_and_reads_old_records(tmp_path):
    long = "x" * (RATIONALE_CHARS + 500)
    p = Prediction("t1", True, False, True, "seed said no", long, "human: yes")
    back = Prediction.from_dict(p.to_dict())
    assert back.seed_rationale == "seed said no" and back.human_rationale == "human: yes"
    assert len(back.aligned_rationale) == RATIONALE_CHARS and back.aligned_rationale[-1] == "…"
    assert record.cap_rationale("short") == "short" and record.cap_rationale(None) is None
    # A record written before rationales were kept.
    old = Prediction.from_dict({"trace_id": "t2", "human": True, "seed": True, "aligned": False})
    assert old == Prediction("t2", True, True, False)
    assert (old.seed_rationale, old.aligned_rationale, old.human_rationale) == (None,) * 3
    # Through the test-metrics writer and reader, as a run writes it.
    rec = ListRecorder(tmp_path)
    record.write_test_metrics(rec, TestMetrics(n=2, predictions=(p, old)))
    got = record.parse_run_record(rec.artifacts).test
    assert got.predictions[1] == old
    assert got.predictions[0].seed_rationale == "seed said no"


def test_flips_split_fixed_broken_failed_and_unchanged():
    preds = [
        _pred("fixed", True, False, True, ("good reply", "too short", "answers it")),
        _pred("broken", False, False, True, ("wrong price", "price wrong", "")),
        _pred("both-right", True, True, True),
        _pred("both-wrong", True, False, False),
        _pred("failed", True, None, True, ("ok", "RateLimitError: 429", "fine")),
        _pred("unlabeled", None, True, False),
    ]
    got = flips(preds)
    assert [f.trace_id for f in got.fixed] == ["fixed"]
    assert [f.trace_id for f in got.broken] == ["broken"]
    assert [f.trace_id for f in got.failed] == ["failed"]
    assert got.unchanged == 2 and got.recorded
    assert got.summary == (
        "Held-out changes: 1 fixed, 1 broken, 2 unchanged, 1 with a failed judge call"
    )
    fixed = got.fixed[0]
    assert (fixed.human, fixed.seed, fixed.aligned) == ("Pass", "Fail", "Pass")
    assert fixed.row() == {
        "trace": "label?trace=fixed",
        "trace id": "fixed",
        "human": "Pass",
        "human rationale": "good reply",
        "seed judge": "Fail",
        "seed rationale": "too short",
        "aligned judge": "Pass",
        "aligned rationale": "answers it",
    }
    assert got.broken[0].aligned_rationale == NO_RATIONALE
    failed = got.failed[0]
    assert failed.seed == "failed" and failed.seed_rationale == "RateLimitError: 429"
    # The same view from the test record.
    test = build_test(TestMetrics(n=6, before={"accuracy": 0.5}, predictions=tuple(preds)))
    assert test.flips() == got


def test_flips_of_a_run_recorded_before_rationales_say_so():
    old = [Prediction("a", True, False, True), Prediction("b", True, True, True)]
    got = flips(old)
    assert not got.recorded and got.summary == "Held-out changes: 1 fixed, 0 broken, 1 unchanged"
    (f,) = got.fixed
    assert f.seed == "Fail" and f.aligned == "Pass"
    assert f.human_rationale == f.seed_rationale == f.aligned_rationale == NOT_RECORDED
    assert flips([]).empty


def _cand(cid, parents, score, scores, it=0):
    return {
        "id": cid,
        "parent_ids": parents,
        "instructions": f"text {cid}",
        "val_score": score,
        "val_scores": scores,
        "iteration": it,
        "metric_calls_at_discovery": None,
    }


def test_the_star_is_the_best_candidate_and_the_diamond_the_frontier_everywhere():
    # #2 is the best (returned); the frontier is #1 and #2; #0 is neither.
    raw = [
        _cand(0, [], 0.5, {"a": 1.0, "b": 0.0}),
        _cand(1, [0], 0.5, {"a": 0.0, "b": 1.0}, 1),
        _cand(2, [0], 0.75, {"a": 1.0, "b": 0.5}, 2),
    ]
    cands = build_candidates(raw, {}, frontier=[1, 2], best_id=2)
    fm = build_frontier(cands, ["a", "b"], [1, 2])
    assert fm.best == 2
    assert fm.row_labels == ("#0", f"#1 {FRONTIER_MARK}", f"#2 {BEST_MARK}{FRONTIER_MARK}")
    lineage = build_lineage(cands)
    assert [n.marks for n in lineage.nodes] == ["", FRONTIER_MARK, BEST_MARK + FRONTIER_MARK]
    labels = {c.id: c.choice_label for c in cands}
    assert labels[2].startswith(f"#2 · {BEST_MARK} best · {FRONTIER_MARK} frontier")
    assert BEST_MARK not in labels[1] and FRONTIER_MARK in labels[1]
    assert BEST_MARK not in labels[0] and FRONTIER_MARK not in labels[0]


def test_usage_line_reads_totals_or_the_latest_iteration_and_never_says_zero_dollars():
    assert usage_line({}) is None
    assert usage_line({"val_score": 0.5}) is None
    running = {"llm_calls": 12.0, "prompt_tokens": 1000.0, "completion_tokens": 234.0}
    assert usage_line(running) == "12 calls · 1,234 tokens · price unknown"
    done = {**running, "llm_calls_total": 40.0, "tokens_total": 5000.0, "cost_usd": 0.0123}
    assert usage_line(done) == "40 calls · 5,000 tokens · $0.0123"


def test_a_real_demo_alignment_records_rationales_and_marks_one_best(demo_store):
    result = run_alignment(demo_settings(demo_store, "gepa"))
    view = load_run_view(result.run_id)
    preds = view.test.predictions
    assert len(preds) == result.test_size > 0
    said: dict[str, set[str]] = {}
    for lab in current_labels(demo_store, CRITERION):
        said.setdefault(lab.trace_id, set()).add(lab.rationale or "")
    for p in preds:
        # Every held-out example keeps both judges' rationales and the human's (the
        # rationale of a label the consolidated value came from).
        assert p.seed_rationale and p.aligned_rationale, p
        assert p.human_rationale in said[p.trace_id], p
    got = view.test.flips()
    assert got.recorded
    assert len(got.fixed) + len(got.broken) + len(got.failed) + got.unchanged == len(preds)
    # The summary matches the accuracies: fixed - broken = change in correct answers.
    before = round(result.test_accuracy_before * len(preds))
    after = round(result.test_accuracy_after * len(preds))
    assert len(got.fixed) - len(got.broken) == after - before
    assert got.fixed, "the demo alignment fixes held-out examples"

    # One star meaning: every chart and the selector star the same single candidate.
    best = view.best_id
    assert best is not None
    starred = view.marked(BEST_MARK)
    assert set(starred) == {"iterations", "heatmap", "lineage", "selector"}
    assert all(ids == {best} for ids in starred.values()), starred
    frontier = view.marked(FRONTIER_MARK)
    assert all(ids == set(view.frontier.frontier) for ids in frontier.values()), frontier

    # Usage: the demo models are unpriced.
    line = view.info.usage
    assert line is not None and "price unknown" in line and "$0" not in line
    assert line.startswith(f"{result.llm_calls:,} calls")


def test_usage_line_without_tokens_reads_missing():
    assert usage_line({"llm_calls_total": 3.0}) == f"3 calls · {MISSING} · price unknown"
