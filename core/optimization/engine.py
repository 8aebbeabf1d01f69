"""The optimization engine: one run, start to finish, recorded in an MLflow run.

:func:`run_optimization` runs any :class:`core.optimization.task.OptimizationTask`: it
loads the task's examples and runs pre-flight (once per launch), runs the chosen optimizer
on train/val only (the optimizer never sees the test split), has the task score the seed
and the best candidate on the test split, gates registration on that held-out verdict
(and, for a cancelled run, on the user's "Register if cancelled": off by default, the
reason is recorded as ``alignboard.not_registered_reason``), registers through the task's
registrar, and records all of it in the run, with its phase times (job start, optimize,
held-out, register) for the next estimate. It runs in
whatever process calls it: the job process started by
:func:`core.optimization.jobs.launch`, or ``alignboard align`` in the foreground.

Judge alignment is one task (:mod:`core.optimization.judge_task`): :func:`run_alignment`
is its public entry, and the helpers below that take :class:`AlignmentSettings`
(:func:`create_run`, :func:`load_and_check`, :func:`load_settings`, :data:`RUNNERS`) are
its run's.

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
from core.optimization import record, stop_signal
from core.optimization import recorder as rec
from core.optimization.jobs import TAG_NOT_REGISTERED
from core.optimization.preflight import (
    LOAD_FACTOR_METRIC,
    SECONDS_PER_CALL_METRIC,
    Finding,
    findings_from_dicts,
    load_factor,
    refuse_on_errors,
)
from core.optimization.record import AlignmentResult
from core.optimization.spec import AlignmentOutcome, AlignmentSettings, Example, Runner
from core.optimization.task import OptimizationTask, RunSummary, TaskRunner
from core.optimization.verdict import (
    CANCELLED,
    UNCHANGED,
    WORSE_REASON,
    Verdict,
    describe,
)
from core.store import config

log = logging.getLogger(__name__)

#: Where each judge runner lives (imported on use: each pulls in heavy libraries). A judge
#: runner takes :class:`AlignmentSettings` (:data:`core.optimization.spec.Runner`).
RUNNERS: dict[str, tuple[str, str]] = {
    "gepa": ("core.optimization.runners.gepa", "run"),
    "memalign": ("core.optimization.runners.memalign", "run"),
    "mlflow-gepa": ("core.optimization.runners.mlflow_baselines", "run_mlflow_gepa"),
    "simba": ("core.optimization.runners.mlflow_baselines", "run_simba"),
}
#: Phase times logged at the end of a run (seconds; see :func:`_run`), read back by
#: :func:`core.optimization.preflight.recorded_overheads` for the next estimate.
PHASE_START = "job_start_seconds"
PHASE_OPTIMIZE = "optimize_seconds"
PHASE_HELD_OUT = "held_out_seconds"
PHASE_REGISTER = "register_seconds"
#: Optimizers to which no metric-call budget applies (they judge nothing while aligning).
UNBUDGETED = frozenset({"memalign"})
#: Runners that work on any task (:data:`core.optimization.task.TaskRunner`); the other
#: optimizers call MLflow's ``judge.align`` and align judges only.
TASK_RUNNERS: dict[str, tuple[str, str]] = {
    "gepa": ("core.optimization.runners.gepa", "run_task"),
}


def run_name(settings: AlignmentSettings) -> str:
    """A readable run name: ``align-<judge>-<optimizer>-<YYYYmmdd-HHMMSS>``."""
    return f"align-{settings.judge.name}-{settings.optimizer}-{datetime.now():%Y%m%d-%H%M%S}"


#: Set on a run whose pre-flight findings were recorded when it was created (the launch's
#: own check), so its job process does not run pre-flight again.
TAG_PREFLIGHT = rec.TAG_PREFIX + "preflight"


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
    record_launch(client, run_id, settings, status, findings)
    return run_id


def record_launch(
    client: MlflowClient,
    run_id: str,
    settings: Any,
    status: str,
    findings: Sequence[Finding] | None,
) -> None:
    """Write what every new run holds: params, settings, the launch's pre-flight findings
    (so its job process does not check again) and its first status."""
    recorder = rec.MlflowRunRecorder(run_id, client)
    recorder.log_params(settings.to_params())
    record.write_settings(recorder, settings)
    if findings is not None:
        record.write_preflight(recorder, [f.to_dict() for f in findings])
        recorder.set_tags({TAG_PREFLIGHT: f"{time.time():.3f}"})
    rec.set_status(client, run_id, status)


def recorded_findings(client: MlflowClient, run_id: str) -> list[Finding] | None:
    """The pre-flight findings :func:`create_run` recorded for this launch, or None."""
    import json

    run = client.get_run(run_id)
    if not run.data.tags.get(TAG_PREFLIGHT):
        return None
    text = rec.read_artifact_text(client, run_id, record.PREFLIGHT)
    if not text:
        return None
    return findings_from_dicts(json.loads(text).get("findings") or [])


def load_settings(run_id: str) -> AlignmentSettings:
    """Read back the settings an alignment run was created with.

    Raises:
        NotFoundError: no such run, or it is not an alignment run.
    """
    settings = load_any_settings(run_id)
    if not isinstance(settings, AlignmentSettings):
        raise NotFoundError(f"Run {run_id} is a prompt optimization, not an alignment.")
    return settings


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
    refuse_on_errors(found)
    train, val, test = dataset.split_examples(examples)
    return list(train), list(val), list(test), found


def resolve_task_runner(task: OptimizationTask) -> TaskRunner:
    """The runner of ``task.optimizer`` for a task that is not judge alignment.

    Only the runners in :data:`TASK_RUNNERS` work on any task; the others align judges
    through MLflow's ``judge.align`` and say so.

    Raises:
        ValidationError: the optimizer is unknown or aligns judges only.
    """
    if task.optimizer in TASK_RUNNERS:
        module, name = TASK_RUNNERS[task.optimizer]
        return getattr(importlib.import_module(module), name)
    if task.optimizer in RUNNERS:
        raise ValidationError(
            f"The {task.optimizer} optimizer aligns judges only (it runs MLflow's "
            f"judge.align); for a {task.kind} task choose one of: {', '.join(TASK_RUNNERS)}."
        )
    raise ValidationError(
        f"Unknown optimizer {task.optimizer!r}; choose one of {', '.join(TASK_RUNNERS)}."
    )


def run_alignment(
    settings: AlignmentSettings,
    *,
    run_id: str | None = None,
    resume: bool = False,
    runner: Runner | None = None,
    allow_concurrent: bool = True,
) -> AlignmentResult:
    """Run one alignment in this process and record it in MLflow.

    Judge alignment is one task of the general engine: this builds its
    :class:`core.optimization.judge_task.JudgeTask` and calls :func:`run_optimization`.

    Args:
        settings: What to align and how.
        run_id: An existing run to record into (created by :func:`create_run`, e.g. by
            :func:`core.optimization.jobs.launch`); None creates one.
        resume: Continue an interrupted run: optimizer state in the job's work folder is
            reused (gepa picks up after its last completed iteration).
        runner: Use this judge runner instead of the optimizer's own (for embedding and
            tests).
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
    from core.optimization.judge_task import JudgeTask

    result: AlignmentResult = run_optimization(
        JudgeTask(settings, judge_runner=runner),
        run_id=run_id,
        resume=resume,
        allow_concurrent=allow_concurrent,
    )
    return result


def run_prompt_optimization(
    settings: Any,
    *,
    run_id: str | None = None,
    resume: bool = False,
    runner: TaskRunner | None = None,
) -> Any:
    """Run one prompt optimization in this process and record it in MLflow.

    The prompt task (:class:`core.optimization.prompt_task.PromptTask`) through
    :func:`run_optimization`; the arguments are :func:`run_alignment`'s.

    Returns:
        The :class:`core.optimization.prompt_task.PromptResult`.
    """
    from core.optimization.prompt_task import PromptTask

    return run_optimization(PromptTask(settings, task_runner=runner), run_id=run_id, resume=resume)


def load_any_settings(run_id: str) -> Any:
    """The settings a run was created with: :class:`AlignmentSettings` for an alignment,
    :class:`core.optimization.prompt_spec.PromptSettings` for a prompt optimization,
    :class:`core.optimization.score_spec.ScoreSettings` for a bulk scoring run.

    Raises:
        NotFoundError: no such run, or it is not an alignboard run.
    """
    import json

    from core.optimization.prompt_spec import PromptSettings, is_prompt_settings
    from core.optimization.score_spec import ScoreSettings, is_score_settings

    config.configure()
    client = MlflowClient()
    try:
        client.get_run(run_id)
    except Exception as exc:
        raise NotFoundError(f"No run with id {run_id!r} in {config.tracking_uri()}.") from exc
    text = rec.read_artifact_text(client, run_id, rec.SETTINGS_ARTIFACT)
    if not text:
        raise NotFoundError(
            f"Run {run_id} has no {rec.SETTINGS_ARTIFACT}: it is not an alignboard run."
        )
    d = json.loads(text)
    if is_score_settings(d):
        return ScoreSettings.from_dict(d)
    if is_prompt_settings(d):
        return PromptSettings.from_dict(d)
    return AlignmentSettings.from_dict(d)


def run_optimization(
    task: OptimizationTask,
    *,
    run_id: str | None = None,
    resume: bool = False,
    runner: TaskRunner | None = None,
    allow_concurrent: bool = True,
) -> Any:
    """Run one optimization of ``task`` in this process and record it in MLflow.

    The steps, whatever the task: create the run (unless given), load the examples and
    pre-flight once per launch, record the findings and the split, run the optimizer on
    train and val only, score the seed and the best candidate on the held-out split, gate
    registration on the verdict, register through ``task.registrar``, record the totals
    and the result, set the final status.

    Args:
        task: What is optimized (see :class:`core.optimization.task.OptimizationTask`).
        run_id: An existing run to record into (created by ``task.create_run``); None
            creates one.
        resume: Continue an interrupted run from its state (the work folder, restored
            from the run's ``state/`` artifacts where missing or older).
        runner: Use this runner instead of ``task.runner()``.
        allow_concurrent: With ``run_id`` None: False refuses while another run for the
            same target is active.

    Returns:
        ``task.result(...)``; its status is ``finished`` or ``cancelled``.

    Raises:
        ValidationError: pre-flight errors (the run, if any, is marked failed).
        AlignboardError: a systemic failure such as a missing or rejected API key.
    """
    config.configure()
    started = time.monotonic()
    client = MlflowClient()
    loaded = None
    if run_id is None:
        # Refuse before creating anything: a refused run leaves nothing behind.
        loaded = task.load()
        run_id = task.create_run("queued", findings=loaded[3], allow_concurrent=allow_concurrent)
    recorder = rec.MlflowRunRecorder(run_id, client)
    # Everything after the run exists is inside the try, so a signal or an error at any
    # point (even while loading the examples) leaves the run interrupted or failed, never
    # "queued" with nobody working on it.
    try:
        if loaded is None and not resume:
            recorded = recorded_findings(client, run_id)
            if recorded is not None:
                loaded = task.load(findings=recorded)
        recorder.set_tags(
            {
                rec.TAG_PID: os.getpid(),
                rec.TAG_HOST: socket.gethostname(),
                **({rec.TAG_RESUMED: "1"} if resume else {}),
            }
        )
        if resume:
            # The job folder is only a cache: on another host (or after it was lost) the
            # optimizer state comes back from the run's ``state/`` artifacts.
            recorder.restore_state()
        recorder.set_status("running", error="")
        with recorder:
            return _run(task, recorder, started, resume, runner, loaded)
    except KeyboardInterrupt:
        # SIGINT/SIGTERM: the process is going away but can be resumed; keep what the
        # runner saved since its last checkpoint (best effort: we are being stopped).
        stop_signal.acknowledge()
        with contextlib.suppress(Exception):
            recorder.checkpoint()
        recorder.set_status("interrupted", error=rec.SIGNAL_INTERRUPTED)
        raise
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"
        recorder.set_status("failed", error=message)
        log.error("%s %s failed: %s", task.label, run_id, redact(message))
        with contextlib.suppress(AttributeError, TypeError):
            exc.run_id = run_id  # type: ignore[attr-defined]  # so callers can report it
        raise


def _run(
    task: OptimizationTask,
    recorder: rec.MlflowRunRecorder,
    started: float,
    resume: bool,
    runner: TaskRunner | None,
    loaded: tuple[list[Any], list[Any], list[Any], list[Finding]] | None,
) -> Any:
    from core.models.usage import track_usage

    train, val, test, findings = loaded or task.load()
    warnings = [f.to_dict() for f in findings]
    record.write_preflight(recorder, warnings)
    # MemAlign spends no judge calls while aligning: no budget applies, and the record
    # says so ("none") instead of showing a budget it never spends.
    budget: int | str = "none" if task.optimizer in UNBUDGETED else task.budget(len(train))
    recorder.set_tags({rec.TAG_BUDGET: budget})
    record.write_split(
        recorder,
        record.Split(*(tuple(task.example_id(e) for e in xs) for xs in (train, val, test))),
    )
    run = runner or task.runner()
    with track_usage() as window, task.endpoints():
        # Phase times, so the next estimate can use what runs in this store really took:
        # job start is from the run's creation (the launch) to the optimizer's first step
        # (process spawn, imports, loading the examples; a resumed run has none).
        job_start = None if resume else _since_created(recorder)
        busy = load_factor()  # how busy the CPU was meanwhile, to normalise job_start
        # The optimizer sees train and val only; test stays held out for the scores below.
        t0 = time.monotonic()
        outcome = run(task, train, val, recorder)
        t1 = time.monotonic()
        cancelled = outcome.cancelled
        held_out = task.score_held_out(outcome, test, recorder)
        t2 = time.monotonic()
    usage = _usage(window.current())
    verdict = _verdict(task, held_out.verdict, recorder, outcome.iterations, cancelled=cancelled)
    version = None
    if verdict.registered:
        version = task.registrar.register(
            outcome, recorder=recorder, verdict=verdict, test_metrics=held_out.metrics
        )
    reason = verdict.not_registered_reason
    if verdict.registered and version is None:
        reason = UNCHANGED  # the registrar found nothing new to register
    verdict = replace(verdict, registered=version is not None, not_registered_reason=reason)
    if reason:
        recorder.set_tags({TAG_NOT_REGISTERED: reason})
    t3 = time.monotonic()
    phases = {
        PHASE_START: job_start,
        PHASE_OPTIMIZE: t1 - t0,
        PHASE_HELD_OUT: t2 - t1,
        PHASE_REGISTER: t3 - t2,
    }
    status = "cancelled" if cancelled else "finished"
    failed = outcome.failed_examples + held_out.failed
    recorder.log_metrics(
        {
            "failed_examples": failed,
            "optimizer_failed_examples": outcome.failed_examples,
            "llm_calls_total": usage["llm_calls"],
            # Failed attempts, retried or not: what a flaky provider cost.
            "llm_failures": usage["llm_failures"],
            "tokens_total": usage["tokens"],
            **({"cost_usd": usage["cost_usd"]} if usage["cost_usd"] is not None else {}),
            **(
                {SECONDS_PER_CALL_METRIC: round(usage["seconds_per_call"], 4)}
                if usage["seconds_per_call"] is not None
                else {}
            ),
            "metric_calls_total": outcome.metric_calls,
            **{k: round(v, 3) for k, v in phases.items() if v is not None},
            LOAD_FACTOR_METRIC: round(busy, 3),
        },
        step=outcome.iterations,
    )
    final_text = task.final_text(outcome)
    record.write_final_instructions(recorder, final_text)
    if outcome.extra:
        record.write_outcome_extra(recorder, outcome.extra)
    summary = RunSummary(
        run_id=recorder.run_id,
        status=status,
        optimizer=task.optimizer,
        train_size=len(train),
        val_size=len(val),
        test_size=len(test),
        metric_calls=outcome.metric_calls,
        llm_calls=usage["llm_calls"],
        iterations=outcome.iterations,
        failed_examples=failed,
        wall_seconds=round(time.monotonic() - started, 3),
        tokens=usage["tokens"],
        resumed=resume,
        warnings=warnings,
        final_text=final_text,
    )
    result = task.result(summary, held_out, version, verdict)
    # Every task's result says why nothing was registered (None when something was): the
    # Align and Optimize banners, ``alignboard status`` and the CLI's output read it.
    outcome_fields = {
        "not_registered_reason": reason,
        "register_if_cancelled": _keeps_cancelled(task),
        **_stop_fields(outcome, recorder),
    }
    known = getattr(result, "__dataclass_fields__", {})
    result = replace(result, **{k: v for k, v in outcome_fields.items() if k in known})
    record.write_result(recorder, {**result.to_dict(), **outcome_fields})
    recorder.set_status(status)
    return result


def _stop_fields(outcome: AlignmentOutcome, recorder: rec.MlflowRunRecorder) -> dict[str, Any]:
    """Why the search stopped (:mod:`core.optimization.stopping`), as result fields, and
    as the run's ``alignboard.stop_reason`` tag. A runner that does not say (MemAlign,
    MLflow's baselines) gets one only when it was cancelled."""
    from core.optimization import stopping

    code = outcome.stop_reason or (stopping.CANCELLED if outcome.cancelled else None)
    if outcome.cancelled:
        code = stopping.CANCELLED  # a cancel wins over whatever else was about to fire
    if code is None:
        return {}
    detail = outcome.stop_detail if outcome.stop_reason == code else None
    recorder.set_tags({stopping.TAG_STOP_REASON: code})
    return {"stop_reason": code, "stop_detail": detail or stopping.REASON_TEXT.get(code, code)}


def _keeps_cancelled(task: OptimizationTask) -> bool:
    """The task's "Register if cancelled" (False for a task written before it existed)."""
    return bool(getattr(task, "register_if_cancelled", False))


def _since_created(recorder: rec.MlflowRunRecorder) -> float | None:
    """Seconds from the run's creation (the launch) to now, None when unknown: the job's
    start-up (process spawn, imports, loading the examples) as the user waits for it."""
    try:
        created = recorder.client.get_run(recorder.run_id).info.start_time
    except Exception:  # a store hiccup only loses the figure
        return None
    return max(time.time() - created / 1000, 0.0) if created else None


def _usage(snap: Any) -> dict[str, Any]:
    return {
        "llm_calls": snap.calls,
        "llm_failures": snap.failures,
        "tokens": snap.prompt_tokens + snap.completion_tokens,
        "cost_usd": snap.cost_usd if snap.cost_known else None,
        # Mean latency of the answered calls: what the next estimate for this model uses
        # (core.optimization.preflight.recorded_latency_s).
        "seconds_per_call": (
            snap.call_seconds / answered if (answered := snap.calls - snap.failures) else None
        ),
    }


def _verdict(
    task: OptimizationTask,
    verdict: Verdict,
    recorder: rec.MlflowRunRecorder,
    step: int,
    *,
    cancelled: bool = False,
) -> Verdict:
    """Decide whether the best candidate may be registered, and record the verdict.

    A cancelled run registers nothing unless the user asked for it
    (``register_if_cancelled``): the user stopped it, so its best-so-far is not what they
    asked for. It is still scored on the held-out split (seed vs best so far, cheap), so
    the record shows how far it got.
    """
    worse = verdict.blocks_registration
    allowed = not worse or task.register_if_worse
    keep_cancelled = not cancelled or _keeps_cancelled(task)
    registered = allowed and keep_cancelled
    reason = None if registered else (CANCELLED if not keep_cancelled else WORSE_REASON)
    verdict = replace(
        verdict,
        registered=registered,
        override=worse and registered,
        cancelled=cancelled,
        not_registered_reason=reason,
    )
    recorder.set_tags({rec.TAG_VERDICT: verdict.verdict})
    metrics = {"test_verdict_significant": 1.0 if verdict.significant else 0.0}
    if verdict.diff is not None:
        # Judge alignment compares accuracy; prompt optimization the judges' mean score.
        name = "test_accuracy_diff" if verdict.metric == "accuracy" else "test_score_diff"
        metrics[name] = verdict.diff
    recorder.log_metrics(metrics, step=step)
    if worse and not registered:
        log.warning("%s %s: %s", task.label, recorder.run_id, describe(verdict))
    return verdict
