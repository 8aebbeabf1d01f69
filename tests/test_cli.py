"""The alignboard command, run as a real subprocess against a real sqlite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, env_uri: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": env_uri}
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _last_json(proc: subprocess.CompletedProcess) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_criterion_import_queue_export_round_trip(store_uri, tmp_path):
    proc = _run(
        "criterion", "create", "helpful", "--experiment", "cli-exp", "--kind", "pass_fail",
        "--instructions", "Is {{ outputs }} helpful for {{ inputs }}?", "--json",
        env_uri=store_uri,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert _last_json(proc)["name"] == "helpful"

    src = tmp_path / "in.jsonl"
    rows = [
        {
            "id": f"r{i}",
            "inputs": {"question": f"q{i}"},
            "outputs": f"answer {i}",
            "labels": [{"criterion": "helpful", "value": "pass" if i % 2 else "fail",
                        "rationale": f"because {i}", "reviewer": "ann"}],
        }
        for i in range(5)
    ]  # fmt: skip
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    proc = _run("import", str(src), "--experiment", "cli-exp", "--json", env_uri=store_uri)
    assert proc.returncode == 0, proc.stderr
    out = _last_json(proc)
    assert (out["traces_written"], out["labels_written"]) == (5, 5)

    proc = _run(
        "queue", "create", "q1", "--experiment", "cli-exp", "--criterion", "helpful",
        "--reviewer", "ann", "--reviewer", "bob", "--all-traces", "--json",
        env_uri=store_uri,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert _last_json(proc)["items"] == 5
    proc = _run("queue", "progress", "q1", "--experiment", "cli-exp", "--json", env_uri=store_uri)
    progress = {p["reviewer"]: p["done"] for p in _last_json(proc)["progress"]}
    assert progress == {"ann": 5, "bob": 0}

    dst = tmp_path / "labels.csv"
    proc = _run("export", str(dst), "--experiment", "cli-exp", "--json", env_uri=store_uri)
    assert proc.returncode == 0, proc.stderr
    assert _last_json(proc)["rows"] == 5
    assert "because 3" in dst.read_text(encoding="utf-8")


def test_bad_file_exits_nonzero_with_every_bad_line_and_writes_nothing(store_uri, tmp_path):
    _run("criterion", "create", "helpful", "--experiment", "cli-bad",
         "--instructions", "Judge {{ outputs }}", env_uri=store_uri)  # fmt: skip
    src = tmp_path / "bad.jsonl"
    src.write_text(
        '{"inputs": {"q": 1}, "outputs": "ok"}\n{not json\n{"outputs": "no inputs"}\n',
        encoding="utf-8",
    )
    proc = _run("import", str(src), "--experiment", "cli-bad", "--json", env_uri=store_uri)
    assert proc.returncode == 2
    assert "line 2" in proc.stderr and "line 3" in proc.stderr
    assert _last_json(proc)["error"] == "ImportFileError"
    proc = _run("queue", "create", "q", "--experiment", "cli-bad", "--criterion", "helpful",
                "--reviewer", "ann", "--all-traces", "--json", env_uri=store_uri)  # fmt: skip
    assert _last_json(proc)["items"] == 0


def test_unknown_experiment_is_a_clear_error(store_uri):
    proc = _run("criterion", "list", "--experiment", "nope", env_uri=store_uri)
    assert proc.returncode == 2
    assert "No experiment named 'nope'" in proc.stderr


def test_seed_demo_without_experiment_seeds_the_demo_experiment(store_uri):
    # The default is resolved when the command runs (--help must not import the seeder).
    proc = _run("seed-demo", "--json", env_uri=store_uri)
    assert proc.returncode == 0, proc.stderr
    out = _last_json(proc)
    assert out["traces_written"] > 0 and not out["already_seeded"]
    proc = _run("criterion", "list", "--experiment", "alignboard-demo", "--json", env_uri=store_uri)
    assert proc.returncode == 0, proc.stderr
    assert "support_quality" in {c["name"] for c in _last_json(proc)["criteria"]}


def _alignment_run(experiment_id: str) -> str:
    from mlflow import MlflowClient

    from core.optimization import recorder as rec

    tags = {rec.TAG_KIND: rec.KIND_ALIGNMENT, rec.TAG_STATUS: "finished"}
    return MlflowClient().create_run(experiment_id, tags=tags).info.run_id


def test_run_id_commands_take_a_unique_prefix_of_eight_characters(store_uri, experiment):
    from mlflow import MlflowClient

    from core.errors import NotFoundError, ValidationError
    from core.optimization import jobs

    target = _alignment_run(experiment.experiment_id)
    _alignment_run(experiment.experiment_id)
    assert jobs.resolve_run_id(target[:8]) == target
    assert jobs.resolve_run_id(target[:12].upper()) == target
    assert jobs.resolve_run_id(target[:8], experiment.experiment_id) == target
    assert jobs.resolve_run_id(target) == target
    with pytest.raises(ValidationError, match="at least 8"):
        jobs.resolve_run_id(target[:7])
    with pytest.raises(ValidationError, match="not a run id"):
        jobs.resolve_run_id("not-an-id")
    other = "ffffffff" if not target.startswith("ffffffff") else "00000000"
    with pytest.raises(NotFoundError, match="No alignboard run id starts with"):
        jobs.resolve_run_id(other)
    # A run that is not alignboard's is not matched.
    plain = MlflowClient().create_run(experiment.experiment_id).info.run_id
    with pytest.raises(NotFoundError):
        jobs.resolve_run_id(plain[:8])

    # The id the dashboard shows (8 characters) works for status and cancel.
    proc = _run("status", target[:8], "--json", env_uri=store_uri)
    assert proc.returncode == 0, proc.stderr
    assert _last_json(proc)["run_id"] == target
    proc = _run("cancel", target[:10], "--json", env_uri=store_uri)
    assert proc.returncode == 0, proc.stderr
    assert _last_json(proc)["status"] == "finished"
    proc = _run("status", target[:5], env_uri=store_uri)
    assert proc.returncode != 0 and "at least 8" in proc.stderr + proc.stdout


def test_an_ambiguous_run_id_prefix_lists_the_matches(store_uri, experiment):
    import sqlite3

    from core.errors import ValidationError
    from core.optimization import jobs
    from core.store import run_reads

    first = _alignment_run(experiment.experiment_id)
    second = _alignment_run(experiment.experiment_id)
    # Random ids rarely share 8 characters: give the second run the first one's start in
    # the sqlite store itself.
    twin = first[:10] + second[10:]
    file = run_reads.sqlite_file()
    assert file is not None
    with sqlite3.connect(file) as conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        for table in ("tags", "runs"):
            conn.execute(f"UPDATE {table} SET run_uuid = ? WHERE run_uuid = ?", (twin, second))
    with pytest.raises(ValidationError, match="matches 2 runs") as err:
        jobs.resolve_run_id(first[:8])
    assert first in str(err.value) and twin in str(err.value)
    unique = next(k for k in range(10, 32) if first[k] != twin[k]) + 1
    assert jobs.resolve_run_id(first[:unique]) == first
    proc = _run("status", first[:9], env_uri=store_uri)
    assert proc.returncode != 0 and "matches 2 runs" in proc.stderr + proc.stdout
