"""gepa adapter for judge instructions, with the human rationale in the reflection loop.

The judge task's :class:`core.optimization.task.TaskAdapter` (what the generic ``gepa``
runner evaluates with and records from); the proposal guard's reflection step and the
proposal log below serve every task.

A candidate is ``{"instructions": text}``. Evaluation runs the MLflow judge with those
instructions on labeled examples (parallel, cached: :class:`JudgeEvaluator`) and scores
agreement with the human label. The reflective dataset shows the reflection model, for each
example, the judge's verdict and rationale **and the human label and rationale**, in lines
``Judge verdict:``, ``Judge rationale:``, ``Human label:``, ``Human rationale:`` (MLflow's
own GEPA optimizer shows only "This trajectory got a score of True"). For a ``{{ trace }}``
judge each record also has ``Trace spans``: the trace's non-root spans, TOOL and RETRIEVER
first, one line each with inputs and outputs cut short
(:func:`core.optimization.trace_spans.spans_text`, at most ``SPANS_TEXT_CHARS``
characters), since the deciding evidence of an agent trace is often in a tool's output.

Template variables. A candidate must keep the seed's MLflow template variables
(``{{ inputs }}``, ``{{ outputs }}``, ``{{ expectations }}``, ``{{ trace }}``) and may not
invent others.
Missing ones are re-appended on a line of their own and invented ones stripped
(*repaired*); a candidate with nothing left but variables is *rejected* (score 0 on every
example, with feedback saying why). Every decision is kept in :attr:`template_checks`.

Proposals. :class:`GuardedReflection` is the reflection step gepa runs (its
``reflection_strategy``): gepa's own single-call reflection, after which every proposed text
goes through the proposal guard (:mod:`core.optimization.guards`). A degenerate proposal is
withheld from gepa, which then skips the iteration without evaluating it (no judge call
spent); every proposal, kept or not, is recorded in a :class:`ProposalLog` as a
:class:`core.optimization.record.Proposal`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence, Set
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from gepa.core.adapter import EvaluationBatch
from gepa.proposer.reflective_mutation.base import LanguageModel
from gepa.proposer.reflective_mutation.reflection_lm import (
    ReflectionJob,
    ReflectionProposal,
    StatelessReflectionLM,
)

from core.optimization.guards import GuardVerdict, check_proposal
from core.optimization.judging import JudgeEvaluator, Verdict, instructions_key, score
from core.optimization.record import NOT_BETTER_ON_MINIBATCH, Proposal
from core.optimization.spec import TEMPLATE_VARIABLES, Example, JudgeSpec
from core.optimization.trace_spans import spans_text, uses_trace

COMPONENT = "instructions"
#: The rejection reason of a proposal that passed gepa's minibatch check but was not kept
#: because another proposal of the same iteration gained more (parallel proposals).
OUTSCORED_IN_ITERATION = "outscored_in_iteration"
_VARIABLE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_KNOWN = {v.strip("{} ").strip(): v for v in TEMPLATE_VARIABLES}
# Fewer characters of prose than this (variables aside) is not a judge instruction.
_MIN_PROSE_CHARS = 20


@dataclass(frozen=True)
class TemplateCheck:
    """What happened to one candidate's template variables."""

    status: Literal["ok", "repaired", "rejected"]
    """ok (unchanged), repaired (evaluated as ``instructions``) or rejected (score 0)."""
    instructions: str
    """The instructions actually evaluated (the repaired text when repaired)."""
    missing: tuple[str, ...] = ()
    """Seed variables the candidate dropped (re-appended)."""
    invented: tuple[str, ...] = ()
    """Variables the candidate made up (stripped)."""
    note: str = ""
    """A sentence for humans and for the reflection model."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def check_template(instructions: str, required: Sequence[str]) -> TemplateCheck:
    """Repair or reject candidate instructions whose template variables are wrong.

    Args:
        instructions: The candidate text.
        required: The variables the seed uses (e.g. ``["{{ inputs }}", "{{ outputs }}"]``).
    """
    invented: list[str] = []

    def normalise(m: re.Match[str]) -> str:
        name = m.group(1).strip()
        if name in _KNOWN:
            return _KNOWN[name]
        invented.append(m.group(0))
        return ""

    text = _VARIABLE.sub(normalise, instructions)
    missing = [v for v in required if v not in text]
    prose = _VARIABLE.sub("", text)
    if len(re.sub(r"\s+", "", prose)) < _MIN_PROSE_CHARS:
        return TemplateCheck(
            "rejected",
            instructions,
            tuple(missing),
            tuple(invented),
            "Rejected: the instructions contain no usable text besides template variables.",
        )
    if missing:
        labelled = "\n".join(f"{v.strip('{} ').capitalize()}: {v}" for v in missing)
        text = text.rstrip() + "\n\n" + labelled
    if not missing and not invented and text == instructions:
        return TemplateCheck("ok", instructions)
    parts = []
    if missing:
        parts.append(f"re-appended dropped variable(s) {', '.join(missing)}")
    if invented:
        parts.append(f"removed unknown variable(s) {', '.join(invented)}")
    note = "Repaired: " + "; ".join(parts or ["normalised variable spelling"]) + "."
    return TemplateCheck("repaired", text, tuple(missing), tuple(invented), note)


def render_value(value: Any, value_type: str) -> str:
    """A label or verdict as shown to the reflection model (``pass``/``fail`` for bools)."""
    if value is None:
        return "(none)"
    if value_type == "pass_fail" or isinstance(value, bool):
        return "pass" if value else "fail"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _one_line(text: str | None) -> str:
    # A blank line ends a field for readers of the feedback; keep each field one paragraph.
    return re.sub(r"\n\s*\n+", "\n", (text or "").strip()) or "(none given)"


def feedback_text(verdict: Verdict, example: Example, value_type: str, points: float) -> str:
    """The feedback record for one example: judge verdict and rationale, human label and
    rationale, one field per paragraph."""
    agree = "agreed" if points >= 1.0 else "disagreed"
    if not verdict.ok:
        head = f"The judge call failed ({verdict.error}); score 0."
    else:
        head = f"The judge {agree} with the human expert (score {points:.2f})."
    return "\n\n".join(
        [
            head,
            f"Judge verdict: {render_value(verdict.value, value_type)}",
            f"Judge rationale: {_one_line(verdict.rationale)}",
            f"Human label: {render_value(example.label, value_type)}",
            f"Human rationale: {_one_line(example.rationale)}",
        ]
    )


@dataclass(frozen=True)
class Trajectory:
    """What the adapter keeps of one evaluation, for the reflective dataset."""

    example: Example
    verdict: Verdict
    score: float
    template: TemplateCheck


class JudgeAdapter:
    """``gepa.core.adapter.GEPAAdapter`` for one judge's instructions.

    Attributes:
        template_checks: instructions sha -> :class:`TemplateCheck` of every candidate seen.
        rounds: parallel rounds of judge calls since the last :meth:`take_rounds`, as
            ``{"kind", "calls", "pairs", "depth", "seconds"}`` dicts.
    """

    def __init__(
        self,
        spec: JudgeSpec,
        evaluator: JudgeEvaluator,
        val_ids: Set[str] = frozenset(),
        value_range: float | None = None,
    ) -> None:
        """Create the adapter.

        Args:
            spec: The seed judge (its template variables are the required ones).
            evaluator: Runs and caches judge calls.
            val_ids: Validation trace ids, to tell validation rounds from minibatch ones.
            value_range: Width of a numeric scale (see :func:`score`).
        """
        self.spec = spec
        self.evaluator = evaluator
        self.required = spec.template_variables()
        self.val_ids = set(val_ids)
        self.value_range = value_range
        self.template_checks: dict[str, TemplateCheck] = {}
        self.reads_trace = uses_trace(spec.instructions)
        """Whether the judge reads ``{{ trace }}`` (reflection then sees the spans)."""
        self.rounds: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    # gepa looks this attribute up; None means "use gepa's default LLM proposer".
    propose_new_texts = None

    def check(self, instructions: str) -> TemplateCheck:
        """The (remembered) template check of candidate instructions."""
        key = instructions_key(instructions)
        with self._lock:
            if key not in self.template_checks:
                self.template_checks[key] = check_template(instructions, self.required)
            return self.template_checks[key]

    def _kind(self, batches: Sequence[Sequence[Example]]) -> str:
        ids = {ex.trace_id for batch in batches for ex in batch}
        return "val_eval" if ids and ids <= self.val_ids else "minibatch_eval"

    def take_rounds(self) -> list[dict[str, Any]]:
        """Return and forget the rounds recorded so far."""
        with self._lock:
            out, self.rounds = self.rounds, []
            return out

    # --- what the gepa runner records (core.optimization.task.TaskAdapter) -------------

    def note_round(self, row: dict[str, Any]) -> None:
        """Record one round of model calls made outside the evaluator (a reflection call)."""
        with self._lock:
            self.rounds.append(row)

    def metrics(self) -> dict[str, float]:
        """Verdict-cache hits, failed judge calls and retried attempts so far."""
        cache = self.evaluator.cache.stats()
        stats = self.evaluator.stats
        return {
            "cache_hits": float(cache["hits"]),
            "judge_failures": float(stats.failed),
            # Judge attempts that failed and were tried again (429, 5xx, timeouts...).
            "judge_retries": float(stats.retries),
        }

    def state(self) -> Any:
        """The verdict cache, JSON-ready (a resumed run answers the seed from it)."""
        return self.evaluator.cache.to_json()

    def failed_examples(self) -> int:
        """Examples whose judge call failed after retries."""
        return len(self.evaluator.stats.failed_trace_ids or ())

    def outcome_extra(self) -> dict[str, Any]:
        """Judge-call totals for the outcome's ``extra``."""
        return {
            "failed_judge_calls": self.evaluator.stats.failed,
            "cache": self.evaluator.cache.stats(),
            "judge_calls": self.evaluator.stats.to_dict(),
        }

    def close(self) -> None:
        """Stop the evaluator's workers."""
        self.evaluator.close()

    def batch_evaluate(
        self, items: list[tuple[dict[str, str], list[Example]]]
    ) -> list[EvaluationBatch]:
        """Evaluate several (candidate, batch) pairs as one parallel round."""
        checks = [self.check(candidate[COMPONENT]) for candidate, _ in items]
        live = [(c.instructions, batch) for c, (_, batch) in zip(checks, items, strict=True)]
        runnable = [i for i, c in enumerate(checks) if c.status != "rejected"]
        verdicts: dict[int, list[Verdict]] = {}
        if runnable:
            out = self.evaluator.evaluate_many([live[i] for i in runnable])
            verdicts = dict(zip(runnable, out, strict=True))
            info = self.evaluator.last_round
            if info is not None:
                with self._lock:
                    self.rounds.append({"kind": self._kind([b for _, b in items]), **asdict(info)})
        results = []
        for i, (check, (_, batch)) in enumerate(zip(checks, items, strict=True)):
            if check.status == "rejected":
                vs = [Verdict(None, None, error=check.note) for _ in batch]
            else:
                vs = verdicts[i]
            results.append(self._batch(batch, vs, check))
        return results

    def evaluate(
        self, batch: list[Example], candidate: dict[str, str], capture_traces: bool = False
    ) -> EvaluationBatch:
        """Run the candidate judge on ``batch`` and score agreement with the human labels.

        Every pair counts against gepa's budget, cached or not: the budget bounds the search
        (an iteration whose pairs were all cached must still bring the end closer), while
        the cache bounds what is paid to the model.
        """
        return self.batch_evaluate([(candidate, batch)])[0]

    def _batch(
        self, batch: list[Example], verdicts: list[Verdict], check: TemplateCheck
    ) -> EvaluationBatch:
        vt = self.spec.value_type
        scores = [score(v, ex, vt, self.value_range) for v, ex in zip(verdicts, batch, strict=True)]
        trajectories = [
            Trajectory(ex, v, s, check) for ex, v, s in zip(batch, verdicts, scores, strict=True)
        ]
        return EvaluationBatch(outputs=verdicts, scores=scores, trajectories=trajectories)

    def make_reflective_dataset(
        self,
        candidate: dict[str, str],
        eval_batch: EvaluationBatch,
        components_to_update: list[str],
    ) -> Mapping[str, Sequence[Mapping[str, Any]]]:
        """One record per example: inputs, the response judged (for a ``{{ trace }}`` judge
        also the trace's spans), and feedback carrying the judge's verdict and rationale and
        the human's label and rationale."""
        records = []
        trajectories = list(eval_batch.trajectories or [])
        traces: dict[str, Any] = {}
        if self.reads_trace and trajectories:
            # Already loaded for the evaluation: the evaluator's cache answers.
            traces = self.evaluator.traces.get_many(t.example.trace_id for t in trajectories)
        for t in trajectories:
            feedback = feedback_text(t.verdict, t.example, self.spec.value_type, t.score)
            if t.template.status != "ok":
                feedback = f"{t.template.note}\n\n{feedback}"
            record: dict[str, Any] = {
                "Inputs": _plain(t.example.inputs),
                "Generated Outputs": _plain(t.example.outputs),
            }
            if self.reads_trace:
                trace = traces.get(t.example.trace_id)
                record["Trace spans"] = (
                    spans_text(trace) if trace is not None else "(trace not in the store)"
                )
            record["Feedback"] = feedback
            if t.example.expectations:
                record["Expectations"] = _plain(t.example.expectations)
            records.append(record)
        return {name: records for name in components_to_update}


def _plain(value: Any) -> Any:
    # gepa renders dicts as nested markdown headings; keep values JSON-ready.
    if isinstance(value, dict | list | str | int | float | bool) or value is None:
        return value
    return str(value)


# --- proposals ------------------------------------------------------------------------


def _prompt_text(prompt: Any) -> str:
    # gepa sends a string, or chat messages when the feedback holds images.
    if isinstance(prompt, str):
        return prompt
    parts: list[str] = []
    for message in prompt or ():
        content = message.get("content") if isinstance(message, Mapping) else message
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [str(c.get("text", "")) for c in content if isinstance(c, Mapping)]
    return "\n".join(parts)


@dataclass
class _Task:
    """One (parent, minibatch) task of the iteration, as the proposal log follows it."""

    parent_id: int | None
    parent: dict[str, str]
    minibatch: float | None = None
    perfect: bool = False
    claimed: bool = False


class ProposalLog:
    """Every proposal of one run, in order, as :class:`Proposal` records (thread-safe).

    The run's gepa callbacks tell it the iteration and parent being worked on
    (:meth:`begin`) and how gepa's minibatch check decided (:meth:`accepted`,
    :meth:`rejected`); :class:`GuardedReflection` adds the proposals.
    """

    def __init__(self, proposals: Sequence[Proposal] = ()) -> None:
        self.items: list[Proposal] = list(proposals)
        self.iteration = 0
        self.parent_id: int | None = None
        self.parent_minibatch: float | None = None
        # Several proposals per iteration (core.optimization.parallel_proposals): the
        # iteration's tasks in gepa's order, and the order gepa will report outcomes in.
        self._tasks: list[_Task] = []
        self._expect_rejected: list[tuple[dict[str, str], str]] = []
        self._expect_accepted: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def begin(
        self, iteration: int, parent_id: int | None, parent: Mapping[str, str] | None = None
    ) -> None:
        """A new parent was selected for ``iteration`` (``parent``: its components)."""
        with self._lock:
            if iteration != self.iteration:
                self._tasks = []
                self._expect_rejected, self._expect_accepted = [], []
            self.iteration, self.parent_id, self.parent_minibatch = iteration, parent_id, None
            self._tasks.append(_Task(parent_id, dict(parent or {})))

    def parent_scored(self, total: float, perfect: bool = False) -> None:
        """The parent's minibatch score sum (what the proposal has to beat); ``perfect``
        when every example scored full marks (gepa then skips that task's reflection)."""
        with self._lock:
            self.parent_minibatch = total
            for t in self._tasks:
                if t.minibatch is None:
                    t.minibatch, t.perfect = total, perfect
                    break

    def claim(self, parent: Mapping[str, str]) -> _Task | None:
        """The iteration's first unclaimed task on ``parent`` (a reflection job's parent),
        preferring one gepa did not skip; None when the log tracks no tasks."""
        with self._lock:
            same = [t for t in self._tasks if not t.claimed and t.parent == dict(parent)]
            if not same:
                return None
            task = next((t for t in same if not t.perfect), same[0])
            task.claimed = True
            return task

    def expect_outcomes(
        self, rejected: list[tuple[dict[str, str], str]], accepted: list[dict[str, str]]
    ) -> None:
        """The candidates gepa will report rejected (with a reason code) and accepted, in
        its order."""
        with self._lock:
            self._expect_rejected, self._expect_accepted = list(rejected), list(accepted)

    def add(
        self,
        component: str,
        text: str,
        prompt: str,
        output: str,
        verdict: GuardVerdict,
        saved_metric_calls: int,
        task: _Task | None = None,
    ) -> Proposal:
        """Record a proposal just checked by the guard (``task``: its :meth:`claim`)."""
        with self._lock:
            p = Proposal(
                iteration=self.iteration,
                parent_id=task.parent_id if task is not None else self.parent_id,
                component=component,
                proposed_text=text,
                reflection_prompt=prompt,
                reflection_output=output,
                status="pending" if verdict.ok else "rejected",
                reason=verdict.reason,
                message=verdict.message,
                degenerate=not verdict.ok,
                minibatch_before=task.minibatch if task is not None else self.parent_minibatch,
                saved_metric_calls=0 if verdict.ok else saved_metric_calls,
                guard=verdict.measures,
            )
            self.items.append(p)
            return p

    def _resolve(
        self, iteration: int, candidate: Mapping[str, str] | None = None, **changes: Any
    ) -> None:
        # The latest pending one (of ``candidate`` when known: several proposals per
        # iteration): an iteration interrupted before gepa decided is redone under the
        # same number when the run resumes, and its first proposal stays pending.
        with self._lock:
            for i in range(len(self.items) - 1, -1, -1):
                p = self.items[i]
                if p.iteration != iteration or p.status != "pending":
                    continue
                if candidate is not None and candidate.get(p.component) != p.proposed_text:
                    continue
                self.items[i] = replace(p, **changes)
                return

    def accepted(self, iteration: int, candidate_id: int, minibatch_after: float) -> None:
        """gepa accepted the iteration's pending proposal as ``candidate_id``."""
        with self._lock:
            expected = self._expect_accepted.pop(0) if self._expect_accepted else None
        self._resolve(
            iteration,
            expected,
            status="accepted",
            candidate_id=candidate_id,
            minibatch_after=minibatch_after,
        )

    def rejected(self, iteration: int, before: float, after: float, message: str) -> None:
        """gepa turned the iteration's pending proposal down: its minibatch check, or (with
        several proposals) a better proposal of the same iteration was kept instead."""
        with self._lock:
            expected = self._expect_rejected.pop(0) if self._expect_rejected else None
        candidate, reason = expected if expected is not None else (None, NOT_BETTER_ON_MINIBATCH)
        self._resolve(
            iteration,
            candidate,
            status="rejected",
            reason=reason,
            message=message,
            minibatch_before=before,
            minibatch_after=after,
        )

    def of_iteration(self, iteration: int) -> list[Proposal]:
        """The proposals made in ``iteration``."""
        with self._lock:
            return [p for p in self.items if p.iteration == iteration]

    def snapshot(self) -> list[Proposal]:
        """A copy of every proposal so far."""
        with self._lock:
            return list(self.items)

    def degenerate(self) -> int:
        """How many proposals the guard rejected."""
        with self._lock:
            return sum(1 for p in self.items if p.degenerate)

    def saved_metric_calls(self) -> int:
        """Judge evaluations the guard saved (the rejected proposals' minibatches)."""
        with self._lock:
            return sum(p.saved_metric_calls for p in self.items)


class GuardedReflection:
    """gepa ``ReflectionLM``: gepa's default reflection, then the proposal guard.

    Each proposed text is checked against its parent, the seed and the reflection prompt
    (:func:`core.optimization.guards.check_proposal`) and recorded in ``log``. A degenerate
    text is left out of the proposal gepa receives; with nothing left to update, gepa skips
    the child's minibatch evaluation, so the guard's rejection costs no judge call.
    """

    def __init__(
        self,
        lm: LanguageModel,
        seed: Mapping[str, str],
        log: ProposalLog,
        logger: Any | None = None,
    ) -> None:
        """Create the reflection step.

        Args:
            lm: The reflection model, as gepa calls it (prompt in, text out).
            seed: The seed candidate (component -> text): the criterion's own terms.
            log: Where every proposal is recorded.
            logger: gepa's logger, for gepa's own messages.
        """
        self.inner = StatelessReflectionLM(lm, None, logger)
        self.seed = dict(seed)
        self.log = log

    def reflect(
        self,
        candidate: dict[str, str],
        reflective_dataset: Mapping[str, Sequence[Mapping[str, Any]]],
        components_to_update: list[str],
    ) -> tuple[ReflectionProposal, GuardedReflection]:
        """Propose texts for one job (see :meth:`reflect_many`)."""
        return self.reflect_many([(candidate, reflective_dataset, components_to_update)])[0]

    def reflect_many(
        self, jobs: list[ReflectionJob]
    ) -> list[tuple[ReflectionProposal, GuardedReflection]]:
        """Reflect on every job, then drop the degenerate texts from each proposal."""
        out: list[tuple[ReflectionProposal, GuardedReflection]] = []
        for (candidate, dataset, _), (proposal, _next) in zip(
            jobs, self.inner.reflect_many(jobs), strict=True
        ):
            task = self.log.claim(candidate)
            kept: dict[str, str] = {}
            for name, text in proposal.new_texts.items():
                prompt = _prompt_text(proposal.prompts.get(name, ""))
                verdict = check_proposal(
                    text,
                    parent=candidate.get(name, ""),
                    seed=self.seed.get(name, ""),
                    reflection_prompt=prompt,
                )
                minibatch = len(dataset.get(name) or ())
                raw = proposal.raw_lm_outputs.get(name, "")
                self.log.add(name, text, prompt, raw, verdict, minibatch, task)
                if verdict.ok:
                    kept[name] = text
            proposal.new_texts = kept
            out.append((proposal, self))
        return out
