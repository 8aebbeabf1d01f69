"""Shared pieces of the benchmarks: temporary stores, data sets, timing, tables, JSON.

Every benchmark runs against its own temporary embedded sqlite store (never the user's
``.alignboard``), with the offline demo model (``demo:/...``, a deterministic stand-in,
not an LLM) at a set latency per call, and with dspy's on-disk and in-memory caches off
so that no call is answered from an earlier run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
os.environ.setdefault("DO_NOT_TRACK", "true")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LATENCY_ENV = "ALIGNBOARD_DEMO_LATENCY_MS"
DEMO_CRITERION = "support_quality"
JUDGE_MODEL = "demo:/judge"
REFLECTION_MODEL = "demo:/reflect"


# --- command line ---------------------------------------------------------------------


def arg_parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark script takes: ``--out``, ``--latency-ms``, ``--quick``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", type=Path, help="write the results as JSON to this file")
    p.add_argument(
        "--latency-ms", type=float, default=200.0, help="demo model latency per call (200)"
    )
    p.add_argument("--quick", action="store_true", help="smaller settings, for make bench")
    return p


# --- environment ----------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    from importlib import metadata

    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": {p: version(p) for p in ("mlflow", "dspy", "gepa", "litellm")},
    }


def set_latency(ms: float) -> None:
    """Set the demo model's latency per call (completions and embeddings)."""
    os.environ[LATENCY_ENV] = str(ms)


def no_dspy_cache() -> None:
    """Turn dspy's request caches off, so no judge, LM or embedding call is answered
    from disk or memory of an earlier run (counts and times stay honest)."""
    import dspy

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)


@dataclass
class Store:
    """A temporary embedded store (sqlite + artifacts + job folders)."""

    home: Path
    uri: str


@contextlib.contextmanager
def temp_store(prefix: str = "alignboard-bench-") -> Iterator[Store]:
    """A fresh sqlite MLflow store in a temporary folder, in force for the block.

    ``ALIGNBOARD_HOME``, ``MLFLOW_TRACKING_URI`` and ``DSPY_CACHEDIR`` point into it and
    are restored afterwards; the folder is deleted.
    """
    import mlflow

    from core.store import config

    home = Path(tempfile.mkdtemp(prefix=prefix))
    saved = {
        k: os.environ.get(k) for k in (config.HOME_ENV, "MLFLOW_TRACKING_URI", "DSPY_CACHEDIR")
    }
    uri = f"sqlite:///{home / 'mlflow.db'}"
    os.environ[config.HOME_ENV] = str(home)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["DSPY_CACHEDIR"] = str(home / "dspy_cache")
    try:
        config.configure(uri)
        no_dspy_cache()
        yield Store(home, uri)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        mlflow.set_tracking_uri(None)
        config._configured_uri = None
        shutil.rmtree(home, ignore_errors=True)


# --- data sets ------------------------------------------------------------------------


def _demo_dir() -> Path:
    from core.io.demo_seed import assets_dir

    return assets_dir() / "demo"


def _create_demo_criterion(experiment_id: str) -> Any:
    from core.labeling.criteria import create_criterion, get_criterion

    spec = json.loads((_demo_dir() / "criteria.json").read_text(encoding="utf-8"))[0]
    create_criterion(
        experiment_id,
        spec["name"],
        spec["kind"],
        spec["instructions"],
        options=spec.get("options"),
        positive_label=spec.get("positive_label", "Pass"),
        negative_label=spec.get("negative_label", "Fail"),
    )
    return get_criterion(experiment_id, spec["name"])


def demo_store_with(n_train_val: int, experiment: str = "bench-gepa") -> tuple[str, Any, dict]:
    """Import the demo traces, keeping the labels of exactly ``n_train_val`` traces in the
    train and validation splits (and of every labeled trace in the test split).

    Returns:
        ``(experiment_id, criterion, counts)`` with counts per split of labeled traces.
    """
    from core.io.importer import import_file, trace_id_for
    from core.labeling.splits import assign_split
    from core.store.experiments import get_or_create_experiment

    exp = get_or_create_experiment(experiment)
    criterion = _create_demo_criterion(exp.experiment_id)
    records = [
        json.loads(line)
        for line in (_demo_dir() / "support_traces.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    kept = 0
    counts = {"train": 0, "val": 0, "test": 0}
    for r in records:
        if not r.get("labels"):
            continue
        split = assign_split(trace_id_for(exp.experiment_id, r["id"]))
        if split != "test":
            if kept >= n_train_val:
                r.pop("labels")
                continue
            kept += 1
        counts[split] += 1
    if kept < n_train_val:
        raise RuntimeError(
            f"the demo data has only {kept} labeled train/val traces; {n_train_val} asked for"
        )
    path = Path(tempfile.mkdtemp(prefix="bench-data-")) / "demo.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    import_file(path, experiment)
    shutil.rmtree(path.parent, ignore_errors=True)
    return exp.experiment_id, criterion, counts


def _large_dir() -> Path:
    from core.io.demo_seed import LARGE_DIR, assets_dir

    return assets_dir() / LARGE_DIR


@dataclass(frozen=True)
class LargeDemo:
    """The larger synthetic demo set, imported into a benchmark's store."""

    experiment_id: str
    experiment: str
    """The experiment's name."""
    criterion: Any
    """``support_quality`` (a :class:`core.labeling.criteria.Criterion`)."""
    counts: dict[str, int]
    """Labeled traces per split (``train``, ``val``, ``test``) as imported (after
    ``n_train_val`` hid some)."""
    unlabeled: int
    """Traces without labels (the file's unlabeled ones plus those hidden)."""
    disagreements: int
    """Labeled traces kept whose reviewers disagree (the consolidated label decides)."""


def large_demo_store(
    experiment: str = "bench-large",
    *,
    n_train_val: int | None = None,
    include_unlabeled: bool = True,
) -> LargeDemo:
    """Import ``assets/demo_large`` (about 450 labeled Northwind support traces, synthetic)
    into ``experiment`` of the store in force (e.g. inside :func:`temp_store`).

    Every test-split label is kept, so held-out figures rest on 60+ traces (about 90 on a
    fresh store). ``n_train_val`` keeps the labels of only the first that many train and
    validation traces (file order), like :func:`demo_store_with`, so a benchmark can
    fix its training budget; ``include_unlabeled=False`` leaves unlabeled traces out.

    Raises:
        RuntimeError: fewer labeled train/val traces than ``n_train_val``.
    """
    from core.io.importer import import_file, trace_id_for
    from core.labeling.splits import assign_split
    from core.store.experiments import get_or_create_experiment

    exp = get_or_create_experiment(experiment)
    criterion = _create_demo_criterion(exp.experiment_id)
    text = (_large_dir() / "support_traces.jsonl").read_text(encoding="utf-8")
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    kept_records = []
    kept = unlabeled = disagreements = 0
    counts = {"train": 0, "val": 0, "test": 0}
    for r in records:
        if not r.get("labels"):
            if include_unlabeled:
                kept_records.append(r)
                unlabeled += 1
            continue
        split = assign_split(trace_id_for(exp.experiment_id, r["id"]))
        if split != "test" and n_train_val is not None:
            if kept >= n_train_val:
                r.pop("labels")
                if include_unlabeled:
                    kept_records.append(r)
                    unlabeled += 1
                continue
            kept += 1
        counts[split] += 1
        disagreements += len({lb["value"] for lb in r["labels"]}) > 1
        kept_records.append(r)
    if n_train_val is not None and kept < n_train_val:
        raise RuntimeError(
            f"the large demo set has only {kept} labeled train/val traces; {n_train_val} asked for"
        )
    path = Path(tempfile.mkdtemp(prefix="bench-data-")) / "demo_large.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in kept_records) + "\n", encoding="utf-8")
    import_file(path, experiment)
    shutil.rmtree(path.parent, ignore_errors=True)
    return LargeDemo(exp.experiment_id, experiment, criterion, counts, unlabeled, disagreements)


_PHRASES = [
    ("refund today", False),
    ("full card number", False),
    ("guaranteed delivery", False),
    ("price match", False),
    ("stop using it", True),
    ("prepaid label", True),
    ("last four digits", True),
    ("human agent", True),
    ("5-7 business days", True),
    ("waived the fee", False),
]


def synthetic_store(n_labeled: int, experiment: str = "bench-memalign", seed: int = 0) -> tuple:
    """Generate ``n_labeled`` labeled support traces of the demo criterion, each with a
    rationale quoting the phrase that decided it, and import them in one batch.

    Returns:
        ``(experiment_id, criterion)``.
    """
    from core.io.importer import import_file
    from core.store.experiments import get_or_create_experiment

    rng = random.Random(seed)
    exp = get_or_create_experiment(experiment)
    criterion = _create_demo_criterion(exp.experiment_id)
    rows = []
    for i in range(n_labeled):
        phrase, ok = _PHRASES[rng.randrange(len(_PHRASES))]
        order = f"NW-{rng.randrange(10000, 99999)}"
        rows.append(
            {
                "id": f"syn-{i:06d}",
                "inputs": f"Question {i} about order {order}: can you help me with it?",
                "outputs": f"Thanks for reaching out about {order}. We {phrase} for you.",
                "labels": [
                    {
                        "criterion": DEMO_CRITERION,
                        "value": "pass" if ok else "fail",
                        "rationale": (
                            f'{"Pass" if ok else "Fail"}: the reply says "{phrase}", '
                            f"which {'follows' if ok else 'breaks'} the policy."
                        ),
                        "reviewer": "bench.reviewer",
                    }
                ],
            }
        )
    path = Path(tempfile.mkdtemp(prefix="bench-data-")) / "synthetic.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    import_file(path, experiment)
    shutil.rmtree(path.parent, ignore_errors=True)
    return exp.experiment_id, criterion


# --- measuring ------------------------------------------------------------------------


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started


class DemoCallCounter:
    """Counts the demo stand-in's completion calls per kind of model, while in force.

    ``with DemoCallCounter() as counter: ...``; ``counter.snapshot()`` and
    ``counter.since(snapshot)`` give the calls per kind: ``app`` (``demo:/app``),
    ``judge`` (``demo:/judge``), ``reflect`` (``demo:/reflect``) and ``other``. It wraps
    :func:`core.models.demo.demo_answer`, which the stand-in's LiteLLM provider calls once
    per answered request (a call failed on purpose by the failure knob is not counted), so
    every library's calls are seen, whatever path they take to LiteLLM.
    """

    KINDS = ("app", "judge", "reflect")

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._saved: Any = None

    def _kind(self, model: str) -> str:
        name = str(model or "").rsplit("/", 1)[-1].lower()
        return next((k for k in self.KINDS if name.startswith(k)), "other")

    def __enter__(self) -> DemoCallCounter:
        from core.models import demo

        self._saved = original = demo.demo_answer

        def counted(messages: Any, response_format: Any = None, model: str = "") -> str:
            kind = self._kind(model)
            with self._lock:
                self._counts[kind] = self._counts.get(kind, 0) + 1
            return original(messages, response_format, model)

        demo.demo_answer = counted
        return self

    def __exit__(self, *exc: object) -> None:
        from core.models import demo

        demo.demo_answer = self._saved

    def snapshot(self) -> dict[str, int]:
        """The counts so far, per kind."""
        with self._lock:
            return dict(self._counts)

    def since(self, before: dict[str, int]) -> dict[str, int]:
        """The calls per kind since ``before`` (a :meth:`snapshot`); every kind present."""
        now = self.snapshot()
        return {k: now.get(k, 0) - before.get(k, 0) for k in (*self.KINDS, "other")}


def waves(calls: int, depth: int, workers: int) -> int:
    """Dependent steps of one round: ``calls`` parallel calls on ``workers`` threads need
    ``ceil(calls / workers)`` waves; a retried call needs ``depth`` attempts in a row."""
    if calls <= 0:
        return 0
    return max(max(1, depth), math.ceil(calls / max(1, workers)))


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b`` rounded, or None when either is missing or ``b`` is 0."""
    if a is None or b is None or not b:
        return None
    return round(a / b, 3)


def rounded(obj: Any, digits: int = 3) -> Any:
    """Round every float in a JSON-ready structure."""
    if isinstance(obj, float):
        return round(obj, digits)
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [rounded(v, digits) for v in obj]
    return obj


# --- reporting ------------------------------------------------------------------------


def print_table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Print ``rows`` as an aligned text table (and return it)."""

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.2f}"
        return str(v)

    grid = [list(columns)] + [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in grid) for i in range(len(columns))]
    lines = [title, "-" * len(title)]
    for n, row in enumerate(grid):
        lines.append(
            "  ".join(v.rjust(w) if n else v.ljust(w) for v, w in zip(row, widths, strict=True))
        )
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def ci_width(low: float | None, high: float | None) -> float | None:
    """Width of a confidence interval (``high - low``); None when either bound is missing."""
    if low is None or high is None:
        return None
    return high - low


def fmt_ci(
    estimate: float | None, low: float | None, high: float | None, n: int | None = None
) -> str:
    """An accuracy (or kappa) with its 95% CI and the CI's width, for benchmark output.

    ``fmt_ci(0.82, 0.74, 0.90, 91)`` -> ``"0.82 [0.74, 0.90] width 0.16 (n=91)"``; a missing
    bound prints ``-``. The width says how much a figure can be trusted: with 14 held-out
    traces it is about 0.5, with 90 about 0.16.
    """

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    width = ci_width(low, high)
    text = f"{num(estimate)} [{num(low)}, {num(high)}] width {num(width)}"
    return text + (f" (n={n})" if n is not None else "")


def write_json(path: Path | None, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus machine info) as JSON to ``path`` if one was given."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"machine": machine_info(), **payload}
    path.write_text(json.dumps(rounded(body), indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {path}", flush=True)
