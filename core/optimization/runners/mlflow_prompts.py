"""Baselines for prompts: MLflow's ``GepaPromptOptimizer`` and ``MetaPromptOptimizer``.

Both run through ``mlflow.genai.optimize_prompts`` as an MLflow user would call it, inside
our engine, so that a prompt optimization can be compared with alignboard's ``gepa`` on
the same rows, scorers and budget. They are task runners
(:data:`core.optimization.task.TaskRunner`) of the prompt task only
(:class:`core.optimization.prompt_task.PromptTask`).

What each call gets, and why:

* **predict_fn** renders the prompt(s) with MLflow's own ``PromptVersion.format`` (which
  ``optimize_prompts`` patches to each candidate) from the row's template values, calls
  the application model through :func:`core.models.completion.complete` (the task's model
  and base URL) and returns the reply text. We count every call ourselves: the run's
  ``metric_calls`` is that count, whatever MLflow or gepa think they spent (gepa checks
  the budget between iterations and may overshoot it; ``extra["overshoot"]`` says by
  how much).
* **Data.** mlflow-gepa gets the training rows as ``train_data`` and the validation rows
  as gepa's ``valset`` (through ``gepa_kwargs``, which MLflow hands to ``gepa.optimize``),
  exactly the two splits our ``gepa`` sees; without validation rows gepa validates on the
  training rows, as MLflow does by default. MetaPrompt takes one dataset: train + val,
  cut to what fits the budget (it evaluates the data twice). The test split never
  reaches either: the engine keeps it for the held-out scores.
* **Scorers** are the task's (:meth:`PromptTask.scorers`): each registered judge version
  is run as the MLflow judge it is (without our verdict cache: the baseline pays for
  every verdict, as an MLflow user does), Correctness and
  exact-match likewise, each wrapped as an MLflow ``@scorer`` that returns its verdict
  mapped to [0, 1] (:meth:`core.optimization.prompt_eval.Scorer.normalise`) with the
  judge's rationale (which MLflow's reflection reads); the run's aggregation combines them.
  A scorer that does not apply to a row (no expectations) returns nothing, as ours skips
  it; a failed application call scores 0.
* **Registration.** ``optimize_prompts`` registers the optimized template itself. It runs
  against a scratch copy of each prompt (``<name>--alignboard-<run id[:8]>``, tagged
  ``alignboard.scratch=true``), deleted at the end, so only our registrar writes a version
  of the real prompt, after the held-out verdict.
* **Quiet MLflow.** ``enable_tracking=False`` (our run records everything), tracing off for
  the call (else every predict call and judge call would become a trace in the
  experiment), MLflow's sample-call check of ``predict_fn`` off (it would spend one
  application call outside the budget) and MLflow's evaluation threads set to the run's
  ``workers``; all restored afterwards.

What is recorded (the run record of :mod:`core.optimization.record`, converted here):

* mlflow-gepa, through gepa's typed callbacks: every candidate gepa scored on validation
  (parents, per-row validation scores keyed by row id, metric calls at discovery, the
  template check of :func:`core.optimization.prompt_task.check_prompt` as information:
  MLflow evaluates a candidate as proposed), every reflection proposal (prompt, raw
  output, accepted or rejected), the Pareto frontier, lineage and one row per iteration;
  metrics ``val_score``, ``best_val_score``, ``metric_calls``, ``candidates``,
  ``llm_calls`` as it goes.
* metaprompt: the seed and the proposed prompt with their per-row scores on MetaPrompt's
  dataset, the one proposal, two iteration rows.

A cancel (``recorder.should_stop()``, checked in predict_fn) stops at once: the calls in
flight are not made, the search ends, and the best candidate scored so far is returned
with ``cancelled=True``. Neither baseline resumes: a resumed run starts it again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from core.errors import CredentialsError, ModelError
from core.io.prompt_data import DatasetRow, values_for
from core.optimization import record
from core.optimization.spec import AlignmentOutcome, RunRecorder

if TYPE_CHECKING:
    from core.optimization.prompt_eval import Scorer
    from core.optimization.prompt_task import PromptTask

log = logging.getLogger(__name__)

#: Prompt and version tag of a scratch copy (``true``), for anyone who finds one left.
SCRATCH_TAG = "alignboard.scratch"
#: Tag naming the run a scratch copy belongs to.
SCRATCH_RUN_TAG = "alignboard.scratch_run"
#: Start of what predict_fn returns when it has no application output (MLflow scores
#: whatever predict_fn returns; our scorers score this as a failed row).
NO_OUTPUT = "[alignboard: no application output] "
#: Predict calls between two heartbeats (the recorder also limits their rate).
HEARTBEAT_EVERY = 10


class _Stopped(Exception):
    """A cancel was asked for: end the search now (the best candidate so far stands)."""


def scratch_name(prompt_name: str, run_id: str) -> str:
    """The scratch copy MLflow optimizes (and registers into) for ``prompt_name``."""
    return f"{prompt_name}--alignboard-{run_id[:8]}"


def _key(values: Mapping[str, Any]) -> str:
    return json.dumps(dict(values), sort_keys=True, default=str)


@dataclass(frozen=True)
class EvalRound:
    """One call of MLflow's evaluation function: a candidate on some rows."""

    candidate: dict[str, str]
    """The candidate (real prompt name -> template)."""
    row_ids: tuple[str, ...]
    """The rows, in order."""
    scores: tuple[float, ...]
    """Their aggregated scores in [0, 1]."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "candidate": dict(self.candidate),
            "row_ids": list(self.row_ids),
            "scores": list(self.scores),
        }


@dataclass
class _Session:
    """What one baseline run shares between MLflow's threads and our recording."""

    task: PromptTask
    recorder: RunRecorder
    rows: list[DatasetRow]
    """Every row MLflow may be given (train and val)."""
    seed: dict[str, str] = field(init=False)
    scratch: dict[str, str] = field(init=False)
    """Real prompt name -> scratch prompt name."""
    real: dict[str, str] = field(init=False)
    versions: list[Any] = field(default_factory=list)
    """The scratch ``PromptVersion`` of each prompt, in order (predict_fn formats them)."""
    scratch_uris: list[str] = field(default_factory=list)
    calls: int = 0
    """predict_fn calls that rendered a prompt (the budget's unit)."""
    app_failures: int = 0
    failed_rows: set[str] = field(default_factory=set)
    error: BaseException | None = None
    stopped: bool = False
    rounds: list[EvalRound] = field(default_factory=list)
    scratch_left: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        from core.models.uris import parse_model

        s = self.task.settings
        self.seed = self.task.seed_candidate()
        run_id = self.recorder.run_id
        self.scratch = {n: scratch_name(n, run_id) for n in self.seed}
        self.real = {v: k for k, v in self.scratch.items()}
        self.app = parse_model(s.task_model, s.task_base_url)
        # No verdict cache: a baseline pays for every verdict, as an MLflow user would.
        self.evaluator = self.task.make_evaluator(cache_verdicts=False)
        # The evaluator's variable -> field mapping, so MLflow sees the values ours renders.
        self.mapping: dict[str, str] = dict(self.evaluator.mapping)
        self.lock = threading.Lock()
        self.by_key: dict[str, list[DatasetRow]] = {}
        for row in self.rows:
            self.by_key.setdefault(_key(values_for(row, self.mapping)), []).append(row)

    # --- data -------------------------------------------------------------------------

    def record_of(self, row: DatasetRow) -> dict[str, Any]:
        """The row as MLflow takes it: template values and expectations."""
        return {"inputs": values_for(row, self.mapping), "expectations": dict(row.expectations)}

    def row_for(self, inputs: Mapping[str, Any], expectations: Any = None) -> DatasetRow | None:
        """The row MLflow passed back (rows are told apart by their template values)."""
        found = self.by_key.get(_key(inputs)) or []
        if len(found) > 1 and isinstance(expectations, Mapping):
            same = [r for r in found if dict(r.expectations) == dict(expectations)]
            found = same or found
        return found[0] if found else None

    # --- scratch prompts --------------------------------------------------------------

    def register_scratch(self) -> None:
        """Register each seed template as a scratch prompt that MLflow may write into."""
        import mlflow

        from core.store.prompts import register_prompt

        client = mlflow.MlflowClient()
        for name, text in self.seed.items():
            scratch = self.scratch[name]
            info = register_prompt(
                scratch,
                text,
                commit_message=(
                    f"alignboard scratch copy of {name} for run {self.recorder.run_id} "
                    "(deleted when the run ends)"
                ),
                tags={SCRATCH_TAG: "true", SCRATCH_RUN_TAG: self.recorder.run_id},
            )
            # Prompt-level too: a copy a crash leaves behind is recognisable in any list.
            client.set_prompt_tag(scratch, SCRATCH_TAG, "true")
            uri = f"prompts:/{scratch}/{info.version}"
            self.scratch_uris.append(uri)
            self.versions.append(mlflow.genai.load_prompt(uri))

    def delete_scratch(self) -> None:
        """Delete the scratch prompts (MLflow's optimized versions with them)."""
        import mlflow

        client = mlflow.MlflowClient()
        for scratch in self.scratch.values():
            try:
                client.delete_prompt(scratch)
            except Exception as exc:
                if "not found" in str(exc).lower() or "does not exist" in str(exc).lower():
                    continue
                # Tagged when registered, so it stays recognisable as ours.
                log.warning("could not delete scratch prompt %s: %s", scratch, exc)
                self.scratch_left.append(scratch)

    # --- what MLflow calls ------------------------------------------------------------

    def _stop_now(self) -> bool:
        with self.lock:
            if self.stopped or self.error is not None:
                return True
        if self.recorder.should_stop():
            with self.lock:
                self.stopped = True
            return True
        return False

    def messages(self, values: Mapping[str, str]) -> list[dict[str, str]]:
        """The application's messages: every prompt formatted by MLflow, in order (all but
        the last as system messages, as :class:`PromptEvaluator` renders them)."""
        from core.store.prompts import to_messages

        out: list[dict[str, str]] = []
        for i, pv in enumerate(self.versions):
            wanted = {k: v for k, v in values.items() if k in (pv.variables or set())}
            msgs = to_messages(pv.format(**wanted))
            if len(self.versions) > 1 and i < len(self.versions) - 1:
                msgs = [{**m, "role": "system"} for m in msgs]
            out += msgs
        return out

    def predict(self, **values: str) -> str:
        """MLflow's predict_fn: render, call the application, return its reply."""
        from core.models.completion import complete

        if self._stop_now():
            return NO_OUTPUT + "the run is stopping."
        with self.lock:
            self.calls += 1
            n = self.calls
        if n % HEARTBEAT_EVERY == 0:
            self.recorder.heartbeat()
        try:
            messages = self.messages(values)
        except Exception as exc:
            # A candidate MLflow cannot format (e.g. a variable it invented) answers nothing.
            return self._failed(values, f"the prompt could not be rendered: {exc}")
        try:
            return complete(
                self.app, messages, retries=3, backoff=0.25, **self.task.settings.task_params
            )
        except CredentialsError as exc:
            with self.lock:
                self.error = self.error or exc
            return NO_OUTPUT + "the application model's key is missing or rejected."
        except ModelError as exc:
            return self._failed(values, str(exc)[:300])

    def _failed(self, values: Mapping[str, str], why: str) -> str:
        row = self.row_for(values)
        with self.lock:
            self.app_failures += 1
            if row is not None:
                self.failed_rows.add(row.id)
        return NO_OUTPUT + why

    def score(self, scorer: Scorer, inputs: Any, outputs: Any, expectations: Any) -> Any:
        """One of our scorers on one output, as an MLflow scorer's answer."""
        from mlflow.entities import Feedback

        text = outputs if isinstance(outputs, str) else json.dumps(outputs, default=str)
        if text.startswith(NO_OUTPUT):
            return Feedback(error="no application output: " + text[len(NO_OUTPUT) :])
        row = self.row_for(inputs or {}, expectations)
        if row is None:
            row = DatasetRow(id=_key(inputs or {}), inputs=dict(inputs or {}), expectations={})
        if not scorer.applies(row):
            return None
        ev = self.evaluator
        [verdict] = ev.score_outputs(scorer, [row], [text])
        if verdict.error is not None or verdict.score is None:
            return Feedback(error=verdict.error or "the verdict could not be read")
        return Feedback(value=verdict.score, rationale=verdict.rationale)

    def mlflow_scorers(self) -> list[Any]:
        """The task's scorers as MLflow scorers, named as ours."""
        from mlflow.genai.scorers import scorer as mlflow_scorer

        out = []
        for s in self.evaluator.scorers:

            def run(inputs: Any, outputs: Any, expectations: Any, _s: Scorer = s) -> Any:
                return self.score(_s, inputs, outputs, expectations)

            out.append(mlflow_scorer(run, name=s.name))
        return out

    def aggregation(self, scores: Mapping[str, Any]) -> float:
        """The run's aggregation of the scorers' [0, 1] scores (failed ones left out)."""
        from mlflow.entities import Feedback

        from core.optimization.prompt_eval import aggregate

        values: list[float | None] = []
        for s in self.evaluator.scorers:
            v = scores.get(s.name)
            if isinstance(v, Feedback):
                v = None if v.error is not None else v.value
            values.append(float(v) if isinstance(v, int | float) else None)
        return aggregate(values, self.task.settings.aggregation)

    def wrap_eval(self, eval_fn: Callable[..., Any]) -> Callable[..., Any]:
        """MLflow's evaluation function, recorded, and stopped on cancel or a bad key."""

        def evaluate(candidate_prompts: dict[str, str], dataset: list[dict[str, Any]]) -> Any:
            self.raise_if_stopped()
            results = eval_fn(candidate_prompts, dataset)
            self.raise_if_stopped()
            ids = []
            for rec in dataset:
                row = self.row_for(rec.get("inputs") or {}, rec.get("expectations"))
                ids.append(row.id if row is not None else _key(rec.get("inputs") or {}))
            self.rounds.append(
                EvalRound(
                    self.to_real(candidate_prompts),
                    tuple(ids),
                    tuple(float(r.score or 0.0) for r in results),
                )
            )
            return results

        return evaluate

    def raise_if_stopped(self) -> None:
        """Raise the systemic failure, or :class:`_Stopped` on a cancel."""
        with self.lock:
            error, stopped = self.error, self.stopped
        if error is not None:
            raise error
        if stopped:
            raise _Stopped()

    def raise_if_error(self) -> None:
        """Raise the systemic failure (a missing or rejected key) seen in predict_fn."""
        with self.lock:
            error = self.error
        if error is not None:
            raise error

    def to_real(self, candidate: Mapping[str, str]) -> dict[str, str]:
        """A candidate keyed by the real prompt names (seed text for any missing)."""
        got = {self.real.get(k, k): v for k, v in candidate.items()}
        return {n: got.get(n, t) for n, t in self.seed.items()}

    def close(self) -> None:
        """Stop the scorers' worker threads."""
        self.evaluator.close()


@contextlib.contextmanager
def _quiet_mlflow(workers: int) -> Iterator[None]:
    """MLflow's optimize_prompts without traces, without its sample call, at our width."""
    import mlflow
    from mlflow.tracing.provider import is_tracing_enabled

    env = {
        "MLFLOW_GENAI_EVAL_MAX_WORKERS": str(max(1, workers)),
        "MLFLOW_GENAI_EVAL_SKIP_TRACE_VALIDATION": "true",
    }
    saved = {k: os.environ.get(k) for k in env}
    tracing = is_tracing_enabled()
    os.environ.update(env)
    if tracing:
        mlflow.tracing.disable()
    try:
        yield
    finally:
        if tracing:
            mlflow.tracing.enable()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _GepaLogger:
    """gepa's logger, into Python logging."""

    def log(self, message: str) -> None:
        log.debug("%s", message)


def _reflection_kwargs(model: str, base_url: str | None) -> dict[str, Any]:
    """LiteLLM arguments that reach the reflection model's server (none without one)."""
    if not base_url:
        return {}
    from core.models.completion import _NO_KEY
    from core.models.secrets import api_key_for
    from core.models.uris import parse_model

    kwargs: dict[str, Any] = {"api_base": base_url}
    if not api_key_for(parse_model(model, base_url)):
        # A keyless server: the OpenAI client still wants some key (not a secret).
        kwargs["api_key"] = _NO_KEY
    return kwargs


# --- recording ------------------------------------------------------------------------


def _pareto(candidates: Sequence[record.Candidate], ids: Sequence[str]) -> record.Pareto:
    """gepa's per-row frontier over the recorded candidates."""
    from gepa.gepa_utils import find_dominator_programs

    per: dict[str, record.ParetoEntry] = {}
    for tid in ids:
        scored = [(c.val_scores[tid], c.id) for c in candidates if tid in c.val_scores]
        if scored:
            best = max(s for s, _ in scored)
            per[tid] = record.ParetoEntry(best, tuple(sorted(i for s, i in scored if s == best)))
    n = max((c.id for c in candidates), default=-1) + 1
    by_id = {c.id: c for c in candidates}
    agg = [by_id[i].val_score if i in by_id else 0.0 for i in range(n)]
    fronts = {tid: set(e.candidate_ids) for tid, e in per.items()}
    frontier = tuple(sorted(find_dominator_programs(fronts, agg))) if fronts else ()
    bests = [e.best_score for e in per.values()]
    return record.Pareto(per, frontier, sum(bests) / len(bests) if bests else 0.0)


def _candidate(
    session: _Session,
    idx: int,
    components: Mapping[str, str],
    parents: Sequence[int],
    scores: Mapping[str, float],
    iteration: int,
    calls: int | None,
) -> record.Candidate:
    from core.optimization.prompt_task import check_prompt
    from core.store.prompts import template_variables

    first = next(iter(session.seed))
    text = components.get(first, session.seed[first])
    required = template_variables(session.seed[first])
    known = sorted({v for t in session.seed.values() for v in template_variables(t)})
    check = check_prompt(text, required, known)
    note = None
    if check.status != "ok":
        note = f"{check.note} (MLflow evaluated the template as proposed.)"
    return record.Candidate(
        id=idx,
        parent_ids=tuple(parents),
        instructions=text,
        val_score=sum(scores.values()) / len(scores) if scores else 0.0,
        val_scores=dict(scores),
        iteration=iteration,
        metric_calls_at_discovery=calls,
        template=check.status,
        template_note=note,
        components=dict(components) if len(components) > 1 else {},
    )


class GepaTracker:
    """gepa callbacks (MLflow hands ``gepa_kwargs["callbacks"]`` to ``gepa.optimize``) that
    record the search into our run record as it goes."""

    def __init__(self, session: _Session, val_ids: Sequence[str], usage: Any) -> None:
        self.session = session
        self.recorder = session.recorder
        self.val_ids = list(val_ids)
        self.usage = usage
        self.candidates: dict[int, record.Candidate] = {}
        self.proposals: list[record.Proposal] = []
        self.iterations: dict[int, dict[str, Any]] = {}
        self.gepa_metric_calls = 0
        self.last_iteration = 0
        self.best_idx: int | None = None
        self._started = time.monotonic()
        self._calls_at_start = 0
        self._llm_at_start = 0
        self._outcome: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _metrics(self) -> dict[str, float]:
        u = self.usage.current(settle=False)
        return {"metric_calls": float(self.session.calls), "llm_calls": float(u.calls)}

    def best_so_far(self) -> record.Candidate | None:
        """The candidate with the highest validation mean (gepa's own choice)."""
        if not self.candidates:
            return None
        return max(self.candidates.values(), key=lambda c: (c.val_score, -c.id))

    def on_valset_evaluated(self, event: Any) -> None:
        """A candidate scored on every validation row: the chart's data."""
        it = int(event["iteration"])
        idx = int(event["candidate_idx"])
        scores: dict[str, float] = {}
        for k, v in event["scores_by_val_id"].items():
            pos = int(k)
            tid = self.val_ids[pos] if 0 <= pos < len(self.val_ids) else str(k)
            scores[tid] = float(v)
        with self._lock:
            cand = _candidate(
                self.session,
                idx,
                self.session.to_real(event["candidate"]),
                [int(p) for p in event["parent_ids"] if p is not None],
                scores,
                it,
                self.session.calls,
            )
            self.candidates.setdefault(idx, cand)
            best = self.best_so_far()
            cands = [self.candidates[i] for i in sorted(self.candidates)]
        pareto = _pareto(cands, self.val_ids)
        metrics = {
            "val_score": float(event["average_score"]),
            "best_val_score": best.val_score if best else 0.0,
            "pareto_aggregate": pareto.aggregate,
            "pareto_front_size": float(len(pareto.frontier)),
            "candidates": float(len(cands)),
            **self._metrics(),
        }
        if it == 0:
            self.iterations[0] = {
                "iteration": 0,
                "kind": "seed_eval",
                "accepted": True,
                "seconds": time.monotonic() - self._started,
                "metric_calls": self.session.calls,
                "llm_calls": int(metrics["llm_calls"]),
            }
        self.recorder.log_metrics(metrics, step=it)
        record.write_candidates(self.recorder, cands)

    def on_iteration_start(self, event: Any) -> None:
        """Remember where the iteration started."""
        self._started = time.monotonic()
        self._calls_at_start = self.session.calls
        self._llm_at_start = self.usage.current(settle=False).calls
        self._outcome = {"accepted": False}

    def on_candidate_selected(self, event: Any) -> None:
        """The parent of this iteration's proposal."""
        self._outcome["parent_id"] = int(event["candidate_idx"])

    def on_proposal_end(self, event: Any) -> None:
        """The reflection model's proposal, for every component it revised."""
        real = self.session.real
        for comp, text in (event.get("new_instructions") or {}).items():
            prompt = (event.get("prompts") or {}).get(comp, "")
            self.proposals.append(
                record.Proposal(
                    iteration=int(event["iteration"]),
                    parent_id=self._outcome.get("parent_id"),
                    component=real.get(comp, comp),
                    proposed_text=str(text),
                    reflection_prompt=prompt if isinstance(prompt, str) else json.dumps(prompt),
                    reflection_output=str((event.get("raw_lm_outputs") or {}).get(comp, "")),
                )
            )

    def _settle(self, iteration: int, **changes: Any) -> None:
        for i, p in enumerate(self.proposals):
            if p.iteration == iteration and p.status == "pending":
                self.proposals[i] = replace(p, **changes)

    def on_candidate_accepted(self, event: Any) -> None:
        """A proposal became a candidate."""
        idx = int(event["new_candidate_idx"])
        self._outcome.update(accepted=True, new_candidate_id=idx)
        self._settle(int(event["iteration"]), status="accepted", candidate_id=idx)

    def on_candidate_rejected(self, event: Any) -> None:
        """gepa's minibatch check turned the proposal down."""
        reason = str(event.get("reason", "")) or record.NOT_BETTER_ON_MINIBATCH
        self._outcome.update(accepted=False, reason=reason)
        self._settle(
            int(event["iteration"]),
            status="rejected",
            reason=record.NOT_BETTER_ON_MINIBATCH,
            message=reason,
            minibatch_before=float(event["old_score"]),
            minibatch_after=float(event["new_score"]),
        )

    def on_budget_updated(self, event: Any) -> None:
        """gepa's own count of metric calls (ours is ``session.calls``)."""
        self.gepa_metric_calls = int(event["metric_calls_used"])

    def on_iteration_end(self, event: Any) -> None:
        """One iteration row, its metrics, a heartbeat."""
        it = int(event["iteration"])
        self.last_iteration = max(self.last_iteration, it)
        metrics = self._metrics()
        self.iterations[it] = {
            "iteration": it,
            "kind": "reflective_mutation",
            **self._outcome,
            "seconds": time.monotonic() - self._started,
            "metric_calls": self.session.calls,
            "llm_calls": int(metrics["llm_calls"]) - self._llm_at_start,
            "iteration_metric_calls": self.session.calls - self._calls_at_start,
        }
        self.recorder.log_metrics(
            {**metrics, "accepted": 1.0 if self._outcome.get("accepted") else 0.0}, step=it
        )
        self.recorder.heartbeat()

    def on_optimization_end(self, event: Any) -> None:
        """gepa's totals."""
        self.best_idx = int(event["best_candidate_idx"])
        self.gepa_metric_calls = int(event["total_metric_calls"])
        self.last_iteration = max(self.last_iteration, int(event["total_iterations"]))

    def write(self, best_text: str) -> None:
        """Write the whole search record."""
        cands = [self.candidates[i] for i in sorted(self.candidates)]
        if not cands:
            return
        iterations = [self.iterations[k] for k in sorted(self.iterations)]
        record.write_search(
            self.recorder, cands, _pareto(cands, self.val_ids), iterations, best_text
        )
        record.write_proposals(self.recorder, self.proposals)


# --- the runners ----------------------------------------------------------------------


def _optimizer_class(kind: str, session: _Session) -> type:
    """MLflow's optimizer, whose evaluation function is recorded and obeys a cancel
    (``optimize`` is the documented extension point of ``BasePromptOptimizer``)."""
    from mlflow.genai.optimize.optimizers import GepaPromptOptimizer, MetaPromptOptimizer

    base: type = GepaPromptOptimizer if kind == "mlflow-gepa" else MetaPromptOptimizer

    class Recorded(base):
        def optimize(
            self,
            eval_fn: Callable[..., Any],
            train_data: list[dict[str, Any]],
            target_prompts: dict[str, str],
            enable_tracking: bool = True,
        ) -> Any:
            return super().optimize(
                session.wrap_eval(eval_fn), train_data, target_prompts, enable_tracking
            )

    Recorded.__name__ = base.__name__
    return Recorded


def run_mlflow_gepa(
    task: PromptTask, train: list[Any], val: list[Any], recorder: RunRecorder
) -> AlignmentOutcome:
    """Optimize the task's prompt(s) with MLflow's ``GepaPromptOptimizer`` (see the module
    docstring): train as gepa's trainset, val as its valset, the task's budget.

    Returns:
        MLflow's best candidate (``candidate``: prompt name -> template).

    Raises:
        CredentialsError: a model's key is missing or rejected (the run stops).
    """
    return _run(task, train, val, recorder, "mlflow-gepa")


def run_metaprompt(
    task: PromptTask, train: list[Any], val: list[Any], recorder: RunRecorder
) -> AlignmentOutcome:
    """Optimize the task's prompt(s) with MLflow's ``MetaPromptOptimizer`` (see the module
    docstring): one dataset of train + val, cut to fit the budget.

    Returns:
        MetaPrompt's proposal (its one pass; the seed when it proposed nothing usable).

    Raises:
        CredentialsError: a model's key is missing or rejected (the run stops).
    """
    return _run(task, train, val, recorder, "metaprompt")


def _check_task(task: Any, optimizer: str) -> None:
    from core.errors import ValidationError

    if getattr(task, "kind", None) != "prompt":
        raise ValidationError(
            f"The {optimizer} runner of this module optimizes prompts (it wraps MLflow's "
            "optimize_prompts); to align a judge choose gepa, memalign, mlflow-gepa or simba."
        )


def _run(
    task: PromptTask, train: list[Any], val: list[Any], recorder: RunRecorder, optimizer: str
) -> AlignmentOutcome:
    from core.models.usage import track_usage

    _check_task(task, optimizer)
    s = task.settings
    budget = task.budget(len(train))
    if optimizer == "metaprompt":
        # MetaPrompt scores its dataset twice (seed, then its proposal).
        rows = [*train, *val][: max(1, budget // 2)]
    else:
        rows = [*train, *val]
    session = _Session(task, recorder, rows)
    recorder.heartbeat()
    if recorder.should_stop():
        session.close()
        return _outcome(session, optimizer, session.seed, 0, True, budget, {})
    started = time.monotonic()
    tracker: GepaTracker | None = None
    result: Any = None
    cancelled = False
    with track_usage() as usage:
        try:
            session.register_scratch()
            scorers = session.mlflow_scorers()
            if optimizer == "mlflow-gepa":
                val_ids = [r.id for r in (val or train)]
                tracker = GepaTracker(session, val_ids, usage)
                from core.optimization.runners.gepa import BudgetStop

                gepa_kwargs: dict[str, Any] = {
                    "seed": s.seed,
                    "reflection_minibatch_size": s.minibatch_size,
                    "callbacks": [tracker],
                    "logger": _GepaLogger(),
                    # gepa checks max_metric_calls between iterations only: stop before an
                    # iteration that could pass the budget by more than a minibatch.
                    "stop_callbacks": [BudgetStop(budget, s.minibatch_size, len(val_ids))],
                }
                if val:
                    gepa_kwargs["valset"] = [session.record_of(r) for r in val]
                if rk := _reflection_kwargs(s.reflection_model, s.reflection_base_url):
                    gepa_kwargs["reflection_lm_kwargs"] = rk
                opt = _optimizer_class(optimizer, session)(
                    reflection_model=s.reflection_model,
                    max_metric_calls=budget,
                    gepa_kwargs=gepa_kwargs,
                )
                data = [session.record_of(r) for r in train]
            else:
                opt = _optimizer_class(optimizer, session)(
                    reflection_model=s.reflection_model,
                    lm_kwargs=_reflection_kwargs(s.reflection_model, s.reflection_base_url) or None,
                )
                data = [session.record_of(r) for r in rows]
            result = _optimize(session, opt, data, scorers, s.workers)
        except _Stopped:
            cancelled = True
        finally:
            session.close()
            session.delete_scratch()
        session.raise_if_error()
        totals = usage.current()
    if result is not None:
        best = session.to_real({pv.name: _text(pv.template) for pv in result.optimized_prompts})
    elif tracker is not None and (b := tracker.best_so_far()) is not None:
        # Stopped early: the best candidate gepa had scored, as gepa itself would choose.
        tracker.best_idx = b.id
        best = {
            **session.seed,
            **(dict(b.components) or {next(iter(session.seed)): b.instructions}),
        }
    else:
        best = dict(session.seed)
    extra: dict[str, Any] = {
        "wall_seconds": round(time.monotonic() - started, 3),
        "usage": totals.to_dict(),
        "initial_eval_score": getattr(result, "initial_eval_score", None),
        "final_eval_score": getattr(result, "final_eval_score", None),
        "initial_eval_score_per_scorer": dict(
            getattr(result, "initial_eval_score_per_scorer", None) or {}
        ),
        "final_eval_score_per_scorer": dict(
            getattr(result, "final_eval_score_per_scorer", None) or {}
        ),
    }
    if tracker is not None:
        iterations = tracker.last_iteration
        extra.update(
            dataset=(
                f"train ({len(train)} rows) as gepa's trainset, val ({len(val)} rows) as its valset"
                if val
                else f"train ({len(train)} rows), also gepa's valset (no validation rows)"
            ),
            gepa_metric_calls=tracker.gepa_metric_calls,
            candidates=len(tracker.candidates),
            best_candidate_id=tracker.best_idx,
            proposals=len(tracker.proposals),
        )
        first = next(iter(session.seed))
        tracker.write(best[first])
        seed_c = tracker.candidates.get(0)
        best_c = tracker.candidates.get(tracker.best_idx) if tracker.best_idx is not None else None
        extra["val_score_seed"] = seed_c.val_score if seed_c else None
        extra["val_score_best"] = best_c.val_score if best_c else None
    else:
        iterations = 1 if len(session.rounds) > 1 else 0
        extra["dataset"] = (
            f"train + val cut to {len(rows)} of {len(train) + len(val)} rows (MetaPrompt scores "
            "its one dataset twice)"
        )
        extra.update(_write_metaprompt(session, best, [r.id for r in rows]))
    return _outcome(session, optimizer, best, iterations, cancelled, budget, extra)


def _optimize(
    session: _Session, optimizer: Any, data: list[dict[str, Any]], scorers: list[Any], workers: int
) -> Any:
    import mlflow

    with _quiet_mlflow(workers):
        return mlflow.genai.optimize_prompts(
            predict_fn=session.predict,
            train_data=data,
            prompt_uris=list(session.scratch_uris),
            optimizer=optimizer,
            scorers=scorers,
            aggregation=session.aggregation,
            enable_tracking=False,
        )


def _text(template: Any) -> str:
    if isinstance(template, str):
        return template
    from core.store.prompts import template_text

    return template_text(template)


def _write_metaprompt(
    session: _Session, best: Mapping[str, str], ids: Sequence[str]
) -> dict[str, Any]:
    """Record MetaPrompt's one pass: seed and proposal, their scores, the proposal."""
    first = next(iter(session.seed))
    cands: list[record.Candidate] = []
    calls = 0
    iterations: list[dict[str, Any]] = []
    for i, rnd in enumerate(session.rounds[:2]):
        calls += len(rnd.row_ids)
        scores = dict(zip(rnd.row_ids, rnd.scores, strict=True))
        cands.append(_candidate(session, i, rnd.candidate, [0] if i else [], scores, i, calls))
        iterations.append(
            {
                "iteration": i,
                "kind": "seed_eval" if i == 0 else "metaprompt",
                "accepted": True,
                "metric_calls": calls,
            }
        )
        metrics = {
            "val_score": cands[-1].val_score,
            "best_val_score": max(c.val_score for c in cands),
            "metric_calls": float(calls),
            "candidates": float(len(cands)),
        }
        session.recorder.log_metrics(metrics, step=i)
    changed = dict(best) != dict(session.seed)
    if changed and len(cands) < 2:
        # Proposed, never scored by MetaPrompt (no scores): still a candidate of the run.
        cands.append(_candidate(session, 1, best, [0], {}, 1, None))
        iterations.append({"iteration": 1, "kind": "metaprompt", "accepted": True})
    proposal = record.Proposal(
        iteration=1,
        parent_id=0,
        component=first,
        proposed_text=best[first],
        status="accepted" if changed else "rejected",
        candidate_id=1 if changed else None,
        reason=None if changed else "unchanged",
        message=(
            "MetaPrompt proposed a revised prompt (it keeps its proposal whatever it scores)."
            if changed
            else "MetaPrompt returned the prompt unchanged (its reflection failed or broke a "
            "template variable)."
        ),
    )
    if cands:
        record.write_search(session.recorder, cands, _pareto(cands, ids), iterations, best[first])
    record.write_proposals(session.recorder, [proposal])
    return {
        "candidates": len(cands),
        # MetaPrompt keeps its proposal whatever it scored.
        "best_candidate_id": 1 if changed and len(cands) > 1 else 0,
        "proposal_changed": changed,
        "val_score_seed": cands[0].val_score if cands else None,
        "val_score_best": cands[-1].val_score if cands else None,
    }


def _outcome(
    session: _Session,
    optimizer: str,
    best: Mapping[str, str],
    iterations: int,
    cancelled: bool,
    budget: int,
    extra: dict[str, Any],
) -> AlignmentOutcome:
    first = next(iter(session.seed))
    calls = session.calls
    extra = {
        "budget": budget,
        "metric_calls": calls,
        "overshoot": max(0, calls - budget),
        "app_failures": session.app_failures,
        "scratch_prompts": sorted(session.scratch.values()),
        "scratch_left": list(session.scratch_left),
        "eval_rounds": len(session.rounds),
        # The scorers' counters (no verdict cache: every verdict was paid for).
        "evaluation": session.evaluator.metrics(),
        **extra,
    }
    if calls > budget:
        log.info("%s used %d metric calls of a budget of %d", optimizer, calls, budget)
    return AlignmentOutcome(
        optimizer=optimizer,
        instructions=best[first],
        judge=session.task.artifact(best),
        iterations=iterations,
        metric_calls=calls,
        cancelled=cancelled,
        failed_examples=len(session.failed_rows),
        extra=extra,
        candidate=dict(best),
    )
