"""Several GEPA proposals in flight at once (``proposals_in_flight``), and the sequential
loop still one at a time.

The judge and reflection models are the in-process demo stand-ins (a short latency, so
calls overlap observably); the parroting reflection model is the loopback
OpenAI-compatible server echoing its prompt.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.models import demo_stats, reset_demo_stats
from core.optimization.dataset import load_examples, split_examples
from core.optimization.record import PROPOSALS, read_proposals
from core.optimization.runners import gepa as gepa_runner
from tests.optimization.demo_examples import CRITERION, ListRecorder, demo_settings
from tests.support.openai_server import openai_server


@pytest.fixture
def demo(demo_store, monkeypatch):
    # Long enough that calls of one round are in flight together, short enough to be quick.
    monkeypatch.setenv("ALIGNBOARD_DEMO_LATENCY_MS", "20")
    train, val, _ = split_examples(load_examples(demo_store, CRITERION))
    return demo_settings(demo_store, "gepa", max_metric_calls=120), train, val


def _rounds(rec: ListRecorder, kind: str) -> list[dict]:
    return [
        r for it in rec.artifacts["iterations.json"][1:] for r in it["rounds"] if r["kind"] == kind
    ]


def test_parallel_mode_keeps_several_proposals_in_flight(demo, tmp_path):
    settings, train, val = demo
    settings = replace(settings, proposals_in_flight=4)
    rec = ListRecorder(tmp_path / "work")
    reset_demo_stats()
    out = gepa_runner.run(settings, train, val, rec)
    stats = demo_stats()

    # More calls in flight than one minibatch of 3 can give (8 workers).
    assert stats.max_in_flight > settings.minibatch_size, stats
    # The iteration log shows it: minibatch rounds of several tasks, reflections at once.
    assert max(r["pairs"] for r in _rounds(rec, "minibatch_eval")) > settings.minibatch_size
    assert max(r["calls"] for r in _rounds(rec, "reflection")) > 1
    iterations = rec.artifacts["iterations.json"][1:]
    assert max(it.get("tasks", 1) for it in iterations) == 4
    # Every reflection call is a logged round's call (critical path and floor stay right).
    logged = sum(r["calls"] for it in rec.artifacts["iterations.json"] for r in it["rounds"])
    assert logged == stats.calls

    # Each proposal of a multi-proposal iteration has its own outcome and parent score.
    proposals = read_proposals(rec.artifacts[PROPOSALS])
    by_iteration: dict[int, list] = {}
    for p in proposals:
        by_iteration.setdefault(p.iteration, []).append(p)
    assert max(len(ps) for ps in by_iteration.values()) > 1
    assert all(p.status != "pending" for p in proposals), proposals
    assert all(p.minibatch_before is not None for p in proposals)
    cands = rec.artifacts["candidates.json"]
    for p in proposals:
        if p.status == "accepted":
            assert cands[p.candidate_id]["instructions"] == p.proposed_text
            assert cands[p.candidate_id]["parent_ids"] == [p.parent_id]
    # At most one kept per iteration: one validation round each.
    for it in iterations:
        assert sum(1 for r in it["rounds"] if r["kind"] == "val_eval") <= 1
        for r in it["rounds"]:
            if r["kind"] == "val_eval":
                assert r["pairs"] == len(val)
    assert out.extra["proposals_in_flight"] == 4


def test_sequential_mode_proposes_one_candidate_at_a_time(demo, tmp_path):
    settings, train, val = demo
    settings = replace(settings, proposals_in_flight=1)
    rec = ListRecorder(tmp_path / "work")
    reset_demo_stats()
    out = gepa_runner.run(settings, train, val, rec)

    assert all(r["calls"] == 1 for r in _rounds(rec, "reflection"))
    assert all(r["pairs"] <= settings.minibatch_size for r in _rounds(rec, "minibatch_eval"))
    assert all(it.get("tasks", 1) == 1 for it in rec.artifacts["iterations.json"][1:])
    # gepa's one-task loop never has more than a minibatch (or the validation) in flight.
    assert demo_stats().max_in_flight <= max(settings.minibatch_size, len(val))
    per_iteration = [p.iteration for p in read_proposals(rec.artifacts[PROPOSALS])]
    assert len(per_iteration) == len(set(per_iteration))
    assert out.extra["proposals_in_flight"] == 1 and out.iterations > 3


@pytest.mark.parametrize("budget", [40, 75, 120])
def test_parallel_mode_never_overspends_the_budget(demo, tmp_path, budget):
    settings, train, val = demo
    settings = replace(settings, proposals_in_flight=4, max_metric_calls=budget)
    out = gepa_runner.run(settings, train, val, ListRecorder(tmp_path / "work"))
    assert out.metric_calls <= budget + settings.minibatch_size, out.metric_calls
    # And it spends most of it (it stops only when the next worst case would not fit).
    assert out.metric_calls > budget - (2 * settings.minibatch_size + len(val)) * 2


def test_guard_rejects_parroted_proposals_in_parallel_mode(demo_store, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-real-key")
    train, val, _ = split_examples(load_examples(demo_store, CRITERION))

    def echo(body: dict) -> str:
        return "\n".join(str(m.get("content") or "") for m in body.get("messages") or [])

    with openai_server(answer=echo) as server:
        settings = replace(
            demo_settings(demo_store, "gepa", max_metric_calls=60),
            reflection_model="openai:/echo-reflect",
            reflection_base_url=server.base_url,
            proposals_in_flight=4,
        )
        rec = ListRecorder(tmp_path / "work")
        out = gepa_runner.run(settings, train, val, rec)

    proposals = read_proposals(rec.artifacts[PROPOSALS])
    assert max(r["calls"] for r in _rounds(rec, "reflection")) > 1  # several at once
    assert len(proposals) >= 3
    assert all(p.degenerate and p.reason == "echoes_reflection_prompt" for p in proposals)
    # None was evaluated: the seed is the only candidate and the result.
    assert [c["id"] for c in rec.artifacts["candidates.json"]] == [0]
    assert _rounds(rec, "val_eval") == []
    assert out.instructions == settings.judge.instructions
    assert out.extra["saved_metric_calls"] == settings.minibatch_size * len(proposals)


def test_parallel_run_resumes_without_redoing_iterations(demo, tmp_path):
    settings, train, val = demo
    settings = replace(settings, proposals_in_flight=4, max_metric_calls=200)
    work = tmp_path / "resumed"
    first = gepa_runner.run(settings, train, val, ListRecorder(work, stop_after_heartbeats=3))
    assert first.cancelled and first.iterations >= 1

    reset_demo_stats()
    rec = ListRecorder(work)
    resumed = gepa_runner.run(settings, train, val, rec)
    resumed_calls = demo_stats().calls
    reset_demo_stats()
    fresh = gepa_runner.run(settings, train, val, ListRecorder(tmp_path / "fresh"))
    fresh_calls = demo_stats().calls

    assert not resumed.cancelled and resumed.iterations > first.iterations
    assert min(rec.steps("iteration_seconds")) == first.iterations + 1
    assert resumed_calls < fresh_calls and not fresh.cancelled
    assert resumed.metric_calls <= 200 + settings.minibatch_size
    kept = {p.iteration for p in read_proposals(rec.artifacts[PROPOSALS])}
    assert min(kept) <= first.iterations < max(kept)
