"""``alignboard optimize`` and ``alignboard prompt``: the CLI contract of prompt optimization.

Real sqlite store with the demo prompt, dataset and aligned judge (``prompt_demo``), the
offline demo models, and the command run as a real subprocess where the contract is what
other tools rely on (the last stdout line, exit codes, a version MLflow itself loads).
Pre-flight refusals run the same ``main`` in-process (one start-up each would cost
minutes) and check that the store did not change at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from core.store import config

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "alignboard-demo"
PROMPT = "northwind-support"
#: The smallest run that learns the demo's rules (about 4 s of optimization).
BASE = [
    "optimize", "--experiment", EXPERIMENT, "--prompt", f"{PROMPT}@production",
    "--dataset", "dataset:northwind-messages", "--judge", "support_quality@production",
    "--optimizer", "gepa", "--task-model", "demo:/app", "--reflection-model", "demo:/reflect",
    "--max-metric-calls", "120", "--workers", "4",
]  # fmt: skip
#: The contract's fields of ``--json`` and their types.
CONTRACT = {
    "run_id": str,
    "status": str,
    "optimizer": str,
    "prompt_name": str,
    "base_version": int,
    "prompt_version": int,
    "train_size": int,
    "val_size": int,
    "test_size": int,
    "metric_calls": int,
    "llm_calls": int,
    "test_score_before": float,
    "test_score_after": float,
    "test_scores": dict,
    "wall_seconds": float,
}


def _cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        cwd=ROOT, env=env or dict(os.environ), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _last_json(text: str) -> dict:
    assert text.strip(), "no stdout"
    return json.loads(text.strip().splitlines()[-1])


# Tables that any run, prompt version, alias or tag would add a row to.
_TABLES = (
    "runs", "tags", "params", "metrics", "experiment_tags", "registered_models",
    "registered_model_tags", "registered_model_aliases", "model_versions",
    "model_version_tags",
)  # fmt: skip


def _store_digest() -> dict[str, str]:
    """A hash of every row of the tables a launch could write to, and of the artifacts."""
    db = Path(config.tracking_uri().removeprefix("sqlite:///"))
    out = {}
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as conn:
        for table in _TABLES:
            rows = conn.execute(f"SELECT * FROM {table}").fetchall()
            out[table] = hashlib.sha256(repr(sorted(map(repr, rows))).encode()).hexdigest()
    files = sorted(str(p) for p in (db.parent / "artifacts").rglob("*") if p.is_file())
    out["artifacts"] = hashlib.sha256(repr(files).encode()).hexdigest()
    return out


@pytest.fixture
def in_process():
    """Run ``core.cli.main`` here; undo the job-process set-up it does (redacting streams,
    the SIGTERM handler) afterwards."""
    from core.cli import main

    saved = signal.getsignal(signal.SIGTERM), sys.stdout, sys.stderr
    yield main
    signal.signal(signal.SIGTERM, saved[0])
    sys.stdout, sys.stderr = saved[1], saved[2]


# --------------------------------------------------------------------------- the contract


@pytest.mark.slow
def test_optimize_json_contract_on_the_demo_registers_a_better_prompt_mlflow_loads(
    prompt_demo, tmp_path
):
    proc = _cli(*BASE, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = _last_json(proc.stdout)
    for key, kind in CONTRACT.items():
        assert key in out, key
        value = out[key]
        assert isinstance(value, kind) or (kind is float and isinstance(value, int)), (key, value)
    assert out["status"] == "finished" and out["optimizer"] == "gepa"
    assert (out["prompt_name"], out["base_version"]) == (PROMPT, 1)
    assert out["prompt_version"] == 2 and out["alias"] == "candidate"
    assert out["train_size"] > 0 and out["val_size"] > 0 and out["test_size"] > 0
    assert 0 < out["metric_calls"] <= 120 + 2 * out["val_size"]  # gepa may end a round
    assert out["llm_calls"] > out["metric_calls"]  # application, judge and reflection calls
    assert out["test_score_after"] > out["test_score_before"]
    (name, scores), *rest = out["test_scores"].items()
    assert not rest and name == "support_quality v1"
    assert scores["after"] > scores["before"]
    for key in ("before_ci", "after_ci"):
        low, high = scores[key]
        assert 0.0 <= low <= high <= 1.0
    assert "stand-in" in proc.stderr  # the demo models are labeled as such

    from core.store.prompts import load_prompt

    version = load_prompt(f"{PROMPT}@candidate")
    assert version.version == 2
    assert version.template == out["template"]
    assert version.tags["alignboard.run_id"] == out["run_id"]
    assert version.tags["alignboard.judges"] == "support_quality@1"
    assert float(version.tags["alignboard.test_score_before"]) == pytest.approx(
        out["test_score_before"], abs=1e-4
    )
    assert float(version.tags["alignboard.test_score_after"]) == pytest.approx(
        out["test_score_after"], abs=1e-4
    )
    assert load_prompt(f"{PROMPT}@production").version == 1  # promotion is separate

    # MLflow's own API in a plain process: only the tracking URI, no alignboard on the path.
    code = (
        "import json, sys, mlflow\n"
        f"p = mlflow.genai.load_prompt('prompts:/{PROMPT}@candidate')\n"
        "print(json.dumps({'version': p.version, 'template': p.template,\n"
        "    'alignboard': [m for m in sys.modules if m == 'core' or m.startswith('core.')]}))\n"
    )
    env = {"MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"], "PATH": os.environ["PATH"]}
    plain = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert plain.returncode == 0, plain.stderr[-2000:]
    loaded = _last_json(plain.stdout)
    assert loaded["alignboard"] == []
    assert int(loaded["version"]) == 2 and loaded["template"] == out["template"]
    # The rules it learned from the judge's rationales are in the text.
    assert 'Never say "' in loaded["template"]
    assert "{{ message }}" in loaded["template"]


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["mlflow-gepa", "metaprompt"])
def test_mlflow_baselines_keep_the_same_cli_contract(prompt_demo, optimizer):
    # MLflow's optimizers run through core.optimization.runners.mlflow_prompts (the
    # baselines' branch); where that is not merged yet there is nothing to run.
    pytest.importorskip("core.optimization.runners.mlflow_prompts")
    argv = list(BASE)
    argv[argv.index("--optimizer") + 1] = optimizer
    argv[argv.index("--max-metric-calls") + 1] = "60"
    proc = _cli(*argv, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = _last_json(proc.stdout)
    for key, kind in CONTRACT.items():
        assert key in out, key
        assert isinstance(out[key], kind) or (kind is float and isinstance(out[key], int)), key
    assert out["status"] == "finished" and out["optimizer"] == optimizer
    assert out["metric_calls"] <= 60
    assert out["test_score_after"] > out["test_score_before"]
    from core.store.prompts import load_prompt

    registered = load_prompt(f"{PROMPT}@candidate")
    assert registered.version == out["prompt_version"]
    assert registered.tags["alignboard.optimizer"] == optimizer


@pytest.mark.slow
def test_prompt_register_alias_and_list_round_trip(prompt_demo, tmp_path):
    template = tmp_path / "greeter.txt"
    template.write_text("Greet {{ name }} warmly and answer: {{ question }}", encoding="utf-8")
    proc = _cli(
        "prompt", "register", "greeter", "--template-file", str(template),
        "--commit-message", "first", "--alias", "staging", "--experiment", EXPERIMENT, "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = _last_json(proc.stdout)
    assert (out["name"], out["version"], out["variables"]) == ("greeter", 1, ["name", "question"])
    template.write_text("Greet {{ name }} and answer {{ question }} briefly.", encoding="utf-8")
    assert _cli("prompt", "register", "greeter", "--template-file", str(template)).returncode == 0

    proc = _cli("prompt", "alias", "greeter", "2", "production", "--json")
    assert proc.returncode == 0, proc.stderr
    assert _last_json(proc.stdout) == {"name": "greeter", "version": 2, "alias": "production"}
    bad = _cli("prompt", "alias", "greeter", "9", "production", "--json")
    assert bad.returncode == 2 and "Its versions: 1, 2" in _last_json(bad.stdout)["message"]

    listed = _last_json(_cli("prompt", "list", "--json").stdout)
    assert set(listed["prompts"]) == {PROMPT, "greeter"}
    versions = _last_json(_cli("prompt", "list", "greeter", "--json").stdout)["versions"]
    assert [(v["version"], v["aliases"]) for v in versions] == [
        (1, ["staging"]),
        (2, ["production"]),
    ]
    assert versions[0]["commit_message"] == "first"

    from mlflow import MlflowClient

    from core.store.experiments import get_experiment

    tags = MlflowClient().get_prompt("greeter").tags
    assert f",{get_experiment(EXPERIMENT).experiment_id}," in tags["_mlflow_experiment_ids"]


# --------------------------------------------------------------------------- pre-flight


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _messages(n: int) -> list[dict]:
    return [{"id": f"m{i}", "inputs": {"message": f"Where is my order {i}?"}} for i in range(n)]


def _refusal(main, capsys, argv: list[str]) -> dict:
    """Run a refused launch in-process; return its JSON error (store checked unchanged)."""
    before = _store_digest()
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert code == 2, captured.out + captured.err
    assert _store_digest() == before, "a refused launch wrote to the store"
    err = _last_json(captured.out)
    assert err["message"] and err["message"] in captured.err.replace("error: ", "", 1).strip()
    return err


def _with(**changes: str) -> list[str]:
    argv = list(BASE)
    for flag, value in changes.items():
        argv[argv.index("--" + flag.replace("_", "-")) + 1] = value
    return argv


def _codes(err: dict) -> set[str]:
    return {f["code"] for f in err.get("findings", []) if f["level"] == "error"}


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("nope", "No prompt named 'nope' in the Prompt Registry. Registered prompts: northwind"),
        (f"{PROMPT}@7", "has no version 7. Its versions: 1"),
        (f"{PROMPT}@staging", "has no alias 'staging'. Its aliases: production (v1)"),
    ],
    ids=["prompt", "version", "alias"],
)
def test_unknown_prompt_version_or_alias_is_refused_naming_what_exists(
    prompt_demo, in_process, capsys, prompt, expected
):
    err = _refusal(in_process, capsys, _with(prompt=prompt))
    assert err["error"] == "NotFoundError"
    assert expected in err["message"], err["message"]


@pytest.mark.parametrize(
    ("judge", "expected"),
    [
        ("helpfulness", "No judge 'helpfulness' is registered"),
        ("support_quality@staging", "has no alias 'staging'; aliases: production"),
        ("support_quality@4", "has no version 4; versions: [1]"),
    ],
    ids=["judge", "alias", "version"],
)
def test_unregistered_judge_or_unknown_alias_is_refused(
    prompt_demo, in_process, capsys, judge, expected
):
    err = _refusal(in_process, capsys, _with(judge=judge))
    assert err["error"] == "NotFoundError"
    assert expected in err["message"], err["message"]
    if judge == "helpfulness":
        assert "registered judges: support_quality" in err["message"]


def test_a_variable_no_field_provides_is_refused_naming_the_fields(
    prompt_demo, in_process, capsys, tmp_path
):
    rows = [{"id": f"r{i}", "inputs": {"text": f"hello {i}", "lang": "en"}} for i in range(40)]
    err = _refusal(in_process, capsys, _with(dataset=_jsonl(tmp_path / "d.jsonl", rows)))
    assert _codes(err) == {"unmapped_variables"}
    assert "{{ message }}" in err["message"] and "Fields available: text, lang" in err["message"]
    assert "--map" in err["message"]


def test_rows_missing_a_mapped_field_are_refused_with_count_and_line_numbers(
    prompt_demo, in_process, capsys, tmp_path
):
    rows = _messages(40)
    for i in (2, 4, 9):  # lines 3, 5 and 10 of the file
        rows[i]["inputs"] = {"body": "no message field here"}
    path = _jsonl(tmp_path / "d.jsonl", rows)
    err = _refusal(in_process, capsys, [*_with(dataset=path), "--map", "message=message"])
    assert _codes(err) == {"rows_missing_field"}
    assert "3 row(s) lack the field mapped to {{ message }}" in err["message"]
    assert "line/record 3, 5, 10" in err["message"]


def test_missing_credentials_are_refused_before_any_call(
    prompt_demo, in_process, capsys, monkeypatch
):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    err = _refusal(in_process, capsys, _with(task_model="openai:/gpt-4.1-mini"))
    assert _codes(err) == {"missing_credentials"}
    assert "application model" in err["message"] and "OPENAI_API_KEY" in err["message"]


def test_a_dataset_too_small_for_the_split_is_refused(prompt_demo, in_process, capsys, tmp_path):
    err = _refusal(in_process, capsys, _with(dataset=_jsonl(tmp_path / "d.jsonl", _messages(4))))
    assert "dataset_too_small" in _codes(err)
    assert "The dataset has 4 row(s)" in err["message"] and "Add rows" in err["message"]


def test_a_budget_below_one_validation_pass_is_refused(prompt_demo, in_process, capsys):
    err = _refusal(in_process, capsys, _with(max_metric_calls="5"))
    assert _codes(err) == {"budget_too_small"}
    assert "A budget of 5 metric calls" in err["message"] and "use at least" in err["message"]


def test_an_application_temperature_out_of_range_is_refused(prompt_demo, in_process, capsys):
    err = _refusal(in_process, capsys, [*BASE, "--task-temperature", "2.5"])
    assert "temperature is between 0 and 2; got 2.5" in err["message"]
    err = _refusal(in_process, capsys, [*BASE, "--task-max-tokens", "0"])
    assert "max tokens must be at least 1; got 0" in err["message"]


@pytest.mark.slow
def test_a_refusal_prints_every_finding_and_exits_non_zero_as_a_subprocess(prompt_demo, tmp_path):
    rows = _messages(40)
    rows[6]["inputs"] = {"body": "x"}
    before = _store_digest()
    proc = _cli(
        *_with(dataset=_jsonl(tmp_path / "d.jsonl", rows), max_metric_calls="3"),
        "--map", "message=message", "--json",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    err = _last_json(proc.stdout)
    assert _codes(err) == {"rows_missing_field", "budget_too_small"}
    assert "2 problem(s)" in err["message"] and "nothing was written" in err["message"]
    for finding in err["findings"]:
        assert finding["message"] in proc.stderr  # every one, with what to do next
    assert _store_digest() == before


def test_a_judge_humans_disagree_with_is_a_recorded_warning_not_a_refusal(
    prompt_demo, in_process, capsys
):
    from core.optimization import record
    from core.optimization.judging import build_judge
    from core.optimization.registry import register_version
    from core.optimization.spec import JudgeSpec
    from tests.conftest import aligned_demo_instructions

    spec = JudgeSpec("support_quality", aligned_demo_instructions(), "pass_fail", "demo:/judge")
    weak = register_version(
        build_judge(spec), prompt_demo, run_id=None, test_metrics={"test_kappa_after": 0.3},
        optimizer="gepa",
    )  # fmt: skip
    code = in_process([*_with(judge=f"support_quality@{weak}", max_metric_calls="60"), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    out = _last_json(captured.out)
    assert out["status"] == "finished"
    assert [w["code"] for w in out["warnings"]] == ["judge_disagrees_with_humans"]
    assert "optimizing against a judge that humans disagree with" in captured.err

    from mlflow import MlflowClient

    recorded = record.read_artifacts(MlflowClient(), out["run_id"], [record.PREFLIGHT])
    findings = recorded[record.PREFLIGHT]["findings"]
    assert [f["code"] for f in findings] == ["judge_disagrees_with_humans"]


def test_stop_at_score_takes_a_score_or_off():
    from core.cli import _stop_score
    from core.errors import ValidationError

    assert _stop_score("off") is None and _stop_score("0.9") == 0.9
    with pytest.raises(ValidationError, match="stop-at-score"):
        _stop_score("perfect")
