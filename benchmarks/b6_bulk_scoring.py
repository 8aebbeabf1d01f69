"""B6: bulk scoring speed: 1,000 traces, the demo judge at 200 ms per call, 8 workers.

In a temporary sqlite store: ``N`` support traces (the demo's, cycled, with unique ids)
imported through alignboard's importer, the demo criterion, and the aligned demo judge
(the instructions of the demo GEPA alignment, ``tests/fixtures/aligned_demo_judge.txt``)
registered as ``support_quality`` v1, with the demo model (a deterministic stand-in, not
an LLM) sleeping ``--latency-ms`` per call. Then:

(a) ``bulk_scoring.run_scoring`` in this process on every trace (the job's own code path:
    pre-flight and selection, the MLflow run, batches read and judged in parallel,
    every verdict written as ``LLM_JUDGE`` feedback, metrics, ``result.json``);
(b) the same again: idempotent, so it judges and writes nothing (its time is the cost of
    finding out);
(c) one small job (``--launch-traces`` traces, version 2 of the judge) through the real
    path, ``jobs.launch`` -> a worker process -> ``jobs.wait``: the launch overhead is its
    launch-to-finished time minus the job's own ``wall_seconds``.

The floor of (a) is ``N / workers * latency`` (25 s for 1,000 traces, 8 workers, 200 ms):
the goal is (a) within 1.3x of it. Writes per second are the verdicts (a) wrote over the
time its main thread spent writing them (which overlaps the judge calls).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    DEMO_CRITERION,
    JUDGE_MODEL,
    ROOT,
    _create_demo_criterion,
    _demo_dir,
    arg_parser,
    print_table,
    ratio,
    set_latency,
    temp_store,
    write_json,
)

FULL = {"traces": 1000, "workers": 8, "launch_traces": 16}
QUICK = {"traces": 1000, "workers": 8, "launch_traces": 16}
GOAL_RATIO = 1.3
EXPERIMENT = "bench-score"


def _aligned_instructions() -> str:
    path = ROOT / "tests" / "fixtures" / "aligned_demo_judge.txt"
    return path.read_text(encoding="utf-8")


def seed(n: int) -> str:
    """Import ``n`` support traces and register the aligned demo judge (v1 and v2)."""
    from core.io.importer import import_file
    from core.optimization.judging import build_judge
    from core.optimization.registry import register_version
    from core.optimization.spec import JudgeSpec
    from core.store.experiments import get_or_create_experiment

    exp = get_or_create_experiment(EXPERIMENT)
    _create_demo_criterion(exp.experiment_id)
    demo = [
        json.loads(line)
        for line in (_demo_dir() / "support_traces.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    rows = []
    for i in range(n):
        r = dict(demo[i % len(demo)])
        r.pop("labels", None)  # unlabeled traces: what bulk scoring is for
        r["id"] = f"b6-{i:05d}"
        rows.append(r)
    path = Path(tempfile.mkdtemp(prefix="b6-data-")) / "traces.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    import_file(path, EXPERIMENT)
    spec = JudgeSpec(DEMO_CRITERION, _aligned_instructions(), "pass_fail", JUDGE_MODEL)
    for _ in range(2):
        register_version(
            build_judge(spec), exp.experiment_id, run_id=None, test_metrics={}, optimizer="gepa"
        )
    return str(exp.experiment_id)


def _launch(experiment_id: str, n: int, workers: int) -> dict[str, Any]:
    """One job through jobs.launch and a real worker process."""
    from core.optimization import jobs
    from core.optimization.bulk_scoring import build_score_settings
    from core.optimization.record import read_result
    from core.optimization.score_spec import TraceSelection

    settings = build_score_settings(
        experiment_id,
        f"{DEMO_CRITERION}@2",
        TraceSelection(mode="all", limit=n),
        workers=workers,
    )
    started = time.perf_counter()
    run_id = jobs.launch(settings)
    launched = time.perf_counter() - started
    final = jobs.wait(run_id, timeout_s=300, poll_s=0.1)
    total = time.perf_counter() - started
    from mlflow import MlflowClient

    result = read_result(MlflowClient(), run_id) or {}
    job_wall = float(result.get("wall_seconds") or 0.0)
    return {
        "status": final.status,
        "traces": n,
        "n_scored": final.n_scored,
        "launch_call_s": launched,
        "launch_to_finished_s": total,
        "job_wall_s": job_wall,
        "overhead_s": total - job_wall,
    }


def run(
    latency_ms: float = 200.0,
    quick: bool = False,
    *,
    traces: int | None = None,
    workers: int | None = None,
    launch_traces: int | None = None,
) -> dict[str, Any]:
    """Run B6 and return its figures (see the module docstring)."""
    cfg = dict(QUICK if quick else FULL)
    n = traces or cfg["traces"]
    w = workers or cfg["workers"]
    n_launch = launch_traces or cfg["launch_traces"]
    with temp_store("alignboard-b6-"):
        set_latency(0)
        t0 = time.perf_counter()
        experiment_id = seed(n)
        seed_s = time.perf_counter() - t0
        set_latency(latency_ms)
        from core.optimization.bulk_scoring import build_score_settings, run_scoring
        from core.optimization.score_spec import TraceSelection

        settings = build_score_settings(
            experiment_id, DEMO_CRITERION + "@1", TraceSelection(mode="all"), workers=w
        )
        t0 = time.perf_counter()
        first = run_scoring(settings)
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        second = run_scoring(settings)
        second_s = time.perf_counter() - t0
        launched = _launch(experiment_id, n_launch, w)
    floor = n / w * latency_ms / 1000
    rows = [
        {
            "system": "(a) run_scoring",
            "traces": n,
            "scored": first.n_scored,
            "wall_s": first_s,
            "floor_s": floor,
            "ratio": ratio(first_s, floor),
            "writes_per_s": ratio(first.n_scored, first.write_seconds),
        },
        {
            "system": "(b) second run",
            "traces": n,
            "scored": second.n_scored,
            "wall_s": second_s,
            "floor_s": 0.0,
            "ratio": None,
            "writes_per_s": None,
        },
        {
            "system": f"(c) launch+worker ({n_launch})",
            "traces": n_launch,
            "scored": launched["n_scored"],
            "wall_s": launched["launch_to_finished_s"],
            "floor_s": n_launch / w * latency_ms / 1000,
            "ratio": None,
            "writes_per_s": None,
        },
    ]
    print_table(
        f"B6 bulk scoring ({n} traces, {w} workers, {latency_ms:g} ms per call)",
        rows,
        ["system", "traces", "scored", "wall_s", "floor_s", "ratio", "writes_per_s"],
    )
    r = ratio(first_s, floor)
    print(
        f"launch overhead: {launched['overhead_s']:.2f} s (launch call "
        f"{launched['launch_call_s']:.2f} s, job {launched['job_wall_s']:.2f} s of "
        f"{launched['launch_to_finished_s']:.2f} s)",
        flush=True,
    )
    return {
        "config": {"traces": n, "workers": w, "latency_ms": latency_ms, "quick": quick},
        "seed_s": seed_s,
        "a": {
            "wall_s": first_s,
            "job_wall_s": first.wall_seconds,
            "status": first.status,
            "n_scored": first.n_scored,
            "n_failed": first.n_failed,
            "llm_calls": first.llm_calls,
            "write_seconds": first.write_seconds,
            "writes_per_s": ratio(first.n_scored, first.write_seconds),
            "value_counts": first.value_counts,
        },
        "b": {
            "wall_s": second_s,
            "n_scored": second.n_scored,
            "n_skipped": second.n_skipped,
            "llm_calls": second.llm_calls,
        },
        "c": launched,
        "floor_s": floor,
        "ratio": r,
        "goals": {"a_within_1_3x_of_floor": r is not None and r <= GOAL_RATIO},
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python benchmarks/b6_bulk_scoring.py [--quick] [--out F]``."""
    p = arg_parser(__doc__.splitlines()[0])
    p.add_argument("--traces", type=int, help="traces to score (1000)")
    p.add_argument("--workers", type=int, help="judge calls in flight (8)")
    args = p.parse_args(argv)
    result = run(args.latency_ms, args.quick, traces=args.traces, workers=args.workers)
    write_json(args.out, {"b6": result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
