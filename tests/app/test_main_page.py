"""The first page, driven through Streamlit's AppTest on a real sqlite store."""

from __future__ import annotations

from pathlib import Path

import mlflow
from streamlit.testing.v1 import AppTest

from core.criteria import create_criterion
from core.labels import current_labels

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


def _seed_small(experiment) -> list[str]:
    mlflow.set_experiment(experiment_id=experiment.experiment_id)
    create_criterion(experiment.experiment_id, "quality", "pass_fail", "Judge {{ outputs }}")
    ids = []
    for i in range(3):
        with mlflow.start_span(name="app") as span:
            span.set_inputs({"question": f"<script>alert({i})</script> q{i}"})
            span.set_outputs({"response": f"**bold** answer {i}"})
            ids.append(span.trace_id)
    mlflow.flush_trace_async_logging()
    return ids


def test_page_lists_traces_and_a_label_becomes_human_feedback(experiment):
    ids = _seed_small(experiment)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.dataframe[0].value.shape[0] == 3

    at.sidebar.text_input(key="reviewer").set_value("ann").run()
    chosen = at.selectbox(key="trace_id").value
    assert chosen in ids
    # Trace content is shown as literal text inside code blocks, never as markdown/HTML.
    assert any("<script>alert(" in c.value for c in at.code)
    at.radio(key="label_value").set_value("Fail")
    at.text_area(key="label_rationale").set_value('says "bold" for no reason')
    at.button[0].click().run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]

    labels = current_labels(experiment.experiment_id, criterion="quality")
    assert [(lab.trace_id, lab.reviewer, lab.value) for lab in labels] == [(chosen, "ann", False)]
    trace = mlflow.get_trace(chosen)
    fb = [a for a in trace.info.assessments if a.name == "quality"]
    assert fb[0].source.source_type == "HUMAN" and fb[0].rationale == 'says "bold" for no reason'


def test_page_without_experiments_explains_how_to_start(store_uri):
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    # The store always has MLflow's Default experiment; with no traces the page still renders.
    assert at.title[0].value == "alignboard"
