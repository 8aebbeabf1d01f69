"""The Traces page's "Label next" panel through AppTest on the demo store."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.labeling.active import rank_informative
from core.labeling.queues import get_queue, queue_items
from tests.support.judges import log_judge_verdict

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
CRIT = "support_quality"


def _traces_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["shell_reviewer"] = "maria.chen"
    return at.switch_page("app_pages/traces.py").run()


def _next_table(at: AppTest):
    """The panel's ranked table (the one with a "why" column)."""
    return next(d.value for d in at.dataframe if "why" in d.value.columns)


def test_label_next_adds_five_ranked_traces_to_a_new_queue(demo_store):
    pool = [p.trace_id for p in rank_informative(demo_store, CRIT)]
    target = pool[13]
    log_judge_verdict(target, True, source_id=f"{CRIT}/v1")
    log_judge_verdict(target, False, source_id=f"{CRIT}/v2")

    at = _traces_page()
    assert not at.exception and not at.error
    at.number_input(key="traces_next_n").set_value(5).run()
    at.text_input(key="traces_next_new").set_value("most-informative").run()
    at.multiselect(key="traces_next_reviewers").set_value(["maria.chen"]).run()
    table = _next_table(at)
    assert table.shape[0] == 5
    assert table["why"].iloc[0].startswith("support_quality v1 says Pass, v2 says Fail")
    button = at.button(key="traces_next_add")
    assert button.label == "Add the 5 most informative unlabeled traces to queue most-informative"

    button.click().run()
    assert not at.exception and not at.error
    assert (
        at.success[0].value == "Added 5 traces to queue most-informative, most informative first."
    )
    items = queue_items(get_queue(demo_store, "most-informative"))
    assert len(items) == 5 and items[0].trace_id == target
    # The new queue is now the selected one, and its traces are no longer offered.
    assert at.selectbox(key="traces_next_queue").value == "most-informative"
    offered = set(_next_table(at)["trace"])
    assert not offered & {table["trace"].iloc[i] for i in range(5)}


def test_label_next_without_verdicts_says_to_score_first(demo_store):
    at = _traces_page()
    assert not at.exception
    assert any("score the unlabeled traces" in i.value for i in at.info)
