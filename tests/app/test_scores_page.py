"""The Score page through AppTest on the demo store with a registered judge: a real
scoring job launched from the page, its results, and the refusal of an empty selection."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
from streamlit.testing.v1 import AppTest

from core.labeling.labels import iter_trace_infos
from core.optimization import jobs
from core.optimization.score_spec import KIND_SCORE

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
CRIT = "support_quality"


def _score(**state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in state.items():
        at.session_state[k] = v
    # The page's url path (score) differs from its file name: switch after a first run,
    # once st.navigation has registered it.
    return at.run().switch_page("app_pages/scores.py").run()


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _frame(at: AppTest, column: str):
    return next(df.value for df in at.dataframe if column in df.value.columns)


def _judge_feedback(eid: str) -> int:
    return sum(
        1
        for info in iter_trace_infos(eid)
        for a in info.assessments or ()
        if a.name == CRIT and a.source.source_type == "LLM_JUDGE"
    )


def _score_runs(eid: str) -> list:
    return mlflow.MlflowClient().search_runs(
        [eid], filter_string=f"tags.`alignboard.kind` = '{KIND_SCORE}'"
    )


def test_launch_scoring_from_the_page_and_see_the_results(prompt_demo):
    at = _score()
    _ok(at)
    assert at.title[0].value == "Score"
    assert at.selectbox(key="score_ref").value == f"{CRIT}@production"
    at.segmented_control(key="score_mode").set_value("all").run()
    _ok(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Traces selected"] == "84" and metrics["To judge"] == "84"
    assert any("Pre-flight passed" in s.value for s in at.success)
    assert any("demo judge" in i.value and "stand-in" in i.value for i in at.info)

    started = time.monotonic()
    at.button(key="score_launch").click().run()
    assert time.monotonic() - started < 15, "launch must not wait for the job"
    _ok(at)
    run_id = at.session_state["score_run"]
    deadline = time.monotonic() + 60
    while jobs.status(run_id).active and time.monotonic() < deadline:
        time.sleep(0.3)
    final = jobs.status(run_id)
    assert final.status == "finished", final.error
    assert (final.n_total, final.n_scored, final.n_failed) == (84, 84, 0)

    at.run()
    _ok(at)
    assert any("Finished: 84 verdicts" in s.value for s in at.success)
    assert at.selectbox(key="score_version").value == 1
    # Distribution and drift charts (the demo's labeled traces give drift points).
    assert len(at.get("plotly_chart")) == 2
    table = _frame(at, "verdict")
    assert len(table) == 84
    assert set(table["verdict"]) <= {"Pass", "Fail"}
    assert table["trace id"].str.startswith("tr-").all()
    runs = _frame(at, "scored")
    assert list(runs["run id"]) == [run_id]

    # Filter the table by verdict value and by agreement.
    at.multiselect(key="score_values").set_value(["Fail"]).run()
    _ok(at)
    fails = _frame(at, "verdict")
    assert 0 < len(fails) < 84 and set(fails["verdict"]) == {"Fail"}
    at.segmented_control(key="score_agreement").set_value("unlabeled").run()
    blank = _frame(at, "verdict")
    assert (blank["human"] == "").all() and set(blank["verdict"]) <= {"Fail"}


def test_an_empty_selection_is_refused_and_writes_nothing(prompt_demo):
    before = _judge_feedback(prompt_demo)
    at = _score()
    _ok(at)
    assert not at.button(key="score_launch").disabled  # 21 unlabeled traces selected
    # A tag filter no trace matches, typed and launched in one go (as a stale page would).
    at.text_input(key="score_tags").set_value("release=never-shipped")
    at.button(key="score_launch").click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("Not launched" in e for e in errors), errors
    assert any("no trace" in e.lower() or "empty" in e.lower() for e in errors), errors
    assert {m.label: m.value for m in at.metric}["Traces selected"] == "0"
    assert at.button(key="score_launch").disabled
    assert at.session_state["score_run"] is None
    assert _score_runs(prompt_demo) == []
    assert _judge_feedback(prompt_demo) == before


def test_cancel_from_the_page_stops_the_job_and_offers_resume(prompt_demo, monkeypatch):
    # A slow demo judge (the job process inherits the variable), one call at a time.
    monkeypatch.setenv("ALIGNBOARD_DEMO_LATENCY_MS", "150")
    at = _score(score_mode="all", score_workers=1)
    at.button(key="score_launch").click().run()
    _ok(at)
    run_id = at.session_state["score_run"]
    deadline = time.monotonic() + 60
    while jobs.status(run_id).status != "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    at.run()
    at.button(key="score_cancel").click().run()
    _ok(at)
    final = jobs.wait(run_id, timeout_s=60, poll_s=0.3)
    assert final.status == "cancelled", final
    assert (final.n_scored or 0) < 84
    at.run()
    assert any("Cancelled" in w.value for w in at.warning)
    assert at.button(key="score_resume").label == "Resume"
    # What was written before the cancel is shown; nothing more.
    assert len(_frame(at, "verdict")) == final.n_scored == _judge_feedback(prompt_demo)
