"""gepa adapter for judge instructions, with the human rationale in the reflection loop.

A candidate is ``{"instructions": text}``. Evaluation runs the MLflow judge with those
instructions on labeled examples (parallel, cached: :class:`JudgeEvaluator`) and scores
agreement with the human label. The reflective dataset shows the reflection model, for each
example, the judge's verdict and rationale **and the human label and rationale**, in lines
``Judge verdict:``, ``Judge rationale:``, ``Human label:``, ``Human rationale:`` (MLflow's
own GEPA optimizer shows only "This trajectory got a score of True").

Template variables. A candidate must keep the seed's MLflow template variables
(``{{ inputs }}``, ``{{ outputs }}``, ``{{ expectations }}``) and may not invent others.
Missing ones are re-appended on a line of their own and invented ones stripped
(*repaired*); a candidate with nothing left but variables is *rejected* (score 0 on every
example, with feedback saying why). Every decision is kept in :attr:`template_checks`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence, Set
from dataclasses import asdict, dataclass
from typing import Any, Literal

from gepa.core.adapter import EvaluationBatch

from core.optimization.judging import JudgeEvaluator, Verdict, instructions_key, score
from core.optimization.spec import TEMPLATE_VARIABLES, Example, JudgeSpec

COMPONENT = "instructions"
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
        """One record per example: inputs, the response judged, and feedback carrying the
        judge's verdict and rationale and the human's label and rationale."""
        records = []
        for t in eval_batch.trajectories or []:
            feedback = feedback_text(t.verdict, t.example, self.spec.value_type, t.score)
            if t.template.status != "ok":
                feedback = f"{t.template.note}\n\n{feedback}"
            record: dict[str, Any] = {
                "Inputs": _plain(t.example.inputs),
                "Generated Outputs": _plain(t.example.outputs),
                "Feedback": feedback,
            }
            if t.example.expectations:
                record["Expectations"] = _plain(t.example.expectations)
            records.append(record)
        return {name: records for name in components_to_update}


def _plain(value: Any) -> Any:
    # gepa renders dicts as nested markdown headings; keep values JSON-ready.
    if isinstance(value, dict | list | str | int | float | bool) or value is None:
        return value
    return str(value)
