"""``make bench-real``'s runner (benchmarks/bench_real.py): steps timed, failures reported.

The real steps take an hour with a real model; here each step is a tiny real subprocess
(the runner's own ``command`` boundary is replaced), so what is checked is the runner's
bookkeeping: every step runs, a failed one is named, the exit code and the JSON say so.
"""

from __future__ import annotations

import json
import sys

from benchmarks import bench_real


def _fake_commands(monkeypatch, codes: dict[str, int]) -> None:
    def command(step: bench_real.Step, results) -> list[str]:
        return [sys.executable, "-c", f"import sys; sys.exit({codes.get(step.name, 0)})"]

    monkeypatch.setattr(bench_real, "command", command)


def test_every_step_runs_and_the_total_is_judged_against_the_target(monkeypatch, tmp_path, capsys):
    _fake_commands(monkeypatch, {})
    assert bench_real.main(["--results", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "bench_real.json").read_text())["bench_real"]
    assert [s["step"] for s in data["steps"]] == ["install", "quality", "prompt", "browser"]
    assert all(s["returncode"] == 0 for s in data["steps"])
    assert data["total_s"] >= sum(s["seconds"] for s in data["steps"]) - 0.01
    assert data["within_target"] is True and data["target_s"] == 3600
    assert "target 60 min: met" in capsys.readouterr().out


def test_a_failed_step_is_named_the_rest_still_run_and_the_exit_code_says_so(
    monkeypatch, tmp_path, capsys
):
    _fake_commands(monkeypatch, {"quality": 3})
    assert bench_real.main(["--results", str(tmp_path)]) == 1
    steps = json.loads((tmp_path / "bench_real.json").read_text())["bench_real"]["steps"]
    assert {s["step"]: s["returncode"] for s in steps} == {
        "install": 0,
        "quality": 3,
        "prompt": 0,
        "browser": 0,
    }
    assert "FAILED (exit 3)" in capsys.readouterr().out


def test_a_failed_install_stops_the_steps_that_need_it(monkeypatch, tmp_path):
    _fake_commands(monkeypatch, {"install": 1})
    assert bench_real.main(["--results", str(tmp_path)]) == 1
    steps = json.loads((tmp_path / "bench_real.json").read_text())["bench_real"]["steps"]
    assert [s["step"] for s in steps] == ["install"]


def test_the_steps_write_their_json_into_the_results_folder(tmp_path):
    cmds = {s.name: bench_real.command(s, tmp_path) for s in bench_real.STEPS}
    assert cmds["install"][-1] == "install"
    assert cmds["quality"][-2:] == ["--out", str(tmp_path / "b4_quality.json")]
    assert cmds["browser"][-2:] == ["--out", str(tmp_path / "b4_browser.json")]
