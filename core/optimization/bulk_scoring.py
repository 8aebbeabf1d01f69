"""Bulk scoring: run a registered judge version over many traces, as a job.

An aligned judge exists to evaluate the traces nobody labeled. A scoring job takes a
judge version (``name``, ``name@3`` or ``name@alias``, resolved once by
:func:`build_score_settings`) and a :class:`TraceSelection`, and writes each verdict on
its trace as MLflow ``LLM_JUDGE`` feedback named after the judge, from the version's
source (``scoring.version_source_id``), with the run id and the version in its metadata.
MLflow's own UI and API show the verdicts on the traces like any other assessment.

The life of a scoring job is an alignment's (``jobs.launch`` -> worker -> status, cancel,
resume), with its own run (kind :data:`KIND_SCORE`):

1. :func:`check_scoring` refuses before any call and before anything is written: unknown
   version, empty selection, a judge whose template variables the selected traces cannot
   fill, a missing credential. It also selects the traces (:func:`select_traces`), which
   the run records (``score_traces.json``) so that a resume judges the same set.
2. :func:`run_scoring` judges the traces. Each unit reads its traces
   (``batch_get_traces``: root inputs and outputs, expectations) and evaluates them with
   :class:`~core.optimization.judging.JudgeEvaluator` (``workers`` calls in flight,
   bounded retries, a failure counted, not fatal; a rejected key stops the run). The
   traces go through in units of one round of the workers, four units in flight at once
   on the evaluator's one pool, so its workers never wait for a unit to be read, and the
   verdicts of a finished unit are written while the next ones are judged: writes (5-15
   ms each on sqlite) overlap the calls instead of following them.
3. Idempotent: traces that already carry this version's verdict are skipped, so a second
   run over the same traces writes nothing, and a resumed run skips what the dead one
   wrote. The cancel tag is read after every batch (``batch_size`` traces); the units in flight are
   finished and written (they are paid for).
4. The summary (:class:`~core.optimization.record.ScoreResult`) goes to ``result.json``;
   cumulative counts are metrics at each batch (``n_scored``, ``n_skipped``,
   ``n_failed``, ``n_done``, ``n_total``), and ``jobs.status`` reads them cheaply.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from core.errors import CredentialsError, NotFoundError, ValidationError
from core.optimization import record, stop_signal
from core.optimization import recorder as rec
from core.optimization.judging import JudgeEvaluator, Verdict
from core.optimization.preflight import Finding, check_models, refuse_on_errors
from core.optimization.record import ScoreResult, ScoreTraces
from core.optimization.score_spec import (
    KIND_SCORE,
    META_JUDGE_VERSION,
    META_RUN_ID,
    MODES,
    SPLITS,
    TAG_SCORE_VERSION,
    ScoreSettings,
    TraceSelection,
    run_name,
)
from core.optimization.scoring import judged_ids, version_scorer, version_source_id, write_verdict
from core.optimization.spec import Example
from core.store import config

__all__ = [
    "KIND_SCORE",
    "ScoreCheck",
    "ScoreResult",
    "ScoreSettings",
    "TraceSelection",
    "build_score_settings",
    "check_scoring",
    "create_score_run",
    "run_scoring",
    "select_traces",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Trace infos (or traces) read per database call.
_READ_BATCH = 100
#: Units of traces judged at once: one being written while the next ones are judged.
_AHEAD = 4
#: The template variables a trace fills from its root span and assessments.
_INPUTS, _OUTPUTS, _EXPECTATIONS = "{{ inputs }}", "{{ outputs }}", "{{ expectations }}"
#: MLflow's agent-as-judge variable: the whole trace, which every trace fills.
_TRACE = "{{ trace }}"
_VARIABLES = (_INPUTS, _OUTPUTS, _EXPECTATIONS, _TRACE)
_TAG_KEY = re.compile(r"^[^`'\"]{1,250}$")


# --- settings ---------------------------------------------------------------------------


def _check_selection(selection: TraceSelection) -> None:
    if selection.mode not in MODES:
        raise ValidationError(
            f"Unknown selection {selection.mode!r}; choose one of {', '.join(MODES)}."
        )
    if selection.mode == "queue" and not (selection.queue or "").strip():
        raise ValidationError("Name the review queue whose traces to score (--queue NAME).")
    if selection.split not in SPLITS:
        raise ValidationError(
            f"Unknown split {selection.split!r}; choose one of {', '.join(SPLITS)}."
        )
    if selection.split != "all" and selection.mode != "labeled":
        raise ValidationError("A split applies to labeled traces only (--labeled --split S).")
    if selection.limit is not None and int(selection.limit) < 1:
        raise ValidationError(f"The limit must be at least 1, got {selection.limit}.")
    if (
        selection.since_ms is not None
        and selection.until_ms is not None
        and selection.until_ms <= selection.since_ms
    ):
        raise ValidationError("The date range is empty: 'until' must be after 'since'.")
    for key, value in selection.tags.items():
        # MLflow's filter language has no escape for quotes: refuse what it cannot say.
        if not _TAG_KEY.match(str(key)) or "'" in str(value):
            raise ValidationError(
                f"Tag filter {key}={value} cannot be searched: keys and values may not "
                "contain quotes or backticks."
            )


def build_score_settings(
    experiment_id: str,
    judge_ref: str,
    selection: TraceSelection | None = None,
    *,
    workers: int = 8,
    batch_size: int = 50,
) -> ScoreSettings:
    """The settings of a bulk scoring run, with the judge reference resolved to a version.

    Args:
        experiment_id: The experiment holding the traces and the registered judge.
        judge_ref: ``name`` (latest version), ``name@3`` or ``name@alias``.
        selection: Which traces (default: the unlabeled ones).
        workers: Judge calls in flight at once.
        batch_size: Traces per batch (cancel is checked between batches).

    Raises:
        NotFoundError: no such judge, version or alias (the message names what exists).
        ValidationError: a malformed reference or selection.
    """
    from core.optimization.prompt_preflight import resolve_judge

    selection = selection or TraceSelection()
    _check_selection(selection)
    if int(workers) < 1 or int(batch_size) < 1:
        raise ValidationError("workers and batch_size must be at least 1.")
    choice = resolve_judge(str(experiment_id), judge_ref)
    return ScoreSettings(
        experiment_id=str(experiment_id),
        judge_name=choice.name,
        judge_ref=choice.ref,
        judge_version=choice.version,
        selection=selection,
        workers=int(workers),
        batch_size=int(batch_size),
    )


# --- selection --------------------------------------------------------------------------


def _filter_string(selection: TraceSelection) -> str | None:
    parts = []
    if selection.since_ms is not None:
        parts.append(f"trace.timestamp_ms >= {int(selection.since_ms)}")
    if selection.until_ms is not None:
        parts.append(f"trace.timestamp_ms < {int(selection.until_ms)}")
    for key, value in sorted(selection.tags.items()):
        parts.append(f"tag.`{key}` = '{value}'")
    return " AND ".join(parts) or None


def _experiment_ids(experiment_id: str, selection: TraceSelection) -> list[str]:
    """The experiment's trace ids, oldest first, narrowed by time and tags in the
    database (MLflow's search filter; the bare list from the id index when it applies)."""
    from core.labeling.labels import iter_trace_infos
    from core.store import index as store_index

    filters = _filter_string(selection)
    if filters is None:
        ids = store_index.experiment_trace_ids(experiment_id)
        if ids is not None:
            return ids
    return [i.trace_id for i in iter_trace_infos(experiment_id, filter_string=filters)]


def _queue_ids(experiment_id: str, name: str) -> set[str]:
    from core.labeling.queues import get_queue, queue_items
    from core.store import index as store_index

    queue = get_queue(experiment_id, name)
    ids = store_index.queue_item_ids(queue.queue_id)
    if ids is None:
        ids = [item.trace_id for item in queue_items(queue)]
    return set(ids)


def _human_labeled(experiment_id: str, criterion: str) -> set[str]:
    """Traces with a current HUMAN label for ``criterion``."""
    from core.labeling.labels import current_labels
    from core.store import index as store_index

    keys = store_index.valid_feedback_keys(experiment_id, [criterion], source_type="HUMAN")
    if keys is not None:
        return {k.trace_id for k in keys}
    return {label.trace_id for label in current_labels(experiment_id, criterion)}


def select_traces(experiment_id: str, judge_name: str, selection: TraceSelection) -> list[str]:
    """The trace ids a selection holds, oldest first (ties by id), at most ``limit``.

    Filters run in the database where MLflow can: request time and tags in its trace
    search, human labels and queue items through the id index on a SQL store.

    Args:
        experiment_id: The experiment.
        judge_name: The judge (= criterion): ``unlabeled`` and ``labeled`` refer to its
            human labels.
        selection: Which traces.

    Raises:
        NotFoundError: the queue does not exist.
        ValidationError: a malformed selection.
    """
    from core.labeling.splits import assign_split

    _check_selection(selection)
    config.configure()
    ids = _experiment_ids(str(experiment_id), selection)
    if selection.mode == "queue":
        in_queue = _queue_ids(str(experiment_id), str(selection.queue).strip())
        ids = [i for i in ids if i in in_queue]
    if selection.mode in ("unlabeled", "labeled"):
        humans = _human_labeled(str(experiment_id), judge_name)
        want = selection.mode == "labeled"
        ids = [i for i in ids if (i in humans) == want]
        if want and selection.split != "all":
            ids = [i for i in ids if assign_split(i) == selection.split]
    if selection.limit is not None:
        ids = ids[: int(selection.limit)]
    return ids


# --- pre-flight -------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreCheck:
    """What :func:`check_scoring` found: refusals, warnings and the selected traces."""

    findings: tuple[Finding, ...]
    """Errors first; any error refuses the run."""
    trace_ids: tuple[str, ...] = ()
    """The selected traces, oldest first."""
    n_selected: int = 0
    """How many traces the selection holds."""
    n_already: int = 0
    """Of those, how many already carry this version's verdict (they will be skipped)."""
    variables: tuple[str, ...] = ()
    """The template variables the judge uses."""

    @property
    def ok(self) -> bool:
        """No error among the findings."""
        return not any(f.level == "error" for f in self.findings)

    @property
    def n_todo(self) -> int:
        """Traces that would be judged."""
        return self.n_selected - self.n_already

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the trace ids as a count only)."""
        return {
            "findings": [f.to_dict() for f in self.findings],
            "n_selected": self.n_selected,
            "n_already": self.n_already,
            "n_todo": self.n_todo,
            "variables": list(self.variables),
            "ok": self.ok,
        }


def _variables(instructions: str) -> list[str]:
    return [v for v in _VARIABLES if v in (instructions or "")]


def _missing_variables(
    experiment_id: str, trace_ids: Sequence[str], variables: Iterable[str]
) -> list[str]:
    """The template variables none of the traces can fill, reading trace infos (no
    spans) in batches and stopping as soon as each variable has a trace that fills it."""
    from mlflow.entities import Expectation

    from core.labeling.labels import iter_trace_infos

    open_ = {v for v in variables if v != _TRACE}
    if not open_ or not trace_ids:
        return sorted(open_)
    for i in range(0, len(trace_ids), _READ_BATCH):
        for info in iter_trace_infos(experiment_id, trace_ids=trace_ids[i : i + _READ_BATCH]):
            if _INPUTS in open_ and (info.request_preview or "").strip():
                open_.discard(_INPUTS)
            if _OUTPUTS in open_ and (info.response_preview or "").strip():
                open_.discard(_OUTPUTS)
            if _EXPECTATIONS in open_ and any(
                isinstance(a, Expectation) and a.valid is not False for a in info.assessments
            ):
                open_.discard(_EXPECTATIONS)
        if not open_:
            return []
    return [v for v in _VARIABLES if v in open_]


def _empty_message(settings: ScoreSettings) -> str:
    sel = settings.selection
    hint = {
        "unlabeled": "every trace already has a human label; score --all or --labeled instead",
        "labeled": f"label some traces for {settings.judge_name} first",
        "queue": f"add traces to queue {sel.queue!r} first",
        "all": "import or log traces first",
    }[sel.mode]
    return f"No trace matches the selection ({sel.describe()}): {hint}."


def check_scoring(settings: ScoreSettings) -> ScoreCheck:
    """Check a scoring run before anything is spent or written, and select its traces.

    Refusals (errors): the judge version does not exist (``judge_not_found``), the
    selection is malformed or its queue unknown (``bad_selection``), it holds no trace
    (``empty_selection``), the judge uses no template variable (``no_template_variables``)
    or one that none of the selected traces can fill (``unfillable_variable``: e.g.
    ``{{ expectations }}`` and no trace has expectations; ``{{ trace }}`` is always
    fillable), the judge's model cannot be used (``missing_credentials``, ``bad_model``).
    Warning: every selected trace already has this version's verdict
    (``nothing_to_score``).
    """
    config.configure()
    exp = settings.experiment_id
    errors: list[Finding] = []
    warnings: list[Finding] = []
    spec = None
    try:
        spec, _ = version_scorer(exp, settings.judge_name, settings.judge_version)
    except NotFoundError as exc:
        errors.append(Finding("error", "judge_not_found", str(exc)))
    ids: list[str] = []
    try:
        ids = select_traces(exp, settings.judge_name, settings.selection)
    except (NotFoundError, ValidationError) as exc:
        errors.append(Finding("error", "bad_selection", str(exc)))
    else:
        if not ids:
            errors.append(Finding("error", "empty_selection", _empty_message(settings)))
    variables: list[str] = []
    if spec is not None:
        variables = _variables(spec.instructions)
        if not variables:
            errors.append(
                Finding(
                    "error",
                    "no_template_variables",
                    f"{settings.label} uses no template variable, so it would never see a "
                    f"trace; its instructions must mention one of {', '.join(_VARIABLES)}.",
                )
            )
        # An empty selection is refused already; no trace to fill anything says nothing more.
        for var in _missing_variables(exp, ids, variables) if ids else ():
            errors.append(
                Finding(
                    "error",
                    "unfillable_variable",
                    f"{settings.label} uses {var}, which none of the {len(ids)} selected "
                    f"traces can fill ({_why_unfillable(var)}). Choose traces that have it, "
                    "or score another version.",
                )
            )
        errors += check_models({"judge": (spec.model, spec.base_url)})
    already = 0
    if ids and spec is not None:
        already = len(judged_ids(exp, settings.judge_name, settings.judge_version, ids))
        if already == len(ids):
            warnings.append(
                Finding(
                    "warning",
                    "nothing_to_score",
                    f"All {len(ids)} selected traces already carry the verdict of "
                    f"{settings.label}; the run will write nothing.",
                )
            )
    return ScoreCheck(
        findings=tuple(errors + warnings),
        trace_ids=tuple(ids),
        n_selected=len(ids),
        n_already=already,
        variables=tuple(variables),
    )


def _why_unfillable(variable: str) -> str:
    return {
        _EXPECTATIONS: "none has expectations",
        _INPUTS: "none has inputs",
        _OUTPUTS: "none has outputs",
    }.get(variable, "missing")


# --- the run ----------------------------------------------------------------------------


def create_score_run(
    settings: ScoreSettings,
    status: str = "queued",
    *,
    check: ScoreCheck | None = None,
    allow_concurrent: bool = False,
) -> str:
    """Create the MLflow run of a scoring job: tags, params, settings, findings and (with
    ``check``) the selected trace ids.

    Args:
        settings: What the run scores.
        status: Its first status.
        check: This launch's :func:`check_scoring` (refused on errors here); None leaves
            pre-flight and the selection to the job.
        allow_concurrent: False refuses while another scoring run of the same judge
            version in the experiment is queued or running (two would judge, and write,
            the same traces twice).

    Returns:
        The new run id.

    Raises:
        ValidationError: pre-flight errors, or another scoring of this version is active
            (nothing is created).
    """
    from mlflow import MlflowClient

    from core.optimization.engine import record_launch

    config.configure()
    if check is not None:
        refuse_on_errors(check.findings, "Scoring")
    if not allow_concurrent:
        _refuse_if_active(settings)
    client = MlflowClient()
    run = rec.with_retry(
        client.create_run,
        settings.experiment_id,
        run_name=run_name(settings),
        tags={
            rec.TAG_KIND: KIND_SCORE,
            rec.TAG_STATUS: status,
            rec.TAG_JUDGE: settings.judge_name,
            TAG_SCORE_VERSION: str(settings.judge_version),
        },
    )
    run_id = run.info.run_id
    record_launch(client, run_id, settings, status, None if check is None else check.findings)
    if check is not None:
        recorder = rec.MlflowRunRecorder(run_id, client)
        record.write_score_traces(
            recorder, ScoreTraces(check.trace_ids, settings.selection.describe())
        )
    return run_id


def _refuse_if_active(settings: ScoreSettings) -> None:
    from core.optimization.jobs import active_runs

    others = active_runs(
        settings.experiment_id,
        settings.judge_name,
        kind=KIND_SCORE,
        tags={TAG_SCORE_VERSION: str(settings.judge_version)},
    )
    if others:
        first = others[0]
        raise ValidationError(
            f"A scoring run of {settings.label} is already {first.status} (run "
            f"{first.run_id}); a second one would judge the same traces again. Wait for it, "
            f"or cancel it with `alignboard cancel {first.run_id}`."
        )


def run_scoring(
    settings: ScoreSettings,
    *,
    run_id: str | None = None,
    resume: bool = False,
    allow_concurrent: bool = False,
) -> ScoreResult:
    """Score a judge version on the selected traces in this process, recorded in a run.

    Args:
        settings: What to score (:func:`build_score_settings`).
        run_id: An existing run (created by :func:`create_score_run`, e.g. by
            ``jobs.launch``); None checks first (refusing before anything is written)
            and creates one.
        resume: Continue an earlier attempt of ``run_id``: the same recorded traces,
            those that carry the version's verdict skipped.
        allow_concurrent: With ``run_id`` None: start even while another scoring of this
            version is active.

    Returns:
        The summary; its status is ``finished`` or ``cancelled``.

    Raises:
        ValidationError: pre-flight errors (nothing written).
        CredentialsError: the judge's key is missing or rejected (the run is failed).
    """
    from mlflow import MlflowClient

    config.configure()
    started = time.monotonic()
    client = MlflowClient()
    if run_id is None:
        check = check_scoring(settings)
        run_id = create_score_run(
            settings, "queued", check=check, allow_concurrent=allow_concurrent
        )
    recorder = rec.MlflowRunRecorder(run_id, client)
    try:
        recorder.set_tags(
            {
                rec.TAG_PID: os.getpid(),
                rec.TAG_HOST: socket.gethostname(),
                **({rec.TAG_RESUMED: "1"} if resume else {}),
            }
        )
        recorder.set_status("running", error="")
        with recorder:
            return _score(settings, recorder, client, started, resume)
    except KeyboardInterrupt:
        stop_signal.acknowledge()
        recorder.set_status("interrupted", error=rec.SIGNAL_INTERRUPTED)
        raise
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"
        recorder.set_status("failed", error=message)
        log.error("scoring run %s failed: %s", run_id, message)
        with contextlib.suppress(AttributeError, TypeError):
            exc.run_id = run_id  # type: ignore[attr-defined]  # so callers can report it
        raise


def _selected(settings: ScoreSettings, recorder: rec.MlflowRunRecorder, client: Any) -> ScoreCheck:
    """The run's traces: as the launch recorded them; else checked and recorded now."""
    recorded = record.read_score_traces(client, recorder.run_id)
    if recorded is not None:
        from core.optimization.engine import recorded_findings

        return ScoreCheck(
            findings=tuple(recorded_findings(client, recorder.run_id) or ()),
            trace_ids=recorded.trace_ids,
            n_selected=len(recorded.trace_ids),
        )
    check = check_scoring(settings)
    record.write_preflight(recorder, [f.to_dict() for f in check.findings])
    refuse_on_errors(check.findings, "Scoring")
    record.write_score_traces(recorder, ScoreTraces(check.trace_ids, settings.selection.describe()))
    return check


def _examples(trace_ids: Sequence[str]) -> list[Example]:
    """The traces as judge examples (root inputs and outputs, expectations; no label)."""
    from mlflow.tracing.client import TracingClient

    from core.labeling.splits import assign_split
    from core.labeling.traces import expectations_of, root_io

    traces = {t.info.trace_id: t for t in TracingClient().batch_get_traces(list(trace_ids))}
    out = []
    for trace_id in trace_ids:
        trace = traces.get(trace_id)
        if trace is None:
            continue  # deleted since the selection: nothing to judge
        inputs, outputs = root_io(trace)
        out.append(
            Example(
                trace_id=trace_id,
                inputs=inputs,
                outputs=outputs,
                expectations=expectations_of(trace.info),
                label=None,
                rationale=None,
                reviewer="",
                split=assign_split(trace_id),
                label_version="",
            )
        )
    return out


def value_key(value: Any) -> str:
    """How a verdict value is counted: ``pass``/``fail`` for booleans, else its text."""
    if isinstance(value, bool):
        return "pass" if value else "fail"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _metric_name(key: str) -> str:
    # MLflow metric names: letters, digits, _ - . space /.
    return "value_count." + (re.sub(r"[^A-Za-z0-9_\-. /]", "_", key)[:200] or "_")


@dataclass
class _Tally:
    scored: int = 0
    failed: int = 0
    skipped: int = 0
    missing: int = 0
    write_seconds: float = 0.0
    values: Counter[str] = field(default_factory=Counter)


def _batches(items: Sequence[T], size: int) -> Iterator[list[T]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def _score(
    settings: ScoreSettings,
    recorder: rec.MlflowRunRecorder,
    client: Any,
    started: float,
    resume: bool,
) -> ScoreResult:
    from core.models.usage import track_usage

    check = _selected(settings, recorder, client)
    ids = list(check.trace_ids)
    name, version = settings.judge_name, settings.judge_version
    done = judged_ids(settings.experiment_id, name, version, ids)
    todo = [i for i in ids if i not in done]
    tally = _Tally(skipped=len(ids) - len(todo))
    total = len(ids)
    spec, candidate = version_scorer(settings.experiment_id, name, version)
    evaluator = JudgeEvaluator(spec, workers=settings.workers, cache=None)
    meta = {META_RUN_ID: recorder.run_id, META_JUDGE_VERSION: str(version)}
    step = 0
    recorder.log_metrics(_counts(tally, total), step=step)
    cancelled = False

    def judge(unit: list[Example]) -> list[tuple[str, Verdict]]:
        verdicts = evaluator.evaluate(candidate, unit)
        return [(e.trace_id, v) for e, v in zip(unit, verdicts, strict=True)]

    # The traces are read a batch at a time, two batches ahead, by one reader thread
    # (few read transactions: on sqlite a reader holds up the writer's commit), and judged
    # in small units (one round of the workers each), ``_AHEAD`` units at once on the
    # evaluator's one pool: its workers always have the next unit's calls queued, and each
    # unit's verdicts are written here as soon as it returns, while the next ones are
    # judged; the run's tail is one unit's writes, not a whole batch's. Metrics, heartbeat
    # and the cancel check come once per ``batch_size`` traces.
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-read")
    chunks = _batches(todo, settings.batch_size)
    reads: deque[Future[list[Example]]] = deque()

    def read_ahead() -> None:
        chunk = next(chunks, None)
        if chunk:
            reads.append(reader.submit(_examples, chunk))

    def example_units() -> Iterator[list[Example]]:
        read_ahead()
        read_ahead()
        while reads:
            examples = reads.popleft().result()
            read_ahead()
            yield from _batches(examples, max(1, min(settings.batch_size, settings.workers)))

    units = example_units()
    pool = ThreadPoolExecutor(max_workers=_AHEAD, thread_name_prefix="score-unit")
    pending: deque[Future[list[tuple[str, Verdict]]]] = deque()
    submitted = 0

    def submit_next() -> None:
        nonlocal submitted
        unit = next(units, None)
        if unit:
            submitted += len(unit)
            pending.append(pool.submit(judge, unit))

    try:
        with track_usage():
            for _ in range(_AHEAD):
                submit_next()
            since_log = 0
            while pending:
                verdicts = pending.popleft().result()  # CredentialsError ends the run
                if not cancelled:
                    submit_next()
                writing = time.monotonic()
                for trace_id, verdict in verdicts:
                    if not verdict.ok:
                        tally.failed += 1
                        continue
                    write_verdict(trace_id, name, version, verdict, metadata=meta)
                    tally.scored += 1
                    tally.values[value_key(verdict.value)] += 1
                tally.write_seconds += time.monotonic() - writing
                since_log += len(verdicts)
                if since_log < settings.batch_size and pending:
                    continue
                since_log = 0
                step += 1
                recorder.log_metrics(_counts(tally, total), step=step)
                recorder.heartbeat()
                if not cancelled and recorder.should_stop():
                    # Finish (and write) the units already being judged, start no more.
                    cancelled = True
    except CredentialsError:
        for fut in pending:
            fut.cancel()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        reader.shutdown(wait=True, cancel_futures=True)
        evaluator.close()
    # Traces deleted since the selection: nothing to judge (counted as done).
    tally.missing = len(todo) - submitted if not cancelled else 0
    wall = round(time.monotonic() - started, 3)
    stats = evaluator.stats
    recorder.log_metrics(
        {
            **_counts(tally, total),
            **{_metric_name(k): n for k, n in tally.values.items()},
            "wall_seconds": wall,
            "llm_calls": stats.calls,
            "llm_retries": stats.retries,
            "write_seconds": tally.write_seconds,
        },
        step=step,
    )
    result = ScoreResult(
        run_id=recorder.run_id,
        status="cancelled" if cancelled else "finished",
        judge_name=name,
        judge_version=version,
        source_id=version_source_id(name, version),
        n_selected=total,
        n_scored=tally.scored,
        n_skipped=tally.skipped,
        n_failed=tally.failed,
        value_counts=dict(sorted(tally.values.items())),
        wall_seconds=wall,
        selection=settings.selection.describe(),
        llm_calls=stats.calls,
        retries=stats.retries,
        resumed=resume,
        warnings=[f.to_dict() for f in check.findings if f.level == "warning"],
        write_seconds=round(tally.write_seconds, 3),
    )
    record.write_result(recorder, result)
    recorder.set_status(result.status)
    return result


def _counts(tally: _Tally, total: int) -> dict[str, float]:
    done = tally.scored + tally.skipped + tally.failed + tally.missing
    return {
        "n_scored": tally.scored,
        "n_skipped": tally.skipped,
        "n_failed": tally.failed,
        "n_done": done,
        "n_total": total,
        "progress": done / total if total else 1.0,
    }


def floor_seconds(n: int, workers: int, latency_s: float) -> float:
    """The ideal wall time of ``n`` judge calls ``workers`` at a time (``n/w*latency``)."""
    return n / max(1, workers) * latency_s if n else 0.0
