"""The ``gepa`` optimizer: ``gepa.optimize`` over a task's named text components, recorded
as it goes.

``run_task(task, train, val, recorder)`` works on any
:class:`core.optimization.task.OptimizationTask` (:data:`core.optimization.task.TaskRunner`):
the seed candidate, gepa's adapter (how an example is evaluated, what reflection sees), the
guard's context and the search settings all come from the task. ``run(settings, train, val,
recorder)`` is judge alignment's runner (:data:`core.optimization.spec.Runner`): the same,
for the judge task of ``settings``. The record shows the task's first component (for a
judge, ``instructions``). What it records (see :class:`RunTracker` for the details):

* metrics at step = iteration (the seed is iteration 0): ``val_score`` (validation mean of
  the candidate found at that iteration), ``best_val_score``, ``pareto_aggregate`` (mean
  over validation examples of the best score any candidate reached), ``pareto_front_size``,
  ``candidates``, ``metric_calls``, ``llm_calls``, ``llm_failures``, ``prompt_tokens``,
  ``completion_tokens``, ``cost_usd`` (only when a price is known), ``iteration_seconds``,
  ``iteration_llm_calls``, ``max_in_flight``, ``accepted``, ``cache_hits``,
  ``judge_failures`` (examples whose judge call failed after retries), ``judge_retries``;
* artifacts ``candidates.json``, ``pareto.json``, ``lineage.json``, ``iterations.json``,
  ``proposals.json`` (every reflection proposal: prompt, raw output, text, and whether it
  was accepted, rejected by gepa's minibatch check, or rejected as degenerate by the
  proposal guard before any evaluation) and ``final_instructions.txt``, rewritten at every
  accepted candidate and iteration end; metrics ``degenerate_proposals`` and
  ``saved_metric_calls`` (judge evaluations the guard saved).

Several proposals per iteration: with the task's ``proposals_in_flight`` above 1 (judge
alignment's default is 4), gepa works on that many (parent, minibatch) tasks per iteration
through its ``sampling_strategy``/``selection_strategy``
(:mod:`core.optimization.parallel_proposals`): every task's minibatch evaluations share
one parallel round, the reflection calls go out together (:meth:`_ReflectionLM.batch_complete`,
one logged round of that many calls) and the best improving proposal is validated. With
1 it is gepa's sequential loop, as before. ``iterations.json`` records each iteration's
``tasks``.

Proposals go through the proposal guard (:mod:`core.optimization.guards`, hooked in as
gepa's ``reflection_strategy``: :class:`GuardedReflection`). The result is chosen by the
noise-aware rule of :mod:`core.optimization.selection` (the highest validation mean among
candidates that beat the seed in a paired sign test on validation, else the seed); the
decision and its paired numbers are in the outcome's ``extra["selection"]``.

Recording never holds up the search: metrics, artifacts, the resumable state files and
heartbeats are handed to one background writer thread (:class:`_Writer`) that writes them
in order, skipping artifact rewrites already superseded by a newer one; the run waits
for it before returning, so the final records are complete. (Written synchronously they
cost about 60 ms per iteration on sqlite, a third of a 200 ms model call.) The heartbeat and
the cancel-tag read stay off the loop too (:class:`_Stopper`): only the check before the
first iteration is made in the loop; later ones run in a background thread, so a cancel
is seen at most one iteration later.

Resuming: gepa's state lives in ``recorder.work_dir / "gepa"`` and the adapter's state (the
judge's verdict cache; for prompts, the output cache too) in ``recorder.work_dir /
"judge_cache.json"``; running again with the same work_dir continues from the last
completed iteration (gepa re-evaluates the seed, which the verdict cache answers without a
model call). The work folder is only a cache: at every iteration boundary (gepa's
``on_state_saved``) the writer thread saves the caches and calls ``recorder.checkpoint()``
(:mod:`core.optimization.job_state`), which uploads the changed files to the run's
``state/`` artifacts; the run checkpoints once more when it ends or is interrupted. A
resume elsewhere restores them first (the engine's ``restore_state``), so a kill -9
loses at most the iteration in flight.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.models.completion import complete
from core.models.usage import UsageWindow, track_usage
from core.optimization import record, stop_signal
from core.optimization.gepa_adapter import COMPONENT, GuardedReflection, ProposalLog
from core.optimization.selection import Selection, select_candidate
from core.optimization.spec import AlignmentOutcome, AlignmentSettings, Example, RunRecorder
from core.optimization.stopping import (
    BUDGET,
    CANCELLED,
    StopPolicy,
    build_stoppers,
    policy_of,
    stop_reason,
)
from core.optimization.task import OptimizationTask, TaskAdapter

if TYPE_CHECKING:
    from gepa.core.callbacks import (
        CandidateAcceptedEvent,
        CandidateRejectedEvent,
        CandidateSelectedEvent,
        EvaluationEndEvent,
        IterationEndEvent,
        IterationStartEvent,
        OptimizationEndEvent,
        StateSavedEvent,
        ValsetEvaluatedEvent,
    )
    from gepa.core.state import GEPAState

_log = logging.getLogger(__name__)
CACHE_FILE = "judge_cache.json"
ITERATIONS_FILE = "gepa_iterations.json"
PROPOSALS_FILE = "gepa_proposals.json"


class _Writer:
    """One background thread that performs the run's store writes in submission order.

    ``put`` queues a write; ``put_latest`` queues one whose pending predecessor with the
    same key is dropped (an artifact rewrite that a newer one supersedes). A failed write
    is logged and the next one still runs, as when a gepa callback fails.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._latest: dict[str, Callable[[], None]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.errors = 0

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="gepa-recorder", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                job()
            except Exception as exc:
                self.errors += 1
                _log.warning("recording a gepa iteration failed: %s", exc)
            finally:
                self._queue.task_done()

    def put(self, fn: Callable[[], None]) -> None:
        """Queue ``fn``."""
        with self._lock:
            self._start()
        self._queue.put(fn)

    def put_latest(self, key: str, fn: Callable[[], None]) -> None:
        """Queue ``fn``, replacing a not yet started write with the same key."""
        with self._lock:
            self._start()
            queued = key in self._latest
            self._latest[key] = fn
        if not queued:
            self._queue.put(lambda: self._run_latest(key))

    def _run_latest(self, key: str) -> None:
        with self._lock:
            fn = self._latest.pop(key, None)
        if fn is not None:
            fn()

    def flush(self) -> None:
        """Wait until every queued write is done."""
        if self._thread is not None:
            self._queue.join()

    def close(self) -> None:
        """Flush and stop the thread."""
        if self._thread is not None:
            self._queue.join()
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None


class _GepaLogger:
    """gepa's logger protocol, into Python logging (gepa would replace sys.stdout)."""

    def log(self, message: str) -> None:
        _log.debug("%s", message)


class _Stopper:
    """gepa stop callback: heartbeat, and stop at the boundary once a cancel is asked for.

    The first check (before the first iteration) asks the recorder in the loop, so a run
    cancelled before it started does no work. Later ones ask in a background thread and
    the loop reads the answer of the last finished ask: on the MLflow store the heartbeat
    and the cancel-tag read cost 40-80 ms per iteration on a loaded machine, spent with
    every worker slot idle. A cancel is then seen at most one iteration later.
    """

    def __init__(self, recorder: RunRecorder) -> None:
        self.recorder = recorder
        self.cancelled = False
        self._requested = threading.Event()
        self._asking: threading.Thread | None = None

    def _ask(self) -> None:
        # A store hiccup is not a cancel request; the next boundary asks again.
        with contextlib.suppress(Exception):
            self.recorder.heartbeat()
            if self.recorder.should_stop():
                self._requested.set()

    def __call__(self, state: GEPAState) -> bool:
        stop_signal.raise_if_pending()  # gepa's loop, on the main thread: see stop_signal
        if self._asking is None:
            self._asking = threading.current_thread()
            self._ask()
        elif not self._asking.is_alive() or self._asking is threading.current_thread():
            self._asking = threading.Thread(target=self._ask, name="gepa-cancel", daemon=True)
            self._asking.start()
        if self._requested.is_set():
            self.cancelled = True
        return self.cancelled

    def close(self) -> None:
        """Wait for an ask still in flight (no heartbeat lands after the run's end)."""
        asking = self._asking
        if asking is not None and asking is not threading.current_thread():
            asking.join(timeout=10)


class BudgetStop:
    """gepa stop callback: never let the metric calls exceed the budget by more than one
    minibatch.

    gepa checks ``max_metric_calls`` only between iterations, and one iteration judges
    the parent's and the child's minibatch and, when the child is better, the whole
    validation set: the last iteration could overshoot by ``2 * minibatch + n_val``
    ("372 / 370"). This stops before an iteration whose worst case would end past
    ``budget + minibatch``; a run may then leave a little budget unspent, never overspend.
    """

    def __init__(self, budget: int, minibatch: int, n_val: int) -> None:
        self.budget = int(budget)
        self.slack = max(int(minibatch), 1)
        self.worst_iteration = 2 * self.slack + int(n_val)
        self.fired = False

    def __call__(self, state: GEPAState) -> bool:
        spent = int(state.total_num_evals)
        if spent + self.worst_iteration > self.budget + self.slack:
            self.fired = True
        return self.fired


def _stop_policy(task: OptimizationTask) -> StopPolicy:
    """The task's early-stop policy: its settings' ``stop_*`` fields (a task without
    settings: its own ``stop_at_score``, if any, and the other defaults)."""
    settings = getattr(task, "settings", None)
    return policy_of(settings if settings is not None else task)


def _spent_usd(usage: UsageWindow) -> float | None:
    """The window's cost so far, None while no call had a price (unknown, not zero)."""
    now = usage.current(settle=False)
    return now.cost_usd if now.cost_known else None


class _ReflectionLM:
    """gepa's reflection LM: one :func:`complete` call, recorded as one round of one call.

    :func:`complete` retries transient failures (each attempt counted in the usage log);
    when it still fails, gepa drops that iteration's proposal and the run goes on.
    """

    def __init__(self, model: str, adapter: TaskAdapter, base_url: str | None = None) -> None:
        self.model = model
        self.adapter = adapter
        self.base_url = base_url

    def __call__(self, prompt: str | list[dict[str, Any]]) -> str:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        started = time.monotonic()
        text = complete(self.model, messages, base_url=self.base_url)
        self.adapter.note_round(
            {
                "kind": "reflection",
                "pairs": 1,
                "calls": 1,
                "depth": 1,
                "seconds": time.monotonic() - started,
            }
        )
        return text

    def batch_complete(self, messages_list: list[list[dict[str, Any]]]) -> list[str]:
        """Several reflection calls at once (gepa's ``reflect_many`` with several
        proposals in an iteration), recorded as one round of that many calls.

        A call that still fails after :func:`complete`'s retries raises, and gepa then
        reflects task by task, dropping only the failing task's proposal.
        """
        from concurrent.futures import ThreadPoolExecutor

        started = time.monotonic()
        with ThreadPoolExecutor(
            max_workers=max(1, len(messages_list)), thread_name_prefix="gepa-reflect"
        ) as pool:
            texts = list(
                pool.map(lambda m: complete(self.model, m, base_url=self.base_url), messages_list)
            )
        self.adapter.note_round(
            {
                "kind": "reflection",
                "pairs": len(messages_list),
                "calls": len(messages_list),
                "depth": 1,
                "seconds": time.monotonic() - started,
            }
        )
        return texts


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj), encoding="utf-8")
    tmp.replace(path)


class RunTracker:
    """gepa callbacks that turn the run into metrics and artifacts on the recorder."""

    def __init__(
        self,
        recorder: RunRecorder,
        adapter: TaskAdapter,
        val_ids: list[str],
        usage: UsageWindow,
        work_dir: Path,
        component: str = COMPONENT,
    ) -> None:
        self.recorder = recorder
        self.adapter = adapter
        self.component = component
        self.val_ids = list(val_ids)
        self.usage = usage
        self.work_dir = work_dir
        self.candidates: dict[int, dict[str, Any]] = {}
        saved = _read_json(work_dir / ITERATIONS_FILE, [])
        self.iterations: dict[int, dict[str, Any]] = {int(e["iteration"]): e for e in saved}
        self.last_iteration = max(self.iterations, default=0)
        self.metric_calls = 0
        self._iter_started = 0.0
        self._iter_usage_start = 0
        self._iter_outcome: dict[str, Any] = {}
        self.writer = _Writer()
        # Uploads of the resumable state (see :meth:`checkpoint`), for the record.
        self.checkpoints = 0
        self.checkpoint_seconds = 0.0
        self.checkpoint_bytes = 0
        self.proposals = ProposalLog(
            record.read_proposals(_read_json(work_dir / PROPOSALS_FILE, []))
        )

    # --- candidate registry ------------------------------------------------------------

    def _add(
        self,
        idx: int,
        text: str,
        parents: Sequence[int | None],
        scores: dict[Any, float],
        it: int,
        discovered_at: int | None = None,
        components: Mapping[str, str] | None = None,
    ) -> None:
        if idx in self.candidates:
            return
        check = self.adapter.check(text)
        by_trace = {self.val_ids[int(k)]: float(v) for k, v in scores.items()}
        self.candidates[idx] = {
            "id": idx,
            "parent_ids": [int(p) for p in parents if p is not None],
            "instructions": check.instructions,
            "proposed_instructions": text if check.status != "ok" else None,
            "template": check.status,
            "template_note": check.note or None,
            "val_score": sum(by_trace.values()) / len(by_trace) if by_trace else 0.0,
            "val_scores": by_trace,
            "iteration": it,
            "metric_calls_at_discovery": discovered_at,
        }
        if components is not None and len(components) > 1:
            # Several prompts optimized together: keep every component, not just the first.
            self.candidates[idx]["components"] = dict(components)

    def sync_state(self, state: GEPAState) -> None:
        """Register candidates found in gepa's state (e.g. by a previous run we resume)."""
        found_at: dict[int, int] = {}
        for entry in getattr(state, "full_program_trace", []) or []:
            for idx in entry.get("new_program_indices", []) or []:
                found_at[int(idx)] = int(entry.get("i", 0)) + 1
        for idx, cand in enumerate(state.program_candidates):
            self._add(
                idx,
                cand[self.component],
                state.parent_program_for_candidate[idx],
                state.prog_candidate_val_subscores[idx],
                found_at.get(idx, 0),
                state.num_metric_calls_by_discovery[idx],
                cand,
            )
        self.metric_calls = max(self.metric_calls, int(state.total_num_evals))

    def selection(self) -> Selection:
        """The noise-aware choice among the candidates so far (see
        :mod:`core.optimization.selection`)."""
        return select_candidate({i: c["val_scores"] for i, c in self.candidates.items()})

    def best_id(self) -> int:
        """The candidate the run returns: :meth:`selection`'s choice."""
        return self.selection().chosen_id

    def highest_val_score(self) -> float:
        """The highest validation mean of any candidate (what gepa's search sees)."""
        return max(c["val_score"] for c in self.candidates.values())

    def pareto(self) -> dict[str, Any]:
        """Per-example frontier and the non-dominated candidates (gepa's definition)."""
        from gepa.gepa_utils import find_dominator_programs

        per_example: dict[str, dict[str, Any]] = {}
        for tid in self.val_ids:
            scored = [(c["val_scores"].get(tid), i) for i, c in self.candidates.items()]
            scored = [(s, i) for s, i in scored if s is not None]
            if not scored:
                continue
            best = max(s for s, _ in scored)
            per_example[tid] = {
                "best_score": best,
                "candidate_ids": sorted(i for s, i in scored if s == best),
            }
        n = max(self.candidates, default=-1) + 1
        agg = [self.candidates[i]["val_score"] if i in self.candidates else 0.0 for i in range(n)]
        fronts = {tid: set(e["candidate_ids"]) for tid, e in per_example.items()}
        frontier = sorted(find_dominator_programs(fronts, agg)) if fronts else []
        bests = [e["best_score"] for e in per_example.values()]
        return {
            "per_example": per_example,
            "frontier": frontier,
            "aggregate": sum(bests) / len(bests) if bests else 0.0,
        }

    def write_artifacts(self) -> None:
        """Rewrite every artifact from the current registry (in the background writer;
        :meth:`flush` waits for it)."""
        if not self.candidates:
            return
        rec = self.recorder
        # Typed once here, so what the Run explorer reads back is what was written.
        cands = record.candidates_from_list(self.candidates[i] for i in sorted(self.candidates))
        pareto = record.Pareto.from_dict(self.pareto())
        iterations = [self.iterations[k] for k in sorted(self.iterations)]
        final = self.candidates[self.best_id()]["instructions"]
        proposals = self.proposals.snapshot()

        def write() -> None:
            record.write_search(rec, cands, pareto, iterations, final)
            record.write_proposals(rec, proposals)

        self.writer.put_latest("artifacts", write)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Log metrics through the background writer (in order)."""
        self.writer.put(lambda: self.recorder.log_metrics(metrics, step=step))

    def save_state(self) -> None:
        """Write the resumable state (iteration log, verdict cache) to the work folder."""
        log = [self.iterations[k] for k in sorted(self.iterations)]
        proposals = [p.to_dict() for p in self.proposals.snapshot()]
        adapter = self.adapter
        self.writer.put_latest("state", lambda: _write_json(self.work_dir / ITERATIONS_FILE, log))
        self.writer.put_latest(
            "proposals", lambda: _write_json(self.work_dir / PROPOSALS_FILE, proposals)
        )
        self.writer.put_latest(
            "cache", lambda: _write_json(self.work_dir / CACHE_FILE, adapter.state())
        )

    def checkpoint(self) -> None:
        """Queue an upload of the job folder's changed state to the run (after the writes
        queued so far, so the caches written for this iteration go with it)."""
        fn = getattr(self.recorder, "checkpoint", None)
        if fn is None:
            return

        def upload() -> None:
            stats = fn()
            if stats is not None and stats.files:
                self.checkpoints += 1
                self.checkpoint_seconds += stats.seconds
                self.checkpoint_bytes += stats.bytes

        self.writer.put_latest("checkpoint", upload)

    def flush(self) -> None:
        """Wait until everything recorded so far is written."""
        self.writer.flush()

    def close(self) -> None:
        """Flush and stop the background writer."""
        self.writer.close()

    def _usage_metrics(self, settle: bool = True) -> dict[str, float]:
        # Unsettled inside the loop: a call LiteLLM has not logged yet is counted at the
        # next iteration (the run's totals are settled).
        u = self.usage.current(settle=settle)
        out = {
            "llm_calls": float(u.calls),
            "llm_failures": float(u.failures),
            "prompt_tokens": float(u.prompt_tokens),
            "completion_tokens": float(u.completion_tokens),
            "max_in_flight": float(u.max_in_flight),
        }
        if u.cost_known:
            out["cost_usd"] = u.cost_usd
        return out

    def _evaluator_metrics(self) -> dict[str, float]:
        return self.adapter.metrics()

    # --- gepa callbacks ----------------------------------------------------------------

    def on_valset_evaluated(self, event: ValsetEvaluatedEvent) -> None:
        it = int(event["iteration"])
        idx = int(event["candidate_idx"])
        self._add(
            idx,
            event["candidate"][self.component],
            list(event["parent_ids"]),
            event["scores_by_val_id"],
            it,
        )
        pareto = self.pareto()
        best = self.highest_val_score()
        metrics = {
            "val_score": float(event["average_score"]),
            "best_val_score": best,
            "pareto_aggregate": pareto["aggregate"],
            "pareto_front_size": float(len(pareto["frontier"])),
            "candidates": float(len(self.candidates)),
        }
        if it == 0:
            self._record_seed_iteration(metrics)
        self.log_metrics(metrics, step=it)
        self.write_artifacts()

    def _record_seed_iteration(self, metrics: dict[str, float]) -> None:
        rounds = self.adapter.take_rounds()
        calls = sum(r["calls"] for r in rounds)
        if 0 in self.iterations:
            # A resumed run re-evaluates the seed (answered from the verdict cache).
            self.iterations[0]["resumes"] = self.iterations[0].get("resumes", 0) + 1
            return
        self.metric_calls = len(self.val_ids)
        self.iterations[0] = {
            "iteration": 0,
            "kind": "seed_eval",
            "accepted": True,
            "seconds": sum(r["seconds"] for r in rounds),
            "rounds": rounds,
            "critical_path_rounds": sum(max(1, r["depth"]) for r in rounds if r["calls"]),
            "llm_calls": calls,
            "metric_calls": self.metric_calls,
        }
        metrics.update(self._usage_metrics())
        metrics.update(self._evaluator_metrics())
        metrics["metric_calls"] = float(self.metric_calls)

    def on_iteration_start(self, event: IterationStartEvent) -> None:
        self.sync_state(event["state"])
        self.adapter.take_rounds()
        self._iter_started = time.monotonic()
        self._iter_usage_start = self.usage.current(settle=False).calls
        self._iter_outcome = {"accepted": False}

    def on_candidate_selected(self, event: CandidateSelectedEvent) -> None:
        # Several proposals per iteration: the first task's parent stands for the
        # iteration; each proposal in proposals.json names its own.
        self._iter_outcome.setdefault("parent_id", int(event["candidate_idx"]))
        self._iter_outcome["tasks"] = self._iter_outcome.get("tasks", 0) + 1
        self.proposals.begin(
            int(event["iteration"]), int(event["candidate_idx"]), dict(event["candidate"])
        )

    def on_evaluation_end(self, event: EvaluationEndEvent) -> None:
        # Only the parent's minibatch evaluation has an index (a child is not in the pool).
        if event["candidate_idx"] is not None:
            scores = [float(s) for s in event["scores"]]
            perfect = bool(scores) and all(s >= 1.0 for s in scores)
            self.proposals.parent_scored(float(sum(scores)), perfect)

    def on_candidate_accepted(self, event: CandidateAcceptedEvent) -> None:
        if self._iter_outcome.get("accepted"):
            # A second kept proposal of the same iteration.
            extra = self._iter_outcome.setdefault("also_accepted", [])
            extra.append(int(event["new_candidate_idx"]))
        else:
            self._iter_outcome.update(
                accepted=True, new_candidate_id=int(event["new_candidate_idx"])
            )
        self.proposals.accepted(
            int(event["iteration"]), int(event["new_candidate_idx"]), float(event["new_score"])
        )

    def on_candidate_rejected(self, event: CandidateRejectedEvent) -> None:
        reason = str(event.get("reason", ""))
        # gepa reports every turned-down proposal before the kept ones are accepted.
        self._iter_outcome.update(accepted=False, reason=reason)
        self.proposals.rejected(
            int(event["iteration"]), float(event["old_score"]), float(event["new_score"]), reason
        )

    def on_iteration_end(self, event: IterationEndEvent) -> None:
        it = int(event["iteration"])
        state = event["state"]
        self.sync_state(state)
        rounds = self.adapter.take_rounds()
        seconds = time.monotonic() - self._iter_started
        usage = self._usage_metrics(settle=False)
        self.last_iteration = max(self.last_iteration, it)
        degenerate = [p for p in self.proposals.of_iteration(it) if p.degenerate]
        if degenerate and not self._iter_outcome.get("accepted"):
            self._iter_outcome.update(degenerate=True, reason=degenerate[0].message)
        self.iterations[it] = {
            "iteration": it,
            "kind": "reflective_mutation",
            **self._iter_outcome,
            "seconds": seconds,
            "rounds": rounds,
            "critical_path_rounds": sum(max(1, r["depth"]) for r in rounds if r["calls"]),
            "llm_calls": int(usage["llm_calls"]) - self._iter_usage_start,
            "metric_calls": self.metric_calls,
        }
        metrics = {
            "metric_calls": float(self.metric_calls),
            "iteration_seconds": seconds,
            "iteration_llm_calls": float(self.iterations[it]["llm_calls"]),
            "accepted": 1.0 if self._iter_outcome.get("accepted") else 0.0,
            "degenerate_proposals": float(self.proposals.degenerate()),
            "saved_metric_calls": float(self.proposals.saved_metric_calls()),
            **usage,
            **self._evaluator_metrics(),
        }
        self.log_metrics(metrics, step=it)
        self.save_state()
        self.write_artifacts()
        # In the writer too: a synchronous heartbeat cost ~30 ms per iteration on sqlite.
        self.writer.put(self.recorder.heartbeat)

    def on_state_saved(self, event: StateSavedEvent) -> None:
        # gepa has just written its state pickle (at each iteration boundary): save our
        # caches and upload the lot, in the background writer, never in gepa's loop.
        self.save_state()
        self.checkpoint()

    def on_optimization_end(self, event: OptimizationEndEvent) -> None:
        self.sync_state(event["final_state"])


def _final_checkpoint(recorder: RunRecorder) -> None:
    """Upload the state once more as the run ends or is stopped (best effort)."""
    fn = getattr(recorder, "checkpoint", None)
    if fn is None:
        return
    try:
        fn()
    except Exception as exc:
        _log.warning("final state checkpoint failed: %s", exc)


#: Parallel mode: proposals kept (validated, added to the pool) per iteration at most.
#: One, the best improvement (gepa's ``BestImprovement``): on the demo, keeping every
#: improving sibling spent the budget validating siblings and the search got shallower
#: (held-out 0.50/0.71/0.86 over seeds 0-2 with all kept against 0.79/0.71/0.86 with one
#: kept, the same as sequential), and one validation per iteration keeps the rounds short.
PROPOSALS_KEPT: int | None = 1


def proposals_in_flight(task: OptimizationTask) -> int:
    """Proposals per gepa iteration for ``task`` (its settings' ``proposals_in_flight``;
    1, gepa's sequential loop, for settings without one, e.g. prompt optimization)."""
    return max(1, int(getattr(getattr(task, "settings", None), "proposals_in_flight", 1) or 1))


def _parallel_strategies(
    task: OptimizationTask, n_train: int, n_val: int, log: ProposalLog
) -> dict[str, Any]:
    """gepa's ``sampling_strategy``/``selection_strategy`` for several proposals at once
    (:mod:`core.optimization.parallel_proposals`); none in sequential mode."""
    n = proposals_in_flight(task)
    if n <= 1:
        return {}
    from core.optimization.parallel_proposals import BudgetedSampling, BudgetedSelection

    budget = task.budget(n_train)
    return {
        "sampling_strategy": BudgetedSampling(n, budget, task.minibatch_size, n_val),
        "selection_strategy": BudgetedSelection(
            budget, task.minibatch_size, n_val, log, keep=PROPOSALS_KEPT
        ),
    }


def _optimize(gepa, task, train, val, adapter, stoppers, tracker, run_dir) -> Any:
    seed = task.seed_candidate()
    reflection = _ReflectionLM(task.reflection_model, adapter, base_url=task.reflection_base_url)
    return gepa.optimize(
        **_parallel_strategies(task, len(train), len(val), tracker.proposals),
        seed_candidate=seed,
        trainset=train,
        valset=val,
        adapter=adapter,
        reflection_strategy=GuardedReflection(
            reflection, task.guard_context().seed, tracker.proposals
        ),
        reflection_minibatch_size=task.minibatch_size,
        max_metric_calls=task.budget(len(train)),
        stop_callbacks=stoppers,
        logger=_GepaLogger(),
        run_dir=str(run_dir),
        callbacks=[tracker],
        seed=task.seed,
        display_progress_bar=False,
        # Several scorers: a candidate best on one judge's objective stays on the frontier.
        frontier_type=getattr(task, "frontier_type", "instance"),
    )


def run(
    settings: AlignmentSettings,
    train: list[Example],
    val: list[Example],
    recorder: RunRecorder,
) -> AlignmentOutcome:
    """Align the judge with gepa: :func:`run_task` on the judge task of ``settings``.

    Args:
        settings: The alignment settings (seed judge, reflection model, budget, seed...).
        train: Training examples (reflection minibatches come from here).
        val: Validation examples (candidates are scored and compared on these).
        recorder: Where progress goes; ``recorder.work_dir`` holds the resumable state.

    Returns:
        The candidate chosen by the noise-aware rule, as an MLflow judge.

    Raises:
        CredentialsError: A model's key is missing or rejected (the run stops).
    """
    from core.optimization.judge_task import JudgeTask

    return run_task(JudgeTask(settings), train, val, recorder)


def run_task(
    task: OptimizationTask,
    train: list[Any],
    val: list[Any],
    recorder: RunRecorder,
) -> AlignmentOutcome:
    """Optimize the task's text components with gepa (see the module docstring).

    Args:
        task: What is optimized: seed candidate, adapter, guard context, search settings.
        train: Training examples (reflection minibatches come from here).
        val: Validation examples (candidates are scored and compared on these).
        recorder: Where progress goes; ``recorder.work_dir`` holds the resumable state.

    Returns:
        The candidate chosen by the noise-aware rule (:mod:`core.optimization.selection`:
        the highest validation mean among those that beat the seed in a paired sign test;
        otherwise the seed): ``candidate`` holds its components, ``instructions`` its
        first component's text and ``judge`` what ``task.artifact`` makes of it.

    Raises:
        CredentialsError: A model's key is missing or rejected (the run stops).
    """
    import gepa

    seed = task.seed_candidate()
    component = next(iter(seed))
    work_dir = Path(recorder.work_dir)
    run_dir = work_dir / "gepa"
    run_dir.mkdir(parents=True, exist_ok=True)
    adapter = task.make_adapter(train, val, _read_json(work_dir / CACHE_FILE, []))
    budget = task.budget(len(train))
    with track_usage() as usage:
        # The cancel check (and heartbeat) runs first and always; then the early stops of
        # the task's policy (core.optimization.stopping), in the order their reasons take
        # precedence; the budget guard last. gepa stops at the first that says so.
        stopper = _Stopper(recorder)
        early = build_stoppers(
            _stop_policy(task),
            spent_usd=lambda: _spent_usd(usage),
            proposals_per_iteration=proposals_in_flight(task),
        )
        budget_stop = BudgetStop(budget, task.minibatch_size, len(val))
        stoppers: list[Any] = [stopper, *early, budget_stop]
        val_ids = [task.example_id(ex) for ex in val]
        tracker = RunTracker(recorder, adapter, val_ids, usage, work_dir, component)
        try:
            result = _optimize(gepa, task, train, val, adapter, stoppers, tracker, run_dir)
        finally:
            # Whatever happened (an interrupt too), what was recorded so far reaches the
            # store, and the state as it is now reaches the run's ``state/`` artifacts.
            stopper.close()
            tracker.close()
            with contextlib.suppress(Exception):
                _write_json(work_dir / CACHE_FILE, adapter.state())
            adapter.close()
            _final_checkpoint(recorder)
        for idx, cand in enumerate(result.candidates):
            tracker._add(
                idx,
                cand[component],
                list(result.parents[idx]),
                result.val_subscores[idx],
                0,
                components=cand,
            )
        tracker.metric_calls = max(tracker.metric_calls, int(result.total_metric_calls or 0))
        tracker.write_artifacts()
        tracker.close()
        totals = usage.current()

    selection = tracker.selection()
    best = tracker.candidates[selection.chosen_id]
    seed_score = tracker.candidates[0]["val_score"]
    idx = selection.chosen_id
    chosen = dict(result.candidates[idx]) if idx < len(result.candidates) else {}
    # What was evaluated: a repaired text stands in for the one proposed.
    chosen[component] = best["instructions"]
    why = stop_reason(
        early, cancelled=stopper.cancelled, metric_calls=tracker.metric_calls, budget=budget
    )
    return AlignmentOutcome(
        optimizer="gepa",
        instructions=best["instructions"],
        judge=task.artifact(chosen),
        iterations=tracker.last_iteration,
        metric_calls=tracker.metric_calls,
        cancelled=stopper.cancelled,
        failed_examples=adapter.failed_examples(),
        stop_reason=why.code,
        stop_detail=why.detail,
        candidate=chosen,
        extra={
            "best_candidate_id": best["id"],
            "val_score_seed": seed_score,
            "val_score_best": best["val_score"],
            "candidates": len(tracker.candidates),
            "repaired_candidates": sum(
                1 for c in tracker.candidates.values() if c["template"] == "repaired"
            ),
            "rejected_candidates": sum(
                1 for c in tracker.candidates.values() if c["template"] == "rejected"
            ),
            "selection": selection.to_dict(),
            "proposals": len(tracker.proposals.snapshot()),
            "proposals_in_flight": proposals_in_flight(task),
            "degenerate_proposals": tracker.proposals.degenerate(),
            "saved_metric_calls": tracker.proposals.saved_metric_calls(),
            **({"stopped": why.detail} if why.code not in (BUDGET, CANCELLED) else {}),
            **adapter.outcome_extra(),
            "checkpoints": {
                "uploads": tracker.checkpoints,
                "seconds": round(tracker.checkpoint_seconds, 4),
                "bytes": tracker.checkpoint_bytes,
            },
            "usage": totals.to_dict(),
        },
    )
