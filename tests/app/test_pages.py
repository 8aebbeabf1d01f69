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


def _form(at: AppTest) -> dict:
    """The data the Label page gave its form component (what the browser renders)."""
    (form,) = at.get("bidi_component")
    return json.loads(form.proto.json)


def _act(at: AppTest, action: str, **fields) -> AppTest:
    """Send one action as the form would (the component itself cannot run in AppTest)."""
    at.session_state["label_do"] = {
        "action": action,
        "trace_id": at.session_state["label_trace"],
        "n": f"t{time.monotonic_ns()}",
        **fields,
    }
    return at.run()


def _rules_changed() -> None:
    """The lead changed the rules elsewhere (the Setup page, the CLI): drop the cached ones."""
    from app.components import data

    data.label_rules.clear()


def test_label_page_opens_at_first_pending_and_saves_human_feedback(demo_store):
    session = load_session(demo_store, CRIT, "maria.chen", "support-review")
    first = session.first_pending()
    at = _page(_app("maria.chen"), "label")
    _ok(at)
    assert at.session_state["label_trace"] == first
    assert _progress(at).startswith(f"{session.done_count} / 84 labeled")
    form = _form(at)
    assert form["trace_id"] == first and form["options"] == ["Pass", "Fail"]
    assert form["saved"] == {"value": None, "rationale": ""}
    assert "set by your lead on the Setup page" in " ".join(c.value for c in at.caption)
    assert not at.toggle and not [s for s in at.selectbox if "Rationale" in s.label]

    # No value: refused, nothing saved, still on the trace.
    _act(at, "submit", rationale="half a thought")
    assert "Choose a value first" in _form(at)["error"]
    assert get_label(first, CRIT, "maria.chen") is None
    assert at.session_state["label_trace"] == first

    _act(at, "submit", index=1, rationale='Says "refund issued": not allowed.')  # Fail
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
    form = _form(at)
    assert form["trace_id"] == nxt and form["saved"]["rationale"] == ""  # a fresh form
    assert form["clear_draft"]["trace_id"] == first  # the browser drops the saved draft
    assert form["flash"].startswith("Saved Fail.")

    # Back to the earlier trace: the form is pre-filled with the label just given.
    while at.session_state["label_trace"] != first:
        _act(at, "prev")
    assert _form(at)["saved"] == {"value": 1, "rationale": 'Says "refund issued": not allowed.'}
    _act(at, "next")
    assert at.session_state["label_trace"] == session.next_id(first)


def test_skip_and_flag_move_on_and_flagged_traces_are_skipped(demo_store):
    from core.labeling.flags import list_flags

    session = load_session(demo_store, CRIT, "maria.chen", "support-review")
    first = session.first_pending()
    at = _page(_app("maria.chen"), "label")
    _act(at, "skip")
    _ok(at)
    second = at.session_state["label_trace"]
    assert second == session.next_pending(first) and get_label(first, CRIT, "maria.chen") is None

    # A broken-trace flag needs a comment: refused, nothing written.
    _act(at, "flag", kind="broken", comment="  ")
    assert "what is broken" in _form(at)["error"] and not list_flags(demo_store)
    _act(at, "flag", kind="broken", comment="The reply is cut off.")
    _ok(at)
    (flag,) = list_flags(demo_store)
    assert (flag.trace_id, flag.kind, flag.reviewer) == (second, "broken", "maria.chen")
    assert at.session_state["label_trace"] not in (first, second)
    assert _form(at)["flash"] == "Flagged as broken trace."

    # Back on the flagged trace: it says so, with a Clear button.
    at.session_state["label_trace"] = second
    at.run()
    assert any("You flagged this" in m.value for m in at.markdown)
    assert "The reply is cut off." in _all_text(at)
    # A new session starts at the first pending trace that is not flagged.
    fresh = _page(_app("maria.chen"), "label")
    assert fresh.session_state["label_trace"] == first
    _act(fresh, "next_pending")
    assert fresh.session_state["label_trace"] != second
    at.button(key="label_clear_flag").click().run()
    _ok(at)
    assert list_flags(demo_store) == []


def test_blind_review_hides_the_judge_and_others_until_the_reviewer_saves(demo_store):
    from core.labeling.rules import set_criterion_rules

    dev = current_labels(demo_store, criterion=CRIT, reviewer="dev.patel")
    target = next(lab for lab in dev if lab.rationale)
    log_judge_verdict(target.trace_id, "pass", rationale="JUDGE SAYS FINE", source_id="j-v9")
    at = _page(_app("new.reviewer", trace=target.trace_id), "label")
    _ok(at)
    assert at.session_state["label_trace"] == target.trace_id
    text = _all_text(at) + " ".join(m.value for m in [*at.markdown, *at.caption])
    for secret in (target.rationale, "JUDGE SAYS FINE", "j-v9", "dev.patel"):
        assert secret not in text
    assert any("shown once you have saved" in c.value for c in at.caption)
    assert "Blind review" in " ".join(c.value for c in at.caption)

    _act(at, "submit", index=0, rationale="fine")
    _ok(at)
    assert get_label(target.trace_id, CRIT, "new.reviewer").value is True
    at.session_state["label_trace"] = target.trace_id
    at.run()
    assert target.rationale in _all_text(at) and "JUDGE SAYS FINE" in _all_text(at)

    # The lead turns blind review off: others' labels show before labeling.
    other = next(lab for lab in dev if lab.rationale and lab.trace_id != target.trace_id)
    set_criterion_rules(demo_store, CRIT, blind=False)
    _rules_changed()
    at2 = _page(_app("new.reviewer", trace=other.trace_id), "label")
    assert at2.session_state["label_trace"] == other.trace_id
    assert other.rationale in _all_text(at2)
    assert "Open review" in " ".join(c.value for c in at2.caption)


def test_rationale_policies_are_the_leads(demo_store):
    from core.labeling.rules import set_criterion_rules

    dev = current_labels(demo_store, criterion=CRIT, reviewer="dev.patel")[0]
    disagree = 1 if dev.value is True else 0  # the index of the other value
    at = _page(_app("ann", trace=dev.trace_id), "label")
    # disagree_humans (the default): saved, but the page stays and asks for a rationale.
    _act(at, "submit", index=disagree, rationale="")
    _ok(at)
    assert get_label(dev.trace_id, CRIT, "ann").value is (not dev.value)
    assert at.session_state["label_trace"] == dev.trace_id
    form = _form(at)
    assert "labeled this trace differently" in form["ask"] and "dev.patel" in form["ask"]
    assert "dev.patel" in _all_text(at)  # revealed: the label is saved
    _act(at, "submit", index=disagree, rationale='It promises "same-day refund".')
    _ok(at)
    assert get_label(dev.trace_id, CRIT, "ann").rationale == 'It promises "same-day refund".'
    assert at.session_state["label_trace"] != dev.trace_id

    # "always": no rationale, no label.
    set_criterion_rules(demo_store, CRIT, rationale_policy="always")
    _rules_changed()
    at = _page(_app("bea", trace=dev.trace_id), "label")
    _act(at, "submit", index=0, rationale=" ")
    assert "required for every label" in _form(at)["error"]
    assert get_label(dev.trace_id, CRIT, "bea") is None
    assert _form(at)["policy"] == "always"


def test_a_save_in_a_queue_completes_the_mlflow_review_item(demo_store):
    from mlflow.genai import review_queues as rq

    from core.labeling.queues import add_traces, create_queue

    ids = list(load_session(demo_store, CRIT, "solo", "support-review").trace_ids[:2])
    queue = create_queue(demo_store, "solo-queue", [CRIT], reviewers=["solo"])
    add_traces(queue, ids)
    at = _app("solo")
    at.session_state["label_queue"] = "solo-queue"
    at = _page(at, "label")
    _ok(at)
    assert at.session_state["label_trace"] == ids[0]
    _act(at, "submit", index=0, rationale="ok")
    _ok(at)

    def status() -> str:
        items = rq.list_review_queue_items(queue.queue_id)
        return next(str(i.status) for i in items if i.item_id == ids[0])

    deadline = time.monotonic() + 20
    while status() != "complete" and time.monotonic() < deadline:
        time.sleep(0.2)  # the queue is updated in the background, after the save
    assert status() == "complete"


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
    at.segmented_control(key="agree_split").set_value("all").run()
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
    # Without a judge, the page opens on the two reviewers against each other, said so.
    assert ref.value.name == "dev.patel"
    assert at.selectbox(key="agree_predicted").value.name == "maria.chen"
    assert "Reviewer vs reviewer" in [s.value for s in at.subheader]
    _ok(at)
    table = at.dataframe[-1].value
    assert len(table) > 0
    assert {"maria.chen rationale", "dev.patel rationale"} <= set(table.columns)
    first = table.iloc[0]
    assert first["maria.chen"] != first["dev.patel"]
    assert first["maria.chen rationale"] and first["dev.patel rationale"]
    tid = first["open"].removeprefix("label?trace=")
    at.selectbox(key="agree_open").set_value(tid).run()
    link = at.get("page_link")[-1]
    assert link.proto.page == "label" and link.proto.query_string == f"trace={tid}"


def test_agreement_page_compares_a_judge_with_the_humans(demo_store):
    maria = current_labels(demo_store, criterion=CRIT, reviewer="maria.chen")[:12]
    for lab in maria:
        log_judge_verdict(lab.trace_id, "pass", source_id="judge-v1")
    at = _page(_app("maria.chen"), "agreement")
    _ok(at)
    at.segmented_control(key="agree_split").set_value("all").run()
    _ok(at)
    assert at.selectbox(key="agree_predicted").value.name == "judge-v1"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["TPR"] == "1.00" and metrics["TNR"] == "0.00"
    assert any("95% CI" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) == 2  # kappa heatmap + confusion matrix
    table = at.dataframe[-1].value
    assert set(table["judge: judge-v1"]) == {"Pass"}
    assert set(table["judge: judge-v1 rationale"]) == {"judge's reasoning"}


def test_agreement_opens_on_test_and_before_any_verdict_says_there_is_no_judge(demo_store):
    at = _page(_app("maria.chen"), "agreement")
    _ok(at)
    assert at.segmented_control(key="agree_split").value == "test"
    heads = [s.value for s in at.subheader]
    assert "Reviewer vs reviewer" in heads and "Judge vs humans" not in heads
    assert any(
        i.value.startswith(
            "No judge verdicts yet: score a version (Score page) or run an alignment"
        )
        for i in at.info
    )
    ref, pred = at.selectbox(key="agree_reference"), at.selectbox(key="agree_predicted")
    assert (ref.value.kind, pred.value.kind) == ("reviewer", "reviewer")
    # Only test-split traces are compared.
    table = at.dataframe[-1].value
    assert len(table) > 0 and set(table["split"]) == {"test"}


def test_agreement_with_verdicts_opens_on_the_judge_against_the_humans_on_test(demo_store):
    labels = current_labels(demo_store, criterion=CRIT)
    test_ids = sorted({lab.trace_id for lab in labels if assign_split(lab.trace_id) == "test"})
    train_ids = sorted({lab.trace_id for lab in labels if assign_split(lab.trace_id) == "train"})
    for tid in test_ids:
        log_judge_verdict(tid, "pass", source_id="judge-v2")
    for tid in train_ids[:3]:
        log_judge_verdict(tid, "fail", source_id="judge-v2")
    at = _page(_app("maria.chen"), "agreement")
    _ok(at)
    assert at.segmented_control(key="agree_split").value == "test"
    assert "Judge vs humans" in [s.value for s in at.subheader]
    assert not any(i.value.startswith("No judge verdicts yet") for i in at.info)
    assert at.selectbox(key="agree_reference").value.kind == "humans"
    assert at.selectbox(key="agree_predicted").value.name == "judge-v2"
    metrics = {m.label: m.value for m in at.metric}
    # Every test trace with a human value, and none of the train traces the judge judged.
    assert metrics["Traces compared"] == str(len(test_ids))
    assert metrics["TPR"] == "1.00" and metrics["TNR"] == "0.00"


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
