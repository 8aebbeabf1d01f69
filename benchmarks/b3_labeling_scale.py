"""B3: labeling at scale. Server-side time of the Label and Traces pages at 1k, 10k, 100k traces.

For each size, a generated store (``benchmarks/b3_stores.py``: N traces, 20% labeled by
two reviewers, one review queue holding all N) is copied to a temporary folder and
measured in a **fresh Python process** (so peak memory is that size's alone) running the
real dashboard script through Streamlit's ``AppTest``, which executes ``app/main.py``
exactly as ``streamlit run`` does, minus the browser. Timed, as wall time of one
script run (a "rerun") on the server:

* ``submit_next``: the reviewer has picked a value and typed a rationale; Ctrl+Enter
  (the label form's ``submit`` action) writes the label to MLflow and renders the next
  pending trace. Repeated ``--submits`` times in one session, the way a reviewer works
  through a queue.
* ``pick_value``: picking a value (key ``1``/``2``) happens in the browser's label form
  and reruns nothing since issue 12; this is a plain rerun of the page with no action,
  the floor under every interaction.
* ``open_label`` / ``open_traces``: a reviewer on the Overview page opens the page from
  the navigation while the server's caches are warm (one rerun of their session), and
  ``*_cold``: the same with every cache emptied first, as after a server restart.

Reported: p50 and p95 per measure, the 100k/1k ratio of the p95s, and the peak resident
memory of the measuring process (``ru_maxrss``). The run checks its own work: every
submit must land as a HUMAN label in MLflow and move to a trace the reviewer had not
labeled.

Usage: ``python benchmarks/b3_labeling_scale.py [--sizes 1000 10000 100000] --out F``.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.b3_stores import REVIEWER, build_store
from benchmarks.common import ROOT, arg_parser, print_table, ratio, write_json

FULL_SIZES = (1000, 10_000, 100_000)
QUICK_SIZES = (1000, 10_000)
APP = str(ROOT / "app" / "main.py")
GOAL_P95_MS = 100.0
GOAL_RATIO = 1.5


def percentile(values: list[float], q: float) -> float:
    """The ``q`` percentile (0-100) by linear interpolation (numpy's default method)."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(ms: list[float]) -> dict[str, float]:
    """p50, p95, mean and max of a list of milliseconds."""
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "mean_ms": statistics.fmean(ms),
        "max_ms": max(ms),
    }


# --- the measuring child process -------------------------------------------------------


def _timed_run(at) -> float:
    t0 = time.perf_counter()
    at.run()
    ms = (time.perf_counter() - t0) * 1000
    if at.exception:
        raise RuntimeError(f"the page raised: {[e.value for e in at.exception]}")
    return ms


def share_script_cache() -> None:
    """Compile each page script once per process, as the real server does.

    ``AppTest`` gives every run a new ``ScriptCache``, so each rerun would recompile
    ``app/main.py`` and the page (about 30 ms of AST work here) where ``streamlit run``
    keeps one cache per server. Sharing one cache measures what the server does.
    """
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache
    from streamlit.testing.v1 import app_test, local_script_runner

    shared = ScriptCache()
    app_test.ScriptCache = local_script_runner.ScriptCache = lambda: shared


def _new_session(page: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=600)
    at.session_state["shell_reviewer"] = REVIEWER
    return at.switch_page(f"app_pages/{page}.py")


def measure(folder: Path, submits: int, opens: int, colds: int) -> dict[str, Any]:
    """Measure one store (in this process); return the figures."""
    import streamlit as st

    from core.labeling.labels import current_labels
    from core.store import config

    config.configure(f"sqlite:///{folder / 'mlflow.db'}")
    share_script_cache()
    exp_id = json.loads((folder / "built.json").read_text())["experiment_id"]
    out: dict[str, Any] = {}

    # A reviewer on the Overview page opens the page from the navigation: one rerun of
    # their session. (A brand-new AppTest's first run adds ~200 ms of harness set-up even
    # for a one-line script, which no server pays per page view, so it is not timed.)
    at = _new_session("overview")
    _timed_run(at)
    for page in ("label", "traces"):
        cold, warm = [], []
        for i in range(colds + opens):
            _timed_run(at.switch_page("app_pages/overview.py"))
            if i < colds:
                st.cache_data.clear()
                st.cache_resource.clear()
            (cold if i < colds else warm).append(_timed_run(at.switch_page(f"app_pages/{page}.py")))
        out[f"open_{page}_cold"] = summary(cold)
        out[f"open_{page}"] = summary(warm)

    before = {lab.trace_id for lab in current_labels(exp_id, reviewer=REVIEWER)}
    at = _new_session("label")
    _timed_run(at)
    pick, submit, visited = [], [], []
    for i in range(submits):
        tid = at.session_state["label_trace"]
        if tid in before or tid in visited:
            raise RuntimeError(f"submit {i}: the page opened {tid}, which is already labeled")
        visited.append(tid)
        pick.append(_timed_run(at))
        # What the label form sends on Ctrl+Enter (AppTest cannot run the component).
        at.session_state["label_do"] = {
            "action": "submit",
            "trace_id": tid,
            "index": i % 2,
            "rationale": f"benchmark label {i}",
            "n": f"b3-{i}",
        }
        submit.append(_timed_run(at))
        if at.error or at.session_state["label_error"]:
            raise RuntimeError(
                f"submit {i} failed: {[e.value for e in at.error]} "
                f"{at.session_state['label_error']}"
            )
    after = {lab.trace_id for lab in current_labels(exp_id, reviewer=REVIEWER)}
    if after - before != set(visited):
        raise RuntimeError(
            f"{len(set(visited) - after)} of {len(visited)} submitted labels are not in MLflow"
        )
    out["pick_value"] = summary(pick)
    out["submit_next"] = summary(submit)
    out["labels_checked"] = len(visited)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _child(args) -> int:
    folder = Path(args.child)
    result = measure(folder, args.submits, args.opens, args.colds)
    Path(args.child_out).write_text(json.dumps(result), encoding="utf-8")
    return 0


# --- the driver -------------------------------------------------------------------------


def run_size(n: int, submits: int, opens: int, colds: int) -> dict[str, Any]:
    """Build or reuse the store with ``n`` traces, measure a copy in a fresh process."""
    src = build_store(n)
    work = Path(tempfile.mkdtemp(prefix=f"b3-{n}-"))
    try:
        t0 = time.perf_counter()
        shutil.copytree(src, work / "store")
        copy_s = time.perf_counter() - t0
        out_file = work / "result.json"
        env = {
            **os.environ,
            "ALIGNBOARD_HOME": str(work / "store"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'store' / 'mlflow.db'}",
        }
        cmd = [sys.executable, __file__, "--child", str(work / "store"), "--child-out",
               str(out_file), "--submits", str(submits), "--opens", str(opens),
               "--colds", str(colds)]  # fmt: skip
        subprocess.run(cmd, env=env, check=True, cwd=ROOT)
        result = json.loads(out_file.read_text())
        result["traces"] = n
        result["store_mb"] = (src / "mlflow.db").stat().st_size / 2**20
        result["copy_seconds"] = copy_s
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(sizes: tuple[int, ...], submits: int = 40, opens: int = 10, colds: int = 3) -> dict:
    """Measure every size; print the table; return the results with ratios and goals."""
    per_size = [run_size(n, submits, opens, colds) for n in sizes]
    rows = []
    for r in per_size:
        rows.append(
            {
                "traces": r["traces"],
                "submit p50": r["submit_next"]["p50_ms"],
                "submit p95": r["submit_next"]["p95_ms"],
                "pick p95": r["pick_value"]["p95_ms"],
                "Label p50": r["open_label"]["p50_ms"],
                "Label p95": r["open_label"]["p95_ms"],
                "Label cold": r["open_label_cold"]["p50_ms"],
                "Traces p50": r["open_traces"]["p50_ms"],
                "Traces p95": r["open_traces"]["p95_ms"],
                "Traces cold": r["open_traces_cold"]["p50_ms"],
                "peak MB": r["peak_rss_mb"],
            }
        )
    print_table("B3 labeling at scale (server-side ms per rerun, AppTest)", rows, list(rows[0]))
    result: dict[str, Any] = {"sizes": per_size, "goal_p95_ms": GOAL_P95_MS}
    small, large = per_size[0], per_size[-1]
    key = f"{large['traces']}/{small['traces']}"
    result["ratios"] = {
        m: {key: ratio(large[m]["p95_ms"], small[m]["p95_ms"])}
        for m in ("submit_next", "pick_value", "open_label", "open_traces")
    }
    p95 = large["submit_next"]["p95_ms"]
    r = result["ratios"]["submit_next"][key]
    result["goals"] = {
        "submit_next_p95_ms": p95,
        "p95_met": p95 <= GOAL_P95_MS,
        "ratio": r,
        "ratio_met": r is not None and r <= GOAL_RATIO,
    }
    print(
        f"submit & next p95 at {large['traces']}: {p95:.1f} ms (goal <= {GOAL_P95_MS:.0f}); "
        f"{key} ratio {r} (goal <= {GOAL_RATIO})",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    p = arg_parser(__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", help="store sizes (default 1k 10k 100k)")
    p.add_argument("--submits", type=int, default=40, help="labels submitted per size (40)")
    p.add_argument("--opens", type=int, default=10, help="warm page opens per page (10)")
    p.add_argument("--colds", type=int, default=3, help="cold page opens per page (3)")
    p.add_argument("--child", help=argparse_hidden())
    p.add_argument("--child-out", help=argparse_hidden())
    args = p.parse_args(argv)
    if args.child:
        return _child(args)
    sizes = tuple(args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES))
    write_json(args.out, {"b3": run(sizes, args.submits, args.opens, args.colds)})
    return 0


def argparse_hidden() -> str:
    """Help text that hides an internal option from ``--help``."""
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    raise SystemExit(main())
