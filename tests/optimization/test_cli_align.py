"""``alignboard align/status/cancel/resume``: the CLI contract other tools rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from core.io.demo_seed import seed_demo
from core.optimization.recorder import local_artifact_dir

ROOT = Path(__file__).resolve().parents[2]
CONTRACT_KEYS = {
    "run_id", "status", "optimizer", "judge_name", "judge_version", "train_size", "val_size",
    "test_size", "metric_calls", "llm_calls", "test_accuracy_before", "test_accuracy_after",
    "test_kappa_before", "test_kappa_after", "wall_seconds",
}  # fmt: skip
ALIGN = ["align", "--experiment", "demo", "--judge", "support_quality",
         "--model", "demo:/judge", "--reflection-model", "demo:/reflect", "--json"]  # fmt: skip


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def demo(store_uri):
    return seed_demo("demo").experiment_id


@pytest.mark.slow
def test_memalign_in_the_foreground_prints_the_contract_and_records_guidelines(demo):
    proc = _cli(*ALIGN, "--optimizer", "memalign")
    assert proc.returncode == 0, proc.stderr
    out = _last_json(proc)
    assert out.keys() >= CONTRACT_KEYS
    assert out["status"] == "finished" and out["optimizer"] == "memalign"
    assert out["judge_version"] >= 1 and out["test_size"] > 0
    assert out["test_accuracy_after"] is not None
    root = local_artifact_dir(MlflowClient(), out["run_id"])
    guidelines = json.loads((root / "guidelines.json").read_text())
    assert guidelines, "memalign distilled no guideline"

    status = _last_json(_cli("status", out["run_id"], "--json"))
    assert status["status"] == "finished" and status["judge_version"] == out["judge_version"]
    cancel = _cli("cancel", out["run_id"], "--json")
    assert cancel.returncode == 0 and _last_json(cancel)["status"] == "finished"
    resume = _cli("resume", out["run_id"], "--json")
    assert resume.returncode == 2 and "already finished" in _last_json(resume)["message"]

    # Forgetting traces makes a new MemAlign version, recorded in its own run.
    episodes = json.loads((root / "episodes.json").read_text())
    gone = episodes[0]["trace_id"]
    base = ["--experiment", "demo", "--judge", "support_quality", "--json"]
    unaligned = _cli("unalign", *base, "--trace-id", gone)
    assert unaligned.returncode == 0, unaligned.stderr
    new = _last_json(unaligned)
    assert new["judge_version"] == out["judge_version"] + 1 and new["run_id"] != out["run_id"]
    kept = json.loads(
        (local_artifact_dir(MlflowClient(), new["run_id"]) / "episodes.json").read_text()
    )
    assert gone not in {e["trace_id"] for e in kept}


def test_unknown_judge_exits_2_with_a_json_error(demo):
    proc = _cli(
        *[a if a != "support_quality" else "politeness" for a in ALIGN], "--optimizer", "gepa"
    )
    assert proc.returncode == 2
    err = _last_json(proc)
    assert err["error"] == "NotFoundError" and "support_quality" in err["message"]
    assert MlflowClient().search_runs([demo]) == []


def test_missing_arguments_and_preflight_errors_exit_2(demo, tmp_path):
    proc = _cli("align", "--experiment", "demo", "--json")
    assert proc.returncode == 2 and "--judge" in _last_json(proc)["message"]
    bad = tmp_path / "bad.txt"
    bad.write_text("Is this a good reply? Pass or Fail.")
    proc = _cli(*ALIGN, "--optimizer", "gepa", "--instructions-file", str(bad))
    assert proc.returncode == 2
    assert "template variable" in _last_json(proc)["message"]
    assert MlflowClient().search_runs([demo]) == []
    # The reflection model's own server reaches the settings: MLflow's GEPA cannot use it.
    proc = _cli(
        *ALIGN, "--optimizer", "mlflow-gepa", "--reflection-base-url", "http://127.0.0.1:9/v1"
    )
    assert proc.returncode == 2
    assert "base url" in _last_json(proc)["message"].lower()
    assert MlflowClient().search_runs([demo]) == []
