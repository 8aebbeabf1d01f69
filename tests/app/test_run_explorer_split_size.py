"""The Run explorer's small-split warning: shown for a run on the demo's 14 held-out
traces whose change could be noise, absent for a run on the large demo set's 60+."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.optimization import record
from core.optimization.engine import run_alignment
from core.optimization.record import read_run_record
from core.views.runs import load_run_view
from tests.optimization.demo_examples import demo_settings

APP = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
TOO_SMALL = "The test split is too small to tell this change from noise."


def _explorer(run_id: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["run"] = run_id
    return at.switch_page("app_pages/run_explorer.py").run()


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _warnings(at: AppTest) -> list[str]:
    return [str(w.value) for w in at.warning]


def test_a_run_on_fourteen_held_out_traces_warns_with_the_numbers(demo_store):
    from core.optimization.recorder import MlflowRunRecorder

    result = run_alignment(demo_settings(demo_store, "gepa", max_metric_calls=40))
    assert result.test_size == 14
    # Whatever this run's gain, make it one whose interval crosses zero (+14 points,
    # -7 to +36), as the demo's small split often gives.
    recorder = MlflowRunRecorder(result.run_id)
    old = read_run_record(recorder.client, result.run_id, "gepa").test
    verdict = {
        **dict(old.verdict or {}),
        "n": 14,
        "diff": 0.14,
        "diff_low": -0.07,
        "diff_high": 0.36,
        "significant": False,
    }
    record.write_test_metrics(recorder, replace(old, verdict=verdict))
    at = _explorer(result.run_id)
    _ok(at)
    (warning,) = [w for w in _warnings(at) if TOO_SMALL in w]
    assert "With 14 held-out examples, a change under ±" in warning
    assert "points is indistinguishable from noise" in warning
    assert "(this run: +14 points, 95% interval -7 to 36)" in warning
    assert "label at least" in warning and "more test examples" in warning


def test_a_run_on_the_large_demo_set_has_no_small_split_warning(store_uri):
    from core.io.demo_seed import seed_demo

    exp = seed_demo(large=True).experiment_id
    result = run_alignment(demo_settings(exp, "gepa", max_metric_calls=40))
    assert result.test_size >= 60
    assert not result.significant  # no significant gain either: the split's size decides
    at = _explorer(result.run_id)
    _ok(at)
    assert not [w for w in _warnings(at) if TOO_SMALL in w]
    # The verdict itself is still there.
    text = load_run_view(result.run_id).verdict_text
    assert text and text in [str(e.value) for e in [*at.info, *at.warning]]
