"""The Align page, driven through AppTest on a copy of the seeded demo store."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path

import mlflow
from streamlit.testing.v1 import AppTest

from core.labeling.criteria import create_criterion
from core.labeling.labels import current_labels, set_label
from core.optimization import jobs
from core.optimization import recorder as rec
from core.optimization.recorder import KIND_ALIGNMENT, TAG_KIND

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


def _align(**state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in state.items():
        at.session_state[k] = v
    return at.switch_page("app_pages/align.py").run()


def _frame(at: AppTest, column: str):
    """The first table with ``column`` (st.dataframe has no key lookup in AppTest)."""
    return next(df.value for df in at.dataframe if column in df.value.columns)


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_align_page_shows_judge_preflight_estimate_and_demo_note(demo_store):
    at = _align()
    _ok(at)
    assert at.title[0].value == "Align"
    assert at.selectbox(key="align_criterion").value == "support_quality"
    # The judge starts from the criterion's instructions, editable.
    assert "{{ outputs }}" in at.text_area(key="align_instructions").value
    assert at.text_input(key="align_model").value == "demo:/judge"
    assert at.text_input(key="align_reflection").value == "demo:/reflect"
    assert any("stand-in, not an LLM" in i.value for i in at.info)
    assert any("Pre-flight passed" in s.value for s in at.success)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Budget"].endswith("calls")
    assert metrics["Estimated LLM calls"].startswith("~")
    assert not at.button(key="align_launch").disabled


def test_launching_from_the_align_page_creates_a_finished_run(demo_store):
    at = _align()
    at.number_input(key="align_budget").set_value(120)
    at.button(key="align_check").click().run()
    _ok(at)
    assert at.metric[1].value == "120 calls"
    started = time.monotonic()
    at.button(key="align_launch").click().run()
    assert time.monotonic() - started < 15, "launch must not wait for the job"
    _ok(at)
    run_id = at.session_state["align_run"]
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.data.tags[TAG_KIND] == KIND_ALIGNMENT
    assert run.data.params["max_metric_calls"] == "120"
    # The page polls; here the test does, with a timeout.
    deadline = time.monotonic() + 90
    while jobs.status(run_id).active and time.monotonic() < deadline:
        time.sleep(0.5)
    final = jobs.status(run_id)
    assert final.status == "finished", final.error
    assert final.judge_version is not None
    at.run()
    _ok(at)
    assert any("Finished" in s.value for s in at.success)
    assert len(at.get("plotly_chart")) == 1  # the progress chart
    # The run's totals; the demo models have no price, which is said, never "$0".
    (usage,) = [c.value for c in at.caption if c.value.startswith("Model usage:")]
    assert re.fullmatch(r"Model usage: [\d,]+ calls · [\d,]+ tokens · price unknown", usage)
    runs = _frame(at, "run id")
    assert run_id in set(runs["run id"])
    assert f"run_explorer?run={run_id}" in set(runs["open"])


def test_preflight_error_blocks_launch(demo_store):
    crit = create_criterion(
        demo_store, "tone", "pass_fail", "Is {{ outputs }} polite to the customer?"
    )
    ids = list(dict.fromkeys(lab.trace_id for lab in current_labels(demo_store)))[:4]
    for i, tid in enumerate(ids):
        set_label(tid, crit, "maria.chen", i % 2 == 0, "ok")
    at = _align(align_criterion="tone")
    assert not at.exception
    assert at.selectbox(key="align_criterion").value == "tone"
    (err,) = [e.value for e in at.error]
    assert "at least 10 labeled traces" in err and "4 are labeled" in err
    assert at.button(key="align_launch").disabled
    assert "align_run" not in at.session_state
    assert jobs.list_jobs(demo_store) == []


def _fake_job(experiment_id: str, pid: int, identity: str | None = None) -> str:
    """A running GEPA job as :func:`jobs.launch` records it, its process being ``pid``."""
    run = mlflow.MlflowClient().create_run(
        experiment_id,
        tags={
            TAG_KIND: KIND_ALIGNMENT,
            rec.TAG_STATUS: "running",
            rec.TAG_OPTIMIZER: "gepa",
            rec.TAG_JUDGE: "support_quality",
            rec.TAG_PID: str(pid),
            rec.TAG_HOST: socket.gethostname(),
            jobs.TAG_PROCESS: identity or jobs.process_identity(pid) or "",
            rec.TAG_HEARTBEAT: f"{time.time():.3f}",
        },
    )
    return run.info.run_id


def _page_text(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in ("markdown", "warning") for e in at.get(kind))


def test_a_watched_job_that_is_killed_shows_interrupted_with_resume(demo_store):
    proc = subprocess.Popen(["sleep", "120"])
    try:
        run_id = _fake_job(demo_store, proc.pid)
        at = _align()  # no run launched here: the page follows the active job by itself
        _ok(at)
        assert "status **running**" in _page_text(at)
        assert not _has(at, "align_resume") and _has(at, "align_cancel")
        proc.kill()
        proc.wait()
        at.run()  # the page's own polling (a fragment every 2 s), as AppTest can drive it
        _ok(at)
        text = _page_text(at)
        assert "status **interrupted**" in text and "**Interrupted.**" in text
        assert "alignboard resume" in text
        assert at.session_state["align_run"] == run_id
        assert not at.button(key="align_resume").disabled
        # The runs table agrees at once (its 5 s cache is refreshed when it is behind).
        assert _frame(at, "run id").set_index("run id").loc[run_id, "status"] == "interrupted"
    finally:
        proc.kill()
        proc.wait()


def test_opening_the_page_after_a_crash_shows_the_interrupted_run(demo_store):
    proc = subprocess.Popen(["sleep", "120"])
    identity = jobs.process_identity(proc.pid)
    proc.kill()
    proc.wait()
    run_id = _fake_job(demo_store, proc.pid, identity)
    at = _align()
    _ok(at)
    assert at.session_state["align_run"] == run_id
    assert "status **interrupted**" in _page_text(at)
    assert _has(at, "align_resume")
    assert _frame(at, "run id").set_index("run id").loc[run_id, "status"] == "interrupted"


def _has(at: AppTest, key: str) -> bool:
    return any(b.key == key for b in at.button)


# ---- Launch runs what the form shows; one click, one run ------------------------------


def _alignment_runs(experiment_id: str) -> list:
    return mlflow.MlflowClient().search_runs(
        [experiment_id], filter_string=f"tags.`{TAG_KIND}` = '{KIND_ALIGNMENT}'"
    )


def _stop(run_ids) -> None:
    for run_id in run_ids:
        jobs.cancel(run_id)
    for run_id in run_ids:
        jobs.wait(run_id, timeout_s=180)


def test_launch_without_apply_starts_what_the_form_shows_with_the_advanced_options(demo_store):
    from core.cli import _align_settings, build_parser
    from core.optimization.engine import load_settings

    at = _align()
    _ok(at)
    at.selectbox(key="align_optimizer").set_value("memalign")
    at.number_input(key="align_budget").set_value(130)
    at.text_input(key="align_reflection").set_value("openai:/distiller")
    at.text_input(key="align_reflection_base_url").set_value("http://127.0.0.1:9/v1")
    at.text_input(key="align_embedding_model").set_value("openai:/embedder")
    at.text_input(key="align_embedding_base_url").set_value("http://127.0.0.1:9/v1")
    at.number_input(key="align_retrieval_k").set_value(7)
    at.multiselect(key="align_reviewers").set_value(["maria.chen"])
    at.button(key="align_launch").click().run()  # no "Apply and check" first
    _ok(at)
    run_id = at.session_state["align_run"]
    try:
        launched = load_settings(run_id)
        # The pre-flight shown is the launched one's.
        assert {m.label: m.value for m in at.metric}["Optimizer"] == "memalign"
        name = mlflow.get_experiment(demo_store).name
        flags = ["align", "--experiment", name, "--judge", "support_quality",
                 "--optimizer", "memalign", "--model", "demo:/judge",
                 "--reflection-model", "openai:/distiller",
                 "--reflection-base-url", "http://127.0.0.1:9/v1",
                 "--embedding-model", "openai:/embedder",
                 "--embedding-base-url", "http://127.0.0.1:9/v1",
                 "--max-metric-calls", "130", "--retrieval-k", "7",
                 "--reviewer", "maria.chen"]  # fmt: skip
        cli = _align_settings(build_parser().parse_args(flags))
        assert launched.to_dict() == cli.to_dict()
    finally:
        _stop([run_id])  # its models' server does not exist: the job fails on its own


def test_a_double_click_on_launch_makes_one_run_and_a_second_needs_confirmation(demo_store):
    at = _align()
    at.number_input(key="align_budget").set_value(5000)  # keeps the first job running
    at.button(key="align_launch").click().run()
    _ok(at)
    first = at.session_state["align_run"]
    runs = [first]
    try:
        at.button(key="align_launch").click().run()  # the second click of a double click
        assert [r.info.run_id for r in _alignment_runs(demo_store)] == [first]
        assert at.session_state["align_run"] == first
        assert any("already" in e.value and first in e.value for e in at.error)
        # The page shows the active run and asks before starting another alongside it.
        assert any(first in w.value for w in at.warning)
        at.checkbox(key=f"align_concurrent_{first}").check()
        at.button(key="align_launch").click().run()
        _ok(at)
        second = at.session_state["align_run"]
        runs.append(second)
        assert second != first and len(_alignment_runs(demo_store)) == 2
        # The confirmation was for the first run: a third needs one for the second.
        assert at.checkbox(key=f"align_concurrent_{second}").value is False
        at.button(key="align_launch").click().run()
        assert len(_alignment_runs(demo_store)) == 2
    finally:
        _stop(runs)


# ---- models and their servers, register-if-cancelled -----------------------------------


def test_every_model_has_a_base_url_field_and_a_bad_one_is_explained(demo_store):
    at = _align()
    _ok(at)
    for key in ("align_base_url", "align_reflection_base_url", "align_embedding_base_url"):
        box = at.text_input(key=key)
        assert box.value == "" and "blank = the provider's own" in box.help
    at.text_input(key="align_base_url").set_value("localhost:8080/v1")
    at.button(key="align_check").click().run()
    assert not at.exception
    # The builder's ModelError, as a sentence in the form (no traceback), and no launch.
    assert any("must start with http:// or https://" in e.value for e in at.error)
    assert at.button(key="align_launch").disabled


def test_register_if_cancelled_is_off_by_default_and_launched_when_ticked(demo_store):
    from core.optimization.engine import load_settings

    at = _align()
    assert at.checkbox(key="align_register_cancelled").value is False
    at.checkbox(key="align_register_cancelled").check()
    at.number_input(key="align_budget").set_value(5000)  # still running when cancelled
    at.button(key="align_launch").click().run()
    _ok(at)
    run_id = at.session_state["align_run"]
    try:
        assert load_settings(run_id).register_if_cancelled is True
    finally:
        _stop([run_id])


# ---- the form keeps its choices when you come back -------------------------------------


def test_the_form_keeps_every_choice_after_another_page(demo_store):
    at = _align()
    at.selectbox(key="align_optimizer").set_value("memalign")
    at.text_input(key="align_base_url").set_value("http://127.0.0.1:8080/v1")
    at.text_input(key="align_embedding_model").set_value("openai:/embedder")
    at.text_input(key="align_embedding_base_url").set_value("http://127.0.0.1:8081/v1")
    at.number_input(key="align_budget").set_value(140)
    at.number_input(key="align_retrieval_k").set_value(9)
    at.multiselect(key="align_reviewers").set_value(["maria.chen"])
    at.checkbox(key="align_register_cancelled").check()
    at.text_area(key="align_instructions").set_value(
        "Judge {{ outputs }} against {{ inputs }}: edited."
    )
    at.button(key="align_check").click().run()
    _ok(at)
    at.switch_page("app_pages/overview.py").run()
    assert not at.exception
    assert "align_optimizer" not in at.session_state  # Streamlit dropped the widget's value
    at.switch_page("app_pages/align.py").run()
    _ok(at)
    assert at.selectbox(key="align_optimizer").value == "memalign"
    assert at.text_input(key="align_base_url").value == "http://127.0.0.1:8080/v1"
    assert at.text_input(key="align_embedding_model").value == "openai:/embedder"
    assert at.text_input(key="align_embedding_base_url").value == "http://127.0.0.1:8081/v1"
    assert at.number_input(key="align_budget").value == 140
    assert at.number_input(key="align_retrieval_k").value == 9
    assert at.multiselect(key="align_reviewers").value == ["maria.chen"]
    assert at.checkbox(key="align_register_cancelled").value is True
    assert at.text_area(key="align_instructions").value.endswith("edited.")
    # And the check shown is of those settings.
    assert {m.label: m.value for m in at.metric}["Optimizer"] == "memalign"


# ---- run pickers show the current status -----------------------------------------------


def test_the_run_picker_labels_show_a_run_finished_seconds_ago(demo_store):
    procs = [subprocess.Popen(["sleep", "120"]) for _ in range(2)]
    try:
        older = _fake_job(demo_store, procs[0].pid)
        time.sleep(0.05)
        newer = _fake_job(demo_store, procs[1].pid)  # the one the progress panel follows
        at = _align()
        _ok(at)
        assert at.session_state["align_run"] == newer
        # A run that has logged no usage yet says when it will be counted.
        assert "Model usage: tokens and cost are counted at the end of the run" in [
            c.value for c in at.caption
        ]

        def label(run_id: str) -> str:
            box = at.selectbox(key="align_watch")
            return next(o for o in box.options if run_id[:8] in o)

        assert " · running · " in label(older)
        # The older run ends (not the one watched): its label says so at the next draw,
        # though the list of runs was read less than its cache's 5 s ago.
        rec.set_status(mlflow.MlflowClient(), older, "finished")
        at.run()
        _ok(at)
        assert " · finished · " in label(older)
        assert " · running · " in label(newer)
        assert _frame(at, "run id").set_index("run id").loc[older, "status"] == "finished"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


# ---- Realign ---------------------------------------------------------------------------


def _unlabeled_train_traces(experiment_id: str, n: int) -> list[str]:
    from core.labeling.splits import assign_split

    labeled = {lab.trace_id for lab in current_labels(experiment_id, "support_quality")}
    ids = [
        t.info.trace_id
        for t in mlflow.MlflowClient().search_traces(
            locations=[experiment_id], max_results=200, include_spans=False
        )
    ]
    return [t for t in ids if t not in labeled and assign_split(t) == "train"][:n]


def test_realign_from_the_page_adds_the_new_labels_as_a_new_version(demo_store):
    from core.labeling.criteria import list_criteria
    from core.optimization.engine import run_alignment
    from core.optimization.settings import build_settings

    at = _align()
    _ok(at)
    box = " ".join(c.value for c in at.caption)
    assert "has no MemAlign version yet" in box
    assert not _has(at, "align_realign")

    crit = next(c for c in list_criteria(demo_store) if c.name == "support_quality")
    aligned = run_alignment(build_settings(demo_store, crit, optimizer="memalign"))
    assert aligned.judge_version == 1
    st_cache_clear()  # aligned outside the page (like the CLI): seen within the offer's TTL
    at.run()
    _ok(at)
    assert at.button(key="align_realign").disabled
    assert any("Nothing new since v1" in c.value for c in at.caption)

    new = _unlabeled_train_traces(demo_store, 2)
    assert len(new) == 2
    for tid in new:
        set_label(tid, crit, "maria.chen", True, "Answers the question politely.")
    st_cache_clear()  # labels written by another process show within the offer's TTL
    at.run()
    _ok(at)
    button = at.button(key="align_realign")
    assert not button.disabled and button.label == "Realign v1 with new labels (2 new)"
    button.click().run()
    _ok(at)
    (done,) = [s.value for s in at.success if "Registered support_quality v2" in s.value]
    assert "held-out accuracy" in done and "kappa" in done
    result = at.session_state["align_realign_result"]
    assert result.judge_version == 2 and result.optimizer == "memalign"
    assert result.run_id in set(_frame(at, "run id")["run id"])  # listed at once
    # Both new traces are in the new version's memory: nothing is new any more.
    assert at.button(key="align_realign").disabled
    assert any("Nothing new since v2" in c.value for c in at.caption)


def st_cache_clear() -> None:
    import streamlit as st

    st.cache_data.clear()
