"""New MemAlign judge versions without a full re-alignment: add new labels, or forget traces.

Both go through :func:`core.optimization.engine.run_alignment` with a small runner, so each
one is an MLflow run like any alignment (test-split scores before/after, artifacts) and
ends as a new registered version of the judge.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from core.errors import NotFoundError, ValidationError
from core.optimization import record
from core.optimization.engine import AlignmentResult, load_settings, run_alignment
from core.optimization.registry import JudgeVersion, list_versions, load_version
from core.optimization.runners import memalign as memalign_runner
from core.optimization.spec import AlignmentOutcome, AlignmentSettings, Example, RunRecorder


def _memalign_version(experiment_id: str, judge_name: str, version: int | None) -> JudgeVersion:
    versions = [v for v in list_versions(experiment_id, judge_name) if v.is_memalign]
    if version is not None:
        versions = [v for v in versions if v.version == version]
    if not versions:
        which = f"version {version}" if version is not None else "any version"
        raise NotFoundError(
            f"Judge {judge_name!r} has no MemAlign {which}; run an alignment with "
            "--optimizer memalign first."
        )
    chosen = max(versions, key=lambda v: v.version)
    if not chosen.run_id:
        raise ValidationError(
            f"{judge_name} v{chosen.version} was registered outside alignboard; its settings "
            "are unknown, so it cannot be re-aligned here."
        )
    return chosen


def _settings_of(base: JudgeVersion) -> AlignmentSettings:
    """The settings of the run that produced ``base``, its judge on the server the version
    was registered with (the run's own base URL for a version registered without one)."""
    assert base.run_id is not None  # _memalign_version refuses a version without a run
    settings: AlignmentSettings = load_settings(base.run_id)
    if base.base_url and base.base_url != settings.judge.base_url:
        settings = replace(settings, judge=replace(settings.judge, base_url=base.base_url))
    return settings


def _outcome(
    judge: Any, recorder: RunRecorder, base: JudgeVersion, action: str
) -> AlignmentOutcome:
    found = memalign_runner.guidelines(judge)
    memory = memalign_runner.episodes(judge)
    record.write_memalign(recorder, found, memory)
    recorder.log_metrics(
        {"memalign_guidelines": float(len(found)), "memalign_episodes": float(len(memory))},
        step=1,
    )
    return AlignmentOutcome(
        optimizer="memalign",
        instructions=judge.instructions,
        judge=judge,
        iterations=1,
        extra={
            "guidelines": found,
            "episodes": len(memory),
            "action": action,
            "from_version": base.version,
        },
    )


def realign(experiment_id: str, judge_name: str, *, version: int | None = None) -> AlignmentResult:
    """Add labels that arrived since a MemAlign version to its memory; register the result.

    Only train-split labels are used; traces already in memory with unchanged labels cost
    nothing (MLflow's MemAlign skips them).

    Args:
        experiment_id: The experiment.
        judge_name: The judge (criterion) name.
        version: The MemAlign version to start from (default: the latest one).
    """
    base = _memalign_version(experiment_id, judge_name, version)
    settings = _settings_of(base)

    def runner(
        s: AlignmentSettings, train: list[Example], val: list[Example], recorder: RunRecorder
    ) -> AlignmentOutcome:
        judge = load_version(experiment_id, judge_name, base.version)
        recorder.heartbeat()
        return _outcome(memalign_runner.realign(judge, train), recorder, base, "realign")

    return run_alignment(settings, runner=runner)


def unalign(
    experiment_id: str, judge_name: str, trace_ids: Iterable[str], *, version: int | None = None
) -> AlignmentResult:
    """Remove traces from a MemAlign version's memory; register the result as a new version.

    Their episodes go, and so does every guideline whose source traces all go.
    """
    ids = list(dict.fromkeys(trace_ids))
    if not ids:
        raise ValidationError("Choose at least one trace to unalign.")
    base = _memalign_version(experiment_id, judge_name, version)
    settings = _settings_of(base)

    def runner(
        s: AlignmentSettings, train: list[Example], val: list[Example], recorder: RunRecorder
    ) -> AlignmentOutcome:
        judge = load_version(experiment_id, judge_name, base.version)
        record.write_unaligned(recorder, ids)
        return _outcome(memalign_runner.unalign(judge, ids), recorder, base, "unalign")

    return run_alignment(settings, runner=runner)
