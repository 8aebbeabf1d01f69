"""The Adjudicate page, driven through AppTest on a copy of the seeded demo store."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.labeling.adjudication import disputes
from core.labeling.criteria import get_criterion
from core.labeling.flags import list_flags, set_flag
from core.labeling.labels import current_labels, get_label

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
CRIT = "support_quality"


def _adjudicate(reviewer: str | None = "lead.lee", trace: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if reviewer:
        at.session_state["shell_reviewer"] = reviewer
    if trace:
        at.query_params["trace"] = trace
    return at.switch_page("app_pages/adjudicate.py").run()


def _no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _texts(at: AppTest) -> str:
    return "\n".join(str(t.value) for t in at.text)


def _gold(experiment_id: str) -> list:
    return [lab for lab in current_labels(experiment_id, CRIT, gold=True) if lab.adjudication]


def test_page_lists_disputes_with_every_label_and_records_a_gold_label(demo_store):
    open_ = disputes(demo_store, CRIT)
    assert open_, "the demo has reviewer disagreements"
    first = open_[0]
    at = _adjudicate()
    _no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert at.title[0].value == "Adjudicate"
    table = next(df.value for df in at.dataframe if "status" in df.value.columns)
    assert set(table["trace"]) == {d.trace_id for d in open_}
    assert at.selectbox(key="adj_trace").value == first.trace_id
    # Every reviewer's label and rationale is shown, as text.
    text = _texts(at)
    for lab in first.labels:
        assert lab.reviewer in text
        if lab.rationale:
            assert lab.rationale in text
    before = {lab.reviewer: lab.assessment_id for lab in first.labels}

    at.selectbox(key="adj_value").set_value(True)
    at.text_area(key="adj_rationale").set_value("The policy allows it: quoted in the reply.")
    at.button(key="adj_save").click().run()
    _no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert any("Gold label" in s.value for s in at.success)
    (gold,) = _gold(demo_store)
    assert (gold.trace_id, gold.reviewer, gold.value) == (first.trace_id, "lead.lee", True)
    # The reviewers' own labels are untouched, and the trace leaves the open list.
    for reviewer, aid in before.items():
        assert get_label(first.trace_id, CRIT, reviewer).assessment_id == aid
    table = next(df.value for df in at.dataframe if "status" in df.value.columns)
    assert first.trace_id not in set(table["trace"])

    at.toggle(key="adj_show_resolved").set_value(True).run()
    table = next(df.value for df in at.dataframe if "status" in df.value.columns)
    assert "resolved: Pass" in set(table["status"])


def test_bad_input_is_refused_with_a_message_and_writes_nothing(demo_store):
    at = _adjudicate()
    # No value.
    at.text_area(key="adj_rationale").set_value("because")
    at.button(key="adj_save").click().run()
    _no_exception(at)
    assert any("Choose the gold value" in e.value for e in at.error)
    # No rationale.
    at.selectbox(key="adj_value").set_value(False)
    at.text_area(key="adj_rationale").set_value("   ")
    at.button(key="adj_save").click().run()
    assert any("must say why" in e.value for e in at.error)
    assert _gold(demo_store) == []


def test_without_identity_nothing_is_written(demo_store):
    at = _adjudicate(reviewer=None)
    _no_exception(at)
    assert any("Say who you are" in w.value for w in at.warning)
    at.selectbox(key="adj_value").set_value(True)
    at.text_area(key="adj_rationale").set_value("clear case")
    at.button(key="adj_save").click().run()
    assert any("Say who you are" in e.value for e in at.error)
    assert _gold(demo_store) == []


def test_flagged_traces_are_listed_with_a_link_and_can_be_cleared(demo_store):
    crit = get_criterion(demo_store, CRIT)
    tid = current_labels(demo_store, crit.name)[0].trace_id
    set_flag(tid, crit.name, "dev.patel", "broken", "The reply is cut off <b>mid-word</b>")
    at = _adjudicate()
    _no_exception(at)
    flags = next(df.value for df in at.dataframe if "comment" in df.value.columns)
    row = flags.iloc[0]
    assert row["kind"] == "broken trace" and row["reviewer"] == "dev.patel"
    assert row["trace"] == f"label?trace={tid}"
    assert row["comment"] == "The reply is cut off <b>mid-word</b>"
    at.button(key="adj_flag_clear").click().run()
    _no_exception(at)
    assert list_flags(demo_store) == []
    assert any("Cleared dev.patel's flag" in i.value for i in at.info)


def _align(reviewer: str | None = "lead.lee") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if reviewer:
        at.session_state["shell_reviewer"] = reviewer
    return at.switch_page("app_pages/align.py").run()


def test_align_page_shows_the_gate_and_launches_only_with_a_reason(demo_store, monkeypatch):
    import mlflow

    from core.labeling.rules import set_criterion_rules
    from core.optimization import jobs

    set_criterion_rules(demo_store, CRIT, min_reviewer_kappa=0.8)
    launched = []
    monkeypatch.setattr(jobs, "launch", _recording_launch(launched))
    at = _align()
    _no_exception(at)
    assert any("below the minimum set for this criterion" in e.value for e in at.error)
    assert at.button(key="align_launch").disabled
    assert not at.button(key="align_launch_anyway").disabled
    # Launch anyway without a reason: refused, nothing launched.
    at.button(key="align_launch_anyway").click().run()
    _no_exception(at)
    assert any("Write why" in e.value for e in at.error)
    assert launched == []
    at.text_area(key="align_kappa_reason").set_value("Pilot: guideline v2 lands next week.")
    at.button(key="align_launch_anyway").click().run()
    _no_exception(at)
    (settings,) = launched
    assert settings.kappa_override_reason == "Pilot: guideline v2 lands next week."
    assert settings.kappa_override_by == "lead.lee"
    (run,) = mlflow.MlflowClient().search_runs([demo_store])
    assert run.data.params["kappa_override_reason"] == "Pilot: guideline v2 lands next week."
    assert run.data.params["kappa_override_by"] == "lead.lee"


def _recording_launch(launched: list):
    """jobs.launch without the worker: the run is created (params, settings, findings)."""
    from core.optimization.engine import create_run

    def launch(settings, *, check, **kw):
        launched.append(settings)
        return create_run(settings, status="queued", findings=check.findings)

    return launch


def test_align_page_override_needs_an_identity(demo_store, monkeypatch):
    from core.labeling.rules import set_criterion_rules
    from core.optimization import jobs

    set_criterion_rules(demo_store, CRIT, min_reviewer_kappa=0.8)
    launched = []
    monkeypatch.setattr(jobs, "launch", _recording_launch(launched))
    at = _align(reviewer=None)
    at.text_area(key="align_kappa_reason").set_value("because")
    at.button(key="align_launch_anyway").click().run()
    _no_exception(at)
    assert any("Say who you are" in e.value for e in at.error)
    assert launched == []
