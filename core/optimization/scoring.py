"""Score a registered judge version on the labeled traces, so agreement can be measured.

The verdicts are written to the traces as ordinary MLflow ``Feedback`` from an
``LLM_JUDGE`` source whose id names the version (``support_quality/v3``). The Agreement
page (and MLflow's own UI) then sees each version as one more rater, on any split.

The pieces bulk scoring (:mod:`core.optimization.bulk_scoring`) shares with
:func:`score_version`: :func:`version_scorer` (the judge a version is evaluated as),
:func:`judged_ids` (traces that already carry a version's verdict) and
:func:`write_verdict` (one verdict as feedback).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import mlflow
from mlflow.entities import AssessmentSource

from core.errors import NotFoundError, ValidationError
from core.labeling.criteria import get_criterion
from core.labeling.labels import iter_trace_infos, label_filter
from core.optimization.dataset import load_examples
from core.optimization.judging import JudgeEvaluator, Verdict
from core.optimization.registry import list_versions, load_version
from core.optimization.spec import JudgeSpec

SPLITS = ("all", "train", "val", "test")
_LLM_JUDGE = "LLM_JUDGE"


def version_source_id(judge_name: str, version: int) -> str:
    """The feedback source id under which a version's verdicts are stored."""
    return f"{judge_name}/v{version}"


@dataclass(frozen=True)
class ScoringResult:
    """What :func:`score_version` wrote."""

    source_id: str
    """Feedback source id of the version's verdicts."""
    scored: int
    """Traces newly judged by this call."""
    already: int
    """Traces that already had this version's verdict (not judged again)."""
    failed: int
    """Traces whose judge call failed after retries (nothing written for them)."""

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return asdict(self)


def judged_ids(
    experiment_id: str,
    judge_name: str,
    version: int,
    trace_ids: Iterable[str] | None = None,
) -> set[str]:
    """Traces that already carry a valid verdict of ``judge_name`` version ``version``.

    One indexed query on MLflow's SQL store (``core.store.index``); elsewhere (an MLflow
    server) a scan of the trace infos that have feedback of that name.

    Args:
        experiment_id: The experiment.
        judge_name: The judge (= criterion, = feedback) name.
        version: The registered version.
        trace_ids: Only look among these traces (default: the whole experiment).
    """
    from core.store import index as store_index

    source_id = version_source_id(judge_name, version)
    wanted = None if trace_ids is None else set(trace_ids)
    keys = store_index.valid_feedback_keys(
        experiment_id, [judge_name], source_type=_LLM_JUDGE, source_id=source_id
    )
    if keys is not None:
        done = {k.trace_id for k in keys}
        return done if wanted is None else done & wanted
    infos = iter_trace_infos(
        experiment_id,
        filter_string=None if wanted is not None else label_filter(judge_name),
        trace_ids=wanted,
    )
    found: set[str] = set()
    for info in infos:
        for a in info.assessments or []:
            if (
                a.name == judge_name
                and a.source.source_type == _LLM_JUDGE
                and a.source.source_id == source_id
                and a.valid is not False
            ):
                found.add(info.trace_id)
    return found


def write_verdict(
    trace_id: str,
    judge_name: str,
    version: int,
    verdict: Verdict,
    *,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write one successful verdict as the version's ``LLM_JUDGE`` feedback on a trace.

    Args:
        trace_id: The judged trace.
        judge_name: The judge (feedback) name.
        version: The judge version (the source id is :func:`version_source_id`).
        verdict: What the judge said (a failed verdict must not be written).
        metadata: Strings to attach (bulk scoring: its run id and the version).
    """
    from core.optimization.recorder import with_retry

    source = AssessmentSource(
        source_type=_LLM_JUDGE, source_id=version_source_id(judge_name, version)
    )
    # The job process and every dashboard share the sqlite file: a lock is a wait.
    with_retry(
        mlflow.log_feedback,
        trace_id=trace_id,
        name=judge_name,
        value=verdict.value,
        source=source,
        rationale=verdict.rationale,
        metadata=dict(metadata) if metadata else None,
    )


def version_scorer(experiment_id: str, judge_name: str, version: int) -> tuple[JudgeSpec, Any]:
    """The judge a registered version is evaluated as, for :class:`JudgeEvaluator`.

    Returns:
        ``(spec, candidate)``: the spec (value type and options of the criterion, the
        judge's model and the base URL it was registered with), and what to evaluate: the version's instructions (so the evaluator
        builds the judge with its own bounded retries), or the registered judge object for
        a MemAlign judge (its behaviour is not a function of its instructions).

    Raises:
        NotFoundError: no such version.
    """
    meta = next((v for v in list_versions(experiment_id, judge_name) if v.version == version), None)
    if meta is None:
        known = [v.version for v in list_versions(experiment_id, judge_name)]
        raise NotFoundError(
            f"Judge {judge_name!r} has no version {version}; registered versions: "
            f"{known or 'none'}."
        )
    judge = load_version(experiment_id, judge_name, version)
    try:
        criterion = get_criterion(experiment_id, judge_name)
        value_type, options = criterion.kind, tuple(criterion.options or ())
    except NotFoundError:
        value_type, options = "pass_fail", ()
    spec = JudgeSpec(
        name=judge_name,
        instructions=meta.instructions or str(getattr(judge, "instructions", "") or ""),
        value_type=value_type,
        model=getattr(judge, "model", None) or "demo:/judge",
        options=options,
        # MLflow does not serialize a judge's base URL: the version's metadata keeps it.
        base_url=meta.base_url,
    )
    return spec, (judge if meta.is_memalign else spec.instructions)


def score_version(
    experiment_id: str,
    judge_name: str,
    version: int,
    split: str = "test",
    *,
    workers: int = 8,
) -> ScoringResult:
    """Run a registered judge version on the labeled traces of a split; store its verdicts.

    Idempotent: traces that already carry this version's verdict are skipped.

    Args:
        experiment_id: The experiment.
        judge_name: The judge (criterion) name.
        version: The registered version to run.
        split: all, train, val or test (the deterministic split of each trace).
        workers: Judge calls in flight at once.

    Raises:
        ValidationError: unknown split, or no labeled trace in it.
        NotFoundError: no such version.
        CredentialsError: the judge's model needs a key that is missing.
    """
    if split not in SPLITS:
        raise ValidationError(f"Unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    spec, candidate = version_scorer(experiment_id, judge_name, version)
    examples = [e for e in load_examples(experiment_id, judge_name) if split in ("all", e.split)]
    if not examples:
        raise ValidationError(
            f"No labeled trace of {judge_name} in the {split} split; label some traces first."
        )
    source_id = version_source_id(judge_name, version)
    done = judged_ids(experiment_id, judge_name, version, (e.trace_id for e in examples))
    todo = [e for e in examples if e.trace_id not in done]
    if not todo:
        return ScoringResult(source_id, 0, len(examples), 0)
    verdicts = JudgeEvaluator(spec, workers=workers, cache=None).evaluate(candidate, todo)
    failed = 0
    for example, verdict in zip(todo, verdicts, strict=True):
        if verdict.error:
            failed += 1
            continue
        write_verdict(example.trace_id, judge_name, version, verdict)
    return ScoringResult(source_id, len(todo) - failed, len(done), failed)
