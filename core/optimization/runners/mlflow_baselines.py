"""Baselines: MLflow's own ``GEPAAlignmentOptimizer`` and ``SIMBAAlignmentOptimizer``.

Both run through ``judge.align`` exactly as an MLflow user would call them, so that users
and benchmarks can compare them with alignboard's ``gepa``. They are kept honest: the
same metric (MLflow's ``agreement_metric``), the same examples and the same budget; only
what MLflow exposes is recorded, and nothing is patched.

What the paths expose, and how it is captured:

* **mlflow-gepa**: MLflow passes ``gepa_kwargs`` to ``dspy.GEPA``, and dspy passes its own
  ``gepa_kwargs`` on to ``gepa.optimize``. So gepa's ``callbacks`` (every evaluated
  candidate with its score and parents, the budget used, accepted and rejected proposals)
  and ``stop_callbacks`` (our cancel) reach gepa through that documented chain. The budget
  is MLflow's ``max_metric_calls`` argument: inside ``gepa_kwargs`` MLflow would override
  it, and dspy refuses ``auto`` next to it. dspy compiles without a valset, so gepa scores
  candidates on the training traces themselves. MLflow's reflection sees only "This
  trajectory got a score of True" (no human rationale), which is what alignboard's ``gepa``
  improves on; with the demo model no candidate therefore changes the instructions.
* **simba**: ``dspy.SIMBA`` has no callbacks. Its per-step ``trial_logs`` and scored
  ``candidate_programs`` hang off the program it returns, which MLflow turns into a judge
  and drops; a subclass keeps that program (``_dspy_optimize`` is the documented hook of
  MLflow's DSPy optimizers). Metric calls are counted by passing MLflow's own
  ``agreement_metric`` wrapped in a counter through ``simba_kwargs["metric"]``. The budget
  is turned into SIMBA's knobs (``bsize``, ``num_candidates``, ``max_steps``, and how many
  examples it is given) so that SIMBA's worst case (:func:`simba_cost`) fits it. SIMBA
  offers no stop hook: a cancel is read by the counting metric, which ends the search at
  its next judge evaluation (the seed judge is returned, cancelled).

Both are judge runners (:data:`core.optimization.spec.Runner`) and align judges only: given
any other task they raise ValidationError (:func:`core.optimization.task.judge_settings`).

Both see the train and validation examples (our ``gepa`` sees the same two splits; these
optimizers take one list and validate on it themselves); never the test split.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.models import demo_stats
from core.optimization import record
from core.optimization.mlflow_judge import fetch_traces, seed_judge, served_judge_route

# SIMBA's plan (its knobs for a budget) lives in pre-flight, which estimates it too; the
# names stay importable from here, where SIMBA runs.
from core.optimization.preflight import (  # noqa: F401
    MIN_TRACES,
    SIMBA_CANDIDATES,
    SIMBA_MIN_BATCH,
    simba_cost,
    simba_plan,
)
from core.optimization.runners.gepa import BudgetStop
from core.optimization.spec import AlignmentOutcome, AlignmentSettings, Example, RunRecorder
from core.optimization.task import judge_settings

if TYPE_CHECKING:
    from gepa.core.callbacks import (
        BudgetUpdatedEvent,
        CandidateAcceptedEvent,
        CandidateRejectedEvent,
        IterationEndEvent,
        OptimizationEndEvent,
        ProposalEndEvent,
        ValsetEvaluatedEvent,
    )
    from gepa.core.state import GEPAState


class _Usage:
    """Demo-model call counts and wall time since creation."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.before = demo_stats()

    def metrics(self) -> dict[str, float]:
        now = demo_stats()
        return {
            "llm_calls": float(now.calls - self.before.calls),
            "embedding_calls": float(now.embedding_calls - self.before.embedding_calls),
            "wall_seconds": time.monotonic() - self.started,
        }


def _cancelled_outcome(optimizer: str, settings: AlignmentSettings) -> AlignmentOutcome:
    judge = seed_judge(settings.judge)
    return AlignmentOutcome(optimizer, judge.instructions, judge, cancelled=True)


def _cancelled_at_start(
    recorder: RunRecorder, optimizer: str, settings: AlignmentSettings
) -> AlignmentOutcome | None:
    """Beat once; the cancelled outcome when a stop was asked before the search began."""
    recorder.heartbeat()
    return _cancelled_outcome(optimizer, settings) if recorder.should_stop() else None


# --- mlflow-gepa ------------------------------------------------------------------------


class GepaEvents:
    """gepa callback recording what MLflow's GEPA path does, and passing it to a recorder.

    One method per typed event of ``gepa.core.callbacks`` (gepa calls the ones defined)."""

    def __init__(self, recorder: RunRecorder, usage: _Usage) -> None:
        self.recorder = recorder
        self.usage = usage
        self.candidates: list[dict[str, Any]] = []
        self.proposals: list[dict[str, Any]] = []
        self.metric_calls = 0
        self.iterations = 0
        self.best_idx: int | None = None
        self._best = float("-inf")
        self._lock = threading.Lock()

    def on_valset_evaluated(self, event: ValsetEvaluatedEvent) -> None:
        """A candidate was scored on the whole (training) set: the chart's data."""
        with self._lock:
            score = float(event["average_score"])
            self._best = max(self._best, score)
            self.candidates.append(
                {
                    "idx": int(event["candidate_idx"]),
                    "iteration": int(event["iteration"]),
                    "parent_ids": [p for p in event["parent_ids"] if p is not None],
                    "instructions": next(iter(event["candidate"].values()), ""),
                    "val_score": score,
                    "scores_by_example": {str(k): v for k, v in event["scores_by_val_id"].items()},
                }
            )
            self.recorder.log_metrics(
                {
                    "val_score": score,
                    "best_val_score": self._best,
                    "metric_calls": float(self.metric_calls),
                    **self.usage.metrics(),
                },
                step=int(event["iteration"]),
            )

    def as_candidates(self, example_ids: list[str]) -> list[record.Candidate]:
        """The scored candidates as run-record candidates, per-example scores keyed by
        trace id (MLflow's GEPA keys them by position in the examples it was given)."""
        out: dict[int, record.Candidate] = {}
        for c in self.candidates:
            scores = {}
            for k, v in c["scores_by_example"].items():
                pos = int(k)
                scores[example_ids[pos] if 0 <= pos < len(example_ids) else str(k)] = float(v)
            out.setdefault(
                c["idx"],
                record.Candidate(
                    id=c["idx"],
                    parent_ids=tuple(int(p) for p in c["parent_ids"]),
                    instructions=c["instructions"],
                    val_score=c["val_score"],
                    val_scores=scores,
                    iteration=c["iteration"],
                ),
            )
        return [out[k] for k in sorted(out)]

    def on_budget_updated(self, event: BudgetUpdatedEvent) -> None:
        """Budget spent so far."""
        self.metric_calls = int(event["metric_calls_used"])

    def on_proposal_end(self, event: ProposalEndEvent) -> None:
        """The reflection model's proposal (unchanged text when it saw no rationale)."""
        self.proposals.append(
            {
                "iteration": int(event["iteration"]),
                "new_instructions": next(iter(event["new_instructions"].values()), ""),
            }
        )

    def on_candidate_rejected(self, event: CandidateRejectedEvent) -> None:
        """Why a proposal was not kept."""
        if self.proposals:
            self.proposals[-1]["rejected"] = str(event.get("reason", ""))

    def on_candidate_accepted(self, event: CandidateAcceptedEvent) -> None:
        """A proposal was kept as a new candidate."""
        if self.proposals:
            self.proposals[-1]["accepted_as"] = int(event["new_candidate_idx"])

    def on_iteration_end(self, event: IterationEndEvent) -> None:
        """Iteration boundary: progress and a heartbeat."""
        self.iterations = int(event["iteration"])
        self.recorder.heartbeat()

    def on_optimization_end(self, event: OptimizationEndEvent) -> None:
        """Final totals."""
        self.best_idx = int(event["best_candidate_idx"])
        self.metric_calls = int(event["total_metric_calls"])
        self.iterations = int(event["total_iterations"])


def run_mlflow_gepa(
    settings: AlignmentSettings,
    train: list[Example],
    val: list[Example],
    recorder: RunRecorder,
) -> AlignmentOutcome:
    """Align with MLflow's ``GEPAAlignmentOptimizer`` on train + val.

    Records ``candidates.json`` (each scored candidate: idx, iteration, parents,
    instructions, score, per-example scores), ``proposals.json`` (what the reflection
    model proposed and whether it was kept), ``mlflow_gepa.json`` (totals) and per-iteration
    metrics ``val_score``, ``best_val_score``, ``metric_calls``, ``llm_calls``.
    """
    settings = judge_settings(settings, "mlflow-gepa")
    from mlflow.genai.judges.optimizers import GEPAAlignmentOptimizer

    usage = _Usage()
    if (cancelled := _cancelled_at_start(recorder, "mlflow-gepa", settings)) is not None:
        return cancelled
    examples = [*train, *val]
    budget = settings.budget(len(train))
    events = GepaEvents(recorder, usage)
    stopped: list[bool] = []
    # dspy compiles without a valset: gepa validates on all the examples it was given.
    within_budget = BudgetStop(budget, settings.minibatch_size, len(examples))

    def stop(state: GEPAState) -> bool:
        # Remember that the cancel, not the budget, ended the search.
        if recorder.should_stop():
            stopped.append(True)
        return bool(stopped) or within_budget(state)

    optimizer = GEPAAlignmentOptimizer(
        model=settings.reflection_model,
        max_metric_calls=budget,
        gepa_kwargs={
            "seed": settings.seed,
            "num_threads": settings.workers,
            "reflection_minibatch_size": settings.minibatch_size,
            # Passed by dspy.GEPA to gepa.optimize.
            "gepa_kwargs": {
                "callbacks": [events],
                "stop_callbacks": [stop],
            },
        },
    )
    traces = fetch_traces(examples, settings.judge.name)
    with served_judge_route(settings.judge, examples[0] if examples else None):
        judge = seed_judge(settings.judge).align(traces=traces, optimizer=optimizer)
    totals = {
        "budget": budget,
        "metric_calls": events.metric_calls,
        "iterations": events.iterations,
        "candidates": len(events.candidates),
        "best_candidate_idx": events.best_idx,
        "examples": len(examples),
        "instructions_changed": judge.instructions.strip() != settings.judge.instructions.strip(),
        **usage.metrics(),
    }
    # dspy validates on the traces it was given, in order: position i is examples[i].
    ids = [e.trace_id for e in examples]
    record.write_candidates(recorder, events.as_candidates(ids))
    record.write_raw_proposals(recorder, events.proposals)
    record.write_baseline_totals(recorder, "mlflow-gepa", totals)
    recorder.log_metrics(
        {"metric_calls": float(events.metric_calls), **usage.metrics()}, step=events.iterations
    )
    return AlignmentOutcome(
        optimizer="mlflow-gepa",
        instructions=judge.instructions,
        judge=judge,
        iterations=events.iterations,
        metric_calls=events.metric_calls,
        cancelled=bool(stopped),
        extra=totals,
    )


# --- simba ------------------------------------------------------------------------------


class _SimbaStopped(BaseException):
    """A cancel was asked for during SIMBA: raised from the metric to end the search.

    A BaseException on purpose: dspy's program wrapper, its parallel executor and MLflow's
    ``align`` catch ``Exception`` (and would score the call 0 and go on), so this one
    reaches :func:`run_simba`, which returns the seed judge, cancelled (SIMBA keeps its
    candidates inside ``compile``: there is no best-so-far to hand back).
    """


class _CountingMetric:
    """MLflow's agreement metric, counted (thread-safe: SIMBA runs it in parallel)."""

    def __init__(self, metric: Callable[..., Any], recorder: RunRecorder) -> None:
        self.metric = metric
        self.recorder = recorder
        self.calls = 0
        self.cancelled = False
        self._lock = threading.Lock()

    def __call__(self, example: Any, pred: Any, trace: Any = None) -> Any:
        # The cancel is read on every call (the recorder caches it for a second): SIMBA has
        # no iteration hook, and a step can take many calls.
        if self.cancelled or self.recorder.should_stop():
            self.cancelled = True
            raise _SimbaStopped
        with self._lock:
            self.calls += 1
            beat = self.calls % 50 == 0
        if beat:
            self.recorder.heartbeat()
        return self.metric(example, pred, trace)


def _simba_class():
    from mlflow.genai.judges.optimizers import SIMBAAlignmentOptimizer

    class KeepingSIMBA(SIMBAAlignmentOptimizer):
        """MLflow's SIMBA optimizer that keeps dspy's compiled program for inspection."""

        compiled: Any = None

        def _dspy_optimize(self, program, examples, metric_fn):
            self.compiled = super()._dspy_optimize(program, examples, metric_fn)
            return self.compiled

    return KeepingSIMBA


def _simba_log(compiled: Any) -> dict[str, Any]:
    if compiled is None:
        return {"trial_logs": {}, "candidates": []}
    logs = {
        str(step): {k: v for k, v in entry.items() if isinstance(v, int | float | str)}
        for step, entry in (getattr(compiled, "trial_logs", None) or {}).items()
    }
    candidates = [
        {
            "rank": rank,
            "train_score": float(c["score"]),
            "instructions": c["program"].signature.instructions,
            "demos": len(getattr(c["program"], "demos", []) or []),
        }
        for rank, c in enumerate(getattr(compiled, "candidate_programs", None) or [])
    ]
    return {"trial_logs": logs, "candidates": candidates}


def run_simba(
    settings: AlignmentSettings,
    train: list[Example],
    val: list[Example],
    recorder: RunRecorder,
) -> AlignmentOutcome:
    """Align with MLflow's ``SIMBAAlignmentOptimizer`` on train + val.

    Records ``simba.json`` (the plan, metric calls, per-step trial logs and the final
    scored candidates with their instructions) and final metrics.

    Raises:
        ValueError: fewer than ``MIN_TRACES`` examples (MLflow refuses them too).
    """
    settings = judge_settings(settings, "simba")
    from mlflow.genai.judges.optimizers.dspy_utils import agreement_metric

    usage = _Usage()
    if (cancelled := _cancelled_at_start(recorder, "simba", settings)) is not None:
        return cancelled
    examples = [*train, *val]
    if len(examples) < MIN_TRACES:
        raise ValueError(
            f"SIMBA needs at least {MIN_TRACES} labeled traces in train + val; "
            f"{len(examples)} are. Label more traces."
        )
    budget = settings.budget(len(train))
    plan = simba_plan(budget, len(examples))
    if not plan["fits"]:
        from core.errors import ValidationError

        raise ValidationError(
            f"A budget of {budget} metric calls is too small for SIMBA: its smallest plan "
            f"(one step, batches of 1, {plan['examples']} examples) can spend "
            f"{plan['worst_case']}. Raise the budget (max_metric_calls) to at least that."
        )
    # SIMBA scores its winners on every example it is given: fewer fit small budgets.
    examples = examples[: plan["examples"]]
    metric = _CountingMetric(agreement_metric, recorder)
    optimizer = _simba_class()(
        model=settings.reflection_model,
        batch_size=plan["bsize"],
        # MLflow replaces seed 0 with its default 42 (recorded as effective_seed).
        seed=settings.seed,
        simba_kwargs={
            "metric": metric,
            "num_candidates": plan["num_candidates"],
            "max_steps": plan["max_steps"],
            "num_threads": settings.workers,
        },
    )
    traces = fetch_traces(examples, settings.judge.name)
    try:
        with served_judge_route(settings.judge, examples[0] if examples else None):
            judge = seed_judge(settings.judge).align(traces=traces, optimizer=optimizer)
    except _SimbaStopped:
        recorder.log_metrics({"metric_calls": float(metric.calls), **usage.metrics()}, step=0)
        outcome = _cancelled_outcome("simba", settings)
        stopped: dict[str, Any] = {
            "budget": budget,
            **plan,
            "metric_calls": metric.calls,
            "cancelled": True,
        }
        record.write_baseline_totals(recorder, "simba", stopped)
        return AlignmentOutcome(
            optimizer="simba",
            instructions=outcome.instructions,
            judge=outcome.judge,
            metric_calls=metric.calls,
            cancelled=True,
            extra=stopped,
        )
    details = _simba_log(optimizer.compiled)
    totals: dict[str, Any] = {
        "budget": budget,
        **plan,
        "metric_calls": metric.calls,
        "effective_seed": settings.seed or optimizer.DEFAULT_SEED,
        "examples": len(examples),
        "instructions_changed": judge.instructions.strip() != settings.judge.instructions.strip(),
        **usage.metrics(),
    }
    record.write_baseline_totals(recorder, "simba", {**totals, **details})
    recorder.log_metrics(
        {"metric_calls": float(metric.calls), **usage.metrics()}, step=plan["max_steps"]
    )
    recorder.heartbeat()
    return AlignmentOutcome(
        optimizer="simba",
        instructions=judge.instructions,
        judge=judge,
        iterations=plan["max_steps"],
        metric_calls=metric.calls,
        extra=totals,
    )
