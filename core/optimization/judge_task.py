"""Judge alignment as one task of the general engine (:mod:`core.optimization.task`).

A candidate is ``{"instructions": text}``; an example is a labeled trace
(:class:`core.optimization.spec.Example`) scored by agreement with its human label
(:class:`core.optimization.gepa_adapter.JudgeAdapter`); the held-out split scores the seed
and the aligned judge against the human labels (accuracy, kappa, per-example predictions,
the verdict of :mod:`core.optimization.verdict`); a finished run registers a new scorer
version (:class:`core.optimization.registry.JudgeRegistrar`).

:func:`core.optimization.engine.run_alignment` builds a :class:`JudgeTask` from the
alignment settings and hands it to the engine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import ValidationError
from core.optimization import record
from core.optimization.preflight import Finding
from core.optimization.record import AlignmentResult
from core.optimization.registry import JudgeRegistrar
from core.optimization.spec import (
    AlignmentOutcome,
    AlignmentSettings,
    Example,
    JudgeSpec,
    Runner,
    RunRecorder,
)
from core.optimization.task import (
    JUDGE,
    GuardContext,
    HeldOut,
    RunSummary,
    SettingsBacked,
    TaskRunner,
)
from core.optimization.verdict import Verdict, describe, judge_verdict

#: The judge's one text component.
COMPONENT = "instructions"


@dataclass(frozen=True)
class JudgeTask(SettingsBacked):
    """Align one judge to its criterion's human labels."""

    settings: AlignmentSettings
    """What to align and how."""
    judge_runner: Runner | None = None
    """A judge runner to use instead of the optimizer's own (embedding, tests)."""
    held_out_cache: Any = None
    """A :class:`core.optimization.judging.VerdictCache` shared by the held-out scoring of
    several runs of the same judge model in one process (the benchmarks: the seed's
    verdicts are paid for once); None, the default, scores every run afresh."""
    kind: str = field(default=JUDGE, init=False)
    """Always ``judge``: the judge-only runners accept this task."""
    registrar: JudgeRegistrar = field(init=False)
    """Registers the aligned judge as a new scorer version."""
    label_sources: dict[str, int] = field(default_factory=dict, init=False, compare=False)
    """Precedence counts of the loaded examples (filled by :meth:`load`, recorded in the
    result); a dict so the frozen task can fill it once its examples are known."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "registrar", JudgeRegistrar(self.settings))

    # --- settings the engine and the gepa runner read ---------------------------------

    @property
    def label(self) -> str:
        """``alignment``."""
        return "alignment"

    # --- the engine's steps -------------------------------------------------------------

    def create_run(
        self, status: str, *, findings: Sequence[Finding] | None, allow_concurrent: bool
    ) -> str:
        """An alignment run (:func:`core.optimization.engine.create_run`)."""
        from core.optimization.engine import create_run

        return create_run(
            self.settings, status=status, findings=findings, allow_concurrent=allow_concurrent
        )

    def load(
        self, findings: Sequence[Finding] | None = None
    ) -> tuple[list[Any], list[Any], list[Any], list[Finding]]:
        """The judge's labeled examples, split, after pre-flight
        (:func:`core.optimization.engine.load_and_check`)."""
        from core.optimization.dataset import example_precedence
        from core.optimization.engine import load_and_check

        loaded = load_and_check(self.settings, findings=findings)
        self.label_sources.clear()
        self.label_sources.update(example_precedence([*loaded[0], *loaded[1], *loaded[2]]))
        return loaded

    def example_id(self, example: Example) -> str:
        """The trace id."""
        return example.trace_id

    def budget(self, train_size: int) -> int:
        """See :meth:`AlignmentSettings.budget`."""
        return self.settings.budget(train_size)

    def runner(self) -> TaskRunner:
        """The judge runner (:data:`core.optimization.engine.RUNNERS`), given the settings."""
        from core.optimization.engine import resolve_runner

        run = self.judge_runner or resolve_runner(self.settings.optimizer)

        def run_judge(
            task: Any, train: list[Any], val: list[Any], recorder: RunRecorder
        ) -> AlignmentOutcome:
            return run(self.settings, train, val, recorder)

        return run_judge

    def endpoints(self) -> contextlib.AbstractContextManager[Any]:
        """Route the models MLflow builds from bare names to their base URL, for the run.

        MemAlign's reflection model and embedder (used while aligning and again when its
        judge is scored on the test split) take no base URL;
        :mod:`core.models.endpoints` points LiteLLM's OpenAI provider at it instead.
        Pre-flight has checked that they share one URL and that no other ``openai:/``
        model of the run lacks its own.
        """
        from core.models.endpoints import openai_base_url

        s = self.settings
        if s.optimizer != "memalign":
            return contextlib.nullcontext()
        return openai_base_url(s.embedding_base_url or s.reflection_base_url)

    # --- what the generic gepa runner needs ---------------------------------------------

    def seed_candidate(self) -> dict[str, str]:
        """``{"instructions": the seed judge's instructions}``."""
        return {COMPONENT: self.settings.judge.instructions}

    def make_adapter(self, train: list[Any], val: list[Any], state: Any) -> Any:
        """A :class:`JudgeAdapter` whose verdict cache starts from ``state``."""
        from core.optimization.gepa_adapter import JudgeAdapter
        from core.optimization.judging import JudgeEvaluator, VerdictCache

        spec = self.settings.judge
        cache = VerdictCache()
        cache.load_json(state or [])
        evaluator = JudgeEvaluator(spec, workers=self.settings.workers, cache=cache)
        return JudgeAdapter(
            spec,
            evaluator,
            val_ids={ex.trace_id for ex in val},
            value_range=_value_range(train + val, spec.value_type),
        )

    def guard_context(self) -> GuardContext:
        """The seed instructions: their template variables and the criterion's terms."""
        return GuardContext(self.seed_candidate())

    def artifact(self, candidate: Mapping[str, str]) -> Any:
        """The MLflow judge with the candidate's instructions."""
        from core.optimization.judging import build_judge

        return build_judge(self.settings.judge, candidate[COMPONENT])

    # --- held-out scores, result --------------------------------------------------------

    def score_held_out(
        self, outcome: AlignmentOutcome, test: list[Any], recorder: RunRecorder
    ) -> HeldOut:
        """Score the seed and the aligned judge on the test split against the human labels
        (one parallel round), record ``test_metrics.json`` and the test metrics, and decide
        the verdict."""
        scores = _score_on_test(self.settings, outcome, test, recorder, self.held_out_cache)
        metrics = {
            k: v
            for k, v in {
                "test_accuracy_before": _get(scores["before"], "accuracy"),
                "test_accuracy_after": _get(scores["after"], "accuracy"),
                "test_kappa_before": _get(scores["before"], "cohen_kappa"),
                "test_kappa_after": _get(scores["after"], "cohen_kappa"),
                "test_size": scores["n"],
            }.items()
            if v is not None
        }
        return HeldOut(
            verdict=scores["verdict"],
            n=scores["n"],
            failed=scores["failed"],
            metrics=metrics,
            details={"before": scores["before"], "after": scores["after"]},
        )

    def final_text(self, outcome: AlignmentOutcome) -> str:
        """The aligned judge's instructions."""
        return outcome.instructions or ""

    def result(
        self, summary: RunSummary, held_out: HeldOut, version: int | None, verdict: Verdict
    ) -> AlignmentResult:
        """The alignment's :class:`AlignmentResult` (``result.json``, the CLI's JSON)."""
        before = held_out.details.get("before")
        after = held_out.details.get("after")
        return AlignmentResult(
            run_id=summary.run_id,
            status=summary.status,
            optimizer=summary.optimizer,
            judge_name=self.settings.judge.name,
            judge_version=version,
            train_size=summary.train_size,
            val_size=summary.val_size,
            test_size=summary.test_size,
            metric_calls=summary.metric_calls,
            llm_calls=summary.llm_calls,
            iterations=summary.iterations,
            failed_examples=summary.failed_examples,
            test_accuracy_before=_get(before, "accuracy"),
            test_accuracy_after=_get(after, "accuracy"),
            test_kappa_before=_get(before, "cohen_kappa"),
            test_kappa_after=_get(after, "cohen_kappa"),
            wall_seconds=summary.wall_seconds,
            instructions=summary.final_text,
            tokens=summary.tokens,
            resumed=summary.resumed,
            test_before=before,
            test_after=after,
            warnings=summary.warnings,
            registered=version is not None,
            verdict=verdict.verdict,
            significant=verdict.significant,
            accuracy_diff=verdict.diff,
            accuracy_diff_ci=[verdict.diff_low, verdict.diff_high],
            verdict_text=describe(verdict),
            label_sources=dict(self.label_sources),
        )


def _value_range(examples: list[Example], value_type: str) -> float | None:
    if value_type != "numeric":
        return None
    values = [float(ex.label) for ex in examples if ex.label is not None]
    width = (max(values) - min(values)) if values else 0.0
    return width or None


def _get(report: Mapping[str, Any] | None, key: str) -> Any:
    return None if report is None else report.get(key)


def _score_on_test(
    settings: AlignmentSettings,
    outcome: AlignmentOutcome,
    test: list[Example],
    recorder: RunRecorder,
    cache: Any = None,
) -> dict[str, Any]:
    """Score the seed and the aligned judge on the held-out split and log the numbers
    (``cache``: a verdict cache to share, see :attr:`JudgeTask.held_out_cache`)."""
    from core.agreement import compare
    from core.optimization.judging import JudgeEvaluator

    out: dict[str, Any] = {"before": None, "after": None, "failed": 0, "n": len(test)}
    out["predictions"] = []
    if not test:
        out["note"] = "no labeled trace in test split"
        out["verdict"] = judge_verdict(None, None, [])
        record.write_test_metrics(recorder, _test_record(out))
        return out
    evaluator = JudgeEvaluator(settings.judge, workers=settings.workers, cache=cache)
    reference = {e.trace_id: e.label for e in test}
    aligned = outcome.judge if outcome.judge is not None else outcome.instructions
    metrics: dict[str, float] = {}
    same = same_as_seed(settings.judge, aligned)
    if same:
        # The search kept the seed: score it once and let its verdicts stand for both
        # (asking a sampling judge again would flip verdicts by chance alone).
        (seed_verdicts,) = evaluator.evaluate_many([(settings.judge.instructions, test)])
        rounds = [seed_verdicts, seed_verdicts]
    else:
        # One parallel round for both judges: half the wall time of two.
        rounds = evaluator.evaluate_many([(settings.judge.instructions, test), (aligned, test)])
    predicted_by: dict[str, dict[str, Any]] = {}
    reasons_by: dict[str, dict[str, str]] = {}
    for key, verdicts in zip(("before", "after"), rounds, strict=True):
        failed = sum(1 for v in verdicts if getattr(v, "error", None))
        out["failed"] += 0 if same and key == "after" else failed  # calls made, not rows shown
        predicted = {
            e.trace_id: (None if getattr(v, "error", None) else v.value)
            for e, v in zip(test, verdicts, strict=True)
        }
        predicted_by[key] = predicted
        # Kept with the verdicts so the Run explorer can say why a held-out example flipped;
        # a failed call keeps its (redacted) error instead.
        reasons_by[key] = {e.trace_id: _reason(v) for e, v in zip(test, verdicts, strict=True)}
        metrics[f"test_failed_{key}"] = failed
        try:
            report = compare(
                reference,
                predicted,
                settings.judge.value_type,
                seed=settings.seed,
                reference_name="human",
                predicted_name=f"{settings.judge.name} ({key})",
            ).to_dict()
        except ValidationError as exc:
            # e.g. every test call failed: the number is unknown, not zero.
            out[key] = None
            out[f"{key}_error"] = str(exc)
            continue
        out[key] = report
        metrics[f"test_accuracy_{key}"] = report["accuracy"]
        if report.get("cohen_kappa") is not None:
            metrics[f"test_kappa_{key}"] = report["cohen_kappa"]
        for name, ci_key in (("accuracy", "accuracy_ci"), ("kappa", "cohen_kappa_ci")):
            ci = report.get(ci_key) or {}
            if ci.get("low") is not None:
                metrics[f"test_{name}_{key}_ci_low"] = ci["low"]
                metrics[f"test_{name}_{key}_ci_high"] = ci["high"]
    # Failed judge attempts on the test split = these retries + the failed examples.
    metrics["test_judge_retries"] = evaluator.stats.retries
    evaluator.close()
    out["predictions"] = [
        record.Prediction(
            e.trace_id,
            e.label,
            predicted_by["before"][e.trace_id],
            predicted_by["after"][e.trace_id],
            seed_rationale=reasons_by["before"][e.trace_id],
            aligned_rationale=reasons_by["after"][e.trace_id],
            human_rationale=record.cap_rationale(e.rationale or ""),
        )
        for e in test
    ]
    out["verdict"] = judge_verdict(
        out["before"], out["after"], out["predictions"], seed=settings.seed, same_as_seed=same
    )
    record.write_test_metrics(recorder, _test_record(out))
    recorder.log_metrics(metrics, step=outcome.iterations)
    return out


def same_as_seed(seed: JudgeSpec, aligned: Any) -> bool:
    """Whether the aligned judge (instructions or an MLflow judge) is the seed itself: the
    same instructions on the same model, with nothing else to it (a MemAlign judge's
    memory makes it another judge even with the seed's instructions)."""
    if isinstance(aligned, str):
        return aligned == seed.instructions
    from mlflow.genai.judges.instructions_judge import InstructionsJudge

    from core.models.uris import parse_model

    return (
        type(aligned) is InstructionsJudge
        and aligned.instructions == seed.instructions
        and aligned.model == parse_model(seed.model, seed.base_url).uri
    )


def _reason(verdict: Any) -> str:
    """A verdict's rationale for the record ("" when the judge gave none; the error of a
    failed call), capped at :data:`record.RATIONALE_CHARS`."""
    error = getattr(verdict, "error", None)
    text = error if error else getattr(verdict, "rationale", None)
    return record.cap_rationale(text or "") or ""


def _test_record(out: dict[str, Any]) -> record.TestMetrics:
    verdict = out.get("verdict")
    return record.TestMetrics(
        n=out["n"],
        before=out["before"],
        after=out["after"],
        failed=out["failed"],
        predictions=tuple(out["predictions"]),
        verdict=verdict.to_dict() if verdict is not None else None,
        note=out.get("note"),
        before_error=out.get("before_error"),
        after_error=out.get("after_error"),
    )
