"""B0: start-up. Whole-process wall time of the commands a user and the job machinery run most.

Each command runs as a fresh process, ``--repeats`` times (5), after one untimed warm-up
(so byte-code compilation and a cold disk cache are not measured); the repeats go round
robin over the commands, so a burst of load on a shared machine hits them all alike.
Reported: the median and min/max per command, side by side with ``python -c "import
mlflow"``, the floor any command that reads the store pays:

* ``import mlflow``: ``python -c "import mlflow"``;
* ``import core.errors``: the package front (it should load no MLflow at all);
* ``alignboard --help``: the console script (needs no MLflow); goal <= 0.5 s;
* ``alignboard status RUN_ID --json`` on a temporary sqlite store holding one finished
  alignment run (with a held-out verdict); goal: within 1.3x of ``import mlflow``. On a
  local store it reads the run with ``sqlite3`` and loads no MLflow
  (:mod:`core.store.run_reads`);
* ``MlflowClient().get_run``: ``import mlflow`` plus reading that run through MLflow's own
  client (its SQL store), what a status read costs where it goes through MLflow (a
  tracking server, PostgreSQL).

CPU seconds (user + system of the child) are reported beside wall seconds: on a machine
shared with other work, wall time measures the neighbours as much as the command.

``--root`` measures another checkout (its ``core`` is put first on ``PYTHONPATH``), which
is how the before/after figures in ``benchmarks/README.md`` were taken.

Usage: ``python benchmarks/b0_startup.py [--repeats 5] [--root DIR] --out F``.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, arg_parser, print_table, ratio, temp_store, write_json

GOAL_HELP_S = 0.5
GOAL_STATUS_RATIO = 1.3
REPEATS = 5
#: Heavy libraries the cheap commands must not load (checked once per command, untimed).
HEAVY = ("mlflow", "mlflow.genai", "litellm", "dspy", "gepa", "pandas")


def _finished_run() -> str:
    """Create one finished alignment run in the store in force; return its id."""
    from mlflow import MlflowClient

    from core.optimization import recorder as rec
    from core.optimization.engine import create_run
    from core.optimization.spec import AlignmentSettings, JudgeSpec
    from core.store.experiments import get_or_create_experiment

    exp = get_or_create_experiment("bench-startup")
    judge = JudgeSpec(
        name="support_quality",
        instructions="Is {{ outputs }} a good reply to {{ inputs }}?",
        value_type="pass_fail",
        model="demo:/judge",
    )
    settings = AlignmentSettings(
        experiment_id=exp.experiment_id,
        judge=judge,
        optimizer="gepa",
        reflection_model="demo:/reflect",
        max_metric_calls=100,
    )
    run_id = create_run(settings, status="running")
    client = MlflowClient()
    for key, value in ((rec.TAG_ITERATION, "7"), (rec.TAG_BUDGET, "100")):
        client.set_tag(run_id, key, value)
    client.set_tag(run_id, rec.TAG_JUDGE_VERSION, "1")
    client.set_tag(run_id, rec.TAG_VERDICT, "improved")
    client.log_metric(run_id, "metric_calls", 98)
    client.log_metric(run_id, "best_score", 0.8)
    client.log_metric(run_id, "test_verdict_significant", 1.0)
    rec.set_status(client, run_id, "finished")
    return run_id


def _alignboard() -> list[str]:
    """The ``alignboard`` console script next to this interpreter (or ``-m core.cli``)."""
    script = Path(sys.executable).with_name("alignboard")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "core.cli"]


def commands(run_id: str) -> dict[str, list[str]]:
    """The measured command lines, by label."""
    cli = _alignboard()
    return {
        "import mlflow": [sys.executable, "-c", "import mlflow"],
        "import core.errors": [sys.executable, "-c", "import core.errors"],
        "alignboard --help": [*cli, "--help"],
        "alignboard status --json": [*cli, "status", run_id, "--json"],
        "MlflowClient().get_run": [
            sys.executable,
            "-c",
            f"import mlflow; mlflow.MlflowClient().get_run({run_id!r})",
        ],
    }


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root)
    return env


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time_once(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of ``cmd``."""
    cpu = _cpu_children()
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return seconds, _cpu_children() - cpu


def _loaded(label: str, cmd: list[str], env: dict[str, str], cwd: Path) -> list[str]:
    """Which of :data:`HEAVY` the command's process had imported by its end."""
    probe = (
        "import atexit, json, sys\n"
        f"atexit.register(lambda: print('B0LOADED' + json.dumps([m for m in {HEAVY!r} "
        "if m in sys.modules]), file=sys.stderr))\n"
    )
    if cmd[0] == sys.executable and cmd[1] == "-c":
        code = probe + cmd[2]
    else:
        # The console script: run its entry point with the same arguments.
        code = probe + (
            f"sys.argv = ['alignboard', *{cmd[1:]!r}]\n"
            "from core.cli import main\n"
            "sys.exit(main())\n"
        )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    for line in proc.stderr.splitlines():
        if line.startswith("B0LOADED"):
            return list(json.loads(line[len("B0LOADED") :]))
    raise RuntimeError(f"{label}: no module report\n{proc.stderr[-2000:]}")


def run(root: Path = ROOT, repeats: int = REPEATS) -> dict[str, Any]:
    """Measure every command; print the table; return the results with ratio and goals."""
    root = Path(root).resolve()
    with temp_store("alignboard-b0-") as store:
        run_id = _finished_run()
        env = _env(root)
        cmds = commands(run_id)
        loaded = {label: _loaded(label, cmd, env, store.home) for label, cmd in cmds.items()}
        for cmd in cmds.values():
            _time_once(cmd, env, store.home)  # warm-up: byte-code and disk cache
        times: dict[str, list[float]] = {label: [] for label in cmds}
        cpus: dict[str, list[float]] = {label: [] for label in cmds}
        for _ in range(repeats):
            for label, cmd in cmds.items():
                wall, cpu = _time_once(cmd, env, store.home)
                times[label].append(wall)
                cpus[label].append(cpu)
    per_cmd = {
        label: {
            "median_s": statistics.median(ts),
            "min_s": min(ts),
            "max_s": max(ts),
            "runs_s": ts,
            "cpu_median_s": statistics.median(cpus[label]),
            "loaded": loaded[label],
        }
        for label, ts in times.items()
    }
    base = per_cmd["import mlflow"]["median_s"]
    base_cpu = per_cmd["import mlflow"]["cpu_median_s"]
    rows = [
        {
            "command": label,
            "median s": r["median_s"],
            "min s": r["min_s"],
            "max s": r["max_s"],
            "x import mlflow": ratio(r["median_s"], base),
            "cpu s": r["cpu_median_s"],
            "cpu x": ratio(r["cpu_median_s"], base_cpu),
            "heavy modules loaded": ",".join(r["loaded"]) or "none",
        }
        for label, r in per_cmd.items()
    ]
    print_table(
        f"B0 start-up (whole process, median of {repeats}; root {root})", rows, list(rows[0])
    )
    help_s = per_cmd["alignboard --help"]["median_s"]
    status_ratio = ratio(per_cmd["alignboard status --json"]["median_s"], base)
    status_cpu_ratio = ratio(per_cmd["alignboard status --json"]["cpu_median_s"], base_cpu)
    goals = {
        "help_s": {"goal": GOAL_HELP_S, "value": help_s, "met": help_s <= GOAL_HELP_S},
        "status_over_import_mlflow": {
            "goal": GOAL_STATUS_RATIO,
            "value": status_ratio,
            "met": status_ratio is not None and status_ratio <= GOAL_STATUS_RATIO,
        },
        # The same ratio in CPU time: what a quiet machine's wall time would show.
        "status_over_import_mlflow_cpu": {
            "goal": GOAL_STATUS_RATIO,
            "value": status_cpu_ratio,
            "met": status_cpu_ratio is not None and status_cpu_ratio <= GOAL_STATUS_RATIO,
        },
    }
    for name, g in goals.items():
        value = "-" if g["value"] is None else f"{g['value']:.2f}"
        print(f"goal {name} <= {g['goal']}: {value} -> {'met' if g['met'] else 'missed'}")
    return {"root": str(root), "repeats": repeats, "commands": per_cmd, "goals": goals}


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    p = arg_parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=REPEATS, help="timed runs per command (5)")
    p.add_argument("--root", type=Path, default=ROOT, help="checkout whose core is measured")
    args = p.parse_args(argv)
    write_json(args.out, {"b0": run(args.root, args.repeats)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
