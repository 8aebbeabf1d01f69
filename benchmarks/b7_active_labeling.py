"""B7: held-out agreement after N labels chosen actively vs N chosen in arrival order.

On the larger synthetic demo set (``assets/demo_large``, 450 labeled traces, a test split
of about 90; ``--data demo`` for the hand-written ``assets/demo`` and its 14), with the
demo judge and reflection models (a deterministic offline stand-in, not an LLM: **these are demo stand-in
figures**, they say how the loop behaves on this data, not how much active labeling helps
with a real model):

* the labels of the fixed test split stay in the store (the held-out set every
  alignment is scored on); the labels of every train/val trace are hidden (the *pool*:
  the demo file keeps them, so a pick can be "revealed" as if a reviewer labeled it); the
  demo's unlabeled traces are left out (nobody could reveal them);
* per seed, the same ``N0`` random pool traces are revealed first (redrawn until they
  hold a train and a validation trace, which gepa needs); the seed also seeds gepa;
* **arrival**: the next traces in the file's order are revealed until N are labeled, and
  the judge is aligned (gepa, from the criterion's seed instructions) on those N;
* **active**: align on the labels so far, score every still-hidden pool trace with the
  aligned version (``core.optimization.bulk_scoring.run_scoring`` on the unlabeled
  traces: LLM_JUDGE feedback under the version's source id), rank the pool with ``core.labeling.active``
  (the Traces page's ranking, its neighbours restricted to the labels revealed so far: the
  test labels inform neither training nor the choice), reveal the top of the ranking up
  to the next N, realign from the seed instructions on those N; repeat.

Every alignment is ``engine.run_alignment`` (the product path: pre-flight, an MLflow run,
held-out scoring, registration), and the figure reported at each N is the aligned judge's
accuracy and Cohen's kappa against the consolidated human labels on the test split
(``test_accuracy_after``, ``test_kappa_after``). Both strategies see the same N, budget and
seeds; only the choice of which traces get labeled differs. Each point also records the
95% bootstrap interval of that accuracy and its width (``ci_width``), printed beside the
means: differences between the strategies smaller than the width are noise. The demo model
answers at 0 ms per call (quality, not speed, is measured; latency would not change a
verdict).
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    JUDGE_MODEL,
    REFLECTION_MODEL,
    _create_demo_criterion,
    _demo_dir,
    _large_dir,
    arg_parser,
    ci_width,
    fmt_ci,
    print_table,
    set_latency,
    temp_store,
    write_json,
)

FULL = {
    "sizes": (8, 16, 24, 32, 40),
    "seeds": (0, 1, 2),
    "n0": 4,
    "budget": 150,
    "reference": True,
    "data": "large",
}
QUICK = {"sizes": (8,), "seeds": (0,), "n0": 4, "budget": 40, "reference": False, "data": "large"}
#: Which labeled set: the larger synthetic one (held-out figures with 60+ test traces) or
#: the hand-written demo (14).
DATA = ("large", "demo")
STRATEGIES = ("arrival", "active")
#: The reference row: every pool trace labeled (the same for both strategies).
REFERENCE = "all labels"
EXPERIMENT = "bench-active"
STAND_IN = (
    "Demo stand-in figures: the demo judge and reflection models are a deterministic "
    "offline stand-in, not an LLM; the test split holds {n_test} traces."
)


def _records(data: str = "large") -> list[dict[str, Any]]:
    path = (_large_dir() if data == "large" else _demo_dir()) / "support_traces.jsonl"
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _import_hidden(data: str = "large") -> dict[str, Any]:
    """Import the labeled demo traces; keep the test labels, hide the train/val ones.

    Returns:
        experiment id, criterion, the pool in arrival order, the hidden labels per trace
        id and the test split's size.
    """
    from core.io.importer import import_file, trace_id_for
    from core.labeling.splits import assign_split
    from core.store.experiments import get_or_create_experiment

    exp = get_or_create_experiment(EXPERIMENT)
    criterion = _create_demo_criterion(exp.experiment_id)
    rows, pool, hidden, n_test = [], [], {}, 0
    for r in _records(data):
        if not r.get("labels"):
            continue  # no labels to reveal: not part of this benchmark
        tid = trace_id_for(exp.experiment_id, r["id"])
        if assign_split(tid) == "test":
            n_test += 1
        else:
            hidden[tid] = r.pop("labels")
            pool.append(tid)
        rows.append(r)
    folder = Path(tempfile.mkdtemp(prefix="bench-b7-"))
    try:
        path = folder / "demo.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
        import_file(path, EXPERIMENT)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "experiment_id": exp.experiment_id,
        "criterion": criterion,
        "pool": pool,
        "hidden": hidden,
        "n_test": n_test,
    }


def _start_set(pool: list[str], n0: int, seed: int) -> list[str]:
    """The seed's first ``n0`` labels: a random draw holding a train and a val trace.

    gepa needs both (with no validation example it fails on an internal assertion), so
    draws without them are redrawn; the draw depends on the seed only.
    """
    from core.labeling.splits import assign_split

    rng = random.Random(seed)
    while True:
        start = rng.sample(pool, n0)
        if {"train", "val"} <= {assign_split(t) for t in start}:
            return start


def _reveal(criterion: Any, hidden: dict[str, list[dict]], trace_ids: list[str]) -> None:
    """Write the hidden labels of ``trace_ids`` as the reviewers' labels."""
    from core.labeling.labels import set_label

    for tid in trace_ids:
        for lab in hidden[tid]:
            set_label(tid, criterion, lab["reviewer"], lab["value"], lab.get("rationale"))


def _align(experiment_id: str, criterion: Any, seed: int, budget: int) -> Any:
    from core.optimization.engine import run_alignment
    from core.optimization.spec import AlignmentSettings, JudgeSpec

    judge = JudgeSpec(criterion.name, criterion.instructions, criterion.kind, JUDGE_MODEL)
    settings = AlignmentSettings(
        experiment_id,
        judge,
        "gepa",
        REFLECTION_MODEL,
        max_metric_calls=budget,
        seed=seed,
        register_if_worse=True,  # every aligned judge becomes a version the pool is scored with
    )
    try:
        return run_alignment(settings)
    except Exception as exc:  # recorded as a failed point; the other points still count
        return exc


def _score_pool(experiment_id: str, criterion: Any, result: Any) -> int:
    """Score every still-hidden (unlabeled) pool trace with the aligned version, through
    the bulk-scoring job's own code (in process); returns the verdicts written."""
    from core.optimization.bulk_scoring import TraceSelection, build_score_settings, run_scoring

    if isinstance(result, Exception) or result.judge_version is None:
        return 0
    settings = build_score_settings(
        experiment_id,
        f"{criterion.name}@{result.judge_version}",
        TraceSelection(mode="unlabeled"),
    )
    return run_scoring(settings).n_scored


def _canonical(criterion: Any, value: Any) -> Any:
    from core.labeling.criteria import normalize_value

    return normalize_value(criterion, value)


def _judge_errors(verdicts: dict[str, list], truth: dict[str, Any], pool: list[str]) -> set[str]:
    """Pool traces whose newest judge verdict differs from the hidden human label."""
    return {t for t in pool if verdicts.get(t) and verdicts[t][-1].value != truth.get(t)}


def _point(result: Any, strategy: str, seed: int, n: int, **extra: Any) -> dict[str, Any]:
    if isinstance(result, Exception):
        print(f"  seed {seed} {strategy} N={n}: alignment failed: {result!r}", flush=True)
        return {
            "strategy": strategy,
            "seed": seed,
            "n": n,
            "accuracy": None,
            "kappa": None,
            "error": f"{type(result).__name__}: {result}",
            **extra,
        }
    ci = (result.test_after or {}).get("accuracy_ci") or {}
    low, high = ci.get("low"), ci.get("high")
    print(
        f"  seed {seed} {strategy} N={n}: accuracy "
        f"{fmt_ci(result.test_accuracy_after, low, high, result.test_size)}, "
        f"kappa {result.test_kappa_after} ({result.verdict})",
        flush=True,
    )
    return {
        "strategy": strategy,
        "seed": seed,
        "n": n,
        "accuracy": result.test_accuracy_after,
        "accuracy_ci": [low, high],
        "ci_width": ci_width(low, high),
        "kappa": result.test_kappa_after,
        "accuracy_seed_judge": result.test_accuracy_before,
        "kappa_seed_judge": result.test_kappa_before,
        "test_size": result.test_size,
        "train_size": result.train_size,
        "val_size": result.val_size,
        "judge_version": result.judge_version,
        "verdict": result.verdict,
        "metric_calls": result.metric_calls,
        "iterations": result.iterations,
        "wall_s": result.wall_seconds,
        **extra,
    }


def run_strategy(strategy: str, seed: int, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """One curve: a fresh store, the seed's first N0 labels, then ``strategy`` up to each N."""
    from core.labeling.active import load_pool, rank_pool
    from core.labeling.consolidation import consolidate_values

    points: list[dict[str, Any]] = []
    with temp_store(f"alignboard-b7-{strategy}-{seed}-"):
        data = _import_hidden(cfg.get("data", "large"))
        exp_id, crit, pool, hidden = (
            data["experiment_id"],
            data["criterion"],
            data["pool"],
            data["hidden"],
        )
        sizes = [n for n in cfg["sizes"] if n <= len(pool)]
        start = _start_set(pool, cfg["n0"], seed)
        _reveal(crit, hidden, start)
        labeled = list(start)
        truth = consolidate_values(
            (tid, lab["reviewer"], _canonical(crit, lab["value"]))
            for tid, labs in hidden.items()
            for lab in labs
        )
        rest = [t for t in pool if t not in set(start)]  # arrival order
        if strategy == "active":
            result = _align(exp_id, crit, seed, cfg["budget"])
            points.append(_point(result, "active", seed, len(labeled), picks=[]))
        for n in sizes:
            want = n - len(labeled)
            picked_signals: list[list[str]] = []
            if strategy == "arrival":
                batch = rest[:want]
            else:
                _score_pool(exp_id, crit, result)
                # The ranking's neighbours are the revealed labels only: the test split's
                # labels are held out from the choice as well as from training.
                crit_obj, pool_data = load_pool(exp_id, crit.name)
                revealed = set(labeled)
                pool_data.labels = {t: v for t, v in pool_data.labels.items() if t in revealed}
                ranking = rank_pool(crit_obj, pool_data)
                top = [p for p in ranking.picks if p.trace_id in hidden][:want]
                batch = [p.trace_id for p in top]
                picked_signals = [list(p.signals) for p in top]
                errors = _judge_errors(pool_data.verdicts, truth, rest)
            _reveal(crit, hidden, batch)
            labeled += batch
            rest = [t for t in rest if t not in set(batch)]
            result = _align(exp_id, crit, seed, cfg["budget"])
            if strategy == "active":
                # Does the ranking find the judge's mistakes? Share of the picks on which
                # the newest verdict differs from the (hidden) human label, against the
                # share over the whole remaining pool.
                extra_err = {
                    "picked_judge_wrong": sum(t in errors for t in batch) / max(1, len(batch)),
                    "pool_judge_wrong": len(errors) / max(1, len(rest) + len(batch)),
                }
            else:
                extra_err = {}
            signal_counts = {
                s: sum(s in sig for sig in picked_signals)
                for s in ("versions", "neighbours", "unsure")
            }
            points.append(
                _point(
                    result,
                    strategy,
                    seed,
                    len(labeled),
                    batch=len(batch),
                    batch_signals=signal_counts if strategy == "active" else None,
                    **extra_err,
                    batch_no_signal=(
                        sum(not sig for sig in picked_signals) if strategy == "active" else None
                    ),
                )
            )
        if strategy == "arrival" and cfg.get("reference") and rest:
            # Every pool label: the ceiling both strategies reach once all are labeled.
            _reveal(crit, hidden, rest)
            result = _align(exp_id, crit, seed, cfg["budget"])
            points.append(_point(result, REFERENCE, seed, len(pool), batch=len(rest)))
    return points


def _summary(points: list[dict[str, Any]], sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    rows = []
    ns = sorted({*sizes, *(p["n"] for p in points if p["strategy"] == REFERENCE)})
    for n in ns:
        for strategy in (*STRATEGIES, REFERENCE):
            got = [p for p in points if p["n"] == n and p["strategy"] == strategy]
            if not got:
                continue
            row: dict[str, Any] = {"N": n, "strategy": strategy, "seeds": len(got)}
            for metric in ("accuracy", "kappa"):
                vals = [p[metric] for p in got if p[metric] is not None]
                row[f"{metric}_mean"] = statistics.fmean(vals) if vals else None
                row[f"{metric}_min"] = min(vals) if vals else None
                row[f"{metric}_max"] = max(vals) if vals else None
            for key in ("ci_width", "picked_judge_wrong", "pool_judge_wrong"):
                vals = [p[key] for p in got if p.get(key) is not None]
                row[key] = statistics.fmean(vals) if vals else None
            rows.append(row)
    return rows


def _paired(points: list[dict[str, Any]], sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    """Active minus arrival at each N, per seed (same start, same gepa seed)."""
    out = []
    for n in sizes:
        diffs = []
        for p in points:
            if p["strategy"] != "active" or p["n"] != n:
                continue
            q = next(
                (
                    x
                    for x in points
                    if x["strategy"] == "arrival" and x["n"] == n and x["seed"] == p["seed"]
                ),
                None,
            )
            if q and p["accuracy"] is not None and q["accuracy"] is not None:
                diffs.append(p["accuracy"] - q["accuracy"])
        if diffs:
            out.append(
                {
                    "N": n,
                    "accuracy_diff_mean": statistics.fmean(diffs),
                    "active_better": sum(d > 0 for d in diffs),
                    "ties": sum(d == 0 for d in diffs),
                    "arrival_better": sum(d < 0 for d in diffs),
                }
            )
    return out


def run(quick: bool = False, **overrides: Any) -> dict[str, Any]:
    """Run B7 and return its JSON-ready results (also printed as tables)."""
    cfg = {**(QUICK if quick else FULL), **overrides}
    cfg["sizes"] = tuple(cfg["sizes"])
    set_latency(0)
    started = time.perf_counter()
    points: list[dict[str, Any]] = []
    for seed in cfg["seeds"]:
        for strategy in STRATEGIES:
            points.extend(run_strategy(strategy, seed, cfg))
    rows = _summary(points, cfg["sizes"])
    n_test = next((p["test_size"] for p in points if p.get("test_size")), 0)
    failed = [p for p in points if p.get("error")]
    widths = [p["ci_width"] for p in points if p.get("ci_width") is not None]
    note = STAND_IN.format(n_test=n_test) + (
        f" Mean 95% CI width of a point's accuracy: {statistics.fmean(widths):.2f}."
        if widths
        else ""
    )
    print_table(
        f"B7 active labeling: held-out agreement after N labels "
        f"(gepa, budget {cfg['budget']}, seeds {list(cfg['seeds'])}, first {cfg['n0']} "
        "labels random per seed)",
        rows,
        [
            "N",
            "strategy",
            "seeds",
            "accuracy_mean",
            "accuracy_min",
            "accuracy_max",
            "kappa_mean",
            "kappa_min",
            "kappa_max",
            "ci_width",
            "picked_judge_wrong",
            "pool_judge_wrong",
        ],
    )
    paired = _paired(points, cfg["sizes"])
    print_table(
        "B7 paired by seed: active minus arrival (test accuracy)",
        paired,
        ["N", "accuracy_diff_mean", "active_better", "ties", "arrival_better"],
    )
    if failed:
        print(f"{len(failed)} alignment(s) failed (see points[].error).", flush=True)
    print(note, flush=True)
    return {
        "benchmark": "b7_active_labeling",
        "note": note,
        "config": {**cfg, "sizes": list(cfg["sizes"]), "seeds": list(cfg["seeds"])},
        "rows": rows,
        "paired": paired,
        "points": points,
        "failed_alignments": len(failed),
        "wall_s": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python benchmarks/b7_active_labeling.py [--quick] --out F``."""
    p = arg_parser(__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", help="label counts N (8 16 24 32)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (0 1 2)")
    p.add_argument("--budget", type=int, help="gepa metric calls per alignment (150)")
    p.add_argument(
        "--data",
        choices=DATA,
        help="large: assets/demo_large (default, a test split of ~90); demo: assets/demo (14)",
    )
    args = p.parse_args(argv)
    overrides = {
        k: v
        for k, v in {
            "sizes": args.sizes,
            "seeds": args.seeds,
            "budget": args.budget,
            "data": args.data,
        }.items()
        if v
    }
    result = run(args.quick, **overrides)
    write_json(args.out, {"b7": result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
