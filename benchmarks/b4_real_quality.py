"""B4: judge-alignment quality with a real small LLM (Qwen2.5-Coder-1.5B on llama.cpp).

Every other benchmark uses the demo stand-in, which is deterministic and proves nothing
about quality. This one serves a real model on loopback (:mod:`benchmarks.real_model`)
and runs, through the product path (``core.optimization.engine.run_alignment``, with
pre-flight, the MLflow record, held-out scoring and the registration gate), on the
larger labeled demo set (``assets/demo_large``, synthetic):

* the seed judge (scored on the test split once per judge model, the verdicts shared by
  every run's held-out comparison; ``--noise`` asks it again to measure the sampling
  noise, since the judge calls use the server's default temperature);
* ``gepa``, ``memalign`` and ``mlflow-gepa`` (``simba`` with ``--simba``) at equal budget,
  judge and reflection both the real model;
* a stronger-reflection run: ``gepa`` with the demo reflection stand-in (``demo:/reflect``,
  which writes explicit rules from the human rationales) reflecting for the real judge,
  and, with ``--small-judge``, the 1.5B reflecting for the 0.5B judge. It separates "the
  judge cannot follow rules" from "the reflection cannot write them".

Per run: held-out accuracy and Cohen's kappa with 95% bootstrap CIs (seed and aligned),
the paired accuracy difference and its CI, the verdict, whether it was registered, wall
time, LLM calls, tokens, and the held-out traces that flipped (fixed/broken).

Checks, printed as PASS/FAIL and computed from what happened (issue 15):

* ``no_call_lost_to_request_format``: no LLM request whose ``response_format`` the server
  refused ended without an answer (llama-cpp-python 0.2.60 answers ``json_schema`` with
  HTTP 500; the structured-output fallback must turn every such refusal into an answer);
* ``no_degenerate_proposal_accepted``: every proposal gepa accepted, and every run's final
  instructions, pass the proposal guard (:func:`core.optimization.guards.check_proposal`)
  re-applied here; the guard's own rejections are counted;
* ``registration_gate``: no run whose aligned judge is below the seed on the test split
  (accuracy or kappa) registered a version.

No proxy sits between the product and the server. The server answers one request at a
time, so 2 workers keep it busy; budgets are small (see ``--help``) and an estimate is
printed first. Never part of ``make test`` (``tests/test_benchmarks_b4.py`` runs this code
against a loopback fake server instead).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    REFLECTION_MODEL,
    arg_parser,
    fmt_ci,
    no_dspy_cache,
    print_table,
    temp_store,
    write_json,
)

#: Full settings (``make bench-real``), chosen for this 2-core machine: a judge call reads
#: ~650 prompt tokens (~450 of them a prefix llama.cpp reuses from the previous call) and
#: writes ~60; a reflection call reads ~1,500.
#: MemAlign retrieves 1 example per judged trace (MLflow's default is 5): each retrieved
#: example is put into the instructions, so it differs per trace and llama.cpp cannot
#: reuse it from the previous call; at 2 a MemAlign judge call read ~800 new prompt tokens
#: and the MemAlign run alone took 3,924 s (1,035 s at 1, 2026-12-03).
FULL = {"train": 6, "val": 4, "test": 60, "budget": 12, "workers": 2, "retrieval_k": 1}
#: A first look in a few minutes (``--quick``).
QUICK = {"train": 6, "val": 5, "test": 20, "budget": 12, "workers": 2, "retrieval_k": 1}
#: Seconds per judge call and per reflection call assumed by the estimate, for an idle
#: machine with the server on 2 threads and judges in plain text (measured 2026-12-02:
#: ~150 new prompt tokens, 35-100 generated at 0.12-0.13 s a token; with llama.cpp's JSON
#: grammar 0.22-0.25 s a token). On a busy machine (load 5-9) a judge call took 60-100 s.
ASSUMED_JUDGE_S = 7.0
ASSUMED_REFLECTION_S = 55.0

OPTIMIZERS = ("gepa", "memalign", "mlflow-gepa")


# --- data -----------------------------------------------------------------------------


def _large_file() -> Path | None:
    try:
        from core.io.demo_seed import LARGE_DIR, assets_dir
    except ImportError:  # the larger set is not in this checkout
        return None
    path = assets_dir() / LARGE_DIR / "support_traces.jsonl"
    return path if path.exists() else None


def _small_file() -> Path:
    from core.io.demo_seed import assets_dir

    return assets_dir() / "demo" / "support_traces.jsonl"


@dataclass
class Data:
    """The labeled traces imported for the benchmark."""

    experiment_id: str
    criterion: Any
    source: str
    counts: dict[str, int]
    names: dict[str, str] = field(default_factory=dict)
    """trace id -> the demo record's id (``nw-...``), for printing flips."""


def import_data(train: int, val: int, test: int, experiment: str = "bench-real") -> Data:
    """Import the demo traces keeping the labels of the first ``train``/``val``/``test``
    labeled traces of each split (by the product's hash split); other traces are left out.

    The larger set (``assets/demo_large``) when present, else ``assets/demo``.

    Raises:
        RuntimeError: a split has fewer labeled traces than asked for.
    """
    from benchmarks.common import _create_demo_criterion
    from core.io.importer import import_file, trace_id_for
    from core.labeling.splits import assign_split
    from core.store.experiments import get_or_create_experiment

    source = _large_file() or _small_file()
    exp = get_or_create_experiment(experiment)
    criterion = _create_demo_criterion(exp.experiment_id)
    want = {"train": train, "val": val, "test": test}
    counts = {"train": 0, "val": 0, "test": 0}
    kept: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for line in source.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        if not r.get("labels"):
            continue
        tid = trace_id_for(exp.experiment_id, r["id"])
        split = assign_split(tid)
        if counts[split] >= want[split]:
            continue
        counts[split] += 1
        names[tid] = r["id"]
        kept.append(r)
    short = {k: (counts[k], want[k]) for k in want if counts[k] < want[k]}
    if short:
        raise RuntimeError(f"{source} lacks labeled traces: {short} (have, asked)")
    folder = Path(tempfile.mkdtemp(prefix="bench-real-"))
    try:
        path = folder / "traces.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in kept) + "\n", encoding="utf-8")
        import_file(path, experiment)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    label = source.parent.name
    return Data(exp.experiment_id, criterion, label, counts, names)


# --- counting requests refused for their format ---------------------------------------


class FormatLossCounter:
    """Counts LLM requests refused for their ``response_format`` and whether each got an
    answer in the end, by watching LiteLLM's success and failure events (every judge,
    reflection and dspy call of the product goes through LiteLLM).

    One logical request is its model and messages: the fallback sends the same messages
    again in a lower mode, so a refused request that later succeeded was recovered; one
    that never succeeded was lost to the request format.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.refused: dict[str, int] = {}
        self.answered: set[str] = set()
        self.failures_other = 0
        self.calls = 0
        self._logger: Any = None

    @staticmethod
    def key(kwargs: dict[str, Any]) -> str:
        """The logical request: model and messages (not the format, not the attempt)."""
        body = json.dumps(
            [str(kwargs.get("model")), kwargs.get("messages")], sort_keys=True, default=str
        )
        return hashlib.sha256(body.encode()).hexdigest()

    def on_event(self, ok: bool, kwargs: dict[str, Any]) -> None:
        """Record one finished attempt (LiteLLM callback)."""
        from core.models.structured import is_response_format_rejection

        key = self.key(kwargs)
        exc = kwargs.get("exception")
        with self._lock:
            self.calls += 1
            if ok:
                self.answered.add(key)
            elif exc is not None and is_response_format_rejection(exc):
                self.refused[key] = self.refused.get(key, 0) + 1
            else:
                self.failures_other += 1

    @property
    def refusals(self) -> int:
        """Attempts the server refused for their ``response_format``."""
        return sum(self.refused.values())

    @property
    def lost(self) -> int:
        """Logical requests refused for their format that never got an answer."""
        return sum(1 for k in self.refused if k not in self.answered)

    def __enter__(self) -> FormatLossCounter:
        import litellm
        from litellm.integrations.custom_logger import CustomLogger

        counter = self

        class _Watch(CustomLogger):
            def log_success_event(self, kwargs, response_obj, start_time, end_time):
                counter.on_event(True, kwargs)

            def log_failure_event(self, kwargs, response_obj, start_time, end_time):
                counter.on_event(False, kwargs)

            async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
                counter.on_event(True, kwargs)

            async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
                counter.on_event(False, kwargs)

        self._logger = _Watch()
        litellm.callbacks.append(self._logger)
        return self

    def __exit__(self, *exc: object) -> None:
        import litellm

        time.sleep(0.3)  # LiteLLM logs synchronous calls from a background thread
        with contextlib.suppress(ValueError):
            litellm.callbacks.remove(self._logger)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts."""
        return {
            "attempts_seen": self.calls,
            "format_refusals": self.refusals,
            "refused_requests": len(self.refused),
            "lost_to_format": self.lost,
            "other_failures": self.failures_other,
        }


# --- one run --------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """One alignment of the benchmark."""

    label: str
    optimizer: str
    judge: str
    """``real`` (the served judge model) or ``small`` (the 0.5B server)."""
    reflection: str
    """``real``, ``small`` or ``demo`` (``demo:/reflect``)."""


#: Printed when mlflow-gepa is left out (``--no-mlflow-gepa``).
MLFLOW_GEPA_NOTE = (
    "mlflow-gepa skipped (--no-mlflow-gepa). It runs against llama.cpp since 2026-12-02: "
    "MLflow's judge.align rebuilds its judges without the base URL and falls back from "
    "json_schema only on HTTP 400, so the run routes them to the server and tells MLflow "
    "the server takes no json_schema (core.optimization.mlflow_judge.served_judge_route)."
)


def plans(
    include_simba: bool, stronger: bool, small_judge: bool, mlflow_gepa: bool = True
) -> list[Plan]:
    """The runs, in order (the product's optimizers first, then the stronger reflection)."""
    out = [Plan(o, o, "real", "real") for o in OPTIMIZERS if mlflow_gepa or o != "mlflow-gepa"]
    if include_simba:
        out.append(Plan("simba", "simba", "real", "real"))
    if stronger:
        out.append(Plan("gepa, demo reflection", "gepa", "real", "demo"))
    if small_judge:
        out.append(Plan("gepa, 0.5B judge, 1.5B reflection", "gepa", "small", "real"))
    return out


@dataclass(frozen=True)
class Endpoint:
    """A served model: what a spec needs to reach it."""

    model: str
    base_url: str | None


def _artifact(run_id: str, name: str) -> Any:
    from mlflow import MlflowClient

    from core.optimization.recorder import read_artifact_text

    text = read_artifact_text(MlflowClient(), run_id, name)
    return json.loads(text) if text else None


def _ci(report: dict[str, Any] | None, key: str) -> list[float | None]:
    ci = (report or {}).get(f"{key}_ci") or {}
    if isinstance(ci, dict):
        return [ci.get("low"), ci.get("high")]
    if isinstance(ci, list | tuple) and len(ci) >= 2:
        return [ci[0], ci[1]]
    return [None, None]


def _proposal_checks(run_id: str, optimizer: str, seed: str, final: str) -> dict[str, Any]:
    """Guard rejections recorded by the run, and the guard re-applied to what it accepted."""
    from core.optimization import record
    from core.optimization.guards import check_proposal

    raw = _artifact(run_id, record.PROPOSALS) or []
    proposals = record.read_proposals(raw)
    rejected = [p for p in proposals if p.degenerate]
    accepted = [p for p in proposals if p.status == "accepted"]
    bad_accepted: list[dict[str, Any]] = []
    for p in accepted:
        verdict = check_proposal(
            p.proposed_text, parent=seed, seed=seed, reflection_prompt=p.reflection_prompt
        )
        if not verdict.ok:
            bad_accepted.append({"iteration": p.iteration, "reason": verdict.reason})
    final_check = check_proposal(final, parent=seed, seed=seed) if final != seed else None
    return {
        "proposals": len(proposals),
        "accepted": len(accepted),
        "rejected_degenerate": len(rejected),
        "rejected_reasons": sorted({str(p.reason) for p in rejected}),
        "accepted_degenerate": bad_accepted,
        "final_is_seed": final == seed,
        "final_degenerate": None if final_check is None else (not final_check.ok),
        "final_guard_reason": None if final_check is None else final_check.reason,
        "guarded": optimizer == "gepa",
    }


def _flips(run_id: str, names: dict[str, str]) -> dict[str, Any]:
    from mlflow import MlflowClient

    from core.optimization.record import read_test_metrics
    from core.views.runs import flips

    metrics = read_test_metrics(MlflowClient(), run_id)
    if metrics is None:
        return {"fixed": [], "broken": [], "failed": [], "unchanged": 0, "summary": "no record"}
    f = flips(metrics.predictions)

    def show(items: Sequence[Any]) -> list[dict[str, str]]:
        return [
            {
                "trace": names.get(x.trace_id, x.trace_id),
                "human": x.human,
                "seed": x.seed,
                "aligned": x.aligned,
            }
            for x in items
        ]

    return {
        "fixed": show(f.fixed),
        "broken": show(f.broken),
        "failed": show(f.failed),
        "unchanged": f.unchanged,
        "summary": f.summary,
    }


def run_one(
    plan: Plan,
    data: Data,
    endpoints: dict[str, Endpoint],
    cfg: dict[str, Any],
    held_out_cache: Any = None,
) -> dict[str, Any]:
    """One alignment through the engine (``run_optimization`` of a ``JudgeTask``, which is
    what ``run_alignment`` does, with the held-out verdicts of runs of the same judge model
    shared: the seed is scored on the test split once); its figures, flips and guards."""
    from core.optimization.engine import run_optimization
    from core.optimization.judge_task import JudgeTask
    from core.optimization.spec import AlignmentSettings, JudgeSpec

    judge_ep = endpoints[plan.judge]
    reflect_ep = (
        Endpoint(REFLECTION_MODEL, None)
        if plan.reflection == "demo"
        else endpoints[plan.reflection]
    )
    c = data.criterion
    judge = JudgeSpec(c.name, c.instructions, c.kind, judge_ep.model, base_url=judge_ep.base_url)
    # MLflow's GEPA and SIMBA take a bare reflection model name (pre-flight refuses a
    # reflection base URL for them): their reflection reaches the server the way a user
    # would point it there, through OPENAI_BASE_URL for the run.
    via_env = plan.optimizer in ("mlflow-gepa", "simba") and reflect_ep.base_url is not None
    settings = AlignmentSettings(
        data.experiment_id,
        judge,
        plan.optimizer,  # type: ignore[arg-type]
        reflect_ep.model,
        max_metric_calls=cfg["budget"],
        workers=cfg["workers"],
        retrieval_k=cfg["retrieval_k"],
        reflection_base_url=None if via_env else reflect_ep.base_url,
        # The synthetic set's reviewers disagree on purpose; the benchmark measures the
        # judge, not the labels.
        kappa_override_reason="benchmark B4: synthetic labels with planned disagreement",
        kappa_override_by="benchmarks/b4_real_quality.py",
    )
    from core.models.endpoints import openai_base_url

    started = time.perf_counter()
    try:
        with openai_base_url(reflect_ep.base_url if via_env else None):
            result = run_optimization(JudgeTask(settings, held_out_cache=held_out_cache))
    except Exception as exc:  # a run that fails is reported, the others go on
        return {
            "label": plan.label,
            "optimizer": plan.optimizer,
            "error": f"{type(exc).__name__}: {exc}"[:1000],
            "wall_s": time.perf_counter() - started,
        }
    wall = time.perf_counter() - started
    before, after = result.test_before or {}, result.test_after or {}
    row: dict[str, Any] = {
        "label": plan.label,
        "optimizer": plan.optimizer,
        "judge_model": judge_ep.model,
        "reflection_model": reflect_ep.model,
        "run_id": result.run_id,
        "status": result.status,
        "wall_s": wall,
        "llm_calls": result.llm_calls,
        "metric_calls": result.metric_calls,
        "tokens": result.tokens,
        "iterations": result.iterations,
        "failed_examples": result.failed_examples,
        "test_n": result.test_size,
        "train_n": result.train_size,
        "val_n": result.val_size,
        "acc_before": result.test_accuracy_before,
        "acc_before_ci": _ci(before, "accuracy"),
        "acc_after": result.test_accuracy_after,
        "acc_after_ci": _ci(after, "accuracy"),
        "kappa_before": result.test_kappa_before,
        "kappa_before_ci": _ci(before, "cohen_kappa"),
        "kappa_after": result.test_kappa_after,
        "kappa_after_ci": _ci(after, "cohen_kappa"),
        "acc_diff": result.accuracy_diff,
        "acc_diff_ci": result.accuracy_diff_ci,
        "verdict": result.verdict,
        "significant": result.significant,
        "registered": result.registered,
        "judge_version": result.judge_version,
        "not_registered_reason": result.not_registered_reason,
        "instructions_changed": result.instructions.strip() != c.instructions.strip(),
        "instructions": result.instructions,
    }
    row["flips"] = _flips(result.run_id, data.names)
    row["guard"] = _proposal_checks(
        result.run_id, plan.optimizer, c.instructions, result.instructions or c.instructions
    )
    return row


# --- checks ---------------------------------------------------------------------------


def _below_seed(row: dict[str, Any]) -> bool:
    pairs = (("acc_after", "acc_before"), ("kappa_after", "kappa_before"))
    return any(
        row.get(a) is not None and row.get(b) is not None and row[a] < row[b] for a, b in pairs
    )


def checks(rows: list[dict[str, Any]], formats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The three PASS/FAIL checks, each with the evidence it was decided on."""
    done = [r for r in rows if "error" not in r]
    # A run that died of a refused response_format lost its calls to the format too (the
    # error text no longer carries the HTTP status: MLflow rewraps it).
    format_errors = [
        r["label"]
        for r in rows
        if "error" in r and re.search(r"response_format|json_schema", r["error"])
    ]
    bad_accepted = [
        {"run": r["label"], **b}
        for r in done
        if r["guard"]["guarded"]
        for b in r["guard"]["accepted_degenerate"]
    ]
    bad_final = [
        r["label"] for r in done if r["guard"]["guarded"] and r["guard"]["final_degenerate"]
    ]
    worse_registered = [r["label"] for r in done if _below_seed(r) and r["registered"]]
    worse_blocked = [r["label"] for r in done if _below_seed(r) and not r["registered"]]
    return {
        "no_call_lost_to_request_format": {
            "passed": bool(done) and formats["lost_to_format"] == 0 and not format_errors,
            "detail": (
                f"{formats['format_refusals']} attempt(s) refused for their response_format, "
                f"{formats['refused_requests']} request(s) affected, "
                f"{formats['lost_to_format']} lost; runs failed on the format: "
                f"{format_errors or 'none'}"
            ),
        },
        "no_degenerate_proposal_accepted": {
            "passed": bool(done) and not bad_accepted and not bad_final,
            "detail": (
                f"{sum(r['guard']['rejected_degenerate'] for r in done)} degenerate proposal(s) "
                f"rejected by the guard; accepted but degenerate: {bad_accepted or 'none'}; "
                f"final instructions degenerate: {bad_final or 'none'}"
            ),
        },
        "registration_gate": {
            "passed": bool(done) and not worse_registered,
            "detail": (
                f"runs below the seed on test: {len(worse_registered) + len(worse_blocked)}; "
                f"blocked: {worse_blocked or 'none'}; registered anyway: "
                f"{worse_registered or 'none'}"
            ),
        },
    }


# --- servers --------------------------------------------------------------------------


@contextlib.contextmanager
def endpoints_for(
    base_url: str | None,
    model: str | None,
    small_base_url: str | None,
    small_model: str | None,
    need_small: bool,
    threads: int | None,
) -> Iterator[dict[str, Endpoint]]:
    """The judge endpoints: given URLs, else servers started here (stopped afterwards)."""
    from benchmarks import real_model

    with contextlib.ExitStack() as stack:
        eps: dict[str, Endpoint] = {}
        if base_url:
            eps["real"] = Endpoint(model or f"openai:/{real_model.MODELS['1.5b'].alias}", base_url)
        else:
            info = real_model.MODELS["1.5b"]
            srv = stack.enter_context(
                real_model.serve(real_model.ensure_model(info), info.alias, threads=threads)
            )
            eps["real"] = Endpoint(srv.model, srv.base_url)
        if need_small:
            if small_base_url:
                eps["small"] = Endpoint(
                    small_model or f"openai:/{real_model.MODELS['0.5b'].alias}", small_base_url
                )
            else:
                info = real_model.MODELS["0.5b"]
                srv = stack.enter_context(
                    real_model.serve(real_model.ensure_model(info), info.alias, threads=threads)
                )
                eps["small"] = Endpoint(srv.model, srv.base_url)
        yield eps


# --- the benchmark --------------------------------------------------------------------

#: Seed-judge calls the format probe sends in ``auto`` before the runs (``--judge-output``).
PROBE_CALLS = 3


@contextlib.contextmanager
def judge_output_mode(mode: str) -> Iterator[None]:
    """Judges on a base URL start in ``mode`` for the block (``auto``: unchanged)."""
    from core.models.structured import FIRST_MODE_ENV

    saved = os.environ.get(FIRST_MODE_ENV)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(FIRST_MODE_ENV, None)
        else:
            os.environ[FIRST_MODE_ENV] = saved


def format_probe(data: Data, endpoint: Endpoint, counter: Any, mode: str) -> dict[str, Any]:
    """Ask the seed judge on a few test traces in ``auto`` (json_schema first, falling back
    as the server refuses), then switch judges to ``mode`` for the rest of the benchmark.

    The structured-output fallback is what the format check is about; it is exercised
    here on the real server, and the runs then use the faster mode. The probe's verdicts
    are not part of any held-out comparison.
    """
    from core.models.structured import FIRST_MODE_ENV, endpoint_modes, reset_endpoint_modes
    from core.optimization.dataset import load_examples, split_examples
    from core.optimization.judging import JudgeEvaluator
    from core.optimization.spec import JudgeSpec

    c = data.criterion
    test = split_examples(load_examples(data.experiment_id, c.name))[2]
    spec = JudgeSpec(c.name, c.instructions, c.kind, endpoint.model, base_url=endpoint.base_url)
    os.environ.pop(FIRST_MODE_ENV, None)
    reset_endpoint_modes()
    before = counter.to_dict()
    started = time.perf_counter()
    verdicts = JudgeEvaluator(spec, workers=1).evaluate(c.instructions, test[:PROBE_CALLS])
    after = counter.to_dict()
    out = {
        "calls": len(verdicts),
        "answered": sum(1 for v in verdicts if v.ok),
        "refusals": after["format_refusals"] - before["format_refusals"],
        "mode_found": dict(endpoint_modes()),
        "wall_s": round(time.perf_counter() - started, 1),
        "then": mode,
    }
    reset_endpoint_modes()
    os.environ[FIRST_MODE_ENV] = mode
    return out


@contextlib.contextmanager
def placeholder_key() -> Iterator[None]:
    """An ``OPENAI_API_KEY`` placeholder for the block when none is set.

    MLflow's own optimizers build their reflection model from a bare ``openai:/`` name
    (sent to the server through ``OPENAI_BASE_URL``), and LiteLLM's OpenAI provider wants
    some key for it; the llama.cpp server ignores it. It is not a secret and is never
    printed or recorded.
    """
    if os.environ.get("OPENAI_API_KEY"):
        yield
        return
    os.environ["OPENAI_API_KEY"] = "sk-local-llama-cpp-needs-no-key"
    try:
        yield
    finally:
        os.environ.pop("OPENAI_API_KEY", None)


def estimate(cfg: dict[str, Any], runs: Sequence[Plan], judge_s: float, reflect_s: float) -> dict:
    """Rough seconds for the runs: the seed's test scoring once per judge model, each run's
    aligned judge on the test split, the optimizer's judge calls (the budget) and its
    reflection calls (about one per two minibatches). The server answers one request at a
    time, so calls add up whatever the workers."""
    per: dict[str, float] = {}
    seeded: set[str] = set()
    for p in runs:
        judge_calls = cfg["test"] + (0 if p.optimizer == "memalign" else cfg["budget"])
        if p.judge not in seeded:
            judge_calls += cfg["test"]
            seeded.add(p.judge)
        reflections = 2 if p.optimizer == "memalign" else max(1, cfg["budget"] // 6)
        reflect = 0.0 if p.reflection == "demo" else reflections * reflect_s
        per[p.label] = judge_calls * judge_s + reflect
    return {
        "per_run_s": per,
        "total_s": sum(per.values()),
        "judge_s": judge_s,
        "reflect_s": reflect_s,
    }


def _table_row(r: dict[str, Any]) -> dict[str, Any]:
    if "error" in r:
        return {"run": r["label"], "verdict": "ERROR", "wall_s": r["wall_s"]}
    return {
        "run": r["label"],
        "seed acc [95% CI]": fmt_ci(r["acc_before"], *r["acc_before_ci"]),
        "aligned acc [95% CI]": fmt_ci(r["acc_after"], *r["acc_after_ci"]),
        "seed kappa": fmt_ci(r["kappa_before"], *r["kappa_before_ci"]),
        "aligned kappa": fmt_ci(r["kappa_after"], *r["kappa_after_ci"]),
        "diff [CI]": fmt_ci(r["acc_diff"], *(r["acc_diff_ci"] or [None, None])),
        "verdict": f"{r['verdict']}{' (sig.)' if r['significant'] else ''}",
        "registered": r["registered"],
        "wall_s": r["wall_s"],
        "calls": r["llm_calls"],
        "tokens": r["tokens"],
        "fixed/broken": f"{len(r['flips']['fixed'])}/{len(r['flips']['broken'])}",
    }


def noise_check(data: Data, endpoint: Endpoint, cfg: dict[str, Any], shared: Any) -> dict:
    """Ask the seed judge about the test split again (a fresh cache) and count the verdicts
    that differ from the ones every run was compared with: the noise floor (judges on a
    server ask for temperature 0 since 2026-12-02, so this should now be 0 or nearly)."""
    from core.optimization.dataset import load_examples, split_examples
    from core.optimization.judging import JudgeEvaluator, instructions_key
    from core.optimization.spec import JudgeSpec

    c = data.criterion
    spec = JudgeSpec(c.name, c.instructions, c.kind, endpoint.model, base_url=endpoint.base_url)
    test = split_examples(load_examples(data.experiment_id, c.name))[2]
    started = time.perf_counter()
    again = JudgeEvaluator(spec, workers=cfg["workers"]).evaluate(c.instructions, test)
    key = instructions_key(c.instructions)
    differ = compared = right_before = right_again = 0
    for ex, v in zip(test, again, strict=True):
        first = shared.get((key, ex.trace_id, ex.label_version)) if shared is not None else None
        if first is None or not v.ok:
            continue
        compared += 1
        differ += first.value != v.value
        right_before += first.value == ex.label
        right_again += v.value == ex.label
    return {
        "compared": compared,
        "verdicts_that_differ": differ,
        "seed_acc_first": right_before / compared if compared else None,
        "seed_acc_again": right_again / compared if compared else None,
        "wall_s": time.perf_counter() - started,
    }


def run(
    cfg: dict[str, Any],
    *,
    base_url: str | None = None,
    model: str | None = None,
    small_base_url: str | None = None,
    small_model: str | None = None,
    include_simba: bool = False,
    stronger: bool = True,
    small_judge: bool = False,
    only: Sequence[str] = (),
    threads: int | None = 2,
    noise: bool = False,
    mlflow_gepa: bool = True,
    judge_output: str = "auto",
) -> dict[str, Any]:
    """Run B4 and return its JSON-ready results (tables and PASS/FAIL lines on stdout).

    ``judge_output`` other than ``auto`` first sends a few seed-judge calls in ``auto``
    (the structured-output fallback on the real server, counted by the format check), then
    runs everything with judges starting in that mode (``ALIGNBOARD_JUDGE_OUTPUT``).
    """
    import litellm  # noqa: F401  (imported before any clock starts)

    from core.models.structured import endpoint_modes

    runs = plans(include_simba, stronger, small_judge, mlflow_gepa or "mlflow-gepa" in only)
    if not mlflow_gepa:
        print(MLFLOW_GEPA_NOTE, flush=True)
    if only:
        runs = [p for p in runs if p.label in only or p.optimizer in only]
    est = estimate(cfg, runs, ASSUMED_JUDGE_S, ASSUMED_REFLECTION_S)
    print(
        f"B4 plan: {len(runs)} run(s) {[p.label for p in runs]}, train {cfg['train']}, "
        f"val {cfg['val']}, test {cfg['test']}, budget {cfg['budget']} metric calls, "
        f"{cfg['workers']} workers; estimate ~{est['total_s'] / 60:.0f} min at "
        f"{ASSUMED_JUDGE_S:g} s/judge call and {ASSUMED_REFLECTION_S:g} s/reflection "
        "(idle machine)",
        flush=True,
    )
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with (
        endpoints_for(
            base_url,
            model,
            small_base_url,
            small_model,
            any(p.judge == "small" for p in runs),
            threads,
        ) as eps,
        temp_store("alignboard-b4-"),
        placeholder_key(),
    ):
        timings["servers_s"] = time.perf_counter() - t0
        no_dspy_cache()
        t1 = time.perf_counter()
        data = import_data(cfg["train"], cfg["val"], cfg["test"])
        timings["import_s"] = time.perf_counter() - t1
        print(f"data: {data.source}, labeled per split {data.counts}", flush=True)
        from core.optimization.judging import VerdictCache

        # One held-out verdict cache per judge model: the seed is scored once per model.
        caches = {name: VerdictCache() for name in eps}
        noise_out: dict[str, Any] = {}
        probe: dict[str, Any] = {}
        with FormatLossCounter() as counter, judge_output_mode(judge_output):
            if judge_output != "auto":
                probe = format_probe(data, eps["real"], counter, judge_output)
                print(f"format probe: {probe}", flush=True)
            for i, plan in enumerate(runs):
                print(f"[{i + 1}/{len(runs)}] {plan.label} ...", flush=True)
                row = run_one(plan, data, eps, cfg, caches[plan.judge])
                rows.append(row)
                timings[f"run:{plan.label}"] = row["wall_s"]
                if "error" in row:
                    print(f"  ERROR {row['error']}", flush=True)
                    continue
                print(
                    f"  {row['wall_s']:.0f} s, {row['llm_calls']} calls, seed acc "
                    f"{row['acc_before']}, aligned {row['acc_after']}, {row['verdict']}, "
                    f"registered={row['registered']}",
                    flush=True,
                )
                _print_flips(row)
            if noise and rows:
                print("noise check: the seed judge asked again on the test split ...", flush=True)
                noise_out = noise_check(data, eps["real"], cfg, caches["real"])
                timings["noise_check_s"] = noise_out["wall_s"]
        formats = counter.to_dict()
        modes = endpoint_modes()
    timings["total_s"] = time.perf_counter() - t0
    result_checks = checks(rows, formats)
    print_table(
        f"B4 real-model quality: {data.source}, test n={data.counts['test']}, budget "
        f"{cfg['budget']}, {cfg['workers']} workers",
        [_table_row(r) for r in rows],
        [
            "run",
            "seed acc [95% CI]",
            "aligned acc [95% CI]",
            "seed kappa",
            "aligned kappa",
            "diff [CI]",
            "verdict",
            "registered",
            "wall_s",
            "calls",
            "tokens",
            "fixed/broken",
        ],
    )
    if noise_out:
        print(f"seed judge asked twice (sampling noise): {noise_out}", flush=True)
    print(f"structured output: {formats}; endpoint modes {modes}", flush=True)
    for name, c in result_checks.items():
        print(f"{'PASS' if c['passed'] else 'FAIL'} {name}: {c['detail']}", flush=True)
    return {
        "benchmark": "b4_real_quality",
        "settings": cfg,
        "data": {"source": data.source, "labeled_by_split": data.counts},
        "estimate": est,
        "timings": timings,
        "runs": rows,
        "seed_noise": noise_out,
        "structured_output": {
            **formats,
            "endpoint_modes": modes,
            "judge_output": judge_output,
            "format_probe": probe,
        },
        "checks": result_checks,
        "notes": [] if mlflow_gepa else [MLFLOW_GEPA_NOTE],
    }


def _print_flips(row: dict[str, Any]) -> None:
    f = row["flips"]
    print(f"  {f['summary']}", flush=True)
    for kind in ("fixed", "broken", "failed"):
        if f[kind]:
            shown = ", ".join(f"{x['trace']} (human {x['human']})" for x in f[kind])
            print(f"    {kind}: {shown}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m benchmarks.b4_real_quality [--quick] --out F``."""
    p = arg_parser(__doc__.splitlines()[0])
    p.add_argument("--base-url", help="a running server for the judge (default: start one)")
    p.add_argument("--model", help="its model URI (default openai:/qwen2.5-coder-1.5b)")
    p.add_argument("--small-base-url", help="a running 0.5B server (with --small-judge)")
    p.add_argument("--small-model", help="its model URI")
    p.add_argument("--train", type=int)
    p.add_argument("--val", type=int)
    p.add_argument("--test", type=int, help="labeled test traces (>= 60 for the full run)")
    p.add_argument("--budget", type=int, help="metric calls per optimizer")
    p.add_argument("--workers", type=int)
    p.add_argument("--simba", action="store_true", help="also run simba")
    p.add_argument("--no-mlflow-gepa", action="store_true", help="skip mlflow-gepa")
    p.add_argument(
        "--judge-output",
        choices=["auto", "json_object", "text"],
        default="text",
        help="structured output judges start in after the format probe (default text: "
        "about twice as fast on llama.cpp as its JSON grammar)",
    )
    p.add_argument("--no-stronger", action="store_true", help="skip the demo-reflection run")
    p.add_argument("--small-judge", action="store_true", help="add 1.5B reflecting for 0.5B")
    p.add_argument("--only", nargs="*", default=[], help="run only these labels/optimizers")
    p.add_argument("--noise", action="store_true", help="ask the seed again on test (noise)")
    p.add_argument(
        "--threads",
        default="2",
        help="llama.cpp threads (2; 'auto' picks 1 when the machine is busy)",
    )
    args = p.parse_args(argv)
    # A SIGTERM (make interrupted, a timeout) unwinds like Ctrl-C, so the servers stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # Calls queue behind each other at one server; a busy 2-core machine makes one take
    # minutes. llama.cpp keeps working on an abandoned request, so a timeout that fires
    # early only queues the retry behind it.
    os.environ.setdefault("REQUEST_TIMEOUT", "900")
    cfg = dict(QUICK if args.quick else FULL)
    for k in ("train", "val", "test", "budget", "workers"):
        if getattr(args, k):
            cfg[k] = getattr(args, k)
    threads = None if args.threads == "auto" else int(args.threads)
    from benchmarks import real_model

    # Which llama.cpp build answered: the two differ about twofold in speed.
    cfg["runtime"] = "given server" if args.base_url else real_model.runtime_info().name
    out = run(
        cfg,
        base_url=args.base_url,
        model=args.model,
        small_base_url=args.small_base_url,
        small_model=args.small_model,
        include_simba=args.simba,
        stronger=not args.no_stronger,
        small_judge=args.small_judge,
        only=args.only,
        threads=threads,
        noise=args.noise,
        mlflow_gepa=not args.no_mlflow_gepa,
        judge_output=args.judge_output,
    )
    write_json(args.out, {"b4": out})
    return 0


if __name__ == "__main__":
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    raise SystemExit(main())
