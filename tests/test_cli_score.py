"""``alignboard score`` and ``alignboard export --format mlflow-dataset`` on the demo store.

The JSON contract of ``score`` (foreground, and ``--detach`` through a real worker process
whose verdicts MLflow's own ``get_trace`` shows), its refusals, and the evaluation dataset
an export writes, read back with ``mlflow.genai.datasets``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from core.labeling.consolidation import consolidate
from core.labeling.labels import current_labels
from core.optimization import jobs

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "alignboard-demo"
JUDGE = "support_quality"
CONTRACT = {
    "run_id",
    "status",
    "judge_version",
    "n_scored",
    "n_skipped",
    "n_failed",
    "value_counts",
    "wall_seconds",
}


@pytest.fixture
def in_process():
    """Run ``core.cli.main`` here; undo the job-process set-up it does (redacting streams,
    the SIGTERM handler) afterwards."""
    from core.cli import main

    saved = signal.getsignal(signal.SIGTERM), sys.stdout, sys.stderr
    yield main
    signal.signal(signal.SIGTERM, saved[0])
    sys.stdout, sys.stderr = saved[1], saved[2]


def _run(main, capsys, *argv: str) -> tuple[int, dict, str]:
    code = main([*argv, "--json"])
    out = capsys.readouterr()
    return code, json.loads(out.out.strip().splitlines()[-1]), out.err


def _llm_feedback(experiment_id: str) -> int:
    traces = mlflow.search_traces(locations=[experiment_id], return_type="list")
    return sum(1 for t in traces for a in t.info.assessments if a.source.source_type == "LLM_JUDGE")


def test_score_json_contract_then_idempotent(prompt_demo, in_process, capsys):
    argv = ("score", "--experiment", EXPERIMENT, "--judge", f"{JUDGE}@production", "--limit", "6")
    code, d, _ = _run(in_process, capsys, *argv)
    assert code == 0, d
    assert set(d) >= CONTRACT
    assert d["status"] == "finished" and d["judge_version"] == 1
    assert (d["n_scored"], d["n_skipped"], d["n_failed"]) == (6, 0, 0)
    assert sum(d["value_counts"].values()) == 6
    code, again, _ = _run(in_process, capsys, *argv)
    assert code == 0 and (again["n_scored"], again["n_skipped"]) == (0, 6)
    assert again["run_id"] != d["run_id"]
    assert _llm_feedback(prompt_demo) == 6


def test_score_refusals_say_why_and_write_nothing(prompt_demo, in_process, capsys):
    runs = len(MlflowClient().search_runs([prompt_demo]))
    code, err, stderr = _run(
        in_process, capsys, "score", "--experiment", EXPERIMENT, "--judge", f"{JUDGE}@staging"
    )
    assert code == 2 and err["error"] == "NotFoundError" and "aliases: production" in stderr
    code, err, _ = _run(
        in_process,
        capsys,
        "score",
        "--experiment",
        EXPERIMENT,
        "--judge",
        JUDGE,
        "--all",
        "--since",
        "2999-01-01",
    )
    assert code == 2 and {f["code"] for f in err["findings"]} == {"empty_selection"}
    code, err, _ = _run(
        in_process, capsys, "score", "--experiment", EXPERIMENT, "--judge", JUDGE, "--since", "x"
    )
    assert code == 2 and "--since takes a date" in err["message"]
    assert len(MlflowClient().search_runs([prompt_demo])) == runs
    assert _llm_feedback(prompt_demo) == 0


def test_score_detach_runs_a_worker_whose_verdicts_mlflow_shows(prompt_demo):
    proc = subprocess.run(
        [sys.executable, "-m", "core.cli", "score", "--experiment", EXPERIMENT,
         "--judge", JUDGE, "--queue", "support-review", "--limit", "10", "--detach", "--json"],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["status"] == "queued" and out["judge_version"] == 1 and out["n_selected"] == 10
    final = jobs.wait(out["run_id"], timeout_s=120)
    assert final.status == "finished", jobs.log_path(out["run_id"]).read_text()
    assert (final.n_total, final.n_scored) == (10, 10)
    run = MlflowClient().get_run(out["run_id"])
    assert run.info.run_name == f"score {JUDGE} v1"
    assert run.data.metrics["n_scored"] == 10
    judged = [
        (t.info.trace_id, a)
        for t in mlflow.search_traces(locations=[prompt_demo], return_type="list")
        for a in t.info.assessments
        if a.source.source_type == "LLM_JUDGE"
    ]
    assert len(judged) == 10
    trace_id, _ = judged[0]
    # MLflow's own read of one trace shows the verdict like any assessment.
    (fb,) = [
        a
        for a in mlflow.get_trace(trace_id).info.assessments
        if a.name == JUDGE and a.source.source_type == "LLM_JUDGE"
    ]
    assert fb.source.source_id == f"{JUDGE}/v1" and isinstance(fb.value, bool)
    assert fb.rationale and fb.metadata["alignboard.run_id"] == out["run_id"]


def test_export_mlflow_dataset_round_trips_and_is_idempotent(demo_store, in_process, capsys):
    argv = (
        "export", "--experiment", EXPERIMENT, "--format", "mlflow-dataset",
        "--dataset", "support-labels", "--criterion", JUDGE,
    )  # fmt: skip
    code, d, _ = _run(in_process, capsys, *argv)
    assert code == 0, d
    assert d["records"] == 63 and d["created"] is True
    from mlflow.genai.datasets import get_dataset

    df = get_dataset(dataset_id=d["dataset_id"]).to_df()
    assert len(df) == 63
    chosen = consolidate(current_labels(demo_store, JUDGE))
    by_trace = {row["tags"]["alignboard.trace_id"]: row for _, row in df.iterrows()}
    assert set(by_trace) == set(chosen)
    trace_id, label = next(iter(chosen.items()))
    row = by_trace[trace_id]
    assert row["expectations"][JUDGE] == label.value
    assert row["expectations"].get(f"{JUDGE}_rationale") == label.rationale
    root = mlflow.get_trace(trace_id).data.spans[0]
    assert row["inputs"] == root.inputs and row["outputs"] == root.outputs

    code, again, _ = _run(in_process, capsys, *argv)
    assert code == 0 and again["created"] is False and again["dataset_id"] == d["dataset_id"]
    assert len(get_dataset(dataset_id=d["dataset_id"]).to_df()) == 63  # no copies


def test_export_of_nothing_labeled_is_a_clear_error(demo_store, in_process, capsys):
    from core.labeling.criteria import create_criterion

    create_criterion(demo_store, "tone", "pass_fail", "Is {{ outputs }} polite?")
    code, err, _ = _run(
        in_process, capsys, "export", "--experiment", EXPERIMENT, "--format", "mlflow-dataset",
        "--dataset", "tone-labels", "--criterion", "tone",
    )  # fmt: skip
    assert code == 2 and "No trace is labeled for 'tone'" in err["message"]
    code, err, _ = _run(
        in_process, capsys, "export", "--experiment", EXPERIMENT, "--format", "mlflow-dataset"
    )
    assert code == 2 and "--dataset NAME" in err["message"]


def test_export_help_documents_the_dataset_format():
    proc = subprocess.run(
        [sys.executable, "-m", "core.cli", "export", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "mlflow-dataset" in text and "--dataset" in text and "expectations" in text
