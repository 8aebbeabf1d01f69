"""Every page, driven through Streamlit's AppTest on a copy of the seeded demo store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import mlflow
import pytest
from streamlit.testing.v1 import AppTest

from core.agreement import cohen_kappa
from core.labeling.labels import current_labels, get_label
from core.labeling.session import load_session
from core.labeling.splits import assign_split
from core.labeling.traces import count_traces
from core.optimization import jobs
from tests.support.judges import log_judge_verdict

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
PAGES = ["overview", "traces", "label", "agreement", "scores"]
CRIT = "support_quality"


def _app(reviewer: str | None = None, trace: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if reviewer:
        at.session_state["shell_reviewer"] = reviewer
    if trace:
        at.query_params["trace"] = trace
    return at


def _page(at: AppTest, name: str) -> AppTest:
    return at.switch_page(f"app_pages/{name}.py").run()


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _all_text(at: AppTest) -> str:
    return "\n".join(str(t.value) for t in [*at.text, *at.code])


def _progress(at: AppTest) -> str:
    (bar,) = at.get("progress")
    return bar.proto.text


def test_every_page_renders_on_the_demo_store(demo_store):
    at = _app("maria.chen").run()
    _ok(at)
    assert at.title[0].value == "Overview"
    assert at.metric[0].value == "84"
    for name in PAGES:
        _page(at, name)
        _ok(at)
    # Without a reviewer the Label page asks for a name instead of failing.
    fresh = _page(_app(), "label")
    _ok(fresh)
    assert "Pick or type your name" in fresh.info[0].value


def test_label_page_opens_at_first_pending_and_saves_human_feedback(demo_store):
    session = load_session(demo_store, CRIT, "maria.chen", "support-review")
    first = session.first_pending()
    at = _page(_app("maria.chen"), "label")
    _ok(at)
    assert at.session_state["label_trace"] == first
    assert _progress(at).startswith(f"{session.done_count} / 84 labeled")

    at.button(key="label_value_1").click().run()  # "Fail", shortcut 2
    assert at.session_state["label_value"] is False
    at.text_area(key="label_rationale").set_value('Says "refund issued": not allowed.')
    at.button(key="label_submit").click().run()
    _ok(at)

    fb = [
        a
        for a in mlflow.get_trace(first).info.assessments
        if a.name == CRIT and a.source.source_id == "maria.chen" and a.valid is not False
    ]
    assert len(fb) == 1
    assert fb[0].source.source_type == "HUMAN"
    assert fb[0].value is False and fb[0].rationale == 'Says "refund issued": not allowed.'
    assert _progress(at).startswith(f"{session.done_count + 1} / 84 labeled")
    nxt = at.session_state["label_trace"]
    assert nxt != first and nxt == session.with_done(first).next_pending(first)
    assert at.text_area(key="label_rationale").value == ""  # a fresh form for the next trace

    # Back to the earlier trace: the form is pre-filled with the label just given.
    at.button(key="label_prev").click().run()
    while at.session_state["label_trace"] != first:
        at.button(key="label_prev").click().run()
    assert at.session_state["label_value"] is False
    assert at.text_area(key="label_rationale").value.startswith("Says")


def test_blind_mode_hides_other_labels_until_the_reviewer_labels(demo_store):
    dev = current_labels(demo_store, criterion=CRIT, reviewer="dev.patel")
    target = next(lab for lab in dev if lab.rationale)
    at = _page(_app("new.reviewer", trace=target.trace_id), "label")
    _ok(at)
    assert at.session_state["label_trace"] == target.trace_id
    assert target.rationale not in _all_text(at)
    assert any("hidden until you label" in c.value for c in at.caption)

    at.button(key="label_value_0").click().run()
    at.button(key="label_submit").click().run()
    _ok(at)
    assert get_label(target.trace_id, CRIT, "new.reviewer").value is True
    at.session_state["label_trace"] = target.trace_id
    at.run()
    assert target.rationale in _all_text(at)

    # With blind mode off, others' labels show before labeling.
    other = next(lab for lab in dev if lab.rationale and lab.trace_id != target.trace_id)
    at.session_state["label_trace"] = other.trace_id
    at.toggle(key="label_blind").set_value(False).run()
    assert at.session_state["label_trace"] == other.trace_id
    assert other.rationale in _all_text(at)


def test_rationale_is_required_when_disagreeing_with_the_judge(demo_store):
    unlabeled = load_session(demo_store, CRIT, "maria.chen", "support-review").first_pending()
    log_judge_verdict(unlabeled, "pass", rationale="looks fine to me")
    at = _page(_app("ann", trace=unlabeled), "label")
    assert at.session_state["label_trace"] == unlabeled
    at.button(key="label_value_1").click().run()  # Fail: disagrees with the judge's Pass
    assert any("Rationale required" in c.value for c in at.caption)
    at.button(key="label_submit").click().run()
    assert not at.exception
    assert "disagrees with the judge" in at.error[0].value
    assert get_label(unlabeled, CRIT, "ann") is None
    assert at.session_state["label_trace"] == unlabeled

    at.text_area(key="label_rationale").set_value('It promises "same-day refund".')
    at.button(key="label_submit").click().run()
    _ok(at)
    assert get_label(unlabeled, CRIT, "ann").rationale == 'It promises "same-day refund".'

    # Agreeing with the judge needs no rationale; "always" makes it required anyway.
    at.session_state["label_trace"] = unlabeled
    at.run()
    at.button(key="label_value_0").click().run()
    at.text_area(key="label_rationale").set_value("")
    at.button(key="label_submit").click().run()
    _ok(at)
    assert get_label(unlabeled, CRIT, "ann").value is True


def test_traces_page_filters_and_import_preview_writes_nothing_for_a_bad_file(demo_store):
    at = _page(_app("maria.chen"), "traces")
    _ok(at)
    assert at.dataframe[0].value.shape[0] == 25
    at.segmented_control(key="traces_show").set_value("Unlabeled").run()
    _ok(at)
    assert at.dataframe[0].value.shape[0] == 21
    at.text_input(key="traces_text").set_value("merino").run()
    assert 1 <= at.dataframe[0].value.shape[0] <= 21

    before = count_traces(demo_store)
    bad = "\n".join(
        [
            json.dumps({"id": "ok-1", "inputs": "q", "outputs": "a"}),
            "{not json",
            json.dumps(
                {
                    "id": "bad-2",
                    "inputs": "q",
                    "outputs": "a",
                    "labels": [{"criterion": CRIT, "value": "maybe", "reviewer": "x"}],
                }
            ),
        ]
    )
    at.file_uploader(key="traces_upload").set_value(("bad.jsonl", bad.encode(), "application/json"))
    at.run()
    assert not at.exception
    errors = at.dataframe[1].value  # [0] is the trace list
    assert list(errors["line"]) == [2, 3]
    assert "maybe" in errors["problem"].iloc[1]
    assert "Nothing has been written" in at.error[0].value
    assert at.button(key="traces_import").disabled
    assert count_traces(demo_store) == before


def test_traces_page_imports_a_good_file_after_the_preview(demo_store):
    good = "\n".join(
        json.dumps({"id": f"new-{i}", "inputs": f"q{i}", "outputs": f"a{i}"}) for i in range(3)
    )
    at = _page(_app("maria.chen"), "traces")
    at.file_uploader(key="traces_upload").set_value(("new.jsonl", good.encode(), "text/plain"))
    at.run()
    _ok(at)
    assert count_traces(demo_store) == 84  # preview only
    at.button(key="traces_import").click().run()
    _ok(at)
    assert "Imported 3 traces" in at.success[0].value
    assert count_traces(demo_store) == 87


def test_agreement_page_shows_the_reviewer_kappa_and_disagreements(demo_store):
    at = _page(_app("maria.chen"), "agreement")
    _ok(at)
    maria = {
        lab.trace_id: lab.value
        for lab in current_labels(demo_store, criterion=CRIT, reviewer="maria.chen")
    }
    dev = {
        lab.trace_id: lab.value
        for lab in current_labels(demo_store, criterion=CRIT, reviewer="dev.patel")
    }
    pairs = at.dataframe[0].value
    row = pairs.iloc[0]
    assert {row["reviewer A"], row["reviewer B"]} == {"maria.chen", "dev.patel"}
    assert row["overlap n"] == 23
    assert row["Cohen's kappa"] == pytest.approx(cohen_kappa(maria, dev))

    ref = at.selectbox(key="agree_reference")
    assert ref.options == ["humans (majority)", "dev.patel", "maria.chen"]
    # Without a judge, the page opens on the two reviewers against each other.
    assert ref.value.name == "dev.patel"
    assert at.selectbox(key="agree_predicted").value.name == "maria.chen"
    _ok(at)
    table = at.dataframe[-1].value
    assert len(table) > 0
    assert {"maria.chen rationale", "dev.patel rationale"} <= set(table.columns)
    first = table.iloc[0]
    assert first["maria.chen"] != first["dev.patel"]
    assert first["maria.chen rationale"] and first["dev.patel rationale"]
    tid = first["open"].removeprefix("label?trace=")
    link = at.get("page_link")[-1]
    assert link.proto.page == "label" and link.proto.query_string == f"trace={tid}"


def test_agreement_page_compares_a_judge_with_the_humans(demo_store):
    maria = current_labels(demo_store, criterion=CRIT, reviewer="maria.chen")[:12]
    for lab in maria:
        log_judge_verdict(lab.trace_id, "pass", source_id="judge-v1")
    at = _page(_app("maria.chen"), "agreement")
    _ok(at)
    assert at.selectbox(key="agree_predicted").value.name == "judge-v1"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["TPR"] == "1.00" and metrics["TNR"] == "0.00"
    assert any("95% CI" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) == 2  # kappa heatmap + confusion matrix
    table = at.dataframe[-1].value
    assert set(table["judge: judge-v1"]) == {"Pass"}
    assert set(table["judge: judge-v1 rationale"]) == {"judge's reasoning"}


@pytest.mark.parametrize("where", ["inputs", "outputs"])
def test_trace_content_is_rendered_only_as_text(demo_store, where):
    from core.io.importer import import_file

    payloads = [
        "<script>window.__pwned = 1</script>",
        '<img src=x onerror="window.__pwned=2">',
        "**bold** [click](javascript:alert(1)) <b>raw html</b>",
    ]
    record = {
        "id": f"inject-{where}",
        "inputs": {"question": "plain"},
        "outputs": {"response": "ok"},
    }
    record[where] = {
        "messages": [{"role": "user", "content": payloads[0]}],
        "note": payloads[1],
        "extra": {"html": payloads[2]},
    }
    path = Path(mlflow.get_tracking_uri().removeprefix("sqlite:///")).parent / "inject.jsonl"
    path.write_text(json.dumps(record) + "\n")
    result = import_file(path, "alignboard-demo", on_existing="skip")
    (tid,) = result.trace_ids

    at = _page(_app("maria.chen", trace=tid), "label")
    _ok(at)
    assert at.session_state["label_trace"] == tid
    texts = _all_text(at) + "\n".join(json.dumps(j.proto.body) for j in at.json)
    assert payloads[0] in texts and payloads[1] in texts
    assert "raw html" in texts
    markdownish = [
        *at.markdown,
        *at.caption,
        *at.title,
        *at.header,
        *at.subheader,
        *at.info,
        *at.warning,
        *at.error,
        *at.success,
    ]
    for el in markdownish:
        for p in payloads:
            for fragment in ("<script", "onerror", "javascript:", "<b>raw"):
                assert fragment not in str(el.value), (el, p)
    assert not at.get("html")


def test_agreement_page_scores_a_registered_version_and_compares_it(demo_store):
    from core.optimization.mlflow_judge import seed_judge
    from core.optimization.registry import register_version
    from tests.optimization.demo_examples import demo_settings

    version = register_version(
        seed_judge(demo_settings(demo_store, "gepa").judge),
        demo_store,
        run_id=None,
        test_metrics={},
    )
    at = _page(_app("maria.chen"), "agreement")
    _ok(at)
    at.segmented_control(key="agree_split").set_value("test").run()
    at.selectbox(key="agree_score_version").set_value(version)
    submit = next(b for b in at.button if b.label == "Score version")
    started = time.monotonic()
    submit.click().run()
    assert time.monotonic() - started < 15, "scoring runs as a job, not in the page"
    _ok(at)
    run_id = at.session_state["agree_score_run"]
    assert run_id and any("Scoring support_quality" in p.proto.text for p in at.get("progress"))
    final = jobs.wait(run_id, timeout_s=90, poll_s=0.3)
    assert final.status == "finished", final.error
    test_labeled = sum(
        1 for t in current_labels(demo_store, CRIT) if assign_split(t.trace_id) == "test"
    )
    assert final.n_total is not None and 0 < final.n_total <= test_labeled
    at.run()
    _ok(at)
    assert any(
        f"support_quality/v{version}: judged {final.n_scored}" in s.value for s in at.success
    )
    predicted = at.selectbox(key="agree_predicted")
    assert predicted.value.name == f"support_quality/v{version}"
    assert {m.label for m in at.metric} >= {"TPR", "TNR"}


def test_traces_page_shows_the_response_text_not_its_json(demo_store):
    at = _page(_app("maria.chen"), "traces")
    _ok(at)
    responses = list(at.dataframe[0].value["response"])
    assert responses and all(r and not r.lstrip().startswith("{") for r in responses), responses
    assert any("merino" in r.lower() for r in responses)
