"""The Run explorer, driven through AppTest on finished runs of the demo store."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.optimization.engine import run_alignment
from core.optimization.registry import list_versions
from tests.optimization.demo_examples import CRITERION, demo_settings

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


def _explorer(run_id: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if run_id:
        at.query_params["run"] = run_id
    return at.switch_page("app_pages/run_explorer.py").run()


def _frame(at: AppTest, column: str):
    """The first table with ``column`` (st.dataframe has no key lookup in AppTest)."""
    return next(df.value for df in at.dataframe if column in df.value.columns)


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _html(at: AppTest) -> str:
    return "\n".join(h.proto.body for h in at.get("html"))


def test_explorer_renders_a_finished_gepa_run(demo_store):
    result = run_alignment(demo_settings(demo_store, "gepa"))
    at = _explorer(result.run_id)
    _ok(at)
    assert at.session_state["explorer_run"] == result.run_id
    heads = [s.value for s in at.subheader]
    for head in (
        "Iterations",
        "Pareto frontier",
        "Lineage",
        "Candidate",
        "Test split: before and after",
    ):
        assert head in heads
    charts = {c.proto.id.split("-")[-1] for c in at.get("plotly_chart")}
    assert len(at.get("plotly_chart")) == 5  # iterations, frontier, lineage, 2 confusions
    assert charts
    # The best candidate is selected: its instructions as text, diffs vs parent and seed.
    cand = at.selectbox(key="explorer_candidate")
    assert "best" in cand.format_func(cand.value)
    assert result.instructions in [c.value for c in at.code]
    diff = _html(at)
    assert diff.count('class="alignboard-diff"') == 2 and "<ins " in diff
    test = _frame(at, "before (seed)")
    assert list(test["metric"])[:2] == ["accuracy", "Cohen's kappa"]
    assert test["after (aligned)"][0] == result.test_accuracy_after
    examples = _frame(at, "best score")
    assert all(link.startswith("label?trace=tr-") for link in examples["trace"])
    # Another candidate: the seed has no parent to diff against.
    at.selectbox(key="explorer_candidate").set_value(0).run()
    _ok(at)
    assert _html(at).count('class="alignboard-diff"') == 0


def test_explorer_shows_memalign_memory_and_unalign_creates_a_version(demo_store):
    result = run_alignment(demo_settings(demo_store, "memalign"))
    at = _explorer(result.run_id)
    _ok(at)
    heads = [s.value for s in at.subheader]
    assert any(h.startswith("Guidelines (") for h in heads)
    assert any(h.startswith("Episodic memory (") for h in heads)
    assert len(at.get("plotly_chart")) == 2  # before/after confusion matrices
    assert _frame(at, "before (seed)") is not None
    episodes = _frame(at, "rationale")
    assert len(episodes) > 0
    assert at.button(key="explorer_unalign_go").disabled  # nothing chosen yet

    victim = at.multiselect(key="explorer_unalign").options[0]
    tid = victim.split(" · ")[0]
    at.multiselect(key="explorer_unalign").select(tid).run()
    at.button(key="explorer_unalign_go").click().run()
    _ok(at)
    versions = list_versions(demo_store, CRITERION)
    assert [v.version for v in versions] == [result.judge_version, result.judge_version + 1]
    (msg,) = [s.value for s in at.success]
    assert f"v{result.judge_version + 1}" in msg
    new_run = at.session_state["explorer_unalign_result"]["run_id"]
    fresh = _explorer(new_run)
    _ok(fresh)
    assert tid in next(i.value for i in fresh.info if "unaligned" in i.value)
    assert tid not in set(_frame(fresh, "rationale")["trace id"])


def test_explorer_without_runs_points_to_align(demo_store):
    at = _explorer()
    _ok(at)
    assert "No alignment runs" in at.info[0].value
