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


def _history(at: AppTest):
    """The alias history table (a read-only st.dataframe carries no key in AppTest)."""
    return next(d.value for d in at.dataframe if "action" in d.value.columns)


def test_alias_set_and_rollback_through_the_page(versions):
    eid, v1, v2, _ = versions
    at = _page()
    for version in (v1, v2):
        at.text_input(key="versions_alias_name").set_value("production")
        at.selectbox(key="versions_alias_version").set_value(version)
        _button(at, "Set alias").click()
        at.run()
        _ok(at)
    assert registry.get_alias(eid, CRITERION, "production") == v2
    assert f"production now points at v{v2} (was v{v1})" in at.success[0].value

    rb = at.button(key="versions_rollback")
    assert rb.label == f"Roll back production to v{v1} (its previous target)"
    rb.click().run()
    _ok(at)
    assert registry.get_alias(eid, CRITERION, "production") == v1
    assert f"it pointed at v{v2}" in at.success[0].value
    # Nothing before v1: the button is disabled and says why.
    assert at.button(key="versions_rollback").disabled
    assert any("no previous target" in c.value for c in at.caption)

    # Undo puts the alias back where it was before the roll back, recorded as "undo".
    at.button(key="versions_undo_button").click().run()
    _ok(at)
    assert registry.get_alias(eid, CRITERION, "production") == v2
    history = _history(at)
    assert list(history["action"]) == ["undo", "rollback", "set", "set"]
    assert set(history["who"]) == {"maria.chen"}


@pytest.fixture
def five_versions(demo_store):
    """Five hand-registered demo judge versions with registration metrics (seed: 0.6)."""
    base = demo_settings(demo_store, "gepa").judge
    for i in range(1, 6):
        judge = seed_judge(base.with_instructions(base.instructions + f"\n- Variant {i}."))
        registry.register_version(
            judge,
            demo_store,
            run_id=None,
            test_metrics={
                "test_accuracy_after": 0.6 + i / 20,
                "test_accuracy_before": 0.6,
                "test_kappa_after": 0.2 + i / 10,
                "test_kappa_before": 0.2,
                "test_size": 20,
            },
        )
    return demo_store


def test_v1_then_v5_then_roll_back_is_v1_with_its_history(five_versions):
    eid = five_versions
    at = _page()
    for version in (1, 5):
        at.text_input(key="versions_alias_name").set_value("production")
        at.selectbox(key="versions_alias_version").set_value(version)
        _button(at, "Set alias").click()
        at.run()
        _ok(at)
    assert registry.get_alias(eid, CRITERION, "production") == 5
    rb = at.button(key="versions_rollback")
    assert rb.label == "Roll back production to v1 (its previous target)"  # never v4
    rb.click().run()
    _ok(at)
    assert registry.get_alias(eid, CRITERION, "production") == 1

    history = _history(at)
    assert len(history) == 3
    assert list(history["action"]) == ["rollback", "set", "set"]  # newest first
    assert list(history["version"]) == ["v1", "v5", "v1"]
    assert list(history["previous"]) == ["v5", "v1", "unset"]
    assert list(history["who"]) == ["maria.chen"] * 3

    # Deltas say what they compare: the seed judge on the same test split.
    deltas = [m.proto.delta for m in at.metric if m.label in ("Accuracy", "Cohen's kappa")]
    assert deltas and all(d.endswith(" vs seed") for d in deltas), deltas
    assert "+0.25 vs seed" in deltas  # v5's accuracy 0.85 against the seed's 0.60
    # These versions came from no run: no usage to show, and it says so.
    assert any(c.value == "Not produced by a run." for c in at.caption)


def test_versions_page_shows_the_producing_runs_usage(versions):
    at = _page()
    _ok(at)
    usage = [c.value for c in at.caption if c.value.startswith("Run usage:")]
    # v1 came from a demo run: the stand-in models have no price.
    assert usage and "tokens" in usage[0] and "price unknown" in usage[0], usage


def test_versions_page_without_any_judge_says_how_to_get_one(experiment):
    # An empty store: the demo one holds the demo app's registered prompt.
    at = _page()
    _ok(at)
    assert "No judge or prompt is registered yet" in at.info[0].value


def test_promote_a_prompt_then_roll_back_records_both(prompt_demo):
    import mlflow

    from core.store.prompts import register_prompt

    # The demo seed put production on v1 before any history existed.
    register_prompt("northwind-support", "Answer briefly, never promise refunds.\n\n{{ message }}")
    at = _page()
    label = next(o for o in at.selectbox(key="versions_subject").options if "prompt:" in o)
    at.selectbox(key="versions_subject").set_value(label).run()
    _ok(at)
    assert at.button(key="versions_rollback").disabled  # no history: refused, not guessed
    assert any("no recorded history" in c.value for c in at.caption)

    at.button(key="versions_promote_ask").click().run()
    at.button(key="versions_promote_confirm").click().run()
    _ok(at)
    assert mlflow.genai.load_prompt("prompts:/northwind-support@production").version == 2
    # The promotion knows what production was (v1), so roll back has a target.
    rb = at.button(key="versions_rollback")
    assert rb.label == "Roll back production to v1 (its previous target)"
    rb.click().run()
    _ok(at)
    assert mlflow.genai.load_prompt("prompts:/northwind-support@production").version == 1
    history = _history(at)
    assert list(history["action"]) == ["rollback", "promote"]
    assert list(history["previous"]) == ["v2", "v1"]
    assert list(history["who"]) == ["maria.chen", "maria.chen"]
