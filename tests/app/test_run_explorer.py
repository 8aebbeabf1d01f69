"""The Run explorer, driven through AppTest on finished runs of the demo store."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

from core.optimization import record
from core.optimization.engine import run_alignment
from core.optimization.record import Prediction, read_run_record
from core.optimization.registry import list_versions
from core.views.runs import MARKS_LEGEND, NOT_RECORDED, load_run_view
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


def _everything(at: AppTest) -> str:
    """Every text element's value and every metric on the page."""
    els = [*at.markdown, *at.caption, *at.text, *at.info, *at.warning, *at.success, *at.code]
    return "\n".join([*(str(e.value) for e in els), *(str(m.value) for m in at.metric)])


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
    # The change column says what it compares.
    assert "change vs seed" in test.columns and "change" not in test.columns
    # One star meaning, explained under every chart and the candidate selector.
    assert sum(c.value == MARKS_LEGEND for c in at.caption) == 4
    assert "★ best" in cand.format_func(cand.value)
    # Tokens and cost: the demo models are unpriced.
    (usage,) = [c.value for c in at.caption if c.value.startswith("Usage")]
    assert "price unknown" in usage and f"{result.llm_calls:,} calls" in usage
    assert "$0" not in _everything(at)
    # Held-out flips: what changed on the test split, with every rationale.
    flips = load_run_view(result.run_id).test.flips()
    assert flips.fixed  # the demo alignment fixes held-out examples
    assert f"**{flips.summary}.**" in [m.value for m in at.markdown]
    fixed = _frame(at, "aligned rationale")
    assert list(fixed["trace id"]) == [f.trace_id for f in flips.fixed]
    assert all(
        link == f"label?trace={t}"
        for link, t in zip(fixed["trace"], fixed["trace id"], strict=True)
    )
    first = flips.fixed[0]
    assert fixed["seed rationale"][0] == first.seed_rationale != NOT_RECORDED
    assert first.seed_rationale in [t.value for t in at.text]
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


def _rewrite_test_record(run_id: str, predictions: list[Prediction]) -> None:
    """Replace a run's held-out predictions through the run record's own writer."""
    from core.optimization.recorder import MlflowRunRecorder

    recorder = MlflowRunRecorder(run_id)
    old = read_run_record(recorder.client, run_id, "gepa").test
    record.write_test_metrics(recorder, replace(old, predictions=tuple(predictions)))


def test_explorer_lists_fixed_broken_and_failed_flips_as_plain_text(demo_store):
    result = run_alignment(demo_settings(demo_store, "gepa"))
    markup = "<b>bold</b> **stars** [link](javascript:alert(1)) <script>x=1</script>"
    _rewrite_test_record(
        result.run_id,
        [
            Prediction("tr-fixed", True, False, True, "seed: too curt", "aligned: fine", "ok"),
            Prediction("tr-broken", False, False, True, "seed: wrong order", markup, "misroutes"),
            Prediction("tr-same", True, True, True, "yes", "yes", "yes"),
            Prediction("tr-failed", True, None, True, "RateLimitError: 429", "fine", "ok"),
        ],
    )
    at = _explorer(result.run_id)
    _ok(at)
    summary = "**Held-out changes: 1 fixed, 1 broken, 1 unchanged, 1 with a failed judge call.**"
    assert summary in [m.value for m in at.markdown]
    tables = [df.value for df in at.dataframe if "aligned rationale" in df.value.columns]
    assert [list(t["trace id"]) for t in tables] == [["tr-fixed"], ["tr-broken"], ["tr-failed"]]
    assert tables[1]["aligned rationale"][0] == markup
    assert tables[2]["seed judge"][0] == "failed"
    # One flip in full, as text: the markup is shown, never rendered.
    at.selectbox(key="explorer_flip").set_value("tr-broken").run()
    _ok(at)
    assert markup in [t.value for t in at.text]
    for el in [*at.markdown, *at.caption, *at.info, *at.warning]:
        assert "<script" not in str(el.value) and "<b>bold" not in str(el.value)
    link = next(p for p in at.get("page_link") if p.proto.label == "Open this trace in Label")
    assert link.proto.query_string == "trace=tr-broken"
    # Another run: the reader starts at that run's first flip.
    other = run_alignment(demo_settings(demo_store, "memalign"))
    first = load_run_view(other.run_id).test.flips().changed[0]
    st.cache_data.clear()  # as a launch does (``data.after_launch``): the list has it
    at.run()
    at.selectbox(key="explorer_run").set_value(other.run_id).run()
    _ok(at)
    assert at.selectbox(key="explorer_flip").value == first.trace_id


def test_explorer_says_when_a_run_predates_rationales(demo_store):
    result = run_alignment(demo_settings(demo_store, "gepa"))
    _rewrite_test_record(
        result.run_id,
        [Prediction("tr-a", True, False, True), Prediction("tr-b", False, False, False)],
    )
    at = _explorer(result.run_id)
    _ok(at)
    assert "**Held-out changes: 1 fixed, 0 broken, 1 unchanged.**" in [m.value for m in at.markdown]
    assert any(NOT_RECORDED in c.value for c in at.caption)
    fixed = _frame(at, "aligned rationale")
    assert list(fixed["seed judge"]) == ["Fail"] and list(fixed["aligned judge"]) == ["Pass"]
    assert list(fixed["seed rationale"]) == [NOT_RECORDED]


def test_the_run_picker_shows_each_runs_status_now(demo_store):
    from mlflow import MlflowClient

    from core.optimization import recorder as rec

    result = run_alignment(demo_settings(demo_store, "gepa"))
    client = MlflowClient()
    # The run as a job on another machine would show it while it runs.
    client.set_tag(result.run_id, rec.TAG_HOST, "another-host")
    client.set_tag(result.run_id, rec.TAG_HEARTBEAT, str(time.time()))
    rec.set_status(client, result.run_id, "running")
    at = _explorer(result.run_id)
    _ok(at)
    picker = at.selectbox(key="explorer_run")
    assert " · running · " in picker.format_func(result.run_id)
    assert any("still running" in w.value for w in at.warning)
    # It ends; the page is drawn again at once, inside the job list's cache time.
    rec.set_status(client, result.run_id, "finished")
    at.run()
    _ok(at)
    picker = at.selectbox(key="explorer_run")
    assert " · finished · " in picker.format_func(result.run_id)
    assert not any("still running" in w.value for w in at.warning)


def test_explorer_without_runs_points_to_align(demo_store):
    at = _explorer()
    _ok(at)
    assert "No alignment runs" in at.info[0].value
