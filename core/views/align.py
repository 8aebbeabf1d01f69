"""What the Align and Optimize pages show beside their forms: a run's model usage, a run
picker's labels, and the Realign offer of a judge's MemAlign version.

The pages draw these; nothing here imports streamlit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from core.views.formatting import tokens_and_cost, when

#: The base URL help every model field shows (judge, reflection, embedding, application).
BASE_URL_HELP = (
    "OpenAI-compatible server, e.g. http://localhost:8080/v1; blank = the provider's own."
)
#: Placeholder of a base URL field.
BASE_URL_PLACEHOLDER = "http://localhost:8080/v1"
#: What a run that logs no usage while it runs says until it ends.
COUNTED_AT_THE_END = "tokens and cost are counted at the end of the run"


# ---- usage -----------------------------------------------------------------------------


def run_usage(metrics: Mapping[str, float], *, active: bool) -> str:
    """A run's model usage as one line, from its latest metrics.

    The engine's totals (``llm_calls_total``, ``tokens_total``, ``cost_usd``), logged at
    the end, win; while a run goes, the gepa runner's running counts (``llm_calls``,
    ``prompt_tokens`` + ``completion_tokens``, ``cost_usd`` when priced) are shown. An
    optimizer that logs no tokens while it runs (MemAlign, MLflow's GEPA and SIMBA) says
    its usage is counted at the end. An unpriced model reads "price unknown", never $0.

    Args:
        metrics: The run's latest metric values.
        active: Whether the run is queued or running.
    """
    cost = metrics.get("cost_usd")
    if "tokens_total" in metrics or "llm_calls_total" in metrics:
        return tokens_and_cost(metrics.get("tokens_total"), cost, metrics.get("llm_calls_total"))
    if "prompt_tokens" in metrics or "completion_tokens" in metrics:
        tokens = metrics.get("prompt_tokens", 0.0) + metrics.get("completion_tokens", 0.0)
        line = tokens_and_cost(tokens, cost, metrics.get("llm_calls"))
        return f"{line} so far" if active else line
    calls = metrics.get("llm_calls")
    if active:
        so_far = f"{int(calls):,} calls so far · " if calls else ""
        return so_far + COUNTED_AT_THE_END
    if calls is not None:
        return tokens_and_cost(None, cost, calls)
    return "No model usage recorded for this run."


def read_run_usage(run_id: str, *, active: bool) -> str:
    """:func:`run_usage` of one run, read from the store (a read-only sqlite read on a local
    store, MLflow's client elsewhere)."""
    from core.store import config, run_reads

    snapshot = run_reads.read_run(run_id, config.tracking_uri())
    if snapshot is None:
        from mlflow import MlflowClient

        config.configure()
        snapshot = run_reads.RunSnapshot.from_mlflow(MlflowClient().get_run(run_id))
    return run_usage(snapshot.metrics, active=active)


# ---- run pickers -----------------------------------------------------------------------


def run_option_label(job: Any, subject: str) -> str:
    """A run as a picker lists it: ``started · status · optimizer · subject · id``.

    Args:
        job: Its ``JobStatus`` as just read.
        subject: What it optimizes (the judge's name, ``prompt vN``).
    """
    return (
        f"{when(job.started, seconds=True)} · {job.status} · {job.optimizer} · {subject} · "
        f"{job.run_id[:8]}"
    )


# ---- Realign ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RealignOffer:
    """What Realign would start from: a judge's latest MemAlign version and what is new."""

    judge_name: str
    """The judge (= criterion)."""
    version: int | None
    """The latest MemAlign version (None: the judge has none)."""
    run_id: str | None = None
    """The run that registered it."""
    new_labels: int | None = None
    """Train-split labels added or changed since that version (None: not counted)."""
    in_memory: int | None = None
    """Examples that version holds in its episodic memory."""
    reason: str | None = None
    """Why Realign is not offered (no MemAlign version, registered outside alignboard)."""

    @property
    def can_realign(self) -> bool:
        """True when there is a version to realign and something new to add to it."""
        return self.reason is None and self.version is not None and self.new_labels != 0

    def message(self) -> str:
        """The sentence the page shows beside the Realign button."""
        if self.reason is not None:
            return self.reason
        if self.new_labels == 0:
            return (
                f"Nothing new since v{self.version}: every train-split label is already in "
                "its memory. Label more traces (or change a label), then realign."
            )
        new = "" if self.new_labels is None else f"{self.new_labels} new or changed "
        return (
            f"{self.judge_name} v{self.version} is a MemAlign judge "
            f"({self.in_memory or 0} examples in memory): realign adds the {new}train-split "
            "labels since it to its memory and registers the result as a new version, "
            "scored on the held-out split like any alignment."
        )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {**asdict(self), "can_realign": self.can_realign}


def realign_offer(experiment_id: str, judge_name: str) -> RealignOffer:
    """Whether ``judge_name`` can be realigned, and how many labels are new since.

    The count is what :func:`core.optimization.runners.memalign.realign` would add: the
    criterion's consolidated train-split labels (of the reviewers the version was aligned
    on) whose trace is not in the version's episodic memory with that very label, the
    memory as its run recorded it (``episodes.json``). Labels are read without spans.
    """
    from mlflow import MlflowClient

    from core.errors import AlignboardError
    from core.labeling.consolidation import consolidate_with_precedence
    from core.labeling.labels import current_labels
    from core.labeling.splits import assign_split
    from core.optimization import record
    from core.optimization.engine import load_settings
    from core.optimization.registry import list_versions
    from core.store import config

    versions = [v for v in list_versions(experiment_id, judge_name) if v.is_memalign]
    if not versions:
        return RealignOffer(
            judge_name,
            None,
            reason=f"{judge_name} has no MemAlign version yet: align it with MemAlign first; "
            "Realign then adds new labels to that version's memory without starting over.",
        )
    base = max(versions, key=lambda v: v.version)
    if not base.run_id:
        return RealignOffer(
            judge_name,
            base.version,
            reason=f"{judge_name} v{base.version} was registered outside alignboard; its "
            "settings are unknown, so it cannot be realigned here.",
        )
    try:
        settings = load_settings(base.run_id)
    except AlignboardError as exc:
        return RealignOffer(judge_name, base.version, base.run_id, reason=str(exc))
    config.configure()
    artifacts = record.read_artifacts(MlflowClient(), base.run_id, [record.EPISODES])
    held = {
        e.get("trace_id"): e.get("assessment_id")
        for e in artifacts.get(record.EPISODES) or ()
        if isinstance(e, Mapping)
    }
    labels = current_labels(experiment_id, judge_name, gold=True)
    wanted = set(settings.reviewers)
    if wanted:
        # The same reviewer filter as load_examples: gold stays on the traces they labeled.
        kept = {lb.trace_id for lb in labels if not lb.adjudication and lb.reviewer in wanted}
        labels = [
            lb
            for lb in labels
            if lb.trace_id in kept and (lb.adjudication or lb.reviewer in wanted)
        ]
    chosen = consolidate_with_precedence(labels)
    new = sum(
        1
        for trace_id, (label, _step) in chosen.items()
        if assign_split(trace_id) == "train" and held.get(trace_id) != label.assessment_id
    )
    return RealignOffer(judge_name, base.version, base.run_id, new, len(held))


def realign_summary(result: Mapping[str, Any]) -> str:
    """What a finished realign says: the new version and its held-out scores."""
    from core.views.formatting import number

    version = result.get("judge_version")
    head = (
        f"Registered {result.get('judge_name')} v{version}"
        if version is not None
        else "Nothing registered"
    )
    return (
        f"{head} (run `{result.get('run_id')}`): held-out accuracy "
        f"{number(result.get('test_accuracy_before'))} -> {number(result.get('test_accuracy_after'))}"
        f", kappa {number(result.get('test_kappa_before'))} -> "
        f"{number(result.get('test_kappa_after'))}. {result.get('verdict_text') or ''}"
    ).strip()


def current_statuses(runs: Sequence[Any]) -> list[Any]:
    """``runs`` (``JobStatus``, as a cached list read them) with the active ones read again.

    A finished run never changes, so only queued and running ones are re-read: one cheap
    read each (:func:`core.optimization.jobs.status`), whatever the list's cache age.
    """
    from core.errors import NotFoundError
    from core.optimization import jobs

    out = []
    for job in runs:
        fresh = job
        # A run deleted meanwhile keeps its listed status: the next list read drops it.
        with contextlib.suppress(NotFoundError):
            fresh = jobs.status(job.run_id) if job.active else job
        out.append(fresh)
    return out
