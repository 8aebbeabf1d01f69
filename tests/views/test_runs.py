"""Run views built from real alignment runs on the demo store, and the pure builders."""

from __future__ import annotations

import json

import pytest

from core.errors import NotFoundError
from core.optimization import recorder as rec
from core.optimization.engine import run_alignment
from core.views.diffs import new_text
from core.views.runs import (
    RunInfo,
    build_candidates,
    build_live_series,
    build_run_view,
    build_test,
    load_run_view,
    metric_series,
    read_artifacts,
    wins_and_losses,
)
from tests.optimization.demo_examples import demo_settings


def _info(optimizer: str = "gepa") -> RunInfo:
    return RunInfo("r", "r", "1", "finished", optimizer, "q", 1, 0, 0, {})


def _cand(cid, parents, score, scores, it, text="base"):
    return {
        "id": cid,
        "parent_ids": parents,
        "instructions": text,
        "val_score": score,
        "val_scores": scores,
        "iteration": it,
        "metric_calls_at_discovery": None,
    }


def test_gepa_run_view_from_a_real_run(demo_store):
    result = run_alignment(demo_settings(demo_store, "gepa"))
    view = load_run_view(result.run_id)
    raw = read_artifacts(result.run_id)
    assert view.info.status == "finished" and view.info.optimizer == "gepa"
    assert view.info.budget and view.info.judge_version == result.judge_version

    # Candidates: one view each, the seed at depth 0, children one deeper than parents.
    cands = {c.id: c for c in view.candidates}
    assert len(cands) == len(raw["candidates.json"]) >= 2
    seed = cands[view.seed_id]
    assert seed.is_seed and seed.depth == 0 and seed.iteration == 0
    assert seed.instructions == view.seed_instructions
    for c in view.candidates:
        for p in c.parent_ids:
            assert c.depth >= cands[p].depth + 1
        assert c.metric_calls is not None
    best = cands[view.best_id]
    assert best.val_score == max(c.val_score for c in view.candidates)
    assert best.instructions == view.final_instructions
    assert {c.id for c in view.candidates if c.on_frontier} == set(raw["pareto.json"]["frontier"])

    # Progress: candidates found later cost more calls; best-so-far never drops and ends at
    # the best score; the Pareto aggregate is never below it.
    by_iter = sorted(view.candidates, key=lambda c: c.iteration)
    calls = [c.metric_calls for c in by_iter]
    assert calls == sorted(calls)
    line = [p.value for p in view.progress.best_so_far]
    assert line == sorted(line) and line[-1] == best.val_score
    xs = [p.metric_calls for p in view.progress.best_so_far]
    assert xs == sorted(xs) and view.progress.x_is_metric_calls
    best_at = {p.iteration: p.value for p in view.progress.best_so_far}
    for p in view.progress.pareto_aggregate:
        assert p.value >= best_at[p.iteration] - 1e-9
    assert view.progress.pareto_aggregate[-1].value == pytest.approx(
        raw["pareto.json"]["aggregate"]
    )
    assert view.progress.budget == view.info.budget

    # Frontier matrix: candidates x validation examples, matching the recorded scores.
    fm = view.frontier
    assert fm.example_ids == tuple(raw["split.json"]["val"])
    assert len(fm.scores) == len(cands) and all(len(r) == len(fm.example_ids) for r in fm.scores)
    for i, cid in enumerate(fm.candidate_ids):
        for j, tid in enumerate(fm.example_ids):
            assert fm.scores[i][j] == cands[cid].val_scores.get(tid)
            assert fm.best_on_example[i][j] == (
                cid in raw["pareto.json"]["per_example"][tid]["candidate_ids"]
            )
    assert fm.aggregate == pytest.approx(raw["pareto.json"]["aggregate"])

    # Lineage: every recorded edge, node depths as the candidates'.
    assert set(view.lineage.edges) == {
        (e["parent"], e["child"]) for e in raw["lineage.json"]["edges"]
    }
    assert {n.id: n.depth for n in view.lineage.nodes} == {c.id: c.depth for c in view.candidates}

    # Wins and losses against the parent agree with the per-example scores.
    child = next(c for c in view.candidates if c.parent_ids)
    wl = view.wins_and_losses(child.id)
    parent = cands[wl.parent_id]
    assert len(wl.won) == sum(child.val_scores[t] > parent.val_scores[t] for t in child.val_scores)
    assert len(wl.lost) == sum(child.val_scores[t] < parent.val_scores[t] for t in child.val_scores)
    assert len(wl.won) + len(wl.lost) + wl.tied == len(child.val_scores)
    assert view.wins_and_losses(seed.id).parent_id is None

    # Diffs: the best candidate against the seed adds the demo reflection's rules.
    d = view.diff(best.id, seed.id)
    assert d.stats.words_added > 0 and new_text(list(d.ops)) == best.instructions
    assert "If the response contains" in best.change_preview or best.is_seed

    # Test split: before/after as recorded by the engine.
    rows = {r.metric: r for r in view.test.rows}
    assert rows["accuracy"].before == pytest.approx(result.test_accuracy_before)
    assert rows["accuracy"].after == pytest.approx(result.test_accuracy_after)
    assert rows["Cohen's kappa"].after_ci is not None
    assert view.test.before_confusion.labels == ("Fail", "Pass")
    assert sum(map(sum, view.test.after_confusion.counts)) == result.test_size

    # The live series (metric histories) agrees with the candidate view.
    live = metric_series(result.run_id)
    assert not live.empty
    bests = [p.best_val_score for p in live.points if p.best_val_score is not None]
    assert bests == sorted(bests) and bests[-1] == pytest.approx(best.val_score)
    with pytest.raises(NotFoundError):
        view.candidate(999)


def test_memalign_run_view_has_guidelines_with_sources_and_episodes(demo_store):
    result = run_alignment(demo_settings(demo_store, "memalign"))
    view = load_run_view(result.run_id)
    assert view.is_memalign and not view.has_candidates and view.progress.empty
    assert view.guidelines and view.episodes
    episode_ids = {e.trace_id for e in view.episodes}
    train = set(read_artifacts(result.run_id, ["split.json"])["split.json"]["train"])
    assert episode_ids == train
    for g in view.guidelines:
        assert g.text and set(g.source_trace_ids) <= train
    assert {e.label for e in view.episodes} <= {"Pass", "Fail"}
    assert view.test.available and view.test.n == result.test_size


def test_depth_follows_the_longest_parent_chain_and_merges():
    raw = [
        _cand(0, [], 0.5, {"a": 0, "b": 1}, 0, "judge it"),
        _cand(1, [0], 0.5, {"a": 1, "b": 0}, 1, "judge it well"),
        _cand(2, [1], 0.5, {"a": 1, "b": 0}, 2, "judge it very well"),
        _cand(3, [0, 2], 1.0, {"a": 1, "b": 1}, 3, "judge it very well now"),
    ]
    cands = build_candidates(raw, {0: 2, 1: 5, 2: 8, 3: 12}, frontier=[3])
    depth = {c.id: c.depth for c in cands}
    assert depth == {0: 0, 1: 1, 2: 2, 3: 3}
    assert [c.metric_calls for c in cands] == [2, 5, 8, 12]
    assert [c.is_best for c in cands] == [False, False, False, True]
    assert cands[1].change_preview == "well"
    wl = wins_and_losses(cands, 1)
    assert [o.trace_id for o in wl.won] == ["a"] and [o.trace_id for o in wl.lost] == ["b"]


def test_view_without_candidates_or_test_scores_says_why():
    view = build_run_view(_info("simba"), {"settings.json": {"judge": {"instructions": "s"}}})
    assert not view.has_candidates and view.progress.empty and view.frontier.empty
    assert not view.test.available and "No test-split scores" in view.test.note
    assert view.seed_instructions == "s" and view.best_id is None
    failed = build_test({"before": None, "after": None, "n": 3, "before_error": "all failed"})
    assert not failed.available and failed.note == "all failed"


def test_live_series_carries_metric_calls_forward():
    series = build_live_series(
        {
            "val_score": [(0, 0.5), (2, 0.7)],
            "best_val_score": [(0, 0.5), (2, 0.7)],
            "metric_calls": [(0, 10), (1, 13)],
        }
    )
    assert [(p.step, p.metric_calls) for p in series.points] == [(0, 10), (1, 13), (2, 13)]
    assert not series.empty
    assert build_live_series({"metric_calls": [(0, 1)]}).empty


def test_read_artifacts_skips_missing_and_parses_json(demo_store):
    import mlflow

    run = mlflow.MlflowClient().create_run(demo_store)
    rid = run.info.run_id
    r = rec.MlflowRunRecorder(rid)
    r.log_json("pareto.json", {"frontier": [1]})
    r.log_text("final_instructions.txt", "hello")
    got = read_artifacts(rid)
    assert got == {"pareto.json": {"frontier": [1]}, "final_instructions.txt": "hello"}
    assert json.dumps(got)
