"""The Optimize page, and optimization runs in the Run explorer and on the Versions page,
driven through AppTest on the demo store (demo prompt, dataset and aligned judge)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import mlflow
import pytest
from streamlit.testing.v1 import AppTest

from core.errors import ValidationError
from core.labeling.queues import get_queue, queue_items
from core.optimization import jobs
from core.optimization import recorder as rec
from core.optimization.engine import run_prompt_optimization
from core.optimization.prompt_preflight import build_prompt_settings
from core.store.prompts import load_prompt
from core.views.prompt_runs import KIND_PROMPT, list_prompt_runs

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
PROMPT = "northwind-support"
JOB_TIMEOUT_S = 120


def _page(page: str, **query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    at.session_state["shell_reviewer"] = "maria.chen"
    for k, v in query.items():
        at.query_params[k] = v
    return at.switch_page(f"app_pages/{page}.py").run()


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _first_messages(n: int = 3) -> list[str]:
    from core.io.prompt_data import load_rows, parse_source

    return [r.inputs["message"] for r in load_rows(parse_source("dataset:northwind-messages"))][:n]


def test_the_page_renders_on_the_demo_with_three_rendered_prompts(prompt_demo):
    at = _page("optimize")
    _ok(at)
    assert at.title[0].value == "Optimize"
    assert at.selectbox(key="optimize_prompt").value == PROMPT
    assert at.selectbox(key="optimize_ref").value == f"{PROMPT}@production"
    assert at.selectbox(key="optimize_dataset").value == "northwind-messages"
    # The mapping defaults to the same-named field.
    assert at.selectbox(key="optimize_map_message").value == "message"
    assert at.multiselect(key="optimize_judges").value == ["support_quality@production"]
    assert at.text_input(key="optimize_task_model").value == "demo:/app"
    # The template, then one rendered prompt per first row: the row's message is in it.
    codes = [c.value for c in at.code]
    assert "{{ message }}" in codes[0]
    previews = codes[1:4]
    for text, message in zip(previews, _first_messages(), strict=True):
        assert message in text and "{{" not in text
    assert any("stand-in application, not an LLM" in i.value for i in at.info)
    assert any("Pre-flight passed" in s.value for s in at.success)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Rows: train / val / test"] == "36 / 16 / 8"
    assert metrics["Budget"] == "360 calls"
    assert metrics["Estimated calls"].startswith("~")
    assert metrics["Estimated tokens"].startswith("~")
    assert not at.button(key="optimize_launch").disabled


def test_a_variable_no_field_provides_is_refused_then_mapped(prompt_demo, tmp_path):
    path = tmp_path / "inputs.jsonl"
    rows = [
        {"id": f"row-{i:02d}", "inputs": {"text": f"Where is my order number {i}?"}}
        for i in range(40)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    at = _page("optimize")
    at.radio(key="optimize_source_kind").set_value("file").run()
    at.text_input(key="optimize_path").set_value(str(path)).run()
    assert not at.exception
    # No field is named like {{ message }}: the mapping starts unset and pre-flight refuses.
    assert at.selectbox(key="optimize_map_message").value == ""
    (err,) = [e.value for e in at.error]
    assert "{{ message }}" in err and "Fields available: text" in err
    assert at.button(key="optimize_launch").disabled
    assert not any("Finished" in s.value for s in at.success)
    # Mapped to the field there is, the preview renders each row's text.
    at.selectbox(key="optimize_map_message").set_value("text")
    at.button(key="optimize_check").click().run()
    _ok(at)
    previews = [c.value for c in at.code][1:4]
    assert "Where is my order number 0?" in previews[0]
    assert not at.button(key="optimize_launch").disabled
    assert list_prompt_runs(prompt_demo) == []


def test_launch_starts_exactly_one_run_with_the_forms_settings(prompt_demo):
    at = _page("optimize")
    # Edited and launched without "Apply and check": Launch submits what the form shows.
    at.number_input(key="optimize_budget").set_value(60)
    at.number_input(key="optimize_workers").set_value(4)
    at.text_input(key="optimize_alias").set_value("trial")
    started = time.monotonic()
    at.button(key="optimize_launch").click().run()
    assert time.monotonic() - started < 20, "launch must not wait for the job"
    _ok(at)
    run_id = at.session_state["optimize_run"]
    (job,) = list_prompt_runs(prompt_demo)
    assert job.run_id == run_id
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.data.tags[rec.TAG_KIND] == KIND_PROMPT
    params = run.data.params
    assert params["max_metric_calls"] == "60" and params["workers"] == "4"
    assert params["alias"] == "trial" and params["prompt"] == f"{PROMPT}@1"
    assert params["judges"] == "support_quality@1" and params["task_model"] == "demo:/app"
    final = jobs.wait(run_id, timeout_s=JOB_TIMEOUT_S)
    assert final.status == "finished", final.error
    assert load_prompt(f"{PROMPT}@trial").version == final.prompt_version == 2
    at.run()
    _ok(at)
    assert any(f"{PROMPT} v2 registered" in s.value for s in at.success)
    assert len(at.get("plotly_chart")) == 1  # the progress chart
    # The run's totals; the demo models have no price, which is said, never "$0".
    (usage,) = [c.value for c in at.caption if c.value.startswith("Model usage:")]
    assert re.fullmatch(r"Model usage: [\d,]+ calls · [\d,]+ tokens · price unknown", usage)
    # The run picker names the run's current status.
    (option,) = at.selectbox(key="optimize_watch").options
    assert " · finished · " in option and run_id[:8] in option
    # A second click on the same form render launched nothing more.
    assert len(list_prompt_runs(prompt_demo)) == 1


def _optimized(eid: str, optimizer: str = "gepa"):
    settings = build_prompt_settings(
        eid,
        prompts=[f"{PROMPT}@production"],
        dataset="dataset:northwind-messages",
        task_model="demo:/app",
        judges=["support_quality@production"],
        max_metric_calls=80,
        workers=4,
        optimizer=optimizer,
    )
    return run_prompt_optimization(settings)


def test_the_run_explorer_opens_an_optimization_run_with_outputs_side_by_side(prompt_demo):
    result = _optimized(prompt_demo)
    at = _page("run_explorer", run=result.run_id)
    _ok(at)
    subheaders = [s.value for s in at.subheader]
    for heading in ("Iterations", "Pareto frontier", "Lineage", "Outputs side by side"):
        assert heading in subheaders
    assert subheaders[-1] == "Best prompt template"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Prompt version"] == "v2"
    assert any(i.value.startswith("Improved") for i in at.info)
    assert any("stand-in application" in i.value for i in at.info)
    assert len(at.get("plotly_chart")) == 3  # iterations, frontier, lineage
    assert any("<ins" in h.proto.body for h in at.get("html"))  # the template's word diff
    # Both outputs of every held-out input, with the judge's verdicts and rationales.
    codes = [c.value for c in at.code]
    outputs = [c for c in codes if c.startswith("[demo stand-in] ")]
    assert len(outputs) == 2 * result.test_size
    texts = [t.value for t in at.text]
    assert sum(t.startswith("message: ") for t in texts) == result.test_size
    assert any("the instructions say that means fail" in t for t in texts)
    verdicts = [c.value for c in at.caption if c.value.startswith("support_quality v1: ")]
    assert len(verdicts) == 2 * result.test_size
    scores = next(df.value for df in at.dataframe if "seed score" in df.value.columns)
    assert list(scores["scorer"]) == ["support_quality v1", "overall (aggregated)"]
    assert scores["best score"].iloc[-1] == result.test_score_after
    # Back to the humans: the best version's test outputs go to a review queue.
    at.text_input(key="explorer_queue_name").set_value("optimized-v2")
    at.multiselect(key="explorer_queue_reviewers").set_value(["dev.patel"])
    next(b for b in at.button if b.label.startswith("Send the test outputs")).click().run()
    _ok(at)
    assert any(
        f"Sent {result.test_size} output(s) of {PROMPT}@2 to review queue optimized-v2" in s.value
        for s in at.success
    ), [s.value for s in at.success]
    queue = get_queue(prompt_demo, "optimized-v2")
    assert queue.reviewers == ("dev.patel",) and queue.criteria == ("support_quality",)
    assert len(queue_items(queue)) == result.test_size
    # Another candidate has no held-out outputs, and the page says why.
    seed_or_other = next(
        c for c in at.selectbox(key="explorer_candidate").options if "best" not in c
    )
    at.selectbox(key="explorer_candidate").set_value(
        int(seed_or_other.split()[0].lstrip("#"))
    ).run()
    _ok(at)
    assert any(
        "exist only for the seed and the best" in i.value or "This is the seed" in i.value
        for i in at.info
    )


@pytest.mark.parametrize("optimizer", ["mlflow-gepa", "metaprompt"])
def test_baseline_optimizer_runs_open_with_the_same_views(prompt_demo, optimizer):
    result = _optimized(prompt_demo, optimizer)
    assert result.status == "finished" and result.prompt_version is not None
    at = _page("run_explorer", run=result.run_id)
    _ok(at)
    assert {m.label: m.value for m in at.metric}["Optimizer"] == optimizer
    subheaders = [s.value for s in at.subheader]
    assert {"Iterations", "Lineage", "Outputs side by side"} <= set(subheaders)
    outputs = [c for c in at.code if c.value.startswith("[demo stand-in] ")]
    assert len(outputs) == 2 * result.test_size


def test_the_versions_page_compares_two_prompt_versions_and_promotes_one(prompt_demo):
    result = _optimized(prompt_demo)
    at = _page("versions")
    label = next(o for o in at.selectbox(key="versions_subject").options if "prompt:" in o)
    at.selectbox(key="versions_subject").set_value(label).run()
    _ok(at)
    assert (at.selectbox(key="versions_a").value, at.selectbox(key="versions_b").value) == (1, 2)
    htmls = [h.proto.body for h in at.get("html")]
    assert "<ins" in htmls[1] and "Never say" in htmls[1]
    assert "Held-out judge scores" in [s.value for s in at.subheader]
    assert any("stand-in application" in i.value for i in at.info)
    scores = next(df.value for df in at.dataframe if "v1 score" in df.value.columns)
    assert scores["v2 score"].iloc[-1] == result.test_score_after
    outputs = [c.value for c in at.code if c.value.startswith("[demo stand-in] ")]
    assert len(outputs) == 2 * result.test_size
    # Promotion asks first, then moves production.
    at.button(key="versions_promote_ask").click().run()
    assert any("Point production" in w.value for w in at.warning)
    assert load_prompt(f"{PROMPT}@production").version == 1
    at.button(key="versions_promote_confirm").click().run()
    _ok(at)
    assert load_prompt(f"{PROMPT}@production").version == 2
    assert any("production now points at v2 (was v1)" in s.value for s in at.success)
    assert at.button(key="versions_promote_ask").disabled


def test_the_versions_page_says_when_two_prompt_versions_were_never_scored_together(
    prompt_demo,
):
    from core.store.prompts import register_prompt

    register_prompt(PROMPT, "Answer briefly and never promise refunds.\n\n{{ message }}")
    at = _page("versions")
    label = next(o for o in at.selectbox(key="versions_subject").options if "prompt:" in o)
    at.selectbox(key="versions_subject").set_value(label).run()
    _ok(at)
    notes = [i.value for i in at.info]
    assert any("never scored together" in n for n in notes), notes
    # Never optimized here: nothing to take a dataset and judges from, and it says so.
    assert any("optimize this prompt once" in c.value for c in at.caption)


def test_two_versions_never_scored_together_are_scored_on_demand_as_a_job(prompt_demo):
    import time

    from core.optimization import jobs
    from core.store.prompts import register_prompt

    result = _optimized(prompt_demo)  # v2, from v1: the comparison's defaults come from this run
    v3 = register_prompt(PROMPT, load_prompt(f"{PROMPT}@1").template + '\n- Never say "sorry".')
    at = _page("versions", prompt=PROMPT, a="1", b=str(v3.version))
    _ok(at)
    assert any("never scored together" in i.value for i in at.info)
    assert at.text_input(key="versions_cmp_dataset").value == "dataset:northwind-messages"
    assert at.multiselect(key="versions_cmp_judges").value == ["support_quality@1"]
    at.button(key="FormSubmitter:versions_cmp_form-Score both").click().run()
    _ok(at)
    run_id = at.session_state["versions_cmp_run"][3]
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while jobs.status(run_id).active and time.monotonic() < deadline:
        time.sleep(1)
    assert jobs.status(run_id).status == "finished"
    at.run()
    _ok(at)
    scores = next(df.value for df in at.dataframe if "v1 score" in df.value.columns)
    assert f"v{v3.version} score" in scores.columns
    outputs = [c.value for c in at.code if c.value.startswith("[demo stand-in] ")]
    assert outputs and not any("sorry" in o.lower() for o in outputs[1::2])
    # Nothing was registered by the comparison; the optimization's version is still v2.
    assert load_prompt(PROMPT).version == v3.version and result.prompt_version == 2


def test_an_uploaded_file_becomes_an_evaluation_dataset_to_optimize_on(prompt_demo, tmp_path):
    from core.views.optimize import eval_datasets, save_upload_as_dataset

    rows = [{"id": f"u-{i:02d}", "inputs": {"message": f"Question {i}?"}} for i in range(30)]
    payload = "".join(json.dumps(r) + "\n" for r in rows).encode()
    # The page's Save button calls exactly this with the uploaded bytes (AppTest cannot
    # drive st.file_uploader); the page then selects the new dataset.
    source = save_upload_as_dataset(payload, "support.jsonl", "support", experiment_id=prompt_demo)
    assert source == "dataset:support"
    assert eval_datasets(prompt_demo) == ["northwind-messages", "support"]
    at = _page("optimize")
    at.selectbox(key="optimize_dataset").set_value("support").run()
    _ok(at)
    assert "Question 0?" in [c.value for c in at.code][1]
    # The name is taken now: a second save is refused with what to do.
    with pytest.raises(ValidationError, match="already exists"):
        save_upload_as_dataset(payload, "support.jsonl", "support", experiment_id=prompt_demo)


def test_inputs_of_the_experiments_traces_filtered_by_a_queue_and_mapped_by_path(prompt_demo):
    queue = get_queue(prompt_demo, "support-review")
    at = _page("optimize")
    at.radio(key="optimize_source_kind").set_value("experiment").run()
    assert "support-review" in at.selectbox(key="optimize_queue").options
    at.selectbox(key="optimize_queue").set_value("support-review").run()
    assert not at.exception
    shown = next(c.value for c in at.caption if c.value.startswith("`experiment:"))
    assert f"{len(queue_items(queue))} rows" in shown and "messages.-1.content" in shown
    # The traces hold chat messages: {{ message }} maps to the last message's content.
    at.selectbox(key="optimize_map_message").set_value("messages.-1.content")
    at.button(key="optimize_check").click().run()
    _ok(at)
    preview = [c.value for c in at.code][1]
    assert "Customer message:\n" in preview and "{{" not in preview
    assert not at.button(key="optimize_launch").disabled


def test_cancel_in_the_progress_panel_stops_the_running_optimization(prompt_demo, monkeypatch):
    # Slowed demo models (the job inherits the environment): the run is still going when
    # Cancel is clicked, even where a perfect validation score ends a search early.
    monkeypatch.setenv("ALIGNBOARD_DEMO_LATENCY_MS", "300")
    at = _page("optimize")
    at.number_input(key="optimize_budget").set_value(20000)  # far more than the test waits
    at.button(key="optimize_launch").click().run()
    _ok(at)
    run_id = at.session_state["optimize_run"]
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while jobs.status(run_id).status != "running" and time.monotonic() < deadline:
        time.sleep(0.3)
    at.run()
    assert {m.label: m.value for m in at.metric}["Status"] == "running"
    at.button(key="optimize_cancel").click().run()
    assert not at.exception
    assert jobs.status(run_id).cancel_requested
    final = jobs.wait(run_id, timeout_s=JOB_TIMEOUT_S)
    assert final.status == "cancelled", (final.status, final.error)
    at.run()
    _ok(at)
    assert any(w.value.startswith("**Cancelled — no version registered") for w in at.warning), [
        w.value for w in at.warning
    ]


def test_without_a_registered_judge_the_page_points_to_align_or_a_builtin_scorer(demo_store):
    at = _page("optimize")
    assert not at.exception
    assert at.multiselect(key="optimize_judges").options == []
    assert any("No judge is registered in this experiment yet" in c.value for c in at.caption)
    (err,) = [e.value for e in at.error]
    assert "Choose at least one scorer" in err
    assert at.button(key="optimize_launch").disabled
    at.multiselect(key="optimize_scorers").set_value(["correctness"])
    at.button(key="optimize_check").click().run()
    _ok(at)
    assert not at.button(key="optimize_launch").disabled


def test_launching_the_same_settings_again_while_they_run_asks_first(prompt_demo):
    at = _page("optimize")
    at.number_input(key="optimize_budget").set_value(20000)  # keeps the first job running
    at.button(key="optimize_launch").click().run()
    _ok(at)
    first = at.session_state["optimize_run"]
    launched = [first]
    try:
        # The second click of a double click (same settings): nothing more is started.
        at.button(key="optimize_launch").click().run()
        assert [j.run_id for j in list_prompt_runs(prompt_demo)] == [first]
        assert any("Not launched" in e.value and first in e.value for e in at.error)
        assert any(first in w.value for w in at.warning)
        # Asked and confirmed, a second run of the same settings starts.
        at.checkbox(key=f"optimize_alongside_{first}").check()
        at.button(key="optimize_launch").click().run()
        second = at.session_state["optimize_run"]
        launched.append(second)
        assert second != first and len(list_prompt_runs(prompt_demo)) == 2
        # Other settings are not a repeat: they launch at once.
        at.number_input(key="optimize_seed").set_value(7)
        at.button(key="optimize_launch").click().run()
        launched.append(at.session_state["optimize_run"])
        assert len(set(launched)) == 3 == len(list_prompt_runs(prompt_demo))
    finally:
        for run_id in launched:
            jobs.cancel(run_id)
        for run_id in launched:
            jobs.wait(run_id, timeout_s=JOB_TIMEOUT_S)


def test_links_open_a_runs_two_versions_and_optimize_from_a_version(prompt_demo):
    from core.store.prompts import register_prompt

    result = _optimized(prompt_demo)
    register_prompt(PROMPT, "Answer briefly.\n\n{{ message }}")  # v3: the newest now
    at = _page("run_explorer", run=result.run_id)
    _ok(at)
    (link,) = [p.proto for p in at.get("page_link") if p.proto.page.endswith("versions")]
    assert link.query_string == f"prompt={PROMPT}&a=1&b=2"
    # Followed, the link opens exactly those two versions (not the newest two).
    at = _page("versions", prompt=PROMPT, a="1", b="2")
    _ok(at)
    assert at.selectbox(key="versions_subject").value.startswith(f"prompt: {PROMPT}")
    assert (at.selectbox(key="versions_a").value, at.selectbox(key="versions_b").value) == (1, 2)
    assert "Held-out judge scores" in [s.value for s in at.subheader]
    (optimize,) = [p.proto for p in at.get("page_link") if p.proto.page.endswith("optimize")]
    assert optimize.query_string == f"prompt={PROMPT}&ref={PROMPT}%402"
    # The Optimize page opened from it starts from that version.
    at = _page("optimize", prompt=PROMPT, ref=f"{PROMPT}@2")
    _ok(at)
    assert at.selectbox(key="optimize_ref").value == f"{PROMPT}@2"
    assert "Never say" in at.code[0].value


def test_the_form_keeps_every_choice_after_another_page(prompt_demo):
    at = _page("optimize")
    at.selectbox(key="optimize_optimizer").set_value("metaprompt")
    at.text_input(key="optimize_task_model").set_value("openai:/support-app")
    at.text_input(key="optimize_task_base_url").set_value("http://127.0.0.1:8080/v1")
    at.text_input(key="optimize_reflection_base_url").set_value("http://127.0.0.1:8081/v1")
    at.number_input(key="optimize_budget").set_value(70)
    at.number_input(key="optimize_minibatch").set_value(5)
    at.text_input(key="optimize_alias").set_value("trial")
    at.checkbox(key="optimize_register_cancelled").check()
    at.selectbox(key="optimize_map_message").set_value("")
    at.button(key="optimize_check").click().run()
    assert not at.exception
    at.switch_page("app_pages/overview.py").run()
    assert not at.exception
    assert "optimize_optimizer" not in at.session_state  # Streamlit dropped the widget's value
    at.switch_page("app_pages/optimize.py").run()
    assert not at.exception
    assert at.selectbox(key="optimize_optimizer").value == "metaprompt"
    assert at.text_input(key="optimize_task_model").value == "openai:/support-app"
    assert at.text_input(key="optimize_task_base_url").value == "http://127.0.0.1:8080/v1"
    assert at.text_input(key="optimize_reflection_base_url").value == "http://127.0.0.1:8081/v1"
    assert at.number_input(key="optimize_budget").value == 70
    assert at.number_input(key="optimize_minibatch").value == 5
    assert at.text_input(key="optimize_alias").value == "trial"
    assert at.checkbox(key="optimize_register_cancelled").value is True
    assert at.selectbox(key="optimize_map_message").value == ""


def test_base_urls_say_what_blank_means_and_register_if_cancelled_is_launched(prompt_demo):
    from core.optimization.engine import load_any_settings

    at = _page("optimize")
    for key in ("optimize_task_base_url", "optimize_reflection_base_url"):
        assert "blank = the provider's own" in at.text_input(key=key).help
    assert at.checkbox(key="optimize_register_cancelled").value is False
    at.checkbox(key="optimize_register_cancelled").check()
    at.number_input(key="optimize_budget").set_value(20000)  # still running when cancelled
    at.button(key="optimize_launch").click().run()
    _ok(at)
    run_id = at.session_state["optimize_run"]
    try:
        assert load_any_settings(run_id).register_if_cancelled is True
    finally:
        jobs.cancel(run_id)
        jobs.wait(run_id, timeout_s=JOB_TIMEOUT_S)


def test_the_application_temperature_and_max_tokens_are_launched_and_kept(prompt_demo):
    from core.optimization.engine import load_any_settings

    at = _page("optimize")
    # Blank by default: the model's own settings, as before.
    assert at.number_input(key="optimize_task_temperature").value is None
    assert at.number_input(key="optimize_task_max_tokens").value is None
    assert "0.8 on llama.cpp" in at.number_input(key="optimize_task_temperature").help
    at.number_input(key="optimize_task_temperature").set_value(0.0)
    at.number_input(key="optimize_task_max_tokens").set_value(256)
    at.number_input(key="optimize_budget").set_value(20000)  # still running when cancelled
    at.button(key="optimize_launch").click().run()
    _ok(at)
    run_id = at.session_state["optimize_run"]
    try:
        settings = load_any_settings(run_id)
        assert (settings.task_temperature, settings.task_max_tokens) == (0.0, 256)
        params = mlflow.MlflowClient().get_run(run_id).data.params
        assert (params["task_temperature"], params["task_max_tokens"]) == ("0.0", "256")
    finally:
        jobs.cancel(run_id)
        jobs.wait(run_id, timeout_s=JOB_TIMEOUT_S)
    at.switch_page("app_pages/overview.py").run()
    at.switch_page("app_pages/optimize.py").run()
    assert at.number_input(key="optimize_task_temperature").value == 0.0
    assert at.number_input(key="optimize_task_max_tokens").value == 256
