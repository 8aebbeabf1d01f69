"""Turning a criterion's human labels into alignment examples.

One :class:`~core.optimization.spec.Example` per labeled trace, whatever the number of
reviewers who labeled it, by the precedence rule of :mod:`core.labeling.consolidation`
(gold, then majority, then the reviewer with the most labels). The example carries the
rationale and the assessment id of the label it took its value from, and which step of
the rule chose it (``Example.precedence``; :func:`precedence_counts` sums them for the run).

Reads are batched: one scan of trace infos (labels, no spans) filtered in the database by
the criterion, then the labeled traces' spans in batches of 100.
"""

from __future__ import annotations

from collections.abc import Iterable

from mlflow.tracing.client import TracingClient

from core.labeling.consolidation import (  # noqa: F401  (consolidate: re-exported)
    consolidate,
    consolidate_with_precedence,
    precedence_counts,
)
from core.labeling.labels import Label, current_labels
from core.labeling.splits import assign_split
from core.labeling.traces import expectations_of, root_io
from core.optimization.spec import Example
from core.store import config

_BATCH = 100


def load_examples(
    experiment_id: str,
    criterion_name: str,
    reviewers: Iterable[str] = (),
    *,
    labels: Iterable[Label] | None = None,
) -> list[Example]:
    """Load the labeled examples of a criterion, one per labeled trace.

    Args:
        experiment_id: The experiment holding the traces and labels.
        criterion_name: The criterion (= the judge's name and the labels' name).
        reviewers: Only use these reviewers' labels (empty: everyone's). Gold labels are
            kept on the traces those reviewers labeled (gold precedes every reviewer).
        labels: The criterion's current labels with the gold ones
            (``current_labels(..., gold=True)``), when the caller already read them (for
            pre-flight too), so the store is scanned once; None reads them here.

    Returns:
        Examples in trace order (oldest first), each with its deterministic split.
    """
    config.configure()
    wanted = set(reviewers)
    if labels is None:
        labels = current_labels(experiment_id, criterion_name, gold=True)
    labels = list(labels)
    if wanted:
        kept = {lb.trace_id for lb in labels if not lb.adjudication and lb.reviewer in wanted}
        labels = [
            lb
            for lb in labels
            if lb.trace_id in kept and (lb.adjudication or lb.reviewer in wanted)
        ]
    chosen = consolidate_with_precedence(labels)
    ids = list(dict.fromkeys(lb.trace_id for lb in labels))
    client = TracingClient()
    examples: list[Example] = []
    for i in range(0, len(ids), _BATCH):
        traces = {t.info.trace_id: t for t in client.batch_get_traces(ids[i : i + _BATCH])}
        for trace_id in ids[i : i + _BATCH]:
            trace = traces.get(trace_id)
            if trace is None:
                continue
            inputs, outputs = root_io(trace)
            label, step = chosen[trace_id]
            examples.append(
                Example(
                    trace_id=trace_id,
                    inputs=inputs,
                    outputs=outputs,
                    expectations=expectations_of(trace.info),
                    label=label.value,
                    rationale=label.rationale,
                    reviewer=label.reviewer,
                    split=assign_split(trace_id),
                    label_version=label.assessment_id,
                    span_count=len(trace.data.spans),
                    precedence=step,
                )
            )
    return examples


def example_precedence(examples: Iterable[Example]) -> dict[str, int]:
    """How many examples each precedence step labeled: ``{gold, majority,
    primary_tiebreak, single}`` (the run records it; see ``AlignmentResult.label_sources``)."""
    return precedence_counts(e.precedence for e in examples if e.precedence)


def split_examples(examples: list[Example]) -> tuple[list[Example], list[Example], list[Example]]:
    """Divide examples by their split.

    Returns:
        ``(train, val, test)``, each in input order.
    """
    parts: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    for ex in examples:
        parts[ex.split].append(ex)
    return parts["train"], parts["val"], parts["test"]
