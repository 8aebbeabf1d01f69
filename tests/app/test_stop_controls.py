"""The early-stop controls of the Align and Optimize pages and the stop line of the Run
explorer, driven through AppTest on copies of the seeded demo store."""

from __future__ import annotations

from pathlib import Path

import mlflow
from streamlit.testing.v1 import AppTest

from core.optimization import jobs
from core.optimization.stopping import DEFAULT_PATIENCE, GEPA_ONLY_NOTE, StopPolicy

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
DEFAULT_LABEL = (
    f"Early stop: at a perfect validation score or after {DEFAULT_PATIENCE} proposals "
    "without improvement"
)


def _page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    at.session_state["shell_reviewer"] = "maria.chen"
    return at.switch_page(f"app_pages/{page}.py").run()


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _keys(at: AppTest) -> set[str]:
    return {w.key for w in [*at.number_input, *at.checkbox] if w.key}


def _captions(at: AppTest) -> str:
    return "\n".join(str(c.value) for c in at.caption)


def test_align_shows_the_defaults_and_launches_what_the_controls_say(demo_store):
    from core.cli import _align_settings, build_parser
    from core.optimization.engine import load_settings

    at = _page("align")
    _ok(at)
    assert DEFAULT_LABEL in [e.label for e in at.expander]
    assert at.checkbox(key="align_stop_perfect").value is True
    assert at.number_input(key="align_stop_patience").value == DEFAULT_PATIENCE
    assert "the run may stop earlier: at a perfect validation score" in _captions(at)
    at.checkbox(key="align_stop_perfect").uncheck()
    at.number_input(key="align_stop_patience").set_value(4)
    at.number_input(key="align_stop_minutes").set_value(2.0)
    at.number_input(key="align_budget").set_value(5000)  # still running when stopped below
    at.button(key="align_check").click().run()
    _ok(at)
    label = "Early stop: after 4 proposals without improvement or after 2 min"
    assert label in [e.label for e in at.expander]
    at.button(key="align_launch").click().run()
    _ok(at)
    run_id = at.session_state["align_run"]
    try:
        launched = load_settings(run_id)
        name = mlflow.get_experiment(demo_store).name
        flags = ["align", "--experiment", name, "--judge", "support_quality",
                 "--optimizer", "gepa", "--model", "demo:/judge",
                 "--reflection-model", "demo:/reflect", "--max-metric-calls", "5000",
                 "--no-stop-at-perfect", "--patience", "4", "--max-minutes", "2"]  # fmt: skip
        assert launched.to_dict() == _align_settings(build_parser().parse_args(flags)).to_dict()
        assert mlflow.MlflowClient().get_run(run_id).data.params["stop_patience"] == "4"
    finally:
        jobs.cancel(run_id)
        jobs.wait(run_id, timeout_s=180)


def test_other_optimizers_show_a_note_not_dead_controls(demo_store):
    at = _page("align")
    at.selectbox(key="align_optimizer").set_value("memalign")
    at.button(key="align_check").click().run()
    _ok(at)
    assert not {k for k in _keys(at) if k.startswith("align_stop_")}
    assert GEPA_ONLY_NOTE in _captions(at)


def test_optimize_has_the_same_controls_for_gepa_only(prompt_demo):
    at = _page("optimize")
    _ok(at)
    assert DEFAULT_LABEL in [e.label for e in at.expander]
    assert at.number_input(key="optimize_stop_patience").value == DEFAULT_PATIENCE
    at.selectbox(key="optimize_optimizer").set_value("mlflow-gepa")
    at.button(key="optimize_check").click().run()
    _ok(at)
    assert not {k for k in _keys(at) if k.startswith("optimize_stop_")}
    assert GEPA_ONLY_NOTE in _captions(at)


def test_the_run_explorer_says_why_a_run_stopped(demo_store):
    from core.labeling.criteria import get_criterion
    from core.optimization.engine import run_alignment
    from core.optimization.settings import build_settings

    crit = get_criterion(demo_store, "support_quality")

    def run(stop: StopPolicy, budget: int | None = None):
        s = build_settings(
            demo_store, crit, optimizer="gepa", model="demo:/judge",
            reflection_model="demo:/reflect", max_metric_calls=budget, stop=stop,
        )  # fmt: skip
        return run_alignment(s, allow_concurrent=True).run_id

    for run_id, line in (
        (run(StopPolicy()), "Stopped early: perfect validation score (1.0) at iteration"),
        (run(StopPolicy.off(), budget=80), "Stopped: budget exhausted:"),
    ):
        at = AppTest.from_file(APP, default_timeout=60)
        at.query_params["run"] = run_id
        at.switch_page("app_pages/run_explorer.py").run()
        _ok(at)
        assert line in _captions(at), _captions(at)
