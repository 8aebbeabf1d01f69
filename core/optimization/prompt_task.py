"""Prompt optimization as the engine's second task (:mod:`core.optimization.task`).

A candidate is the application's prompt template(s), one component per registered prompt
(``{"northwind-support": "...{{ message }}..."}``); an example is a dataset row
(:class:`core.io.prompt_data.DatasetRow`). Evaluating a candidate on a row renders the
template with the row's values, calls the application model and scores the reply with the
run's judges and scorers (:class:`core.optimization.prompt_eval.PromptEvaluator`); the
score is their aggregation in [0, 1]. The reflection model reads each row's input, the
application's output, every judge's verdict **and rationale**, and any human label
already given on that very output (:class:`PromptAdapter`).

On the held-out split the seed and the best prompt are scored with the same scorers in one
round: mean score with a bootstrap 95% interval per scorer, both outputs of every test
row kept in the record (``TestMetrics.outputs``), and the verdict
(:func:`core.optimization.verdict.score_verdict`). A finished run registers the best
template as a new version of the same prompt in the MLflow Prompt Registry, tagged with
the run, the judge versions and the test scores, under the user's alias (default
``candidate``; promotion to ``production`` is a separate action) (:class:`PromptRegistrar`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from core.errors import ValidationError
from core.io.prompt_data import DatasetRow
from core.optimization import record
from core.optimization import recorder as rec
from core.optimization.preflight import Finding
from core.optimization.prompt_eval import PromptEvaluator, RowResult, Scorer, build_scorers
from core.optimization.prompt_spec import COMPARE, PROMPT, PromptSettings
from core.optimization.spec import AlignmentOutcome, RunRecorder
from core.optimization.task import (
    BaseTaskAdapter,
    GuardContext,
    HeldOut,
    RunSummary,
    SettingsBacked,
    TaskRunner,
    TextCheck,
)
from core.optimization.verdict import Verdict, describe, score_verdict

log = logging.getLogger(__name__)

#: Run kind tag value of a prompt optimization (alignment runs: ``alignment``).
KIND_PROMPT = "prompt_optimization"
#: Run tag naming the optimized prompt.
TAG_PROMPT = rec.TAG_PREFIX + "prompt"
#: Run tag with the registered prompt version.
TAG_PROMPT_VERSION = rec.TAG_PREFIX + "prompt_version"
#: Tags a registered prompt version carries.
VERSION_TAG_RUN = "alignboard.run_id"
VERSION_TAG_JUDGES = "alignboard.judges"
VERSION_TAG_BASE = "alignboard.base_version"
VERSION_TAG_BEFORE = "alignboard.test_score_before"
VERSION_TAG_AFTER = "alignboard.test_score_after"
VERSION_TAG_OPTIMIZER = "alignboard.optimizer"
#: Fewer characters of prose than this (variables aside) is not a prompt.
_MIN_PROSE_CHARS = 20
_VARIABLE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


def run_name(settings: PromptSettings) -> str:
    """A readable run name: ``optimize-<prompt>-<optimizer>-<YYYYmmdd-HHMMSS>``."""
    from datetime import datetime

    return f"optimize-{settings.prompt.name}-{settings.optimizer}-{datetime.now():%Y%m%d-%H%M%S}"


def create_prompt_run(
    settings: PromptSettings, status: str = "queued", *, findings: Sequence[Finding] | None = None
) -> str:
    """Create the MLflow run of a prompt optimization: tags, params, settings, findings.

    Several optimizations of one prompt may run at once (unlike alignments of one judge,
    nothing they register collides: each gets its own version).

    Returns:
        The new run id.
    """
    from mlflow import MlflowClient

    from core.optimization.engine import record_launch
    from core.store import config

    config.configure()
    client = MlflowClient()
    run = rec.with_retry(
        client.create_run,
        settings.experiment_id,
        run_name=run_name(settings),
        tags={
            rec.TAG_KIND: KIND_PROMPT,
            rec.TAG_STATUS: status,
            rec.TAG_OPTIMIZER: settings.optimizer,
            TAG_PROMPT: settings.prompt.name,
            # The judge tag names the (first) scoring judge, so run lists filter alike.
            rec.TAG_JUDGE: settings.judges[0].name if settings.judges else "",
        },
    )
    run_id = run.info.run_id
    record_launch(client, run_id, settings, status, findings)
    return run_id


# --- the adapter ------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptTrajectory:
    """What the adapter keeps of one row's evaluation, for the reflective dataset."""

    row: DatasetRow
    result: RowResult
    check: TextCheck


def check_prompt(text: str, required: Sequence[str], known: Sequence[str]) -> TextCheck:
    """Repair or reject a proposed template whose variables are wrong.

    A variable the seed used and the proposal dropped is re-appended on a line of its own
    (the application would otherwise never see that input); a variable no seed prompt
    uses is removed (nothing could fill it); a proposal with no prose left is rejected.
    """
    invented: list[str] = []

    def keep(m: re.Match[str]) -> str:
        name = m.group(1).strip()
        if name in known:
            return "{{ " + name + " }}"
        invented.append(name)
        return ""

    fixed = _VARIABLE.sub(keep, text)
    present = {m.group(1).strip() for m in _VARIABLE.finditer(fixed)}
    missing = [v for v in required if v not in present]
    if len(re.sub(r"\s+", "", _VARIABLE.sub("", fixed))) < _MIN_PROSE_CHARS:
        return TextCheck("rejected", text, "Rejected: the prompt has no text besides variables.")
    if missing:
        fixed = fixed.rstrip() + "\n\n" + "\n".join(f"{v}: {{{{ {v} }}}}" for v in missing)
    if not missing and not invented:
        return TextCheck("ok", text)
    parts = []
    if missing:
        parts.append(f"re-appended dropped variable(s) {', '.join(missing)}")
    if invented:
        parts.append(f"removed unknown variable(s) {', '.join(invented)}")
    return TextCheck("repaired", fixed, "Repaired: " + "; ".join(parts) + ".")


class PromptAdapter(BaseTaskAdapter):
    """gepa's adapter for application prompts (see the module docstring)."""

    def __init__(
        self,
        evaluator: PromptEvaluator,
        seed: Mapping[str, str],
        *,
        val_ids: set[str] | frozenset[str] = frozenset(),
        human: Mapping[tuple[str, str], tuple[Any, str | None]] | None = None,
    ) -> None:
        """Create the adapter.

        Args:
            evaluator: Renders, calls the application and scores (cached).
            seed: The seed candidate (its variables must survive every proposal).
            val_ids: Validation row ids, to tell validation rounds from minibatch ones.
            human: (row id, output sha) -> (label, rationale) of human labels already given
                on exactly that output (sent to reviewers earlier).
        """
        from core.store.prompts import template_variables

        super().__init__()
        self.evaluator = evaluator
        self.seed = dict(seed)
        self.first = next(iter(self.seed))
        self.required = template_variables(self.seed[self.first])
        self.known = sorted({v for t in self.seed.values() for v in template_variables(t)})
        self.val_ids = set(val_ids)
        self.human = dict(human or {})
        self.checks: dict[str, TextCheck] = {}
        self.failed: set[str] = set()

    def check(self, text: str) -> TextCheck:
        """The (remembered) variable check of a proposed template (first component)."""
        with self._lock:
            if text not in self.checks:
                self.checks[text] = check_prompt(text, self.required, self.known)
            return self.checks[text]

    def _checked(self, candidate: Mapping[str, str]) -> tuple[dict[str, str], TextCheck]:
        fixed = dict(candidate)
        check = self.check(fixed[self.first])
        fixed[self.first] = check.text
        return fixed, check

    def batch_evaluate(self, items: list[tuple[dict[str, str], list[DatasetRow]]]) -> list[Any]:
        """Evaluate several (candidate, rows) pairs as one parallel round."""
        from gepa.core.adapter import EvaluationBatch

        started = time.monotonic()
        checked = [self._checked(c) for c, _ in items]
        live = [i for i, (_, check) in enumerate(checked) if check.status != "rejected"]
        calls_before = self.evaluator.stats.app_calls
        results = dict(
            zip(
                live,
                self.evaluator.evaluate([(checked[i][0], items[i][1]) for i in live]),
                strict=True,
            )
        )
        ids = {r.id for _, rows in items for r in rows}
        self.note_round(
            {
                "kind": "val_eval" if ids and ids <= self.val_ids else "minibatch_eval",
                "pairs": sum(len(rows) for _, rows in items),
                "calls": self.evaluator.stats.app_calls - calls_before,
                "depth": 2 if self.evaluator.stats.app_calls > calls_before else 0,
                "seconds": time.monotonic() - started,
            }
        )
        out = []
        names = [s.name for s in self.evaluator.scorers]
        for i, (_, rows) in enumerate(items):
            check = checked[i][1]
            rs = results.get(i) or [
                RowResult(r.id, None, 0.0, error=check.note or "rejected") for r in rows
            ]
            with self._lock:
                self.failed |= {r.row_id for r in rs if r.error}
            out.append(
                EvaluationBatch(
                    outputs=rs,
                    scores=[r.score for r in rs],
                    trajectories=[
                        PromptTrajectory(row, r, check) for row, r in zip(rows, rs, strict=True)
                    ],
                    objective_scores=(
                        [{n: (r.scores.get(n) or 0.0) for n in names} for r in rs]
                        if len(names) > 1
                        else None
                    ),
                )
            )
        return out

    def evaluate(
        self, batch: list[DatasetRow], candidate: dict[str, str], capture_traces: bool = False
    ) -> Any:
        """Render, call the application and score ``candidate`` on ``batch``."""
        return self.batch_evaluate([(candidate, batch)])[0]

    def make_reflective_dataset(
        self, candidate: dict[str, str], eval_batch: Any, components_to_update: list[str]
    ) -> Mapping[str, Sequence[Mapping[str, Any]]]:
        """One record per row: the inputs, the application's output, and feedback with
        every scorer's verdict and rationale and any human label on that output."""
        from core.optimization.prompt_eval import text_sha

        records = []
        for t in eval_batch.trajectories or []:
            r: RowResult = t.result
            inputs = "\n".join(f"{k}: {v}" for k, v in r.values.items())
            lines = [f"Score: {r.score:.2f}"]
            if t.check.status != "ok":
                lines.insert(0, t.check.note)
            if r.error:
                lines.append(f"The application call failed: {r.error}")
            for name, v in r.verdicts.items():
                if v.skipped:
                    continue
                lines.append(f"Judge: {name}")
                if v.error:
                    lines.append(f"Judge verdict: (failed: {v.error})")
                    continue
                lines.append(f"Judge verdict: {_render(v.value)}")
                lines.append(f"Judge rationale: {_one_line(v.rationale)}")
            human = self.human.get((r.row_id, text_sha(r.output or "")))
            if human is not None:
                lines.append(f"Human label: {_render(human[0])}")
                lines.append(f"Human rationale: {_one_line(human[1])}")
            records.append(
                {
                    "Inputs": inputs,
                    "Application output": r.output or "(no output)",
                    "Feedback": "\n".join(lines),
                }
            )
        return {name: records for name in components_to_update}

    def metrics(self) -> dict[str, float]:
        """The evaluator's counters (application calls, cache hits, failures)."""
        return self.evaluator.metrics()

    def state(self) -> Any:
        """Outputs and verdicts so far (a resumed run pays for none of them again)."""
        return self.evaluator.state()

    def failed_examples(self) -> int:
        """Rows whose application call failed."""
        return len(self.failed)

    def outcome_extra(self) -> dict[str, Any]:
        """Evaluation totals."""
        return {"evaluation": self.evaluator.metrics()}

    def close(self) -> None:
        """Stop the evaluator's workers."""
        self.evaluator.close()


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "pass" if value else "fail"
    return "(none)" if value is None else str(value)


def _one_line(text: str | None) -> str:
    return " ".join(str(text or "(none)").split())


# --- the result -------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptResult:
    """What one prompt optimization did (``result.json``; ``alignboard optimize --json``)."""

    run_id: str
    status: str
    optimizer: str
    prompt_name: str
    """The optimized prompt (the first, when several were optimized together)."""
    base_version: int
    """The version the run started from."""
    prompt_version: int | None
    """The new version registered (None when nothing was)."""
    alias: str | None
    """The alias the new version got."""
    train_size: int
    val_size: int
    test_size: int
    metric_calls: int
    llm_calls: int
    iterations: int
    failed_examples: int
    test_score_before: float | None
    """The seed prompt's mean held-out score in [0, 1] (all scorers aggregated)."""
    test_score_after: float | None
    """The best prompt's."""
    test_scores: dict[str, dict[str, Any]]
    """Scorer name -> ``{before, after, before_ci, after_ci, n}``."""
    wall_seconds: float
    template: str
    """The best prompt's template (first component)."""
    templates: dict[str, str] = field(default_factory=dict)
    """Every component of the best candidate (prompt name -> template)."""
    registered_versions: dict[str, int] = field(default_factory=dict)
    """Prompt name -> new version, for every prompt registered."""
    judges: list[str] = field(default_factory=list)
    """The judge versions that scored (``name@version``)."""
    compared_version: int | None = None
    """A comparison's other version (``before`` is ``base_version``, ``after`` this)."""
    tokens: int | None = None
    resumed: bool = False
    warnings: list[dict[str, str]] = field(default_factory=list)
    registered: bool = False
    verdict: str | None = None
    significant: bool | None = None
    score_diff: float | None = None
    score_diff_ci: list[float | None] = field(default_factory=list)
    verdict_text: str = ""
    kind: str = PROMPT
    stop_reason: str | None = None
    """Why the search stopped (:mod:`core.optimization.stopping`); None when not said."""
    stop_detail: str | None = None
    """``stop_reason`` in words."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


# --- the task ---------------------------------------------------------------------------


@dataclass
class PromptTask(SettingsBacked):
    """Optimize the application's registered prompt(s) against the chosen judges."""

    settings: PromptSettings
    """What to optimize and how."""
    task_runner: TaskRunner | None = None
    """A runner to use instead of the optimizer's own (tests)."""
    kind: str = field(default=PROMPT, init=False)
    """Always ``prompt``."""
    registrar: PromptRegistrar = field(init=False)
    """Registers the best prompt in the Prompt Registry."""
    _seed: dict[str, str] | None = field(default=None, init=False, repr=False)
    _scorers: list[Scorer] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.registrar = PromptRegistrar(self.settings, self)

    # --- settings the engine and the gepa runner read ---------------------------------

    @property
    def label(self) -> str:
        """``prompt optimization``."""
        return "prompt optimization"

    @property
    def stop_at_score(self) -> float | None:
        """The validation score at which the gepa search stops (None: spend the budget)."""
        return self.settings.stop_at_score

    @property
    def frontier_type(self) -> str:
        """gepa's frontier: per row, and per scorer too when there are several."""
        n = len(self.settings.judges) + len(self.settings.scorers)
        return "hybrid" if n > 1 else "instance"

    # --- the engine's steps -----------------------------------------------------------

    def create_run(
        self, status: str, *, findings: Sequence[Finding] | None, allow_concurrent: bool
    ) -> str:
        """A prompt optimization run (:func:`create_prompt_run`)."""
        return create_prompt_run(self.settings, status, findings=findings)

    def load(
        self, findings: Sequence[Finding] | None = None
    ) -> tuple[list[Any], list[Any], list[Any], list[Finding]]:
        """The dataset rows, split, after pre-flight (unless ``findings`` are given)."""
        from core.io.prompt_data import split_rows
        from core.optimization.preflight import refuse_on_errors
        from core.optimization.prompt_preflight import load_rows_for, preflight_prompt

        if findings is None:
            rows, found = preflight_prompt(self.settings)
        else:
            rows, found = load_rows_for(self.settings), list(findings)
        refuse_on_errors(found, "Prompt optimization")
        train, val, test = split_rows(rows)
        return list(train), list(val), list(test), found

    def example_id(self, example: DatasetRow) -> str:
        """The row id."""
        return example.id

    def budget(self, train_size: int) -> int:
        """See :meth:`PromptSettings.budget`."""
        return self.settings.budget(train_size)

    def runner(self) -> TaskRunner:
        """The optimizer's task runner (:data:`PROMPT_RUNNERS`)."""
        import importlib

        if self.task_runner is not None:
            return self.task_runner
        if self.optimizer not in PROMPT_RUNNERS:
            raise ValidationError(
                f"The {self.optimizer} optimizer does not optimize prompts; choose one of "
                f"{', '.join(PROMPT_RUNNERS)}."
            )
        module, name = PROMPT_RUNNERS[self.optimizer]
        run: TaskRunner = getattr(importlib.import_module(module), name)
        return run

    def endpoints(self) -> contextlib.AbstractContextManager[Any]:
        """Nothing to route: every model of the run carries its own base URL."""
        return contextlib.nullcontext()

    # --- what the gepa runner needs ---------------------------------------------------

    def seed_candidate(self) -> dict[str, str]:
        """``{prompt name: its template}`` for every prompt, at the resolved versions."""
        if self._seed is None:
            from core.store.prompts import PromptRef, load_prompt

            seed = {}
            for p in self.settings.prompts:
                info = load_prompt(PromptRef(p.name, version=p.version))
                seed[p.name] = info.text()
            self._seed = seed
        return dict(self._seed)

    def scorers(self) -> list[Scorer]:
        """The run's scorers (loaded once)."""
        if self._scorers is None:
            self._scorers = build_scorers(self.settings)
        return list(self._scorers)

    def variables(self) -> list[str]:
        """Every template variable of the seed prompts, in order of first appearance."""
        from core.store.prompts import template_variables

        out: list[str] = []
        for text in self.seed_candidate().values():
            out += [v for v in template_variables(text) if v not in out]
        return out

    def make_evaluator(
        self, state: Mapping[str, Any] | None = None, *, cache_verdicts: bool = True
    ) -> PromptEvaluator:
        """A fresh evaluator for this run's scorers (see :class:`PromptEvaluator`)."""
        return PromptEvaluator(
            self.settings,
            self.scorers(),
            variables=self.variables(),
            state=state or None,
            cache_verdicts=cache_verdicts,
        )

    def make_adapter(self, train: list[Any], val: list[Any], state: Any) -> PromptAdapter:
        """A :class:`PromptAdapter` whose caches start from ``state``."""
        from core.optimization.prompt_review import human_labels_on_outputs

        human = human_labels_on_outputs(
            self.settings.experiment_id, [j.name for j in self.settings.judges]
        )
        return PromptAdapter(
            self.make_evaluator(state if isinstance(state, Mapping) else None),
            self.seed_candidate(),
            val_ids={r.id for r in val},
            human=human,
        )

    def guard_context(self) -> GuardContext:
        """The seed templates: their variables and key terms must survive."""
        return GuardContext(self.seed_candidate())

    def artifact(self, candidate: Mapping[str, str]) -> Any:
        """The candidate's templates (what the application runs)."""
        return dict(candidate)

    # --- held-out scores, result ------------------------------------------------------

    def best(self, outcome: AlignmentOutcome) -> dict[str, str]:
        """The best candidate's components (the seed's for components it lacks)."""
        seed = self.seed_candidate()
        got = dict(outcome.candidate or {})
        if not got and outcome.instructions:
            got = {next(iter(seed)): outcome.instructions}
        return {k: got.get(k, v) for k, v in seed.items()}

    def score_held_out(
        self, outcome: AlignmentOutcome, test: list[Any], recorder: RunRecorder
    ) -> HeldOut:
        """Score the seed and the best prompt on the test rows (one round), record both
        outputs of every row and the scores, and decide the verdict."""
        seed, best = self.seed_candidate(), self.best(outcome)
        tm, verdict, metrics = score_prompts(self, seed, best, test, recorder, outcome.iterations)
        return HeldOut(
            verdict=verdict,
            n=len(test),
            failed=sum(1 for o in tm.outputs if o.before is None or o.after is None),
            metrics=metrics,
            details={"scores": dict(tm.scores)},
        )

    def final_text(self, outcome: AlignmentOutcome) -> str:
        """The best prompt's template (first component)."""
        best = self.best(outcome)
        return best[next(iter(best))]

    def result(
        self, summary: RunSummary, held_out: HeldOut, version: int | None, verdict: Verdict
    ) -> PromptResult:
        """The run's :class:`PromptResult`."""
        scores = dict(held_out.details.get("scores") or {})
        overall = scores.get("overall") or {}
        s = self.settings
        return PromptResult(
            run_id=summary.run_id,
            status=summary.status,
            optimizer=summary.optimizer,
            prompt_name=s.prompt.name,
            base_version=s.prompt.version,
            prompt_version=version,
            alias=s.alias if version is not None else None,
            train_size=summary.train_size,
            val_size=summary.val_size,
            test_size=summary.test_size,
            metric_calls=summary.metric_calls,
            llm_calls=summary.llm_calls,
            iterations=summary.iterations,
            failed_examples=summary.failed_examples,
            test_score_before=overall.get("before"),
            test_score_after=overall.get("after"),
            test_scores={k: v for k, v in scores.items() if k != "overall"},
            wall_seconds=summary.wall_seconds,
            template=summary.final_text,
            templates=dict(self.registrar.last_templates),
            registered_versions=dict(self.registrar.last_versions),
            judges=[f"{j.name}@{j.version}" for j in s.judges],
            compared_version=s.compare_version,
            tokens=summary.tokens,
            resumed=summary.resumed,
            warnings=summary.warnings,
            registered=version is not None,
            verdict=verdict.verdict,
            significant=verdict.significant,
            score_diff=verdict.diff,
            score_diff_ci=[verdict.diff_low, verdict.diff_high],
            verdict_text=describe(verdict),
        )


def mean_ci(values: Sequence[float], seed: int = 0) -> dict[str, Any]:
    """Mean of per-row scores with a bootstrap 95% interval."""
    from core.agreement.bootstrap import bootstrap_stat, mean_stat

    if not values:
        return {"mean": None, "ci": [None, None], "n": 0}
    x = np.asarray(values, dtype=np.float64)
    ci = bootstrap_stat(
        mean_stat(x), len(x), estimate=float(x.mean()), n=2000, alpha=0.05, seed=seed
    )
    return {"mean": float(x.mean()), "ci": [ci.low, ci.high], "n": len(x)}


def score_prompts(
    task: PromptTask,
    seed: Mapping[str, str],
    best: Mapping[str, str],
    test: Sequence[DatasetRow],
    recorder: RunRecorder | None,
    step: int = 0,
) -> tuple[record.TestMetrics, Verdict, dict[str, float]]:
    """Score two prompts on the same rows in one round; record and return the comparison.

    Used by every prompt optimizer's held-out step (and by the Versions page's on-demand
    comparison of two prompt versions).

    Returns:
        ``(test metrics record, verdict, scalar metrics)``.
    """
    evaluator = task.make_evaluator()
    same = dict(seed) == dict(best)
    try:
        if same:
            # The best prompt is the seed: one set of outputs for both (a sampling model
            # asked twice would differ by chance alone, see verdict.Verdict.same_as_seed).
            (before,) = evaluator.evaluate([(seed, list(test))])
            after = before
        else:
            before, after = evaluator.evaluate([(seed, list(test)), (best, list(test))])
    finally:
        evaluator.close()
    names = [s.name for s in evaluator.scorers]
    s = task.settings
    scores: dict[str, dict[str, Any]] = {}
    for name in [*names, "overall"]:
        pb, pa = [], []
        for b, a in zip(before, after, strict=True):
            if name == "overall":
                # A failed application call scores 0: an app that cannot answer is not good.
                pb.append(b.score)
                pa.append(a.score)
                continue
            vb, va = b.scores.get(name), a.scores.get(name)
            if vb is not None and va is not None:
                pb.append(vb)
                pa.append(va)
        mb, ma = mean_ci(pb, s.seed), mean_ci(pa, s.seed)
        scores[name] = {
            "before": mb["mean"],
            "after": ma["mean"],
            "before_ci": mb["ci"],
            "after_ci": ma["ci"],
            "n": len(pb),
        }
    verdict = score_verdict(
        [b.score for b in before], [a.score for a in after], seed=s.seed, same_as_seed=same
    )
    outputs = tuple(
        record.TestOutput(
            row_id=b.row_id,
            values=dict(b.values),
            before=b.output,
            after=a.output,
            before_score=b.score if b.output is not None else None,
            after_score=a.score if a.output is not None else None,
            before_verdicts={k: v.to_dict() for k, v in b.verdicts.items()},
            after_verdicts={k: v.to_dict() for k, v in a.verdicts.items()},
        )
        for b, a in zip(before, after, strict=True)
    )
    tm = record.TestMetrics(
        n=len(test),
        failed=sum(1 for o in outputs if o.before is None or o.after is None),
        verdict=verdict.to_dict(),
        note=None if test else "no row in the test split",
        outputs=outputs,
        scores=scores,
    )
    metrics: dict[str, float] = {"test_size": float(len(test))}
    for key, label in (("before", "before"), ("after", "after")):
        v = scores["overall"][key]
        if v is not None:
            metrics[f"test_score_{label}"] = float(v)
    for i, name in enumerate(names):
        for key in ("before", "after"):
            v = scores[name][key]
            if v is not None:
                metrics[f"test_score_{i}_{key}"] = float(v)
    if recorder is not None:
        record.write_test_metrics(recorder, tm)
        recorder.log_metrics(metrics, step=step)
    return tm, verdict, metrics


# --- registration -----------------------------------------------------------------------


class PromptRegistrar:
    """The prompt task's :class:`core.optimization.task.Registrar`: every changed component
    becomes a new version of its prompt, tagged, with the user's alias."""

    def __init__(self, settings: PromptSettings, task: PromptTask) -> None:
        self.settings = settings
        self.task = task
        self.last_versions: dict[str, int] = {}
        self.last_templates: dict[str, str] = {}

    def register(
        self,
        outcome: AlignmentOutcome,
        *,
        recorder: RunRecorder,
        verdict: Verdict,
        test_metrics: Mapping[str, float],
    ) -> int | None:
        """Register the best prompt(s); return the first prompt's new version (None when no
        template changed: an identical version would only add noise to the registry)."""
        from core.optimization import alias_history
        from core.store.prompts import register_prompt

        s = self.settings
        seed, best = self.task.seed_candidate(), self.task.best(outcome)
        self.last_templates = dict(best)
        if s.optimizer == COMPARE:
            return None  # both versions exist already
        tags = {
            VERSION_TAG_RUN: recorder.run_id,
            VERSION_TAG_OPTIMIZER: s.optimizer,
            VERSION_TAG_JUDGES: ",".join(f"{j.name}@{j.version}" for j in s.judges) or "none",
        }
        for key, tag in (
            ("test_score_before", VERSION_TAG_BEFORE),
            ("test_score_after", VERSION_TAG_AFTER),
        ):
            if key in test_metrics:
                tags[tag] = f"{test_metrics[key]:.4f}"
        first: int | None = None
        for p in s.prompts:
            if best[p.name] == seed[p.name]:
                continue
            info = register_prompt(
                p.name,
                best[p.name],
                commit_message=(
                    f"alignboard {s.optimizer} run {recorder.run_id}: held-out judge score "
                    f"{tags.get(VERSION_TAG_BEFORE, '?')} -> {tags.get(VERSION_TAG_AFTER, '?')}"
                ),
                tags={**tags, VERSION_TAG_BASE: str(p.version)},
            )
            if s.alias:
                # Through the alias history, so the Versions page and the CLI can roll back.
                alias_history.set_prompt_alias(
                    s.experiment_id,
                    p.name,
                    s.alias,
                    info.version,
                    who=f"alignboard (run {recorder.run_id})",
                    run_id=recorder.run_id,
                )
            self.last_versions[p.name] = info.version
            if p.name == s.prompt.name:
                first = info.version
        if first is not None and hasattr(recorder, "set_tags"):
            recorder.set_tags({TAG_PROMPT_VERSION: first})
        else:
            log.info("run %s: the best prompt is the seed; nothing registered", recorder.run_id)
        return first


#: Where each prompt optimizer's task runner lives (imported on use).
PROMPT_RUNNERS: dict[str, tuple[str, str]] = {
    "gepa": ("core.optimization.runners.gepa", "run_task"),
    "mlflow-gepa": ("core.optimization.runners.mlflow_prompts", "run_mlflow_gepa"),
    "metaprompt": ("core.optimization.runners.mlflow_prompts", "run_metaprompt"),
    COMPARE: ("core.optimization.runners.prompt_compare", "run_compare"),
}
