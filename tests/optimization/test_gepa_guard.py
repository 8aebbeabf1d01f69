"""The gepa runner with a reflection model that echoes its prompt: nothing degenerate is
evaluated, everything is recorded, and the seed stays the result.

The judge is the in-process demo model; the reflection model is the loopback
OpenAI-compatible server, scripted to answer every reflection request with the prompt it
was sent (what the small model of issue 9 did, in its purest form).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from core.models import demo_stats, reset_demo_stats
from core.optimization import record
from core.optimization.dataset import load_examples, split_examples
from core.optimization.record import PROPOSALS, read_proposals
from core.optimization.runners import gepa as gepa_runner
from core.views.runs import build_guard_view
from tests.optimization.demo_examples import CRITERION, ListRecorder, demo_settings
from tests.support.openai_server import openai_server

REFLECT = "echo-reflect"


def _echo(body: dict) -> str | None:
    """Answer with the request's own prompt."""
    return "\n".join(str(m.get("content") or "") for m in body.get("messages") or [])


@pytest.fixture
def echo_run(demo_store, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-real-key")
    train, val, _ = split_examples(load_examples(demo_store, CRITERION))
    with openai_server(answer=_echo) as server:
        settings = replace(
            demo_settings(demo_store, "gepa", max_metric_calls=60),
            reflection_model=f"openai:/{REFLECT}",
            reflection_base_url=server.base_url,
        )
        rec = ListRecorder(tmp_path / "work")
        reset_demo_stats()
        out = gepa_runner.run(settings, train, val, rec)
        judge_calls = demo_stats().calls
        yield settings, train, val, rec, out, server, judge_calls


def test_echoed_prompts_are_rejected_unevaluated_and_the_seed_stays(echo_run):
    settings, train, val, rec, out, server, judge_calls = echo_run
    reflections = [r for r in server.requests if r.path.endswith("/chat/completions")]
    assert reflections and all(r.body["model"] == REFLECT for r in reflections)

    proposals = read_proposals(rec.artifacts[PROPOSALS])
    assert len(proposals) == len(reflections) >= 3
    # Several reflections of one iteration go out at once: match them by content.
    echoes = sorted(_echo(r.body) or "" for r in reflections)
    assert sorted(p.reflection_output for p in proposals) == echoes  # the raw answers
    for p in proposals:
        assert p.degenerate and p.status == "rejected", p
        assert p.reason == "echoes_reflection_prompt" and "reflection prompt" in p.message
        assert p.reflection_prompt and p.reflection_prompt in p.reflection_output
        assert p.parent_id == 0 and p.iteration >= 1 and p.candidate_id is None
        assert p.saved_metric_calls == settings.minibatch_size

    # Nothing degenerate was evaluated: the seed is the only candidate, and the demo judge
    # only ever judged the seed (once per example; repeats come from the verdict cache).
    assert [c["id"] for c in rec.artifacts["candidates.json"]] == [0]
    assert judge_calls <= len(train) + len(val)
    for row in rec.artifacts["iterations.json"][1:]:
        kinds = [r["kind"] for r in row["rounds"]]
        assert kinds.count("minibatch_eval") <= 1 and "val_eval" not in kinds, row
        if "reflection" in kinds:
            assert row["degenerate"] and "reflection prompt" in row["reason"]

    assert out.instructions == settings.judge.instructions
    assert rec.artifacts["final_instructions.txt"] == settings.judge.instructions
    extra = out.extra
    assert extra["selection"]["chosen_id"] == 0 and extra["candidates"] == 1
    assert extra["degenerate_proposals"] == len(proposals)
    assert extra["saved_metric_calls"] == settings.minibatch_size * len(proposals)
    assert rec.metric("degenerate_proposals") == len(proposals)
    assert rec.metric("saved_metric_calls") == extra["saved_metric_calls"]


def test_demo_proposals_pass_the_guard_and_are_recorded(demo_store, tmp_path):
    train, val, _ = split_examples(load_examples(demo_store, CRITERION))
    settings = demo_settings(demo_store, "gepa", max_metric_calls=120)
    rec = ListRecorder(tmp_path / "work")
    out = gepa_runner.run(settings, train, val, rec)

    proposals = read_proposals(rec.artifacts[PROPOSALS])
    assert proposals and not any(p.degenerate for p in proposals)
    accepted = [p for p in proposals if p.status == "accepted"]
    cands = rec.artifacts["candidates.json"]
    assert sorted(p.candidate_id for p in accepted) == [c["id"] for c in cands[1:]]
    for p in accepted:
        cand = cands[p.candidate_id]
        assert cand["instructions"] == p.proposed_text and cand["parent_ids"] == [p.parent_id]
        assert p.minibatch_after > p.minibatch_before  # gepa's strict-improvement check
        assert "[demo stand-in]" in p.reflection_output and p.reflection_prompt
    for p in proposals:
        if p.status == "rejected":
            assert p.reason in ("not_better_on_minibatch", "outscored_in_iteration"), p
            assert p.message
            if p.reason == "not_better_on_minibatch":
                assert p.minibatch_after <= p.minibatch_before
            else:  # passed, but a sibling of the same iteration gained more
                assert p.minibatch_after > p.minibatch_before
    # The demo run still improves, by a margin its validation set supports.
    sel = out.extra["selection"]
    assert sel["chosen_id"] > 0 and out.instructions == cands[sel["chosen_id"]]["instructions"]
    chosen = next(c for c in sel["comparisons"] if c["candidate_id"] == sel["chosen_id"])
    assert chosen["beats_seed"] and chosen["p_value"] <= sel["alpha"]


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runs"


def _fixture_record(name: str, optimizer: str) -> record.RunRecord:
    artifacts: dict = {}
    for path in (FIXTURES / name / "artifacts").iterdir():
        text = path.read_text(encoding="utf-8")
        artifacts[path.name] = json.loads(text) if path.suffix == ".json" else text
    return record.parse_run_record(artifacts, optimizer)


def test_runs_recorded_before_the_guard_still_show_their_evidence_and_proposals():
    # Our gepa before the guard: no proposals, no recorded selection; paired numbers are
    # computed for display, and no rule is claimed for a run that did not apply one.
    old = build_guard_view(_fixture_record("gepa_v0", "gepa"))
    assert old.rule == "" and not old.proposals and len(old.scores) > 1
    assert sum(s.chosen for s in old.scores) == 1 and old.scores[0].is_seed
    assert all(s.wins is not None and s.ci is not None for s in old.scores[1:])
    # MLflow's GEPA proposals (raw ``new_instructions``/``accepted_as``/``rejected``) read.
    mlflow_rec = _fixture_record("mlflow_gepa_v0", "mlflow-gepa")
    raw = mlflow_rec.proposals
    view = build_guard_view(mlflow_rec)
    assert len(view.proposals) == len(raw) > 0
    for row, entry in zip(view.proposals, raw, strict=True):
        assert row.proposed_text == entry["new_instructions"] and not row.degenerate
        if "accepted_as" in entry:
            assert row.status == "accepted" and row.candidate_id == entry["accepted_as"]
        elif "rejected" in entry:
            assert row.status == "rejected" and row.reason == "not_better_on_minibatch"
            assert row.message == entry["rejected"]
