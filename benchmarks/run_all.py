"""Run every benchmark (B0, B1, B2, B3, B5, B6, B7, B8, B9, B10) in one process; print the tables, write one JSON.

``python benchmarks/run_all.py --quick --out benchmarks/results/latest.json`` is what
``make bench`` runs (under five minutes on a 2-core machine). B8 (the Label page in
Chromium) runs only when asked for (``--only b8``): it needs ``/usr/bin/chromium`` and
takes minutes per store size. B9 (estimate vs actual wall time of real jobs, one per
optimizer) runs only when asked for too (``--only b9``): it launches four job processes.
B10 (launch to "running", worker vs one-off spawns) too (``--only b10``): it starts a
worker and some 80 jobs. B11 (10 reviewers on a PostgreSQL team in Chromium) only with
``--only b11``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import (
    b0_startup,
    b1_gepa_speed,
    b2_memalign,
    b3_labeling_scale,
    b5_prompt_speed,
    b6_bulk_scoring,
    b7_active_labeling,
    b8_label_browser,
    b9_estimates,
    b10_launch,
    b11_team_load,
)
from benchmarks.common import arg_parser, write_json


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python benchmarks/run_all.py [--quick] [--latency-ms N] --out F``."""
    p = arg_parser(__doc__.splitlines()[0])
    names = ("b0", "b1", "b2", "b3", "b5", "b6", "b7", "b8", "b9", "b10", "b11")
    p.add_argument("--only", choices=names, nargs="+", help="run only these")
    args = p.parse_args(argv)
    # B8 drives a real browser for minutes per size, B9 launches job processes: only on
    # request.
    wanted = set(args.only or [n for n in names if n not in ("b8", "b9", "b10", "b11")])
    started = time.perf_counter()
    results: dict = {"quick": args.quick, "latency_ms": args.latency_ms}
    if "b0" in wanted:
        # Whole processes of its own, 5 runs each in quick mode too (about a minute).
        results["b0"] = b0_startup.run()
    if "b1" in wanted:
        results["b1"] = b1_gepa_speed.run(args.latency_ms, args.quick)
    if "b2" in wanted:
        results["b2"] = b2_memalign.run(args.latency_ms, args.quick)
    if "b3" in wanted:
        sizes = b3_labeling_scale.QUICK_SIZES if args.quick else b3_labeling_scale.FULL_SIZES
        results["b3"] = b3_labeling_scale.run(sizes)
    if "b5" in wanted:
        results["b5"] = b5_prompt_speed.run(args.latency_ms, args.quick)
    if "b6" in wanted:
        results["b6"] = b6_bulk_scoring.run(args.latency_ms, args.quick)
    if "b7" in wanted:  # quality of a labeling order on the demo stand-ins, not speed
        results["b7"] = b7_active_labeling.run(args.quick)
    if "b8" in wanted:  # Ctrl+Enter to the next trace on screen, in Chromium
        sizes = b8_label_browser.QUICK_SIZES if args.quick else b8_label_browser.FULL_SIZES
        results["b8"] = b8_label_browser.run(sizes)
    if "b9" in wanted:  # the Align page's estimate vs the real job, per optimizer
        results["b9"] = b9_estimates.run(args.latency_ms, args.quick)
    if "b11" in wanted:  # 10 reviewers in Chromium on a team (PostgreSQL, worker, 2 replicas)
        results["b11"] = b11_team_load.run(30 if args.quick else b11_team_load.DEFAULT_SECONDS)
    if "b10" in wanted:  # launch to running, worker vs one-off spawn
        results["b10"] = b10_launch.run(b10_launch.QUICK_N if args.quick else b10_launch.N)
    results["total_seconds"] = time.perf_counter() - started
    print(f"all benchmarks: {results['total_seconds']:.1f} s", flush=True)
    write_json(args.out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
