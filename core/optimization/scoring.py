"""Score a registered judge version on the labeled traces, so agreement can be measured.

The verdicts are written to the traces as ordinary MLflow ``Feedback`` from an
``LLM_JUDGE`` source whose id names the version (``support_quality/v3``). The Agreement
page (and MLflow's own UI) then sees each version as one more rater, on any split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import mlflow
from mlflow.entities import AssessmentSource

from core.errors import NotFoundError, ValidationError
from core.labeling.criteria import get_criterion
from core.labeling.labels import iter_trace_infos, label_filter
from core.optimization.dataset import load_examples
from core.optimization.judging import JudgeEvaluator
from core.optimization.registry import list_versions, load_version
from core.optimization.spec import JudgeSpec

SPLITS = ("all", "train", "val", "test")


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


def _already_judged(experiment_id: str, judge_name: str, source_id: str) -> set[str]:
    done: set[str] = set()
    for info in iter_trace_infos(experiment_id, filter_string=label_filter(judge_name)):
        for a in info.assessments or []:
            if (
                a.name == judge_name
                and a.source.source_type == "LLM_JUDGE"
                and a.source.source_id == source_id
                and a.valid is not False
            ):
                done.add(info.trace_id)
    return done


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
    meta = next((v for v in list_versions(experiment_id, judge_name) if v.version == version), None)
    if meta is None:
        raise NotFoundError(f"Judge {judge_name!r} has no version {version}.")
    criterion = get_criterion(experiment_id, judge_name)
    examples = [e for e in load_examples(experiment_id, judge_name) if split in ("all", e.split)]
    if not examples:
        raise ValidationError(
            f"No labeled trace of {judge_name} in the {split} split; label some traces first."
        )
    source_id = version_source_id(judge_name, version)
    done = _already_judged(experiment_id, judge_name, source_id)
    todo = [e for e in examples if e.trace_id not in done]
    if not todo:
        return ScoringResult(source_id, 0, len(examples), 0)
    judge = load_version(experiment_id, judge_name, version)
    spec = JudgeSpec(
        name=judge_name,
        instructions=meta.instructions,
        value_type=criterion.kind,
        model=getattr(judge, "model", None) or "demo:/judge",
        options=tuple(criterion.options or ()),
    )
    verdicts = JudgeEvaluator(spec, workers=workers, cache=None).evaluate(judge, todo)
    failed = 0
    source = AssessmentSource(source_type="LLM_JUDGE", source_id=source_id)
    for example, verdict in zip(todo, verdicts, strict=True):
        if verdict.error:
            failed += 1
            continue
        mlflow.log_feedback(
            trace_id=example.trace_id,
            name=judge_name,
            value=verdict.value,
            source=source,
            rationale=verdict.rationale,
        )
    return ScoringResult(
        source_id, len(todo) - failed, len(done & {e.trace_id for e in examples}), failed
    )
