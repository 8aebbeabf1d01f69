"""B4 (prompt part): prompt optimization with a real small LLM as the application model.

alignboard's ``gepa`` against ``mlflow-gepa`` (MLflow's ``mlflow.genai.optimize_prompts``
with ``GepaPromptOptimizer``), each through the product path
(:func:`core.optimization.engine.run_prompt_optimization`: pre-flight, the run's records,
held-out scoring of the seed and the best prompt, the registration gate), at the same
metric-call budget, on the same rows, prompt and judge:

* **application model** and **reflection model**: the real model (Qwen2.5-Coder-1.5B-
  Instruct GGUF served by llama.cpp on loopback, ``benchmarks.real_model``), reached as
  ``openai:/<name>`` with a base URL, like any vLLM/Ollama server;
* **scorer**: the aligned demo judge (``tests/fixtures/aligned_demo_judge.txt``)
  registered as a judge version. Who runs it (``--judge``): the real model, or the demo
  judge stand-in (``demo:/judge``, deterministic, not an LLM). ``auto`` first scores the
  real model as that judge on a few labeled demo traces; if it is at chance (Cohen's
  kappa under :data:`CHANCE_KAPPA`) the stand-in scores instead and the output says so:
  optimizing a prompt against a judge that agrees with nobody measures nothing;
* **data**: a few rows of ``assets/demo/app_inputs.jsonl`` per split (their split is the
  hash of their id, as for any dataset), the demo prompt ``northwind-support`` v1.

Checks, computed from the runs' records (``proposals.json``, ``test_metrics.json``, run
metrics, the Prompt Registry) and printed as PASS/FAIL lines:

* **no call lost to the request format**: llama.cpp's server refuses MLflow's
  ``json_schema`` structured output (HTTP 500); the structured-output fallback
  (:mod:`core.models.structured`) must turn every refusal into an answered call: no
  failed verdict or application call in the records names the request format;
* **no degenerate or parroted prompt accepted**: every accepted proposal passes the
  proposal guard (:mod:`core.optimization.guards`), re-checked here from its record;
  for ``gepa`` the guard itself runs in the loop (its rejections are counted);
  ``mlflow-gepa`` runs without our guard (a baseline as MLflow ships it), so its line
  reports what it accepted;
* **no worse prompt registered**: every version the runs registered has a held-out score
  no lower than its seed's (read back from the version's tags).

Calls and tokens are counted per kind (application, judge, reflection) by a LiteLLM
callback that classifies each request by its text. Wall time on a 2-core machine
shared with other work measures the neighbours too.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    DEMO_CRITERION,
    ROOT,
    machine_info,
    print_table,
    temp_store,
    write_json,
)

PROMPT_NAME = "northwind-support"
SYSTEMS: tuple[str, ...] = ("gepa", "mlflow-gepa")
#: Rows per split taken from the demo inputs (the split is the hash of the row id).
DEFAULT_ROWS = {"train": 4, "val": 2, "test": 4}
#: Metric calls per system: the seed on the validation rows, then one iteration (two when
#: the guard rejects the first proposal) on minibatches of :data:`DEFAULT_MINIBATCH` rows.
DEFAULT_BUDGET = 6
DEFAULT_MINIBATCH = 2
#: Labeled demo traces the real model judges to tell whether it is at chance.
DEFAULT_CALIBRATION = 6
#: Below this Cohen's kappa against the humans the real judge counts as at chance.
CHANCE_KAPPA = 0.2
#: Seconds per call of the 1.5B model on this machine when it has the cores to itself
#: (DESIGN.md, environment facts: 22-30 tokens/s, prompt reading dominates), for the
#: estimate: a short reply; a judge verdict whose ~1,000-token prompt is mostly reused
#: from the previous judge call by llama.cpp's prefix cache; the first judge call after
#: application calls, which reads it all; a reflection with its long prompt.
EST_SECONDS = {"app": 6.0, "judge": 7.0, "judge_first": 30.0, "reflect": 40.0}
JUDGE_MARK = "You are reviewing replies written by"
REFLECT_MARKS = ("I provided an assistant", "new instruction")


# --- counting every call by kind -------------------------------------------------------


def _text_of(messages: Any) -> str:
    parts: list[str] = []
    for m in messages or []:
        # dicts, or LiteLLM's Message objects (MLflow's judges send those)
        content = m.get("content") if isinstance(m, Mapping) else getattr(m, "content", None)
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [str(c.get("text", "")) for c in content if isinstance(c, Mapping)]
    return "\n".join(parts)


def call_kind(messages: Any) -> str:
    """``judge``, ``reflect`` or ``app``: what a chat request is, from its text."""
    text = _text_of(messages)
    if JUDGE_MARK in text:
        return "judge"
    # A reflection prompt shows the current template unrendered ("{{ message }}"); an
    # application call of a candidate that parrots a reflection prompt has it rendered.
    if any(mark in text for mark in REFLECT_MARKS) and "{{" in text:
        return "reflect"
    return "app"


class CallLog:
    """Every LiteLLM call of the process while installed: kind, tokens, seconds, the
    ``response_format`` asked for, and whether a failure was a refusal of that format."""

    def __init__(self, verbose: bool = False) -> None:
        self.lock = threading.Lock()
        self.verbose = verbose
        self.calls: list[dict[str, Any]] = []
        self._seen: set[str] = set()

    def add(self, ok: bool, kwargs: Mapping[str, Any], response: Any, start: Any, end: Any) -> None:
        """Record one call (LiteLLM may report a call through two hooks: once only)."""
        from core.models.structured import is_response_format_rejection

        # LiteLLM's id of the call (an id() of the dict could be reused once it is freed)
        key = str(kwargs.get("litellm_call_id") or id(kwargs))
        optional = kwargs.get("optional_params") or {}
        fmt = optional.get("response_format", kwargs.get("response_format"))
        fmt_type = fmt.get("type") if isinstance(fmt, Mapping) else ("schema" if fmt else None)
        usage = getattr(response, "usage", None) if ok else None
        exc = kwargs.get("exception")
        entry = {
            "kind": call_kind(kwargs.get("messages")),
            "ok": ok,
            "response_format": fmt_type,
            "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
            "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
            "seconds": _seconds(end) - _seconds(start),
            "format_refused": bool(exc is not None and is_response_format_rejection(exc)),
            "error": None if ok else str(exc)[:200],
        }
        with self.lock:
            if key in self._seen:
                return
            self._seen.add(key)
            self.calls.append(entry)
            n = len(self.calls)
        if self.verbose:
            # One line per call: a real-model run is slow, and this shows it moving.
            state = "ok" if ok else ("refused format" if entry["format_refused"] else "failed")
            print(
                f"    call {n}: {entry['kind']} {entry['seconds']:.1f} s, "
                f"{entry['prompt_tokens']}+{entry['completion_tokens']} tokens, {state}",
                flush=True,
            )

    def mark(self) -> int:
        """Position to count from (:meth:`summary`)."""
        with self.lock:
            return len(self.calls)

    def summary(self, since: int = 0) -> dict[str, Any]:
        """Calls, failures, refusals, tokens and seconds per kind since ``since``."""
        with self.lock:
            items = self.calls[since:]
        out: dict[str, Any] = {}
        for kind in ("app", "judge", "reflect"):
            mine = [c for c in items if c["kind"] == kind]
            out[kind] = {
                "calls": len(mine),
                "failed": sum(1 for c in mine if not c["ok"]),
                "format_refused": sum(1 for c in mine if c["format_refused"]),
                "prompt_tokens": sum(c["prompt_tokens"] for c in mine),
                "completion_tokens": sum(c["completion_tokens"] for c in mine),
                "seconds": round(sum(c["seconds"] for c in mine), 2),
                "mean_seconds": round(sum(c["seconds"] for c in mine) / len(mine), 2)
                if mine
                else None,
                "formats": sorted({str(c["response_format"]) for c in mine}),
            }
        out["total"] = {
            "calls": len(items),
            "failed": sum(1 for c in items if not c["ok"]),
            "format_refused": sum(1 for c in items if c["format_refused"]),
            "tokens": sum(c["prompt_tokens"] + c["completion_tokens"] for c in items),
        }
        out["other_failures"] = [
            c["error"] for c in items if not c["ok"] and not c["format_refused"]
        ][:5]
        return out


def _seconds(t: Any) -> float:
    if hasattr(t, "timestamp"):
        return float(t.timestamp())
    try:
        return float(t)
    except (TypeError, ValueError):
        return 0.0


@contextlib.contextmanager
def call_log(verbose: bool = False) -> Iterator[CallLog]:
    """Install a :class:`CallLog` as a LiteLLM callback for the block (``verbose``: print
    a line per call)."""
    import litellm
    from litellm.integrations.custom_logger import CustomLogger

    log = CallLog(verbose)

    class _Logger(CustomLogger):
        def log_success_event(self, kwargs, response_obj, start_time, end_time):
            log.add(True, kwargs, response_obj, start_time, end_time)

        def log_failure_event(self, kwargs, response_obj, start_time, end_time):
            log.add(False, kwargs, response_obj, start_time, end_time)

        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            log.add(True, kwargs, response_obj, start_time, end_time)

        async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
            log.add(False, kwargs, response_obj, start_time, end_time)

    logger = _Logger()
    litellm.callbacks.append(logger)
    try:
        yield log
    finally:
        time.sleep(0.2)  # LiteLLM reports a synchronous call from a thread, just after
        with contextlib.suppress(ValueError):
            litellm.callbacks.remove(logger)


# --- the data ----------------------------------------------------------------------------


def aligned_judge_instructions() -> str:
    """The aligned demo judge's instructions (``tests/fixtures/aligned_demo_judge.txt``)."""
    return (ROOT / "tests" / "fixtures" / "aligned_demo_judge.txt").read_text(encoding="utf-8")


def select_rows(per_split: Mapping[str, int]) -> list[dict[str, Any]]:
    """The demo application inputs to use: ``per_split[split]`` rows of each split, taken
    round-robin over the rows' topics so that a few rows still cover several topics."""
    from core.io.demo_seed import assets_dir
    from core.io.prompt_data import row_id_for
    from core.labeling.splits import assign_split

    path = assets_dir() / "demo" / "app_inputs.jsonl"
    records = [json.loads(x) for x in path.read_text("utf-8").splitlines() if x.strip()]
    chosen: list[dict[str, Any]] = []
    for split, n in per_split.items():
        by_topic: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            rid = r.get("id") or row_id_for(r["inputs"])
            if assign_split(str(rid)) == split:
                by_topic.setdefault(str((r.get("tags") or {}).get("topic")), []).append(r)
        picked: list[dict[str, Any]] = []
        while len(picked) < n and any(by_topic.values()):
            for rows in by_topic.values():
                if rows and len(picked) < n:
                    picked.append(rows.pop(0))
        if len(picked) < n:
            raise RuntimeError(f"the demo inputs have only {len(picked)} {split} rows; {n} asked")
        chosen += picked
    return chosen


def _calibration_examples(n: int) -> list[Any]:
    """``n`` labeled demo traces, pass and fail alternating (majority of their labels)."""
    from core.io.demo_seed import assets_dir
    from core.optimization.spec import Example

    path = assets_dir() / "demo" / "support_traces.jsonl"
    passes: list[Any] = []
    fails: list[Any] = []
    for line in path.read_text("utf-8").splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        votes = [
            str(lab.get("value")).lower() == "pass"
            for lab in r.get("labels") or []
            if lab.get("criterion") == DEMO_CRITERION
        ]
        if not votes or sum(votes) * 2 == len(votes):
            continue  # unlabeled or a tie
        label = sum(votes) * 2 > len(votes)
        ex = Example(
            trace_id=r["id"],
            inputs=r["inputs"],
            outputs=r["outputs"],
            expectations={},
            label=label,
            rationale=None,
            reviewer="majority",
            split="test",
            label_version="calibration",
        )
        (passes if label else fails).append(ex)
    out: list[Any] = []
    while len(out) < n and (passes or fails):
        for pool in (passes, fails):
            if pool and len(out) < n:
                out.append(pool.pop(0))
    return out


def calibrate_judge(model: str, base_url: str | None, n: int) -> dict[str, Any]:
    """Score the real model as the aligned judge on ``n`` labeled demo traces.

    Returns:
        Accuracy and Cohen's kappa against the humans (with a 95% bootstrap interval of
        the accuracy), the failed calls, seconds, and the per-trace verdicts.
    """
    from core.agreement.metrics import cohen_kappa
    from core.optimization.judging import JudgeEvaluator
    from core.optimization.prompt_task import mean_ci
    from core.optimization.spec import JudgeSpec

    examples = _calibration_examples(n)
    spec = JudgeSpec(DEMO_CRITERION, aligned_judge_instructions(), "pass_fail", model, (), base_url)
    evaluator = JudgeEvaluator(spec, workers=1)
    started = time.perf_counter()
    try:
        verdicts = evaluator.evaluate(spec.instructions, examples)
    finally:
        evaluator.close()
    seconds = time.perf_counter() - started
    correct = [
        1.0 if v.ok and v.value == ex.label else 0.0
        for v, ex in zip(verdicts, examples, strict=True)
    ]
    pairs = [(ex.label, v.value) for v, ex in zip(verdicts, examples, strict=True) if v.ok]
    kappa = None
    if pairs:
        with contextlib.suppress(Exception):
            k = cohen_kappa([a for a, _ in pairs], [b for _, b in pairs], labels=[True, False])
            kappa = None if k is None or (isinstance(k, float) and math.isnan(k)) else float(k)
    acc = mean_ci(correct)
    return {
        "n": len(examples),
        "accuracy": acc["mean"],
        "accuracy_ci": acc["ci"],
        "kappa": kappa,
        "failed": sum(1 for v in verdicts if not v.ok),
        "errors": [v.error for v in verdicts if not v.ok][:3],
        "seconds": round(seconds, 2),
        "verdicts": [
            {
                "trace": ex.trace_id,
                "human": ex.label,
                "judge": v.value,
                "rationale": (v.rationale or "")[:300],
                "error": v.error,
            }
            for v, ex in zip(verdicts, examples, strict=True)
        ],
    }


def prepare(
    home: Path,
    rows: Sequence[Mapping[str, Any]],
    judge_model: str,
    judge_base_url: str | None,
    test_metrics: Mapping[str, float],
) -> dict[str, Any]:
    """Seed the demo store, register the aligned judge (run by ``judge_model``) as a version
    and write the dataset file.

    Returns:
        ``{"experiment_id", "prompt", "judge", "dataset"}``: references for the settings.
    """
    from core.io.demo_seed import assets_dir, seed_demo
    from core.optimization.judging import build_judge
    from core.optimization.registry import register_version
    from core.optimization.spec import JudgeSpec
    from core.store.prompts import list_prompt_versions, list_prompts, register_prompt

    seeded = seed_demo(agent_experiment=None)
    if PROMPT_NAME not in list_prompts():
        spec = json.loads((assets_dir() / "demo" / "app_prompt.json").read_text("utf-8"))
        register_prompt(PROMPT_NAME, spec["template"], commit_message=spec.get("commit_message"))
    first = list_prompt_versions(PROMPT_NAME)[0].version
    judge = JudgeSpec(
        DEMO_CRITERION, aligned_judge_instructions(), "pass_fail", judge_model, (), judge_base_url
    )
    version = register_version(
        build_judge(judge),
        seeded.experiment_id,
        run_id=None,
        test_metrics=dict(test_metrics),
        optimizer="gepa",
        base_url=judge_base_url,
    )
    dataset = home / "b4_rows.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return {
        "experiment_id": seeded.experiment_id,
        "prompt": f"{PROMPT_NAME}@{first}",
        "judge": f"{DEMO_CRITERION}@{version}",
        "dataset": str(dataset),
    }


# --- the estimate ------------------------------------------------------------------------


def estimate(cfg: Mapping[str, Any], real_judge: bool | None) -> dict[str, Any]:
    """Seconds the run should take on this machine, from :data:`EST_SECONDS` per call.

    Per system: the seed on the validation rows, then iterations of (reflection, the
    child on a minibatch) until the budget is spent, then the seed and the best prompt on
    the test rows. ``real_judge`` None: the calibration decides (counted as real).
    """
    e = EST_SECONDS
    judge = e["judge"] if real_judge is not False else 0.05
    judge_first = e["judge_first"] if real_judge is not False else 0.05
    val, test, mb = cfg["rows"]["val"], cfg["rows"]["test"], cfg["minibatch"]
    budget = cfg["budget"]

    def rows_cost(n: int) -> float:
        return n * e["app"] + (judge_first + (n - 1) * judge if n else 0.0)

    # gepa checks the budget before an iteration, so the last one may overshoot it
    iterations = max(0, math.ceil((budget - val) / (2 * mb)))
    # each iteration: the parent on a fresh minibatch, a reflection, the child on it
    one = rows_cost(val) + iterations * (e["reflect"] + 2 * rows_cost(mb)) + rows_cost(2 * test)
    per_system = {s: one for s in SYSTEMS}
    calibration = cfg["calibration"] * e["judge"] + e["judge_first"] if real_judge is None else 0
    # The per-call figures are an idle machine's; a busy one (the load average) is slower,
    # as the product's own estimates scale it (measured here: 5-10x under load 7-8).
    from core.optimization.preflight import load_factor

    factor = load_factor()
    total = (sum(per_system[s] for s in cfg["systems"]) + calibration) * factor
    return {
        "per_call_seconds": dict(e),
        "iterations_per_system": iterations,
        "calibration_s": calibration * factor,
        "per_system_s": {s: per_system[s] * factor for s in cfg["systems"]},
        "load_factor": factor,
        "total_s": total,
    }


# --- one system --------------------------------------------------------------------------


def _guard_recheck(
    proposals: Sequence[Any], candidates: Sequence[Any], seed: str, accepted_only: bool = True
) -> list[dict]:
    """The proposal guard's verdict, from the record, on every accepted proposal (or on
    every proposal that reached an evaluation, with ``accepted_only=False``)."""
    from core.optimization.guards import check_proposal

    by_id = {c.id: c for c in candidates}
    out = []
    for p in proposals:
        if p.degenerate or (accepted_only and p.status != "accepted"):
            continue
        parent = by_id.get(p.parent_id) if p.parent_id is not None else None
        parent_text = parent.instructions if parent is not None else seed
        v = check_proposal(
            p.proposed_text, parent=parent_text, seed=seed, reflection_prompt=p.reflection_prompt
        )
        out.append({"iteration": p.iteration, "status": p.status, "ok": v.ok, "reason": v.reason})
    return out


def _first_rationale(verdicts: Mapping[str, Any] | None) -> str:
    for v in (verdicts or {}).values():
        return str(v.get("rationale") or v.get("error") or "")[:300]
    return ""


def _format_errors(texts: Sequence[str | None]) -> int:
    from core.models.structured import is_response_format_rejection

    pattern = re.compile(r"response_format|json_schema", re.IGNORECASE)
    return sum(
        1 for t in texts if t and (pattern.search(t) or is_response_format_rejection(str(t)))
    )


def _verdict_errors(test: Any) -> list[str | None]:
    out: list[str | None] = []
    for o in test.outputs if test is not None else ():
        for side in (o.before_verdicts, o.after_verdicts):
            out += [v.get("error") for v in (side or {}).values()]
    return out


def run_system(
    optimizer: str, refs: Mapping[str, Any], cfg: Mapping[str, Any], log: CallLog
) -> dict[str, Any]:
    """One prompt optimization through the product path, and what its records say."""
    from mlflow import MlflowClient

    from core.models.structured import endpoint_modes
    from core.optimization import record
    from core.optimization.engine import run_prompt_optimization
    from core.optimization.guards import check_proposal
    from core.optimization.prompt_preflight import build_prompt_settings

    settings = build_prompt_settings(
        refs["experiment_id"],
        prompts=[refs["prompt"]],
        dataset=refs["dataset"],
        task_model=cfg["model"],
        task_base_url=cfg["base_url"],
        judges=[refs["judge"]],
        optimizer=optimizer,
        reflection_model=cfg["model"],
        reflection_base_url=cfg["base_url"],
        max_metric_calls=cfg["budget"],
        workers=cfg["workers"],
        minibatch_size=cfg["minibatch"],
        alias=f"b4-{optimizer}",
        task_temperature=cfg.get("task_temperature"),
    )
    mark = log.mark()
    started = time.perf_counter()
    result = run_prompt_optimization(settings)
    wall = time.perf_counter() - started
    calls = log.summary(mark)
    client = MlflowClient()
    rec = record.read_run_record(client, result.run_id)
    metrics = dict(client.get_run(result.run_id).data.metrics)
    proposals = record.read_proposals(rec.proposals)
    seed = rec.candidates[0].instructions if rec.candidates else ""
    test = rec.test
    overall = (test.scores.get("overall") if test is not None else None) or {}
    rows = [
        {
            "row": o.row_id,
            "before": o.before_score,
            "after": o.after_score,
            # What the application answered, so a reader can judge the judge too.
            "before_output": (o.before or "")[:400],
            "after_output": (o.after or "")[:400] if o.after != o.before else "(same)",
            "before_rationale": _first_rationale(o.before_verdicts),
            "after_rationale": _first_rationale(o.after_verdicts),
            "flipped": o.before_score is not None
            and o.after_score is not None
            and (o.before_score >= 0.5) != (o.after_score >= 0.5),
        }
        for o in (test.outputs if test is not None else ())
    ]
    failed_app = [o.before is None or o.after is None for o in (test.outputs if test else ())]
    best_check = check_proposal(result.template, parent=seed, seed=seed) if seed else None
    return {
        "optimizer": optimizer,
        "run_id": result.run_id,
        "status": result.status,
        "wall_s": round(wall, 2),
        "engine_wall_s": result.wall_seconds,
        "metric_calls": result.metric_calls,
        "budget": cfg["budget"],
        "iterations": result.iterations,
        "llm_calls": result.llm_calls,
        "tokens": result.tokens,
        "calls": calls,
        "train_size": result.train_size,
        "val_size": result.val_size,
        "test_size": result.test_size,
        "test_score_before": result.test_score_before,
        "test_score_after": result.test_score_after,
        "test_before_ci": overall.get("before_ci"),
        "test_after_ci": overall.get("after_ci"),
        "score_diff": result.score_diff,
        "score_diff_ci": result.score_diff_ci,
        "significant": result.significant,
        "verdict": result.verdict,
        "verdict_text": result.verdict_text,
        "registered_version": result.prompt_version,
        "test_rows": rows,
        "flipped_rows": [r["row"] for r in rows if r["flipped"]],
        "best_template": result.template,
        "best_is_seed": result.template == seed,
        "best_guard_ok": None if best_check is None else best_check.ok,
        "proposals": {
            "total": len(proposals),
            "accepted": sum(1 for p in proposals if p.status == "accepted"),
            "degenerate_rejected": sum(1 for p in proposals if p.degenerate),
            "degenerate_reasons": sorted({str(p.reason) for p in proposals if p.degenerate}),
            "not_better_on_minibatch": sum(
                1 for p in proposals if p.reason == record.NOT_BETTER_ON_MINIBATCH
            ),
            "accepted_recheck": _guard_recheck(proposals, rec.candidates, seed),
            # Proposals that were evaluated although the guard would reject them (only a
            # run without the guard in its loop, mlflow-gepa, has any).
            "evaluated_degenerate": sum(
                1
                for r in _guard_recheck(proposals, rec.candidates, seed, accepted_only=False)
                if not r["ok"]
            ),
        },
        "failures": {
            "app_failures_metric": metrics.get("app_failures"),
            "judge_failures_metric": metrics.get("judge_failures"),
            "failed_examples": result.failed_examples,
            "test_rows_without_output": sum(failed_app),
            "verdict_errors_on_test": sum(1 for e in _verdict_errors(test) if e),
            "format_errors_in_records": _format_errors(_verdict_errors(test)),
        },
        "endpoint_modes": endpoint_modes(),
        "warnings": result.warnings,
    }


# --- the checks --------------------------------------------------------------------------


def registered_versions(experiment_id: str) -> list[dict[str, Any]]:
    """Every version of the prompt alignboard registered, with its held-out scores tags."""
    from core.optimization.prompt_task import (
        VERSION_TAG_AFTER,
        VERSION_TAG_BEFORE,
        VERSION_TAG_OPTIMIZER,
        VERSION_TAG_RUN,
    )
    from core.store.prompts import list_prompt_versions

    out = []
    for v in list_prompt_versions(PROMPT_NAME):
        tags = dict(getattr(v, "tags", {}) or {})
        if VERSION_TAG_RUN not in tags:
            continue
        out.append(
            {
                "version": v.version,
                "run_id": tags.get(VERSION_TAG_RUN),
                "optimizer": tags.get(VERSION_TAG_OPTIMIZER),
                "before": _float(tags.get(VERSION_TAG_BEFORE)),
                "after": _float(tags.get(VERSION_TAG_AFTER)),
            }
        )
    return out


def _float(x: Any) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def checks(out: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The PASS/FAIL lines, each computed from the runs' records."""
    lines: list[dict[str, Any]] = []
    systems = [out["systems"][s] for s in out["settings"]["systems"] if s in out["systems"]]
    cal = out.get("calibration") or {}

    # 1. no call lost to the request format
    lost = sum(s["failures"]["format_errors_in_records"] for s in systems)
    lost += _format_errors(cal.get("errors") or [])
    refused = sum(s["calls"]["total"]["format_refused"] for s in systems)
    refused += (out.get("calibration_calls") or {}).get("total", {}).get("format_refused", 0)
    # Judge calls that failed for another reason than the format (the refusals are
    # answered again at once), seen by the call log: mlflow-gepa logs no failure metric.
    judge_failed = sum(
        s["calls"]["judge"]["failed"] - s["calls"]["judge"]["format_refused"] for s in systems
    )
    real_judged = out["judge"]["runner"] == "real" or bool(cal)
    detail = (
        f"{refused} request(s) refused for their response_format and answered again in "
        f"another mode; {lost} verdict or call failed naming the format; {judge_failed} "
        "judge call(s) failed for any reason in the runs"
        + (
            ""
            if real_judged
            else " (the runs' judge is the stand-in: the real server saw "
            "application and reflection calls only)"
        )
    )
    lines.append({"check": "no call lost to the request format", "ok": lost == 0, "detail": detail})

    # 2. no degenerate / parroted prompt accepted (ours: the guard in the loop)
    for s in systems:
        recheck = s["proposals"]["accepted_recheck"]
        bad = [r for r in recheck if not r["ok"]]
        best_bad = s["best_guard_ok"] is False and not s["best_is_seed"]
        p = s["proposals"]
        detail = (
            f"{p['total']} proposal(s): {p['accepted']} accepted (all re-checked by the "
            f"guard: {len(bad)} degenerate), {p['degenerate_rejected']} rejected by the guard "
            f"({', '.join(p['degenerate_reasons']) or 'none'}), {p['not_better_on_minibatch']} "
            f"not better on their minibatch, {p.get('evaluated_degenerate', 0)} evaluated "
            "although degenerate"
            + ("; nothing proposed, the check is vacuous" if not p["total"] else "")
        )
        if s["optimizer"] == "gepa":
            lines.append(
                {
                    "check": "gepa: no degenerate/parroted prompt accepted",
                    "ok": not bad and not best_bad,
                    "detail": detail,
                }
            )
        else:
            # MLflow's GEPA runs without our guard: what it accepted is reported, and the
            # product's gate is what stands between it and the registry (check 3).
            lines.append(
                {
                    "check": f"{s['optimizer']} (no guard, baseline): degenerate accepted = "
                    f"{len(bad)}",
                    "ok": None,
                    "detail": detail,
                }
            )

    # 3. no worse prompt registered (read back from the registry's version tags)
    versions = out.get("registered_versions") or []
    worse = [
        v for v in versions if v["before"] is None or v["after"] is None or v["after"] < v["before"]
    ]
    degenerate_registered = [
        s["optimizer"]
        for s in systems
        if s["registered_version"] is not None and s["best_guard_ok"] is False
    ]
    detail = (
        f"{len(versions)} version(s) registered"
        + "".join(
            f"; v{v['version']} ({v['optimizer']}): held-out {v['before']} -> {v['after']}"
            for v in versions
        )
        + "".join(
            f"; {s['optimizer']}: verdict {s['verdict']}, not registered"
            for s in systems
            if s["registered_version"] is None
        )
    )
    lines.append(
        {
            "check": "no worse prompt registered",
            "ok": not worse,
            "detail": detail,
        }
    )
    lines.append(
        {
            "check": "no degenerate prompt registered",
            "ok": not degenerate_registered,
            "detail": ", ".join(degenerate_registered)
            or "none of the registered prompts fails the guard",
        }
    )
    return lines


# --- the run -----------------------------------------------------------------------------


@contextlib.contextmanager
def model_server(
    base_url: str | None, model: str | None, threads: int | None = None
) -> Iterator[tuple[str, str]]:
    """``(base_url, model)``: the given server, or one started with ``benchmarks.real_model``
    (``threads`` None: 2 on an idle machine, 1 on a busy one, where two threads waiting
    for each other at llama.cpp's barriers decode ten times slower)."""
    if base_url:
        yield base_url.rstrip("/"), _model_uri(model or "qwen2.5-coder-1.5b")
        return
    import importlib

    # The real-model helper (install, assemble, serve); imported on use, it is only
    # needed when no server is given.
    real_model: Any = importlib.import_module("benchmarks.real_model")

    real_model.ensure_runtime()
    path = real_model.ensure_model()
    alias = (model or "qwen2.5-coder-1.5b").split(":/")[-1]
    threads = threads or real_model.auto_threads()
    print(f"starting llama.cpp with {threads} thread(s)", flush=True)
    with real_model.serve(path, alias, threads=threads) as server:
        name = (
            getattr(server, "model_uri", None)
            or getattr(server, "model", None)
            or getattr(server, "alias", None)
            or alias
        )
        yield str(server.base_url).rstrip("/"), _model_uri(str(name))


def _model_uri(name: str) -> str:
    return name if ":/" in name else f"openai:/{name}"


def run(
    base_url: str | None = None,
    model: str | None = None,
    *,
    rows: Mapping[str, int] | None = None,
    budget: int = DEFAULT_BUDGET,
    workers: int = 1,
    minibatch: int = DEFAULT_MINIBATCH,
    judge: str = "auto",
    calibration: int = DEFAULT_CALIBRATION,
    systems: Sequence[str] = SYSTEMS,
    verbose: bool = True,
    threads: int | None = None,
    task_temperature: float | None = 0.0,
) -> dict[str, Any]:
    """Run B4's prompt part and return its JSON-ready results (also printed).

    ``task_temperature``: the application's sampling temperature (0 by default, so the
    same prompt gets the same replies and the seed's held-out score does not drift
    between systems; None: the server's default, 0.8 on llama.cpp).
    """
    import litellm  # noqa: F401  (imported before any clock starts)

    cfg: dict[str, Any] = {
        "task_temperature": task_temperature,
        "rows": dict(rows or DEFAULT_ROWS),
        "budget": int(budget),
        "workers": int(workers),
        "minibatch": int(minibatch),
        "judge": judge,
        "calibration": int(calibration) if judge == "auto" else 0,
        "systems": list(systems),
    }
    est = estimate(cfg, {"auto": None, "real": True, "demo": False}[judge])
    print(
        f"B4 prompt estimate: ~{est['total_s'] / 60:.1f} min ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in est["per_system_s"].items())
        + (f", judge calibration {est['calibration_s']:.0f} s" if est["calibration_s"] else "")
        + f"; {est['iterations_per_system']} iteration(s) per system at about "
        + ", ".join(f"{k} {v:g} s" for k, v in EST_SECONDS.items())
        + f" per call on an idle machine, x{est['load_factor']:.1f} for the load now)",
        flush=True,
    )
    out: dict[str, Any] = {
        "benchmark": "b4_real_prompt",
        "machine": machine_info(),
        "estimate": est,
        "timings_s": {},
    }
    t0 = time.perf_counter()
    with model_server(base_url, model, threads) as (url, uri), call_log(verbose) as log:
        cfg["base_url"], cfg["model"] = url, uri
        cfg["threads"] = threads or ("auto" if not base_url else "given server")
        out["settings"] = cfg
        out["timings_s"]["server_ready"] = round(time.perf_counter() - t0, 2)
        print(f"model {uri} at {url}", flush=True)
        with temp_store("alignboard-b4p-") as store:
            runner, why, cal_metrics = _choose_judge(cfg, out, log)
            out["judge"] = {"runner": runner, "why": why}
            print(f"judge: {runner} ({why})", flush=True)
            t = time.perf_counter()
            refs = prepare(
                store.home,
                select_rows(cfg["rows"]),
                uri if runner == "real" else "demo:/judge",
                url if runner == "real" else None,
                cal_metrics,
            )
            out["refs"] = {k: v for k, v in refs.items() if k != "dataset"}
            out["timings_s"]["prepare"] = round(time.perf_counter() - t, 2)
            out["systems"] = {}
            for optimizer in cfg["systems"]:
                t = time.perf_counter()
                print(f"running {optimizer} ...", flush=True)
                out["systems"][optimizer] = run_system(optimizer, refs, cfg, log)
                out["timings_s"][optimizer] = round(time.perf_counter() - t, 2)
                print(f"  {optimizer} done in {out['timings_s'][optimizer]:.0f} s", flush=True)
            out["registered_versions"] = registered_versions(refs["experiment_id"])
    out["timings_s"]["total"] = round(time.perf_counter() - t0, 2)
    out["checks"] = checks(out)
    _print(out)
    return out


def _choose_judge(
    cfg: Mapping[str, Any], out: dict[str, Any], log: CallLog
) -> tuple[str, str, dict[str, float]]:
    """Who runs the aligned judge in the runs, why, and the metrics it is registered with."""
    if cfg["judge"] == "demo":
        return "demo", "asked for (--judge demo)", {}
    if cfg["judge"] == "real":
        return "real", "asked for (--judge real); agreement with the humans not measured", {}
    mark = log.mark()
    t = time.perf_counter()
    cal = calibrate_judge(cfg["model"], cfg["base_url"], cfg["calibration"])
    out["timings_s"]["calibration"] = round(time.perf_counter() - t, 2)
    out["calibration"] = cal
    out["calibration_calls"] = log.summary(mark)
    metrics = {
        k: v
        for k, v in (("test_accuracy_after", cal["accuracy"]), ("test_kappa_after", cal["kappa"]))
        if v is not None
    }
    kappa = cal["kappa"]
    shown = (
        f"the real model as the aligned judge on {cal['n']} labeled demo traces: accuracy "
        f"{_fmt(cal['accuracy'])} (95% CI {_fmt(cal['accuracy_ci'][0])}-"
        f"{_fmt(cal['accuracy_ci'][1])}), kappa {_fmt(kappa)}, {cal['failed']} failed call(s)"
    )
    if kappa is None or kappa < CHANCE_KAPPA:
        return (
            "demo",
            f"{shown}: at chance (kappa < {CHANCE_KAPPA}), so the deterministic stand-in "
            "demo:/judge scores; the application and the reflection stay the real model",
            {"test_kappa_after": 0.85, "test_accuracy_after": 0.93},
        )
    return "real", f"{shown}: above chance, so the real model scores", metrics


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):.2f}"


def _print(out: Mapping[str, Any]) -> None:
    rows = []
    for name, s in out["systems"].items():
        c = s["calls"]
        rows.append(
            {
                "system": name,
                "wall_s": s["wall_s"],
                "metric_calls": s["metric_calls"],
                "iterations": s["iterations"],
                "app": c["app"]["calls"],
                "judge": c["judge"]["calls"],
                "reflect": c["reflect"]["calls"],
                "tokens": c["total"]["tokens"],
                "before": s["test_score_before"],
                "before_ci": _ci(s["test_before_ci"]),
                "after": s["test_score_after"],
                "after_ci": _ci(s["test_after_ci"]),
                "verdict": s["verdict"],
                "registered": s["registered_version"],
            }
        )
    print_table(
        f"B4 prompt optimization, real model {out['settings']['model']}, judge "
        f"{out['judge']['runner']}, budget {out['settings']['budget']}, rows "
        f"{out['settings']['rows']}",
        rows,
        list(rows[0]) if rows else ["system"],
    )
    for name, s in out["systems"].items():
        print(
            f"{name}: held-out diff {_fmt(s['score_diff'])} (95% CI {_ci(s['score_diff_ci'])}), "
            f"flipped rows: {', '.join(s['flipped_rows']) or 'none'}; {s['verdict_text']}",
            flush=True,
        )
    for line in out["checks"]:
        tag = "INFO" if line["ok"] is None else ("PASS" if line["ok"] else "FAIL")
        print(f"{tag} {line['check']}: {line['detail']}", flush=True)
    print("timings (s): " + ", ".join(f"{k} {v}" for k, v in out["timings_s"].items()), flush=True)


def _ci(ci: Any) -> str:
    if not ci or ci[0] is None:
        return "n/a"
    return f"{float(ci[0]):.2f}-{float(ci[1]):.2f}"


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.b4_real_prompt [--base-url URL --model NAME] --out F``."""
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="write the results as JSON to this file")
    p.add_argument("--base-url", help="an OpenAI-compatible server already running (…/v1)")
    p.add_argument("--model", help="its model name (openai:/NAME or NAME)")
    p.add_argument("--budget", type=int, default=DEFAULT_BUDGET, help="metric calls per system")
    p.add_argument("--train", type=int, default=DEFAULT_ROWS["train"])
    p.add_argument("--val", type=int, default=DEFAULT_ROWS["val"])
    p.add_argument("--test", type=int, default=DEFAULT_ROWS["test"])
    p.add_argument("--workers", type=int, default=1, help="calls in flight (the server: 1)")
    p.add_argument("--minibatch", type=int, default=DEFAULT_MINIBATCH)
    p.add_argument(
        "--judge",
        choices=("auto", "real", "demo"),
        default="auto",
        help="who runs the aligned judge: auto (the real model unless at chance), real, demo",
    )
    p.add_argument("--calibration", type=int, default=DEFAULT_CALIBRATION)
    p.add_argument("--systems", default=",".join(SYSTEMS), help="gepa,mlflow-gepa")
    p.add_argument("--quiet", action="store_true", help="no line per model call")
    p.add_argument(
        "--threads", default="auto", help="llama.cpp threads when a server is started (auto)"
    )
    p.add_argument(
        "--task-temperature",
        default="0",
        help="the application's temperature (0; 'default': the server's own, 0.8 on llama.cpp)",
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        default=900.0,
        help="seconds before one model call is abandoned (0: LiteLLM's setting)",
    )
    args = p.parse_args(argv)
    if args.request_timeout > 0 and "litellm" not in sys.modules:
        # One real-model call with a long prompt can take minutes on 2 shared cores;
        # LiteLLM's request timeout is the one knob every call of the process obeys (ours,
        # MLflow's judges, gepa's reflection), read when LiteLLM is imported.
        os.environ.setdefault("REQUEST_TIMEOUT", f"{args.request_timeout:g}")
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        p.error(f"unknown system(s) {unknown}; choose from {', '.join(SYSTEMS)}")
    result = run(
        args.base_url,
        args.model,
        rows={"train": args.train, "val": args.val, "test": args.test},
        budget=args.budget,
        workers=args.workers,
        minibatch=args.minibatch,
        judge=args.judge,
        calibration=args.calibration,
        systems=systems,
        verbose=not args.quiet,
        threads=None if args.threads == "auto" else int(args.threads),
        task_temperature=None
        if args.task_temperature == "default"
        else float(args.task_temperature),
    )
    write_json(args.out, {"b4_prompt": result})
    return 0 if all(c["ok"] is not False for c in result["checks"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
