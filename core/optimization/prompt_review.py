"""Back to the humans: application outputs of a prompt version sent to reviewers.

A prompt optimization proves on held-out rows that the *judge* prefers the new prompt's
outputs. Whether the experts agree is the next question: :func:`send_outputs_to_queue`
turns a run's test outputs into MLflow traces (tagged with the prompt version, the run,
the row and a hash of the output) in a review queue for chosen reviewers; once they are
labeled, the Agreement page shows the judge's agreement with the humans on optimized
outputs, and :func:`human_labels_on_outputs` lets a later optimization's reflection see
those labels next to the judge's verdict on the very same output.

One output is one trace: its id is derived from the experiment, the row and the output's
hash, so sending the same run again (or another run whose prompt gave the very same
answer on that row, e.g. the same seed prompt) reuses the trace instead of adding a copy
for reviewers to label twice. It carries the judges' verdicts from the run's held-out
scoring as ``LLM_JUDGE`` feedback, named after the judge, under the source id of the judge
version (:func:`core.optimization.scoring.version_source_id`), the same id the Agreement
page shows for a version scored on labeled traces.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from core.errors import NotFoundError, ValidationError

#: Trace tags of an output sent to reviewers.
TAG_ROW = "alignboard.prompt_row"
TAG_OUTPUT_SHA = "alignboard.output_sha"
TAG_PROMPT_VERSION = "alignboard.prompt_version"
TAG_SOURCE_RUN = "alignboard.source_run"
#: Root span name of an output trace (the trace list shows it).
OUTPUT_SPAN_NAME = "alignboard_prompt_output"
#: Which outputs of a run can be sent: the seed prompt's, the best prompt's, or both.
WHICH = ("before", "after", "both")


@dataclass(frozen=True)
class SendResult:
    """What :func:`send_outputs_to_queue` did."""

    experiment_id: str
    """The experiment holding the traces and the queue."""
    run_id: str
    """The prompt optimization run whose test outputs were sent."""
    queue: str
    """The review queue's name."""
    queue_id: str
    """MLflow's id of the queue."""
    reviewers: tuple[str, ...]
    """Reviewers assigned to the queue."""
    criteria: tuple[str, ...]
    """Criteria the reviewers label."""
    which: str
    """``before``, ``after`` or ``both``."""
    prompt_versions: dict[str, str]
    """``before``/``after`` -> ``name@version`` of the outputs sent."""
    trace_ids: tuple[str, ...]
    """Every trace of this send, in test-row order."""
    created: int
    """Traces created now."""
    existing: int
    """Traces that existed already (sent before) and were reused."""
    feedback_written: int
    """Judge verdicts logged now (those already on a reused trace are not logged again)."""
    skipped: int
    """Outputs not sent because the application call had failed (no output)."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        d = asdict(self)
        d["reviewers"] = list(self.reviewers)
        d["criteria"] = list(self.criteria)
        d["trace_ids"] = list(self.trace_ids)
        return d


def output_trace_id(experiment_id: str, row_id: str, output: str) -> str:
    """The trace id of one application output on one row (the same for every send)."""
    from core.io.importer import trace_id_for
    from core.optimization.prompt_eval import text_sha

    return trace_id_for(str(experiment_id), f"prompt-output:{row_id}:{text_sha(output)}")


def _load_run(experiment_id: str, run_id: str) -> tuple[Any, Any, dict[str, Any]]:
    """The run's settings, held-out record and result; refuses anything but a finished
    prompt optimization of this experiment."""
    from mlflow import MlflowClient

    from core.optimization import record
    from core.optimization.prompt_spec import PromptSettings, is_prompt_settings
    from core.store import config

    config.configure()
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except Exception as exc:
        raise NotFoundError(f"No run with id {run_id!r} in {config.tracking_uri()}.") from exc
    if str(run.info.experiment_id) != str(experiment_id):
        raise ValidationError(
            f"Run {run_id} belongs to experiment {run.info.experiment_id}, not {experiment_id}; "
            "send its outputs from its own experiment."
        )
    rec = record.read_run_record(client, run_id)
    if not rec.settings or not is_prompt_settings(rec.settings):
        raise ValidationError(
            f"Run {run_id} is not a prompt optimization; only a prompt optimization's test "
            "outputs can be sent to reviewers."
        )
    if rec.test is None or not rec.test.outputs:
        raise ValidationError(
            f"Run {run_id} has no held-out outputs yet (it is still running, was stopped "
            "before its test step, or failed); send them once it has finished."
        )
    return PromptSettings.from_dict(dict(rec.settings)), rec.test, dict(rec.result or {})


def _versions(settings: Any, result: Mapping[str, Any], which: str, run_id: str) -> dict[str, str]:
    name = settings.prompt.name
    out: dict[str, str] = {}
    if which in ("before", "both"):
        out["before"] = f"{name}@{settings.prompt.version}"
    if which in ("after", "both"):
        # A comparison of two existing versions (optimizer ``compare``) registers nothing.
        version = result.get("prompt_version") or result.get("compared_version")
        if version is None:
            raise ValidationError(
                f"Run {run_id} registered no new version of {name} (verdict: "
                f"{result.get('verdict') or 'unknown'}), so its best prompt's outputs have no "
                "version to be tagged with; send the seed's outputs (which='before'), or "
                "register the best prompt first."
            )
        out["after"] = f"{name}@{version}"
    return out


def send_outputs_to_queue(
    experiment_id: str,
    run_id: str,
    *,
    which: str = "after",
    queue: str,
    reviewers: Sequence[str],
    criteria: Sequence[str] | None = None,
) -> SendResult:
    """Send a prompt optimization run's test outputs to a review queue.

    Creates one trace per test output (inputs: the row's template values; outputs:
    ``{"response": output}``; tags :data:`TAG_ROW`, :data:`TAG_OUTPUT_SHA`,
    :data:`TAG_PROMPT_VERSION`, :data:`TAG_SOURCE_RUN`), logs each judge's held-out verdict
    on it as ``LLM_JUDGE`` feedback named after the judge (source id
    ``version_source_id(name, version)``), creates the queue (or reuses the one of that
    name, adding any new reviewer) and attaches the traces. Idempotent: sending the same
    run and version again creates nothing new.

    An output the seed and the best prompt gave identically (``which="both"``) is one
    trace, tagged with the seed's version: reviewers label it once.

    Args:
        experiment_id: The run's experiment (where the traces and the queue go).
        run_id: A finished prompt optimization run.
        which: ``after`` (the registered version's outputs), ``before`` (the seed's) or
            ``both``.
        queue: The review queue's name.
        reviewers: Who labels every output (at least one).
        criteria: Criteria to label; default: the criteria of the run's judges.

    Returns:
        What was written.

    Raises:
        ValidationError: not a finished prompt optimization of this experiment, no
            registered version for ``after``, no reviewer, or no criterion.
        NotFoundError: no such run, or a criterion that does not exist.
    """
    from mlflow.entities import AssessmentSource, AssessmentSourceType, Feedback
    from mlflow.tracing.client import TracingClient

    from core.io.importer import build_root_span
    from core.io.records import ImportRecord
    from core.labeling.labels import iter_trace_infos
    from core.optimization.prompt_eval import text_sha
    from core.optimization.scoring import version_source_id

    if which not in WHICH:
        raise ValidationError(f"which must be one of {', '.join(WHICH)}; got {which!r}.")
    names = [r.strip() for r in reviewers if r and r.strip()]
    if not names:
        raise ValidationError("Name at least one reviewer to label the outputs.")
    experiment_id = str(experiment_id)
    settings, test, result = _load_run(experiment_id, run_id)
    versions = _versions(settings, result, which, run_id)
    crit = list(
        dict.fromkeys(criteria if criteria is not None else [j.name for j in settings.judges])
    )
    if not crit:
        raise ValidationError(
            f"Run {run_id} was scored by no judge; name the criteria reviewers label."
        )

    # (trace id, row values, output, prompt version, verdicts), one per distinct output.
    todo: dict[str, tuple[Mapping[str, str], str, str, str, Mapping[str, Any]]] = {}
    skipped = 0
    for o in test.outputs:
        for side in ("before", "after"):
            if side not in versions:
                continue
            text = o.before if side == "before" else o.after
            if text is None:
                skipped += 1
                continue
            tid = output_trace_id(experiment_id, o.row_id, text)
            verdicts = o.before_verdicts if side == "before" else o.after_verdicts
            todo.setdefault(tid, (o.values, text, o.row_id, versions[side], verdicts))

    client = TracingClient()
    ids = list(todo)
    existing = {info.trace_id: info for info in iter_trace_infos(experiment_id, trace_ids=ids)}
    new = [t for t in ids if t not in existing]
    if new:
        base_ns = time.time_ns() - len(new) * 1_000_000
        spans = []
        for i, tid in enumerate(new):
            values, text, row_id, version, _ = todo[tid]
            tags = {
                TAG_ROW: row_id,
                TAG_OUTPUT_SHA: text_sha(text),
                TAG_PROMPT_VERSION: version,
                TAG_SOURCE_RUN: run_id,
            }
            rec = ImportRecord(
                line=0,
                source_id=None,
                inputs=dict(values),
                outputs={"response": text},
                tags=tags,
                name=OUTPUT_SPAN_NAME,
            )
            spans.append(build_root_span(tid, rec, base_ns + i * 1_000_000, {}))
        client.log_spans(experiment_id, spans)
        stored = {info.trace_id for info in iter_trace_infos(experiment_id, trace_ids=new)}
        if len(stored) != len(new):
            # MLflow can drop traces; a reviewer must never get a queue with holes.
            raise RuntimeError(
                f"MLflow stored {len(stored)} of {len(new)} output traces; send again."
            )

    written = 0
    for tid in ids:
        _, _, _, _, verdicts = todo[tid]
        have = {
            (a.name, a.source.source_id)
            for a in (existing[tid].assessments if tid in existing else [])
            if a.source is not None and a.source.source_type == AssessmentSourceType.LLM_JUDGE
        }
        for j in settings.judges:
            v = verdicts.get(j.label) or {}
            if v.get("error") or v.get("skipped") or v.get("value") is None:
                continue
            source_id = version_source_id(j.name, j.version)
            if (j.name, source_id) in have:
                continue
            client.log_assessment(
                tid,
                Feedback(
                    name=j.name,
                    value=v["value"],
                    rationale=v.get("rationale"),
                    source=AssessmentSource(
                        source_type=AssessmentSourceType.LLM_JUDGE, source_id=source_id
                    ),
                    metadata={TAG_SOURCE_RUN: run_id},
                ),
            )
            written += 1

    q = _queue(experiment_id, queue, crit, names)
    from core.labeling.queues import add_traces

    add_traces(q, ids)
    return SendResult(
        experiment_id=experiment_id,
        run_id=run_id,
        queue=q.name,
        queue_id=q.queue_id,
        reviewers=q.reviewers,
        criteria=q.criteria,
        which=which,
        prompt_versions=versions,
        trace_ids=tuple(ids),
        created=len(new),
        existing=len(ids) - len(new),
        feedback_written=written,
        skipped=skipped,
    )


def _queue(experiment_id: str, name: str, criteria: Sequence[str], reviewers: Sequence[str]) -> Any:
    """The queue called ``name``: created, or the existing one with any new reviewer added."""
    from core.labeling.queues import assign_reviewers, create_queue, get_queue

    try:
        q = get_queue(experiment_id, name)
    except NotFoundError:
        return create_queue(experiment_id, name, criteria, reviewers)
    missing = [r for r in reviewers if r not in q.reviewers]
    if missing:
        q = assign_reviewers(q, [*q.reviewers, *missing])
    return q


def human_labels_on_outputs(
    experiment_id: str, criteria: Sequence[str]
) -> dict[tuple[str, str], tuple[Any, str | None]]:
    """Human labels given on application outputs sent to reviewers.

    Per output, the labels of the first of ``criteria`` that has any on it; among its
    reviewers, the most common value (a tie goes to the newest label), with the
    rationale of the newest label of that value.

    Returns:
        (row id, output sha) -> (label value, rationale), for the labels of ``criteria``
        on traces created by :func:`send_outputs_to_queue`; empty when there are none.
    """
    from core.labeling.labels import current_from_assessments, iter_trace_infos, label_filter

    out: dict[tuple[str, str], tuple[Any, str | None]] = {}
    for name in dict.fromkeys(criteria):
        # Only output traces: the store skips every other labeled trace of the experiment.
        where = f"{label_filter(name)} AND tag.`{TAG_OUTPUT_SHA}` LIKE '%'"
        for info in iter_trace_infos(str(experiment_id), filter_string=where):
            tags = info.tags or {}
            key = (tags.get(TAG_ROW), tags.get(TAG_OUTPUT_SHA))
            if not key[0] or not key[1] or key in out:
                continue
            labels = current_from_assessments(info.assessments or [], name)
            if not labels:
                continue
            newest = sorted(labels, key=lambda lab: (lab.created_ms, lab.assessment_id))
            counts = Counter(_hashable(lab.value) for lab in labels)
            top = max(counts.values())
            # The newest label whose value is among the most common ones.
            chosen = next(lab for lab in reversed(newest) if counts[_hashable(lab.value)] == top)
            out[(str(key[0]), str(key[1]))] = (chosen.value, chosen.rationale)
    return out


def _hashable(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) or value is None else repr(value)
