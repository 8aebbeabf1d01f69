"""``alignboard alias set / rollback / history`` on a real sqlite store: judges and prompts.

Most calls run ``core.cli.main`` in-process (the same parser and code path, without an
interpreter start per call); the history a tool would read is also taken from a real
``python -m core.cli`` subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from core.cli import main
from core.optimization import registry

ROOT = Path(__file__).resolve().parents[1]
BASE = "Is {{ outputs }} a good answer to {{ inputs }}? Answer pass or fail."


def _register(eid: str, n: int) -> None:
    from mlflow.genai.judges import make_judge

    for i in range(1, n + 1):
        judge = make_judge(
            name="helpful",
            instructions=f"{BASE}\nVariant {i}.",
            model="demo:/judge",
            feedback_value_type=bool,
        )
        registry.register_version(judge, eid, run_id=None, test_metrics={})


def _cli(capsys, *args: str) -> tuple[int, object]:
    """Run the command in-process with --json; returns (exit code, the last line's JSON)."""
    code = main([*args, "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1]) if out else None


def test_set_rollback_and_history_of_a_judge(experiment, capsys, monkeypatch):
    eid = experiment.experiment_id
    _register(eid, 5)
    monkeypatch.setenv("USER", "ci-bot")
    code, out = _cli(capsys, "alias", "set", "helpful", "1", "production", "--experiment", "test")
    assert code == 0 and out["version"] == 1 and out["previous_version"] is None
    assert out["who"] == "ci-bot"  # --who defaults to $USER
    code, out = _cli(
        capsys,
        "alias", "set", "helpful", "5", "production", "--experiment", "test", "--who", "ann",
    )  # fmt: skip
    assert code == 0 and (out["version"], out["previous_version"]) == (5, 1)

    code, out = _cli(capsys, "alias", "rollback", "helpful", "production", "--experiment", "test")
    assert code == 0
    assert (out["version"], out["previous_version"], out["action"]) == (1, 5, "rollback")
    assert registry.get_alias(eid, "helpful", "production") == 1

    # Nothing before v1: refused with the reason, exit code 2, nothing moved.
    code, out = _cli(capsys, "alias", "rollback", "helpful", "production", "--experiment", "test")
    assert code == 2 and "no previous target" in out["message"]
    assert registry.get_alias(eid, "helpful", "production") == 1

    code, out = _cli(capsys, "alias", "history", "helpful", "production", "--experiment", "test")
    assert code == 0 and isinstance(out, list)
    assert [(e["action"], e["version"], e["previous_version"], e["who"]) for e in out] == [
        ("rollback", 1, 5, "ci-bot"),
        ("set", 5, 1, "ann"),
        ("set", 1, None, "ci-bot"),
    ]
    assert all({"version", "previous_version", "action", "who", "when"} <= set(e) for e in out)
    assert out[0]["when"] >= out[1]["when"] >= out[2]["when"]  # ISO 8601 sorts as time

    # The same list from a real `alignboard` process, as another tool would read it.
    proc = subprocess.run(
        [sys.executable, "-m", "core.cli", "alias", "history", "helpful", "production",
         "--experiment", "test", "--json"],
        cwd=ROOT,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == out


def test_errors_are_clear(experiment, capsys):
    _register(experiment.experiment_id, 2)
    code, out = _cli(capsys, "alias", "set", "helpful", "9", "production", "--experiment", "test")
    assert code == 2 and "no version 9" in out["message"]
    code, out = _cli(capsys, "alias", "rollback", "helpful", "production", "--experiment", "test")
    assert code == 2 and "not set" in out["message"]
    code, out = _cli(capsys, "alias", "history", "helpful", "production", "--experiment", "nope")
    assert code == 2 and "No experiment named 'nope'" in out["message"]
    code, out = _cli(capsys, "alias", "history", "helpful", "production", "--experiment", "test")
    assert (code, out) == (0, [])
    with pytest.raises(SystemExit):
        main(["alias", "set", "helpful", "production"])  # VERSION missing


def test_prompt_aliases_resolve_natively_after_a_cli_rollback(experiment, capsys):
    from core.store.prompts import register_prompt

    for i in range(1, 4):
        register_prompt("support", f"Answer {{{{ question }}}}, take {i}.")
    for version in ("1", "3"):
        code, _ = _cli(
            capsys,
            "alias", "set", "support", version, "production", "--prompt", "--experiment", "test",
        )  # fmt: skip
        assert code == 0
    assert mlflow.genai.load_prompt("prompts:/support@production").version == 3
    code, out = _cli(
        capsys, "alias", "rollback", "support", "production", "--prompt", "--experiment", "test"
    )
    assert code == 0 and out["version"] == 1 and out["kind"] == "prompt"
    assert mlflow.genai.load_prompt("prompts:/support@production").version == 1
    code, out = _cli(
        capsys, "alias", "history", "support", "production", "--prompt", "--experiment", "test"
    )
    assert [e["action"] for e in out] == ["rollback", "set", "set"]
    # A judge of the same name has no such history: kinds are kept apart.
    code, out = _cli(capsys, "alias", "history", "support", "production", "--experiment", "test")
    assert out == []


def test_human_output_lists_the_history(experiment, capsys):
    _register(experiment.experiment_id, 2)
    assert main(["alias", "set", "helpful", "2", "staging", "--experiment", "test"]) == 0
    assert "staging -> v2 (was unset)" in capsys.readouterr().out
    assert main(["alias", "history", "helpful", "staging", "--experiment", "test"]) == 0
    line = capsys.readouterr().out.strip()
    assert "\tset\tv2\t(was unset)\t" in line
