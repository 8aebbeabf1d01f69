"""The alignboard command, run as a real subprocess against a real sqlite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
