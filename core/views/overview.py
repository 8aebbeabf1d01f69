"""An experiment at a glance: traces, labels per criterion and reviewer, judges, latest runs.

Also answers "is the offline demo model in use here?", so the app can say so wherever it
is: the demo model (``demo:/...``) is a deterministic stand-in, not an LLM.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from mlflow.entities import Feedback

from core.labeling.criteria import list_criteria
from core.labeling.labels import current_from_assessments, is_human_feedback, iter_trace_infos
from core.labeling.traces import count_traces
from core.store import config
from core.store import index as store_index

#: Run tag holding an alignment's status (queued/running/finished/failed/...).
STATUS_TAG = "alignboard.status"
#: Run params that name models.
MODEL_PARAMS = ("judge_model", "task_model", "reflection_model", "embedding_model")
DEMO_PREFIX = "demo:/"
DEMO_NOTE = (
    "The demo model (demo:/...) is a deterministic stand-in, not an LLM: it follows "
    "fixed rules so the dashboard works offline. Its verdicts say nothing about a real judge."
)


@dataclass(frozen=True)
class CriterionCounts:
    """How far labeling of one criterion has come."""

    criterion: str
    kind: str
    labeled_traces: int
    """Traces with at least one human label."""
    per_reviewer: dict[str, int]
    """reviewer -> traces they labeled."""
    judged_traces: int
    """Traces with a judge verdict (non-human feedback of this name)."""
    multi_labeled: int
    """Traces labeled by two or more reviewers (what reviewer agreement is computed on)."""


@dataclass(frozen=True)
class JudgeSummary:
    """A registered judge."""

    name: str
    latest_version: int
    versions: int
    """Number of registered versions."""
    aliases: dict[str, int] = field(default_factory=dict)
    """alias -> version."""
    latest_optimizer: str | None = None


@dataclass(frozen=True)
class RunSummary:
    """One MLflow run of the experiment (alignments and anything else)."""

    run_id: str
    name: str
    status: str
    """``alignboard.status`` when set, else MLflow's own status (lower case)."""
    started_ms: int | None
    optimizer: str | None
    judge: str | None
    models: tuple[str, ...]
    """Model URIs the run used (judge, reflection, embedding), as logged in its params."""

    @property
    def uses_demo(self) -> bool:
        """Whether any model of the run is the demo stand-in."""
        return any(m.startswith(DEMO_PREFIX) for m in self.models)


@dataclass(frozen=True)
class Overview:
    """Everything the overview page shows."""

    experiment_id: str
    traces: int
    criteria: tuple[CriterionCounts, ...]
    judges: tuple[JudgeSummary, ...]
    runs: tuple[RunSummary, ...]
    demo_uses: tuple[str, ...]
    """Where the demo model is in use (empty when it is not)."""

    @property
    def reviewers(self) -> list[str]:
        """Every reviewer with a label on any criterion, sorted."""
        return sorted({r for c in self.criteria for r in c.per_reviewer})

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def label_counts(experiment_id: str) -> list[CriterionCounts]:
    """Human labels per criterion and reviewer, and judged traces, in one pass over trace infos."""
    crits = list_criteria(experiment_id)
    names = {c.name for c in crits}
    per_rev: dict[str, Counter[str]] = {c.name: Counter() for c in crits}
    labeled: Counter[str] = Counter()
    multi: Counter[str] = Counter()
    judged: Counter[str] = Counter()
    keys = store_index.valid_feedback_keys(experiment_id, names)
    if keys is not None:
        # SQL store: count from (trace, name, source) keys; no trace info is built.
        humans: dict[tuple[str, str], set[str]] = {}
        judged_keys: set[tuple[str, str]] = set()
        for k in keys:
            if k.source_type == "HUMAN":
                humans.setdefault((k.name, k.trace_id), set()).add(k.source_id or "")
            else:
                judged_keys.add((k.name, k.trace_id))
        for (crit, _), revs in humans.items():
            labeled[crit] += 1
            multi[crit] += len(revs) >= 2
            per_rev[crit].update(revs)
        judged.update(crit for crit, _ in judged_keys)
        return _criterion_counts(crits, per_rev, labeled, multi, judged)
    for info in iter_trace_infos(experiment_id):
        by_crit: dict[str, set[str]] = {}
        for lab in current_from_assessments(info.assessments):
            if lab.criterion in names:
                by_crit.setdefault(lab.criterion, set()).add(lab.reviewer)
        for crit, revs in by_crit.items():
            labeled[crit] += 1
            multi[crit] += len(revs) >= 2
            per_rev[crit].update(revs)
        judged_here = {
            a.name
            for a in info.assessments
            if isinstance(a, Feedback)
            and not is_human_feedback(a)
            and a.valid is not False
            and a.name in names
        }
        judged.update(judged_here)
    return _criterion_counts(crits, per_rev, labeled, multi, judged)


def _criterion_counts(crits, per_rev, labeled, multi, judged) -> list[CriterionCounts]:
    return [
        CriterionCounts(
            criterion=c.name,
            kind=c.kind,
            labeled_traces=labeled[c.name],
            per_reviewer=dict(sorted(per_rev[c.name].items())),
            judged_traces=judged[c.name],
            multi_labeled=multi[c.name],
        )
        for c in crits
    ]


def registered_judges(experiment_id: str) -> list[JudgeSummary]:
    """Registered judges with their versions; empty when the registry is unavailable."""
    try:
        from core.optimization.registry import list_judges, list_versions
    except ImportError:  # pragma: no cover - the alignment package is optional here
        return []
    out = []
    for name, latest in list_judges(experiment_id).items():
        versions = list_versions(experiment_id, name)
        aliases = {a: v.version for v in versions for a in v.aliases}
        last = versions[-1] if versions else None
        out.append(
            JudgeSummary(
                name=name,
                latest_version=latest,
                versions=len(versions) or 1,
                aliases=dict(sorted(aliases.items())),
                latest_optimizer=last.optimizer if last else None,
            )
        )
    return out


def latest_runs(experiment_id: str, limit: int = 10) -> list[RunSummary]:
    """The experiment's most recent runs, newest first, with their alignboard status."""
    import mlflow

    config.configure()
    runs = mlflow.search_runs(
        experiment_ids=[str(experiment_id)],
        max_results=limit,
        order_by=["attributes.start_time DESC"],
        output_format="list",
    )
    out = []
    for run in runs:
        tags, params = run.data.tags, run.data.params
        optimizer = params.get("optimizer") or tags.get("alignboard.optimizer")
        models = tuple(
            params[p]
            for p in MODEL_PARAMS
            # Every alignment logs the embedding field, but only MemAlign uses it: a GEPA
            # run on a real model is not "using the demo" for its unused default.
            if params.get(p) and (p != "embedding_model" or optimizer == "memalign")
        )
        out.append(
            RunSummary(
                run_id=run.info.run_id,
                name=run.info.run_name or run.info.run_id,
                status=tags.get(STATUS_TAG) or str(run.info.status).lower(),
                started_ms=run.info.start_time,
                optimizer=optimizer,
                judge=params.get("judge_name") or tags.get("alignboard.judge_name"),
                models=models,
            )
        )
    return out


def _judge_models(experiment_id: str) -> list[tuple[str, str]]:
    """(judge name, model URI) of the latest registered scorers."""
    try:
        from mlflow.genai.scorers.registry import list_scorers

        scorers = list_scorers(experiment_id=str(experiment_id))
    except Exception:  # an older server without scorer support: nothing to report
        return []
    return [(s.name, str(getattr(s, "model", "") or "")) for s in scorers]


def demo_uses(experiment_id: str, runs: list[RunSummary] | None = None) -> list[str]:
    """Where the demo model is in use in the experiment: registered judges and runs."""
    found = [
        f"judge {name} uses {model}"
        for name, model in _judge_models(experiment_id)
        if model.startswith(DEMO_PREFIX)
    ]
    runs = latest_runs(experiment_id) if runs is None else runs
    found += [
        f"run {r.name} uses {', '.join(m for m in r.models if m.startswith(DEMO_PREFIX))}"
        for r in runs
        if r.uses_demo
    ]
    return found


def reviewers(experiment_id: str) -> list[str]:
    """Every reviewer with a current label on any criterion, sorted (as ``Overview.reviewers``).

    One indexed query on a SQL store, instead of the whole overview.
    """
    found = store_index.human_reviewers(experiment_id)
    if found is None:
        found = experiment_overview(experiment_id).reviewers
    return found


def experiment_overview(experiment_id: str, run_limit: int = 10) -> Overview:
    """Everything the overview page shows for one experiment."""
    runs = latest_runs(experiment_id, run_limit)
    return Overview(
        experiment_id=str(experiment_id),
        traces=count_traces(experiment_id),
        criteria=tuple(label_counts(experiment_id)),
        judges=tuple(registered_judges(experiment_id)),
        runs=tuple(runs),
        demo_uses=tuple(demo_uses(experiment_id, runs)),
    )
