"""One alignment, start to finish, recorded in an MLflow run.

:func:`run_alignment` loads the labeled examples, runs the pre-flight checks, runs the
chosen optimizer on train/val only (the optimizer never sees the test split), scores the
seed and the aligned judge on the test split, registers the aligned judge as a new
version, and records all of it in the run. It runs in whatever process calls it: the job
process started by :func:`core.optimization.jobs.launch`, or ``alignboard align`` in the
foreground.

Per-example failures are data (counted in metrics); a systemic failure (bad key, crash)
marks the run ``failed`` with a redacted ``alignboard.error`` and is re-raised.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from mlflow import MlflowClient

from core.errors import NotFoundError, ValidationError
from core.models.secrets import redact
from core.optimization import record
from core.optimization import recorder as rec
from core.optimization.preflight import Finding, errors_of, findings_from_dicts
from core.optimization.record import AlignmentResult
from core.optimization.spec import AlignmentOutcome, AlignmentSettings, Example, Runner
from core.optimization.verdict import Verdict, describe, judge_verdict
from core.store import config

log = logging.getLogger(__name__)

#: Where each optimizer's runner lives (imported on use: each pulls in heavy libraries).
RUNNERS: dict[str, tuple[str, str]] = {
    "gepa": ("core.optimization.runners.gepa", "run"),
    "memalign": ("core.optimization.runners.memalign", "run"),
    "mlflow-gepa": ("core.optimization.runners.mlflow_baselines", "run_mlflow_gepa"),
    "simba": ("core.optimization.runners.mlflow_baselines", "run_simba"),
}


def run_name(settings: AlignmentSettings) -> str:
    """A readable run name: ``align-<judge>-<optimizer>-<YYYYmmdd-HHMMSS>``."""
    return f"align-{settings.judge.name}-{settings.optimizer}-{datetime.now():%Y%m%d-%H%M%S}"


#: Set on a run whose pre-flight findings were recorded when it was created (the launch's
#: own check), so its job process does not run pre-flight again.
TAG_PREFLIGHT = rec.TAG_PREFIX + "preflight"
_PREFLIGHT_ARTIFACT = "preflight.json"


def create_run(
    settings: AlignmentSettings,
    status: str = "queued",
    *,
    findings: Sequence[Finding] | None = None,
    allow_concurrent: bool = True,
) -> str:
    """Create the MLflow run of an alignment: tags, params and the settings artifact.

    Args:
        settings: What the run aligns.
        status: Its first status.
        findings: The pre-flight findings of this launch, recorded with the run so its job
            process does not check again; None leaves pre-flight to the job.
        allow_concurrent: False refuses when a run for the same experiment and judge is
            queued or running (see :func:`core.optimization.jobs.refuse_if_active`).

    Returns:
        The new run id.

    Raises:
        ValidationError: another run for this judge is active and ``allow_concurrent`` is
            False (nothing is left behind).
    """
    config.configure()
    client = MlflowClient()
    if not allow_concurrent:
        from core.optimization.jobs import refuse_if_active

        refuse_if_active(settings.experiment_id, settings.judge.name)
    run = rec.with_retry(
        client.create_run,
        settings.experiment_id,
        run_name=run_name(settings),
        tags={
            rec.TAG_KIND: rec.KIND_ALIGNMENT,
            rec.TAG_STATUS: status,
            rec.TAG_OPTIMIZER: settings.optimizer,
            rec.TAG_JUDGE: settings.judge.name,
        },
    )
    run_id = run.info.run_id
    if not allow_concurrent:
        from core.optimization.jobs import refuse_if_active

        try:
            # Checked again once written: of two launches that raced past the first
            # check, at least the later one sees the other and backs out.
            refuse_if_active(settings.experiment_id, settings.judge.name, created=run)
        except ValidationError:
            rec.with_retry(client.delete_run, run_id)
            raise
    recorder = rec.MlflowRunRecorder(run_id, client)
    recorder.log_params(settings.to_params())
    recorder.log_text(rec.SETTINGS_ARTIFACT, settings.to_json())
    if findings is not None:
        recorder.log_json(_PREFLIGHT_ARTIFACT, {"findings": [f.to_dict() for f in findings]})
        recorder.set_tags({TAG_PREFLIGHT: f"{time.time():.3f}"})
    rec.set_status(client, run_id, status)
    return run_id


def recorded_findings(client: MlflowClient, run_id: str) -> list[Finding] | None:
    """The pre-flight findings :func:`create_run` recorded for this launch, or None."""
    import json

    run = client.get_run(run_id)
    if not run.data.tags.get(TAG_PREFLIGHT):
        return None
    text = rec.read_artifact_text(client, run_id, _PREFLIGHT_ARTIFACT)
    if not text:
        return None
    return findings_from_dicts(json.loads(text).get("findings") or [])


def load_settings(run_id: str) -> AlignmentSettings:
    """Read back the settings an alignment run was created with.

    Raises:
        NotFoundError: no such run, or it is not an alignment run.
    """
    import json

    config.configure()
    client = MlflowClient()
    try:
        client.get_run(run_id)
    except Exception as exc:
        raise NotFoundError(f"No run with id {run_id!r} in {config.tracking_uri()}.") from exc
    text = rec.read_artifact_text(client, run_id, rec.SETTINGS_ARTIFACT)
    if not text:
        raise NotFoundError(
            f"Run {run_id} has no {rec.SETTINGS_ARTIFACT}: it is not an alignboard alignment."
        )
    return AlignmentSettings.from_dict(json.loads(text))


def resolve_runner(optimizer: str) -> Runner:
    """Import the runner of ``optimizer``."""
    if optimizer not in RUNNERS:
        raise ValidationError(
            f"Unknown optimizer {optimizer!r}; choose one of {', '.join(RUNNERS)}."
        )
    module, name = RUNNERS[optimizer]
    return getattr(importlib.import_module(module), name)


def load_and_check(
    settings: AlignmentSettings, *, findings: Sequence[Finding] | None = None
) -> tuple[list[Example], list[Example], list[Example], list[Finding]]:
    """Load the judge's labeled examples, split them, and run the pre-flight checks.

    Args:
        settings: The alignment.
        findings: Pre-flight findings this launch already has (the page's or the CLI's
            check): pre-flight is not run again, only the examples are loaded. A job
            process gets them from its run; it still loads the examples itself, since
            they cannot be handed across processes cheaply (trace spans, several MB).

    Returns:
        ``(train, val, test, findings)``.

    Raises:
        ValidationError: a pre-flight error; the message lists every one.
    """
    from core.optimization import dataset
    from core.optimization.preflight import load_and_preflight

    if findings is None:
        examples, found = load_and_preflight(settings)
    else:
        examples = dataset.load_examples(
            settings.experiment_id, settings.judge.name, settings.reviewers
        )
        found = list(findings)
    errors = errors_of(found)
    if errors:
        raise ValidationError(
            "Alignment refused before spending anything:\n"
            + "\n".join(f"- {f.message}" for f in errors)
        )
    train, val, test = dataset.split_examples(examples)
    return list(train), list(val), list(test), found


def run_alignment(
    settings: AlignmentSettings,
    *,
    run_id: str | None = None,
    resume: bool = False,
    runner: Runner | None = None,
    allow_concurrent: bool = True,
) -> AlignmentResult:
    """Run one alignment in this process and record it in MLflow.

    Args:
        settings: What to align and how.
        run_id: An existing run to record into (created by :func:`create_run`, e.g. by
            :func:`core.optimization.jobs.launch`); None creates one.
        resume: Continue an interrupted run: optimizer state in the job's work folder is
            reused (gepa picks up after its last completed iteration).
        runner: Use this runner instead of the optimizer's own (for embedding and tests).
        allow_concurrent: With ``run_id`` None: False refuses while another run for the
            same judge is queued or running (``alignboard align`` passes False unless
            ``--allow-concurrent``). True by default, so in-process callers such as
            MemAlign's realign/unalign keep working beside a running alignment.

    Pre-flight runs once per launch: a run created with the launch's findings
    (:func:`create_run` with ``findings``) only loads its examples here; a resumed run is
    checked afresh, since its labels may have changed since.

    Returns:
        The result; its status is ``finished`` or ``cancelled``.

    Raises:
        ValidationError: pre-flight errors (the run, if any, is marked failed).
        AlignboardError: a systemic failure such as a missing or rejected API key.
    """
    config.configure()
    started = time.monotonic()
    client = MlflowClient()
    loaded = None
    if run_id is None:
        # Refuse before creating anything: a refused alignment leaves no run behind.
        loaded = load_and_check(settings)
        run_id = create_run(
            settings, status="queued", findings=loaded[3], allow_concurrent=allow_concurrent
        )
    elif not resume:
        recorded = recorded_findings(client, run_id)
        if recorded is not None:
            loaded = load_and_check(settings, findings=recorded)
    recorder = rec.MlflowRunRecorder(run_id, client)
    recorder.set_tags(
        {
            rec.TAG_PID: os.getpid(),
            rec.TAG_HOST: socket.gethostname(),
            **({rec.TAG_RESUMED: "1"} if resume else {}),
        }
    )
    recorder.set_status("running", error="")
    with recorder:
        try:
            return _run(settings, recorder, started, resume, runner, loaded)
        except KeyboardInterrupt:
            # SIGINT/SIGTERM: the process is going away but can be resumed.
            recorder.set_status("interrupted", error="The job process was stopped (signal).")
            raise
        except BaseException as exc:
            message = f"{type(exc).__name__}: {exc}"
            recorder.set_status("failed", error=message)
            log.error("alignment %s failed: %s", run_id, redact(message))
            with contextlib.suppress(AttributeError, TypeError):
                exc.run_id = run_id  # type: ignore[attr-defined]  # so callers can report it
            raise


def _run(
    settings: AlignmentSettings,
    recorder: rec.MlflowRunRecorder,
    started: float,
    resume: bool,
    runner: Runner | None,
    loaded: tuple[list[Example], list[Example], list[Example], list[Finding]] | None,
) -> AlignmentResult:
    from core.models.usage import track_usage

    train, val, test, findings = loaded or load_and_check(settings)
    warnings = [f.to_dict() for f in findings]
    record.write_preflight(recorder, warnings)
    budget = settings.budget(len(train))
    recorder.set_tags({rec.TAG_BUDGET: budget})
    record.write_split(
        recorder,
        record.Split(*(tuple(e.trace_id for e in xs) for xs in (train, val, test))),
    )
    run = runner or resolve_runner(settings.optimizer)
    with track_usage() as window, _library_endpoints(settings):
        # The optimizer sees train and val only; test stays held out for the scores below.
        outcome = run(settings, train, val, recorder)
        cancelled = outcome.cancelled
        scores = _score_on_test(settings, outcome, test, recorder)
    usage = _usage(window.current())
    verdict = _verdict(settings, scores, recorder, outcome.iterations)
    version = _register(settings, outcome, recorder, scores) if verdict.registered else None
    status = "cancelled" if cancelled else "finished"
    failed = outcome.failed_examples + scores["failed"]
    recorder.log_metrics(
        {
            "failed_examples": failed,
            "optimizer_failed_examples": outcome.failed_examples,
            "llm_calls_total": usage["llm_calls"],
            # Failed attempts, retried or not: what a flaky provider cost.
            "llm_failures": usage["llm_failures"],
            "tokens_total": usage["tokens"],
            **({"cost_usd": usage["cost_usd"]} if usage["cost_usd"] is not None else {}),
            "metric_calls_total": outcome.metric_calls,
        },
        step=outcome.iterations,
    )
    record.write_final_instructions(recorder, outcome.instructions or "")
    if outcome.extra:
        record.write_outcome_extra(recorder, outcome.extra)
    result = AlignmentResult(
        run_id=recorder.run_id,
        status=status,
        optimizer=settings.optimizer,
        judge_name=settings.judge.name,
        judge_version=version,
        train_size=len(train),
        val_size=len(val),
        test_size=len(test),
        metric_calls=outcome.metric_calls,
        llm_calls=usage["llm_calls"],
        iterations=outcome.iterations,
        failed_examples=failed,
        test_accuracy_before=_get(scores["before"], "accuracy"),
        test_accuracy_after=_get(scores["after"], "accuracy"),
        test_kappa_before=_get(scores["before"], "cohen_kappa"),
        test_kappa_after=_get(scores["after"], "cohen_kappa"),
        wall_seconds=round(time.monotonic() - started, 3),
        instructions=outcome.instructions or "",
        tokens=usage["tokens"],
        resumed=resume,
        test_before=scores["before"],
        test_after=scores["after"],
        warnings=warnings,
        registered=version is not None,
        verdict=verdict.verdict,
        significant=verdict.significant,
        accuracy_diff=verdict.diff,
        accuracy_diff_ci=[verdict.diff_low, verdict.diff_high],
        verdict_text=describe(replace(verdict, registered=version is not None)),
    )
    record.write_result(recorder, result)
    recorder.set_status(status)
    return result


def _library_endpoints(settings: AlignmentSettings) -> contextlib.AbstractContextManager:
    """Route the models MLflow builds from bare names to their base URL, for the run.

    MemAlign's reflection model and embedder (used while aligning and again when its judge
    is scored on the test split) take no base URL; :mod:`core.models.endpoints` points
    LiteLLM's OpenAI provider at it instead. Pre-flight has checked that they share one
    URL and that no other ``openai:/`` model of the run lacks its own.
    """
    from core.models.endpoints import openai_base_url

    if settings.optimizer != "memalign":
        return contextlib.nullcontext()
    return openai_base_url(settings.embedding_base_url or settings.reflection_base_url)


def _get(report: dict[str, Any] | None, key: str) -> float | None:
    return None if report is None else report.get(key)


def _usage(snap: Any) -> dict[str, Any]:
    return {
        "llm_calls": snap.calls,
        "llm_failures": snap.failures,
        "tokens": snap.prompt_tokens + snap.completion_tokens,
        "cost_usd": snap.cost_usd if snap.cost_known else None,
    }


def _score_on_test(
    settings: AlignmentSettings,
    outcome: AlignmentOutcome,
    test: list[Example],
    recorder: rec.MlflowRunRecorder,
) -> dict[str, Any]:
    """Score the seed and the aligned judge on the held-out split and log the numbers."""
    from core.agreement import compare
    from core.optimization.judging import JudgeEvaluator

    out: dict[str, Any] = {"before": None, "after": None, "failed": 0, "n": len(test)}
    out["predictions"] = []
    if not test:
        out["note"] = "no labeled trace in test split"
        out["verdict"] = judge_verdict(None, None, [])
        record.write_test_metrics(recorder, _test_record(out))
        return out
    evaluator = JudgeEvaluator(settings.judge, workers=settings.workers, cache=None)
    reference = {e.trace_id: e.label for e in test}
    aligned = outcome.judge if outcome.judge is not None else outcome.instructions
    metrics: dict[str, float] = {}
    # One parallel round for both judges: half the wall time of two.
    rounds = evaluator.evaluate_many([(settings.judge.instructions, test), (aligned, test)])
    predicted_by: dict[str, dict[str, Any]] = {}
    for key, verdicts in zip(("before", "after"), rounds, strict=True):
        failed = sum(1 for v in verdicts if getattr(v, "error", None))
        out["failed"] += failed
        predicted = {
            e.trace_id: (None if getattr(v, "error", None) else v.value)
            for e, v in zip(test, verdicts, strict=True)
        }
        predicted_by[key] = predicted
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
        )
        for e in test
    ]
    out["verdict"] = judge_verdict(
        out["before"], out["after"], out["predictions"], seed=settings.seed
    )
    record.write_test_metrics(recorder, _test_record(out))
    recorder.log_metrics(metrics, step=outcome.iterations)
    return out


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


def _verdict(
    settings: AlignmentSettings,
    scores: dict[str, Any],
    recorder: rec.MlflowRunRecorder,
    step: int,
) -> Verdict:
    """Decide whether the aligned judge may be registered, and record the verdict."""
    verdict: Verdict = scores["verdict"]
    worse = verdict.blocks_registration
    registered = not worse or settings.register_if_worse
    verdict = replace(verdict, registered=registered, override=worse and registered)
    recorder.set_tags({rec.TAG_VERDICT: verdict.verdict})
    metrics = {"test_verdict_significant": 1.0 if verdict.significant else 0.0}
    if verdict.diff is not None:
        metrics["test_accuracy_diff"] = verdict.diff
    recorder.log_metrics(metrics, step=step)
    if worse and not registered:
        log.warning("alignment %s: %s", recorder.run_id, describe(verdict))
    return verdict


def _register(
    settings: AlignmentSettings,
    outcome: AlignmentOutcome,
    recorder: rec.MlflowRunRecorder,
    scores: dict[str, Any],
) -> int | None:
    from core.optimization.registry import register_version

    judge = outcome.judge
    if judge is None:
        from core.optimization.mlflow_judge import seed_judge

        judge = seed_judge(settings.judge.with_instructions(outcome.instructions))
    test_metrics = {
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
    version = register_version(
        judge,
        settings.experiment_id,
        run_id=recorder.run_id,
        test_metrics=test_metrics,
        optimizer=settings.optimizer,
    )
    recorder.set_tags({rec.TAG_JUDGE_VERSION: version})
    recorder.log_metrics({"judge_version": version}, step=outcome.iterations)
    return version
