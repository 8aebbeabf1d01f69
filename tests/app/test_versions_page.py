"""The Versions page through AppTest, on real registered judge versions."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.optimization import registry
from core.optimization.engine import run_alignment
from core.optimization.mlflow_judge import seed_judge
from tests.optimization.demo_examples import CRITERION, demo_settings

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


@pytest.fixture
def versions(demo_store):
    result = run_alignment(demo_settings(demo_store, "gepa"))
    judge = seed_judge(
        demo_settings(demo_store, "gepa").judge.with_instructions(
            result.instructions + '\n- If the response contains "<b>x</b>", the verdict is fail.'
        )
    )
    v2 = registry.register_version(judge, demo_store, run_id=None, test_metrics={})
    return demo_store, result.judge_version, v2, result.run_id


def _page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["shell_reviewer"] = "maria.chen"
    return at.switch_page("app_pages/versions.py").run()


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _button(at: AppTest, label: str):
    return next(b for b in at.get("button") if b.label == label)


def test_versions_page_compares_two_versions_side_by_side(versions):
    _eid, v1, v2, run_id = versions
    at = _page()
    _ok(at)
    assert at.title[0].value == "Versions"
    assert at.selectbox(key="versions_a").value == v1
    assert at.selectbox(key="versions_b").value == v2
    htmls = [h.proto.body for h in at.get("html")]
    assert len(htmls) == 2
    assert "<ins" in htmls[1] and "&lt;b&gt;x&lt;/b&gt;" in htmls[1] and "<b>x" not in htmls[1]
    assert "<ins" not in htmls[0]
    # v1 came from a run: a link to it in the Run explorer, its metrics and confusion matrix.
    links = [p.proto for p in at.get("page_link")]
    assert any(
        link.page.endswith("run_explorer") and link.query_string == f"run={run_id}"
        for link in links
    ), [(link.page, link.query_string) for link in links]
    captions = [c.value for c in at.caption]
    # Only v2 (registered by hand, no run, no scores) says why it has no numbers.
    assert [c for c in captions if "No held-out metrics" in c] == [
        "No held-out metrics: registered outside an alignment run."
    ]
    assert len(at.get("plotly_chart")) == 1  # v2 has no run, so no confusion matrix
    assert [m.label for m in at.metric][:2] == ["Accuracy", "Cohen's kappa"]


def test_alias_set_and_rollback_through_the_page(versions):
    eid, v1, v2, _ = versions
    at = _page()
    at.text_input(key="versions_alias_name").set_value("production")
    at.selectbox(key="versions_alias_version").set_value(v2)
    _button(at, "Set alias").click()
    at.run()
    _ok(at)
    assert registry.get_alias(eid, CRITERION, "production") == v2
    assert "production now points at v2" in at.success[0].value

    assert at.selectbox(key="versions_rb_target").value == v1
    at.button(key="versions_rollback").click().run()
    _ok(at)
    assert registry.get_alias(eid, CRITERION, "production") == v1
    assert "it pointed at v2" in at.success[0].value

    # Undo puts the alias back where it was before the roll back.
    at.button(key="versions_undo_button").click().run()
    _ok(at)
    assert registry.get_alias(eid, CRITERION, "production") == v2


def test_versions_page_without_any_judge_says_how_to_get_one(experiment):
    # An empty store: the demo one holds the demo app's registered prompt.
    at = _page()
    _ok(at)
    assert "No judge or prompt is registered yet" in at.info[0].value
