"""The Run explorer's validation-uncertainty and proposals section, on real runs recorded
by the engine: one whose reflection model echoes its prompt, one with the demo model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.optimization.engine import run_alignment
from core.views.runs import build_guard_view, load_run_view
from tests.optimization.demo_examples import demo_settings
from tests.support.openai_server import openai_server

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
#: Markup a reflection model could answer with; it must reach the page as text.
MARKUP = "<b>bold</b><script>alert(1)</script>"


def _echo(body: dict) -> str:
    prompt = "\n".join(str(m.get("content") or "") for m in body.get("messages") or [])
    return MARKUP + "\n" + prompt


def _explorer(run_id: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["run"] = run_id
    return at.switch_page("app_pages/run_explorer.py").run()


def _frame(at: AppTest, column: str):
    return next(df.value for df in at.dataframe if column in df.value.columns)


def test_rejected_proposals_and_uncertainty_are_shown_as_text(demo_store, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-real-key")
    with openai_server(answer=_echo) as server:
        settings = replace(
            demo_settings(demo_store, "gepa", max_metric_calls=40),
            reflection_model="openai:/echo",
            reflection_base_url=server.base_url,
        )
        result = run_alignment(settings)
    assert result.instructions == settings.judge.instructions
    # The seed stayed, so the held-out gate sees no change (and registers as before).
    assert result.verdict == "no_change" and not result.significant

    guard = build_guard_view(load_run_view(result.run_id).run_record)
    assert guard.chosen_id == 0 and [s.id for s in guard.scores] == [0]
    assert guard.scores[0].chosen and guard.scores[0].ci is not None
    assert guard.proposals and len(guard.degenerate) == len(guard.proposals)
    assert guard.saved_metric_calls == settings.minibatch_size * len(guard.proposals)
    assert all(p.reflection_output.startswith(MARKUP) for p in guard.rejected)

    at = _explorer(result.run_id)
    assert not at.exception, [e.value for e in at.exception]
    heads = [s.value for s in at.subheader]
    assert "Validation uncertainty" in heads and "Proposals" in heads
    rejected = _frame(at, "why")
    assert len(rejected) == len(guard.proposals)
    assert set(rejected["reason"]) == {"echoes_reflection_prompt"}
    assert all(rejected["degenerate"])
    # The raw reflection output is shown verbatim in a code block, never as HTML.
    codes = [c.value for c in at.code]
    assert any(c.startswith(MARKUP) for c in codes)
    html = "\n".join(h.proto.body for h in at.get("html"))
    assert "<script>" not in html and "<b>bold</b>" not in html
    assert any(f"{len(guard.degenerate)} of them as degenerate" in c.value for c in at.caption)


def test_a_demo_run_shows_each_candidate_with_its_interval_and_evidence(demo_store):
    result = run_alignment(demo_settings(demo_store, "gepa", max_metric_calls=120))
    guard = build_guard_view(load_run_view(result.run_id).run_record)
    chosen = next(s for s in guard.scores if s.chosen)
    assert chosen.id > 0 and chosen.beats_seed and chosen.p_value <= 0.1
    assert chosen.ci[0] < chosen.val_score <= chosen.ci[1]
    assert "sign test" in guard.rule and not guard.degenerate

    at = _explorer(result.run_id)
    assert not at.exception, [e.value for e in at.exception]
    table = _frame(at, "95% interval")
    assert list(table["returned"]).count(True) == 1
    assert table["candidate"][0] == "#0 seed" and table["wins vs seed"].isna()[0]
    assert list(table["returned"]).index(True) == chosen.id
