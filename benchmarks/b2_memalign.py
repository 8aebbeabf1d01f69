"""B2: MemAlign alignment time against its own critical path, at 50 and 1000 labels.

For each size, generated labeled traces (rationales quoting the deciding phrase) are
imported into a fresh experiment and **all** of them are shown to alignboard's
``memalign`` runner (MLflow's ``MemAlignOptimizer`` through ``judge.align``, in chunks),
recorded in an MLflow run. The demo model (a deterministic stand-in, not an LLM) sleeps
``--latency-ms`` per completion and per embedding request.

What MLflow's MemAlign does per ``judge.align`` call, and so per chunk:

* re-embeds the judge's whole episodic memory with ``dspy.Embedder`` (requests of up to
  200 texts, sent **one after another**);
* distils guidelines from the new examples in prompts of up to 50 records, sent in
  parallel on ``MLFLOW_GENAI_OPTIMIZE_MAX_WORKERS`` threads (default 8); this follows the
  embedding.

So the run's critical path is, summed over chunks, ``embedding requests + ceil(distillation
calls / workers)`` latencies, computed from the per-chunk counts the run logged. dspy's
caches are off, so every request is really made. A second, smaller bound is printed: one
``judge.align`` over every label at once (``ceil(n / 200)`` embedding requests plus
``ceil(ceil(n / 50) / workers)`` distillation waves), which shows what the chunking (the
runner's progress and cancel points) costs.
"""

from __future__ import annotations

import math
import os
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
    print_table,
    ratio,
    set_latency,
    synthetic_store,
    temp_store,
    write_json,
)

FULL_SIZES = (50, 1000)
QUICK_SIZES = (50, 1000)
EMBED_BATCH = 200
DISTILL_BATCH = 50


def _workers() -> int:
    from mlflow.environment_variables import MLFLOW_GENAI_OPTIMIZE_MAX_WORKERS

    return int(MLFLOW_GENAI_OPTIMIZE_MAX_WORKERS.get())


def _deltas(client: Any, run_id: str, key: str) -> list[float]:
    history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
    values = [m.value for m in history]
    return [b - a for a, b in zip([0.0, *values], values, strict=False)]


def run_size(n: int, latency_ms: float) -> dict[str, Any]:
    """Align MemAlign on ``n`` generated labels in a fresh store; return the figures."""
    from mlflow import MlflowClient

    from core.models import demo_stats, reset_demo_stats
    from core.optimization.dataset import load_examples
    from core.optimization.engine import create_run
    from core.optimization.recorder import MlflowRunRecorder
    from core.optimization.runners import memalign as memalign_runner
    from core.optimization.spec import AlignmentSettings, JudgeSpec

    latency_s = latency_ms / 1000
    workers = _workers()
    with temp_store(f"alignboard-b2-{n}-"):
        experiment_id, criterion = synthetic_store(n, experiment=f"bench-memalign-{n}")
        examples = load_examples(experiment_id, criterion.name)
        judge = JudgeSpec(criterion.name, criterion.instructions, criterion.kind, JUDGE_MODEL)
        settings = AlignmentSettings(experiment_id, judge, "memalign", REFLECTION_MODEL)
        run_id = create_run(settings, status="running")
        client = MlflowClient()
        recorder = MlflowRunRecorder(run_id, client)
        reset_demo_stats()
        started = time.perf_counter()
        outcome = memalign_runner.run(settings, list(examples), [], recorder)
        wall = time.perf_counter() - started
        stats = demo_stats()
        # The runner's llm_calls come from LiteLLM's log, which counts embedding requests
        # too; the demo model counts those separately.
        llm = [int(d) for d in _deltas(client, run_id, "llm_calls")]
        embeds = [int(d) for d in _deltas(client, run_id, "demo_embedding_calls")]
        distill = [a - e for a, e in zip(llm, embeds, strict=True)]
    chunks = [
        {"distill_calls": d, "embedding_calls": e, "steps": e + math.ceil(d / workers)}
        for d, e in zip(distill, embeds, strict=True)
    ]
    steps = sum(c["steps"] for c in chunks)
    one_pass = math.ceil(n / EMBED_BATCH) + math.ceil(math.ceil(n / DISTILL_BATCH) / workers)
    bound = steps * latency_s
    return {
        "labels": n,
        "wall_s": wall,
        "bound_s": bound,
        "wall_over_bound": ratio(wall, bound),
        "single_pass_bound_s": one_pass * latency_s,
        "chunks": len(chunks),
        "llm_calls": stats.calls,
        "embedding_calls": stats.embedding_calls,
        "max_in_flight": stats.max_in_flight,
        "guidelines": len(outcome.extra.get("guidelines", [])),
        "episodes": outcome.extra.get("episodes"),
        "critical_path_steps": steps,
        "per_chunk": chunks,
        "distill_workers": workers,
    }


def run(latency_ms: float = 200.0, quick: bool = False, sizes: Any = None) -> dict[str, Any]:
    """Run B2 and return its JSON-ready results (also printed as a table)."""
    set_latency(latency_ms)
    sizes = tuple(sizes or (QUICK_SIZES if quick else FULL_SIZES))
    rows = [run_size(n, latency_ms) for n in sizes]
    print_table(
        f"B2 MemAlign: {latency_ms:g} ms/call, distillation on "
        f"{os.environ.get('MLFLOW_GENAI_OPTIMIZE_MAX_WORKERS', '8')} threads",
        rows,
        [
            "labels",
            "wall_s",
            "bound_s",
            "wall_over_bound",
            "single_pass_bound_s",
            "chunks",
            "llm_calls",
            "embedding_calls",
            "max_in_flight",
            "guidelines",
        ],
    )
    return {
        "benchmark": "b2_memalign",
        "latency_ms": latency_ms,
        "sizes": list(sizes),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python benchmarks/b2_memalign.py [--quick] [--latency-ms N] --out F``."""
    p = arg_parser(__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", help="label counts (50 1000)")
    args = p.parse_args(argv)
    result = run(args.latency_ms, args.quick, args.sizes)
    write_json(args.out, {"b2": result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
