"""B9: the Align page's time estimate against the wall time of the job it launched.

For each optimizer (gepa, memalign, mlflow-gepa, simba) on the seeded demo, exactly what
the Align page does: :func:`core.optimization.settings.check_alignment` (pre-flight and
the estimate the page shows), then :func:`core.optimization.jobs.launch` with that check
and :func:`core.optimization.jobs.wait` until the job ends. The actual time runs from the
launch to the job's final status, so it includes what the old estimate left out: process
spawn, imports, MLflow run set-up, loading the examples, held-out scoring and
registration. The demo stand-ins sleep ``--latency-ms`` per call, and the estimate
assumes that same latency. All runs share one experiment, in this order, so from the
second run on the estimate's job start is the recorded median of the runs before it (as
on a user's machine); the first uses the default.

Prints estimate vs actual and the ratio; the issue asks for actual/estimate and
estimate/actual both <= 1.5 for every optimizer (tests/optimization/test_estimates.py).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import arg_parser, print_table, ratio, set_latency, temp_store, write_json

OPTIMIZERS = ("gepa", "memalign", "mlflow-gepa", "simba")
#: Small budgets (metric calls): each job takes seconds, not minutes.
BUDGET = 120
QUICK_BUDGET = 110  # MLflow's GEPA needs 2 x 49 examples + 2 minibatches for an iteration
#: Largest ratio either way the issue accepts.
MAX_RATIO = 1.5


def run(
    latency_ms: float = 50.0, quick: bool = False, timeout_s: float = 300.0, retries: int = 0
) -> dict[str, Any]:
    """Launch each optimizer as a real job on a fresh demo store; return the figures.

    Args:
        latency_ms: The demo stand-ins' latency per call.
        quick: A smaller budget.
        timeout_s: Longest wait for one job.
        retries: Launch an optimizer again (at most this many times) when its ratio is
            beyond :data:`MAX_RATIO`: on a shared machine another process's burst during
            one job's start can double it. Earlier attempts are kept in ``earlier``.
    """
    from core.io.demo_seed import seed_demo
    from core.labeling.criteria import get_criterion

    set_latency(latency_ms)
    budget = QUICK_BUDGET if quick else BUDGET
    rows: list[dict[str, Any]] = []
    with temp_store("alignboard-b9-"):
        seeded = seed_demo("demo")
        crit = get_criterion(seeded.experiment_id, "support_quality")
        for optimizer in OPTIMIZERS:
            attempts: list[dict[str, Any]] = []
            while True:
                row = _one(seeded.experiment_id, crit, optimizer, budget, timeout_s)
                attempts.append(row)
                if _off(row) <= MAX_RATIO or len(attempts) > retries:
                    break
            rows.append({**row, "attempts": len(attempts), "earlier": attempts[:-1]})
    worst = max(_off(r) for r in rows)
    print_table(
        f"B9: estimate vs actual wall time, demo at {latency_ms:g} ms per call, budget {budget}",
        rows,
        [
            "optimizer",
            "status",
            "estimate_s",
            "actual_s",
            "actual/estimate",
            "estimate/actual",
            "job_start_s",
            "optimize_s",
            "held_out_s",
            "metric_calls",
            "budget",
            "attempts",
        ],
    )
    print(f"worst ratio {worst:.2f} (at most {MAX_RATIO} asked)", flush=True)
    return {
        "latency_ms": latency_ms,
        "budget": budget,
        "rows": rows,
        "worst_ratio": worst,
        "within": worst <= MAX_RATIO,
    }


def _off(row: dict[str, Any]) -> float:
    """How far off the estimate was, either way (1 is exact)."""
    return max(row["actual/estimate"] or 0, row["estimate/actual"] or 0)


def _one(experiment_id: str, crit: Any, optimizer: str, budget: int, timeout_s: float) -> dict:
    """One launch as the Align page does it: the check's estimate, then the real job."""
    from mlflow import MlflowClient

    from core.optimization import jobs
    from core.optimization.settings import build_settings, check_alignment

    settings = build_settings(
        experiment_id, crit, optimizer=optimizer, max_metric_calls=budget, workers=4
    )
    check = check_alignment(settings)  # what the page shows before Launch
    t0 = time.monotonic()
    run_id = jobs.launch(settings, check=check)
    final = jobs.wait(run_id, timeout_s=timeout_s, poll_s=0.25)
    actual = time.monotonic() - t0
    metrics = MlflowClient().get_run(run_id).data.metrics
    return {
        "optimizer": optimizer,
        "status": final.status,
        "estimate_s": round(check.seconds, 2),
        "actual_s": round(actual, 2),
        "actual/estimate": ratio(actual, check.seconds),
        "estimate/actual": ratio(check.seconds, actual),
        "job_start_s": metrics.get("job_start_seconds"),
        "cpu_load_factor": metrics.get("cpu_load_factor"),
        "optimize_s": metrics.get("optimize_seconds"),
        "held_out_s": metrics.get("held_out_seconds"),
        "register_s": metrics.get("register_seconds"),
        "metric_calls": final.metric_calls,
        "budget": final.budget,
        "llm_calls": int(metrics.get("llm_calls_total", 0)),
        "explanation": check.explanation,
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python benchmarks/b9_estimates.py [--quick] [--latency-ms N] [--out F]``."""
    p = arg_parser(__doc__.splitlines()[0])
    p.set_defaults(latency_ms=50.0)
    p.add_argument("--retries", type=int, default=0, help="launch again when off (0)")
    args = p.parse_args(argv)
    result = run(args.latency_ms, args.quick, retries=args.retries)
    write_json(args.out, result)
    return 0 if result["within"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
