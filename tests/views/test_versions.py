"""core.views.versions on real registered judge versions and real MLflow prompts."""

from __future__ import annotations

import html

import mlflow
import pytest

from core.errors import NotFoundError, ValidationError
from core.optimization import registry
from core.optimization.engine import run_alignment
from core.optimization.mlflow_judge import seed_judge
from core.views.diffs import DiffOp
from core.views.versions import (
    alias_history_rows,
    alias_map,
    compare_versions,
    delta_vs_seed,
    list_aliases,
    list_subjects,
    list_version_summaries,
    rollback,
    rollback_plan,
    run_explorer_link,
    set_alias,
    side_html,
    usage_line,
)
from tests.optimization.demo_examples import CRITERION, demo_settings


@pytest.fixture
def two_versions(demo_store):
    """v1 from a real GEPA run on the demo model, v2 a hand-edited variant without a run."""
    result = run_alignment(demo_settings(demo_store, "gepa"))
    settings = demo_settings(demo_store, "gepa")
    edited = result.instructions.replace("Answer Pass", "Answer <b>Pass</b> only")
    judge = seed_judge(settings.judge.with_instructions(edited + '\n- Never "instant refund".'))
    v2 = registry.register_version(
        judge, demo_store, run_id=None, test_metrics={"test_accuracy_after": 0.5}
    )
    return demo_store, result, v2


def test_compare_shows_texts_diff_run_and_test_metrics(two_versions):
    eid, result, v2 = two_versions
    cmp = compare_versions(eid, "judge", CRITERION, result.judge_version, v2)

    assert cmp.a.text == result.instructions
    assert "<b>Pass</b> only" in cmp.b.text
    assert not cmp.identical
    assert cmp.stats.words_added > 0 and cmp.stats.words_removed == 0
    assert any(op.kind == "insert" and "instant refund" in op.text for op in cmp.ops)

    # The run's full test report: accuracy, kappa with CIs and a confusion matrix.
    m = cmp.a.metrics
    assert cmp.a.run_id == result.run_id and cmp.a.run_status == "finished"
    assert cmp.a.run_link == f"run_explorer?run={result.run_id}"
    assert m.source == "run"
    assert m.accuracy == pytest.approx(result.test_accuracy_after)
    assert m.cohen_kappa == pytest.approx(result.test_kappa_after)
    assert m.baseline_accuracy == pytest.approx(result.test_accuracy_before)
    assert m.accuracy_ci is not None and m.accuracy_ci[0] <= m.accuracy <= m.accuracy_ci[1]
    assert set(m.confusion_labels) == {"Pass", "Fail"}
    assert sum(map(sum, m.confusion_counts)) == m.n == result.test_size

    # v2 came from no run: only the scalar recorded at registration.
    assert cmp.b.run_id is None and cmp.b.run_link is None
    assert cmp.b.metrics.source == "registration"
    assert cmp.b.metrics.accuracy == 0.5 and not cmp.b.metrics.confusion_counts

    rows = {r.metric: r for r in cmp.metric_rows()}
    assert rows["accuracy"].delta == pytest.approx(0.5 - m.accuracy)
    assert cmp.to_dict()["a"]["run_link"] == cmp.a.run_link


def test_side_by_side_html_escapes_the_text_and_marks_only_its_own_side():
    ops = [
        DiffOp("equal", "Say <script>x()</script> "),
        DiffOp("delete", "old"),
        DiffOp("insert", "<img src=x onerror=1>"),
    ]
    left, right = side_html(ops, "a"), side_html(ops, "b")
    assert "<script>" not in left and html.escape("<script>") in left
    assert "<del" in left and "<ins" not in left and "onerror" not in left
    assert "<ins" in right and "<del" not in right and "<img" not in right
    assert html.escape("<img src=x onerror=1>") in right


def test_subjects_and_version_summaries(two_versions):
    eid, result, v2 = two_versions
    # The demo seed registers the demo app's prompt too (judges first, then prompts).
    assert [(s.kind, s.name, s.latest) for s in list_subjects(eid)] == [
        ("judge", CRITERION, v2),
        ("prompt", "northwind-support", 1),
    ]
    summaries = list_version_summaries(eid, "judge", CRITERION)
    assert [s.version for s in summaries] == [result.judge_version, v2]
    assert summaries[0].label.startswith(f"v{result.judge_version} · gepa")


def test_set_alias_then_roll_back_with_the_previous_version_for_undo(two_versions):
    eid, result, v2 = two_versions
    v1 = result.judge_version
    first = set_alias(eid, "judge", CRITERION, "production", v1, who="ann")
    assert (first.version, first.previous_version) == (v1, None)
    second = set_alias(eid, "judge", CRITERION, "production", v2, who="bob")
    assert (second.version, second.previous_version) == (v2, v1)
    assert registry.get_alias(eid, CRITERION, "production") == v2

    summaries = list_version_summaries(eid, "judge", CRITERION)
    assert alias_map(summaries) == {"production": v2}
    plan = rollback_plan(eid, "judge", CRITERION, "production")
    assert (plan.current, plan.target) == (v2, v1)
    assert plan.label == f"Roll back production to v{v1} (its previous target)"
    assert "not set" in (rollback_plan(eid, "judge", CRITERION, "staging").reason or "")

    back = rollback(eid, "judge", CRITERION, "production", who="cy")
    assert (back.version, back.previous_version, back.action) == (v1, v2, "rollback")
    assert registry.get_alias(eid, CRITERION, "production") == v1
    assert list_aliases(eid, "judge", CRITERION) == {"production": v1}
    cmp = compare_versions(eid, "judge", CRITERION, v1, v2)
    assert cmp.a.aliases == ("production",) and cmp.b.aliases == ()
    # The history as the page shows it: newest first, who, the producing run's link.
    rows = alias_history_rows(eid, "judge", CRITERION)
    assert [(r["action"], r["version"], r["previous"], r["who"]) for r in rows] == [
        ("rollback", f"v{v1}", f"v{v2}", "cy"),
        ("set", f"v{v2}", f"v{v1}", "bob"),
        ("set", f"v{v1}", "unset", "ann"),
    ]
    assert rows[0]["run"] == run_explorer_link(result.run_id) and rows[1]["run"] is None

    with pytest.raises(ValidationError, match="no previous target"):
        rollback(eid, "judge", CRITERION, "production")
    with pytest.raises(ValidationError, match="not set"):
        rollback(eid, "judge", CRITERION, "staging")
    with pytest.raises(ValidationError, match="must start with a letter"):
        set_alias(eid, "judge", CRITERION, "bad alias!", v1)
    with pytest.raises(NotFoundError):
        compare_versions(eid, "judge", CRITERION, v1, 99)


def test_deltas_say_vs_seed_and_usage_reads_price_unknown():
    assert delta_vs_seed(0.82, 0.7) == "+0.120 vs seed"
    assert delta_vs_seed(0.5, 0.75) == "-0.250 vs seed"
    assert delta_vs_seed(None, 0.7) is None
    assert usage_line({}) is None
    assert usage_line({"tokens_total": 12345, "llm_calls_total": 84}) == (
        "84 calls · 12,345 tokens · price unknown"
    )
    assert "$0.0123" in (usage_line({"tokens_total": 10, "cost_usd": 0.0123}) or "")


def test_prompt_versions_compare_with_metrics_only_when_a_run_links_them(demo_store):
    p1 = mlflow.genai.register_prompt(name="support-reply", template="Be kind to {{name}}.")
    p2 = mlflow.genai.register_prompt(
        name="support-reply", template="Be kind and brief to {{name}}.", commit_message="shorter"
    )
    assert ("prompt", "support-reply", 2) in [
        (s.kind, s.name, s.latest) for s in list_subjects(demo_store)
    ]

    cmp = compare_versions(demo_store, "prompt", "support-reply", p1.version, p2.version)
    assert cmp.a.text == "Be kind to {{name}}." and cmp.b.note == "shorter"
    assert [op.text.strip() for op in cmp.ops if op.kind == "insert"] == ["and brief"]
    assert cmp.a.metrics is None and "no run" in cmp.a.metrics_missing

    # A finished alignment run that links prompt v2: its test report becomes v2's metrics.
    result = run_alignment(demo_settings(demo_store, "gepa"))
    mlflow.MlflowClient().link_prompt_version_to_run(result.run_id, p2)
    cmp = compare_versions(demo_store, "prompt", "support-reply", p1.version, p2.version)
    assert cmp.b.run_id == result.run_id
    assert cmp.b.metrics.accuracy == pytest.approx(result.test_accuracy_after)
    assert cmp.a.metrics is None

    set_alias(demo_store, "prompt", "support-reply", "production", p1.version)
    change = set_alias(demo_store, "prompt", "support-reply", "production", p2.version)
    assert change.previous_version == p1.version
    back = rollback(demo_store, "prompt", "support-reply", "production")
    assert (back.version, back.previous_version) == (p1.version, p2.version)
    assert (
        mlflow.MlflowClient().get_prompt_version_by_alias("support-reply", "production").version
        == 1
    )


def test_run_explorer_link_is_the_run_explorer_url_path():
    assert run_explorer_link("abc123") == "run_explorer?run=abc123"
