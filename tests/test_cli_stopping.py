"""The early-stop flags of ``alignboard align`` and ``alignboard optimize``, and the stop
reason in their output (human line and ``--json``), on the demo store with the demo models."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core.optimization import stopping
from core.optimization.stopping import DEFAULT_PATIENCE, StopPolicy

ROOT = Path(__file__).resolve().parents[1]
ALIGN = [
    "align", "--experiment", "alignboard-demo", "--judge", "support_quality",
    "--optimizer", "gepa", "--model", "demo:/judge", "--reflection-model", "demo:/reflect",
]  # fmt: skip
OPTIMIZE = [
    "optimize", "--experiment", "alignboard-demo", "--prompt", "northwind-support@production",
    "--dataset", "dataset:northwind-messages", "--judge", "support_quality@production",
    "--optimizer", "gepa", "--max-metric-calls", "120", "--workers", "4",
]  # fmt: skip


def _policy(*argv: str, score_flag: bool = False) -> StopPolicy:
    from core.cli import _stop_policy, build_parser

    return _stop_policy(build_parser().parse_args(list(argv)), score_flag=score_flag)


@pytest.fixture
def in_process():
    """``core.cli.main`` in this process, its job-process set-up undone afterwards."""
    from core.cli import main

    saved = signal.getsignal(signal.SIGTERM), sys.stdout, sys.stderr
    yield main
    signal.signal(signal.SIGTERM, saved[0])
    sys.stdout, sys.stderr = saved[1], saved[2]


def test_flags_default_on_and_each_one_changes_the_policy():
    assert _policy(*ALIGN) == StopPolicy() and StopPolicy().patience == DEFAULT_PATIENCE
    assert _policy(*ALIGN, "--no-early-stop") == StopPolicy.off()
    assert _policy(*ALIGN, "--no-stop-at-perfect").at_score is None
    assert _policy(*ALIGN, "--patience", "0").patience is None
    assert _policy(*ALIGN, "--patience", "5").patience == 5
    limits = _policy(*ALIGN, "--max-minutes", "2.5", "--max-cost", "0.75")
    assert (limits.max_seconds, limits.max_cost_usd) == (150.0, 0.75)
    # optimize keeps --stop-at-score; 'off' and --no-stop-at-perfect both turn it off.
    assert _policy(*OPTIMIZE, score_flag=True).at_score == 1.0
    assert _policy(*OPTIMIZE, "--stop-at-score", "0.9", score_flag=True).at_score == 0.9
    assert _policy(*OPTIMIZE, "--stop-at-score", "off", score_flag=True).at_score is None
    assert _policy(*OPTIMIZE, "--no-stop-at-perfect", score_flag=True).at_score is None
    assert _policy(*OPTIMIZE, "--no-early-stop", score_flag=True) == StopPolicy.off()


def test_a_bad_value_is_refused_naming_it(demo_store, in_process, capsys):
    assert in_process([*ALIGN, "--patience", "-2"]) != 0
    err = capsys.readouterr()
    assert "Patience is a number of proposals" in err.out + err.err


def test_align_prints_why_it_stopped_and_json_carries_the_reason(demo_store):
    proc = subprocess.run(
        [sys.executable, "-m", "core.cli", *ALIGN, "--json"],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["stop_reason"] == stopping.PERFECT
    assert out["stop_detail"].startswith("perfect validation score (1.0) at iteration")


def test_no_early_stop_spends_the_budget_and_says_so(demo_store, in_process, capsys):
    assert in_process([*ALIGN, "--no-early-stop", "--max-metric-calls", "80"]) == 0
    out = capsys.readouterr().out
    assert "Stopped: budget exhausted:" in out and "of 80 metric calls spent" in out


def test_align_human_output_says_stopped_early(demo_store, in_process, capsys):
    assert in_process([*ALIGN, "--no-stop-at-perfect", "--patience", "3"]) == 0
    out = capsys.readouterr().out
    assert (
        "Stopped early: no improvement of the best validation score for 1 iteration of 4 "
        "proposals (patience 3)"
    ) in out
    run_id = re.search(r"Run (\w+) finished", out).group(1)
    assert in_process(["status", run_id]) == 0
    assert "; stopped: no improvement" in capsys.readouterr().out


def test_prompt_optimization_stops_at_a_perfect_score_too(prompt_demo, in_process, capsys):
    assert in_process([*OPTIMIZE, "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["stop_reason"] == stopping.PERFECT and out["metric_calls"] < 120
    assert out["status"] == "finished"
