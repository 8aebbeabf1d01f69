"""B1: GEPA alignment speed against MLflow's own GEPA and against the critical path.

In one run, on the same store, labels and budget, with the demo model (a deterministic
stand-in, not an LLM) sleeping ``--latency-ms`` per call:

(a) alignboard's ``gepa`` (``run_alignment`` with optimizer ``gepa``: the product path,
    including pre-flight, the MLflow run's records, test-split scoring and registration);
(b) MLflow's ``judge.align`` with ``GEPAAlignmentOptimizer`` at the same budget (optimizer
    ``mlflow-gepa``, which calls it exactly as an MLflow user would);
(c) the critical-path lower bound of (a), from (a)'s own ``iterations.json``: each
    iteration's rounds of LLM calls (minibatch evaluations, the reflection call, validation
    evaluations) happen one after another; the calls of one round run in parallel, so a
    round costs ``ceil(calls / workers)`` latencies (more if a call was retried). The seed
    evaluation is iteration 0 and is included; the final test-split scoring (seed and
    aligned judge in one parallel round) is added as one more round.

Wall times are reported for the whole alignment and for the optimizer alone (the runner
call), so (a)/(c) is shown both ways: ``total`` (everything ``run_alignment`` does, against
the bound including test scoring) and ``optimizer`` (runner only, against the bound
without test scoring).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    JUDGE_MODEL,
    REFLECTION_MODEL,
    arg_parser,
    demo_store_with,
    print_table,
    ratio,
    set_latency,
    temp_store,
    waves,
    write_json,
)

#: Full mode repeats the whole comparison and reports medians; quick runs it once.
FULL = {"labeled": 40, "budget": 200, "workers": 8, "repeats": 3}
QUICK = {"labeled": 40, "budget": 200, "workers": 8, "repeats": 1}
GOAL_BOUND_RATIO = 1.3
GOAL_SPEEDUP = 4.0


class _TimedRunner:
    """Wraps an optimizer runner to time it (the engine's work around it is the rest)."""

    def __init__(self, optimizer: str) -> None:
        from core.optimization.engine import resolve_runner

        self.runner = resolve_runner(optimizer)
        self.seconds = 0.0

    def __call__(self, settings, train, val, recorder):
        started = time.perf_counter()
        try:
            return self.runner(settings, train, val, recorder)
        finally:
            self.seconds = time.perf_counter() - started


def critical_path(
    iterations: list[dict[str, Any]], latency_s: float, workers: int, test_calls: int
) -> dict[str, Any]:
    """The lower bound of an alignment's wall time from its ``iterations.json``.

    Args:
        iterations: The run's iteration log (seed evaluation first).
        latency_s: Seconds per model call.
        workers: Calls in flight at once.
        test_calls: Judge calls of the final test-split scoring (one parallel round).
    """
    per_kind: dict[str, int] = {}
    steps = 0
    calls = 0
    for it in iterations:
        for r in it.get("rounds", []):
            w = waves(int(r.get("calls", 0)), int(r.get("depth", 1)), workers)
            steps += w
            calls += int(r.get("calls", 0))
            per_kind[r.get("kind", "?")] = per_kind.get(r.get("kind", "?"), 0) + w
    test_steps = waves(test_calls, 1, workers)
    return {
        "optimizer_steps": steps,
        "optimizer_calls": calls,
        "steps_by_kind": per_kind,
        "test_steps": test_steps,
        "test_calls": test_calls,
        "optimizer_seconds": steps * latency_s,
        "total_seconds": (steps + test_steps) * latency_s,
    }


def _run(settings, timed: _TimedRunner) -> tuple[Any, float, Any]:
    from core.models import demo_stats, reset_demo_stats
    from core.optimization.engine import run_alignment

    reset_demo_stats()
    started = time.perf_counter()
    result = run_alignment(settings, runner=timed)
    wall = time.perf_counter() - started
    return result, wall, demo_stats()


def _artifact(run_id: str, name: str) -> Any:
    from mlflow import MlflowClient

    from core.optimization.recorder import read_artifact_text

    text = read_artifact_text(MlflowClient(), run_id, name)
    return json.loads(text) if text else None


def _once(cfg: dict[str, Any], latency_s: float, include_mlflow: bool) -> dict[str, Any]:
    """One repetition: a fresh store, then (a), (c) and (b)."""
    from core.optimization import record
    from core.optimization.spec import AlignmentSettings, JudgeSpec

    out: dict[str, Any] = {}
    with temp_store("alignboard-b1-"):
        experiment_id, criterion, counts = demo_store_with(cfg["labeled"])
        out["labeled_by_split"] = counts
        judge = JudgeSpec(criterion.name, criterion.instructions, criterion.kind, JUDGE_MODEL)

        def settings(optimizer: str) -> AlignmentSettings:
            return AlignmentSettings(
                experiment_id,
                judge,
                optimizer,
                REFLECTION_MODEL,
                max_metric_calls=cfg["budget"],
                workers=cfg["workers"],
            )

        # (a) alignboard gepa
        timed_a = _TimedRunner("gepa")
        result_a, wall_a, stats_a = _run(settings("gepa"), timed_a)
        iterations = _artifact(result_a.run_id, record.ITERATIONS) or []
        bound = critical_path(iterations, latency_s, cfg["workers"], 2 * result_a.test_size)
        out["a"] = {
            "system": "(a) alignboard gepa",
            "wall_s": wall_a,
            "optimizer_wall_s": timed_a.seconds,
            "metric_calls": result_a.metric_calls,
            "llm_calls": result_a.llm_calls,
            "demo_calls": stats_a.calls,
            "max_in_flight": stats_a.max_in_flight,
            "iterations": result_a.iterations,
            "test_accuracy_before": result_a.test_accuracy_before,
            "test_accuracy_after": result_a.test_accuracy_after,
        }
        out["c"] = {
            "system": "(c) critical path of (a)",
            "wall_s": bound["total_seconds"],
            "optimizer_wall_s": bound["optimizer_seconds"],
            "llm_calls": bound["optimizer_calls"] + bound["test_calls"],
            **bound,
        }
        out["iterations_logged"] = len(iterations)

        # (b) MLflow judge.align(GEPAAlignmentOptimizer)
        if include_mlflow:
            timed_b = _TimedRunner("mlflow-gepa")
            result_b, wall_b, stats_b = _run(settings("mlflow-gepa"), timed_b)
            out["b"] = {
                "system": "(b) mlflow judge.align GEPA",
                "wall_s": wall_b,
                "optimizer_wall_s": timed_b.seconds,
                "metric_calls": result_b.metric_calls,
                "llm_calls": result_b.llm_calls,
                "demo_calls": stats_b.calls,
                "max_in_flight": stats_b.max_in_flight,
                "iterations": result_b.iterations,
                "test_accuracy_before": result_b.test_accuracy_before,
                "test_accuracy_after": result_b.test_accuracy_after,
            }
    return out


def _median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The first row, with its wall times replaced by the medians over ``rows``."""
    row = dict(rows[0])
    for key in ("wall_s", "optimizer_wall_s"):
        row[key] = statistics.median(r[key] for r in rows)
    return row


def run(
    latency_ms: float = 200.0,
    quick: bool = False,
    *,
    labeled: int | None = None,
    budget: int | None = None,
    workers: int | None = None,
    repeats: int | None = None,
    include_mlflow: bool = True,
) -> dict[str, Any]:
    """Run B1 and return its JSON-ready results (also printed as a table).

    Each repetition uses a fresh store; wall times reported are medians over repetitions
    (the calls are deterministic), and every repetition is kept under ``repeats``.
    """
    cfg = dict(QUICK if quick else FULL)
    overrides = (
        ("labeled", labeled),
        ("budget", budget),
        ("workers", workers),
        ("repeats", repeats),
    )
    cfg.update({k: v for k, v in overrides if v})
    set_latency(latency_ms)
    latency_s = latency_ms / 1000
    # LiteLLM is imported on first use since issue 9 (the CLI and status stay light); every
    # judge run needs it, and the timed systems below compare alignment work, not a
    # one-off library import, so load it before the clock starts, as configure() used to.
    import litellm  # noqa: F401

    runs = [_once(cfg, latency_s, include_mlflow) for _ in range(cfg["repeats"])]
    systems = ("a", "b", "c") if include_mlflow else ("a", "c")
    med = {k: _median_row([r[k] for r in runs]) for k in systems}
    a, c = med["a"], med["c"]
    b = med.get("b")
    out: dict[str, Any] = {
        "benchmark": "b1_gepa_speed",
        "latency_ms": latency_ms,
        "settings": cfg,
        "labeled_by_split": runs[0]["labeled_by_split"],
        "iterations_logged": runs[0]["iterations_logged"],
        **med,
        "repeats": [
            {
                k: {"wall_s": r[k]["wall_s"], "optimizer_wall_s": r[k]["optimizer_wall_s"]}
                for k in systems
            }
            for r in runs
        ],
    }
    ratios = {
        "a_over_c_total": ratio(a["wall_s"], c["wall_s"]),
        "a_over_c_optimizer": ratio(a["optimizer_wall_s"], c["optimizer_wall_s"]),
        "b_over_a_total": ratio(b["wall_s"], a["wall_s"]) if b else None,
        "b_over_a_optimizer": ratio(b["optimizer_wall_s"], a["optimizer_wall_s"]) if b else None,
    }
    goals = {
        "a_within_1_3x_of_c": (
            ratios["a_over_c_total"] is not None and ratios["a_over_c_total"] <= GOAL_BOUND_RATIO
        ),
        "a_4x_faster_than_b": (
            ratios["b_over_a_total"] is not None and ratios["b_over_a_total"] >= GOAL_SPEEDUP
        ),
    }
    out.update(ratios=ratios, goals=goals)
    rows = [a, *([b] if b else []), c]
    print_table(
        f"B1 GEPA speed: {cfg['labeled']} labeled traces, budget {cfg['budget']}, "
        f"{latency_ms:g} ms/call, {cfg['workers']} workers, median of {cfg['repeats']}",
        rows,
        [
            "system",
            "wall_s",
            "optimizer_wall_s",
            "metric_calls",
            "llm_calls",
            "max_in_flight",
            "iterations",
        ],
    )
    print(
        "ratios: "
        + ", ".join(f"{k}={v}" for k, v in ratios.items())
        + " | goals: "
        + ", ".join(f"{k}={'met' if v else 'MISSED'}" for k, v in goals.items()),
        flush=True,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python benchmarks/b1_gepa_speed.py [--quick] [--latency-ms N] --out F``."""
    p = arg_parser(__doc__.splitlines()[0])
    p.add_argument("--budget", type=int)
    p.add_argument("--labeled", type=int, help="labeled train+val traces (40)")
    p.add_argument("--workers", type=int)
    p.add_argument("--repeats", type=int, help="repetitions (full: 3, quick: 1)")
    p.add_argument("--skip-mlflow", action="store_true", help="run (a) and (c) only")
    args = p.parse_args(argv)
    result = run(
        args.latency_ms,
        args.quick,
        labeled=args.labeled,
        budget=args.budget,
        workers=args.workers,
        repeats=args.repeats,
        include_mlflow=not args.skip_mlflow,
    )
    write_json(args.out, {"b1": result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
