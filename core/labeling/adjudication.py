"""Adjudication: a lead settles a disagreement between reviewers with a gold label.

A trace is **in disagreement** for a criterion when two or more reviewers hold current
labels on it with different values (strings compared case-insensitively, as in a vote).
The adjudicator records a **gold label**: HUMAN feedback named after the criterion, source
id = the adjudicator, metadata ``alignboard.adjudication = "true"``, always with a
rationale (a gold label must say why). It has its own chain of versions per
(trace, criterion, adjudicator) (:func:`core.labeling.labels.chain_key`), so it never
overrides the adjudicator's own reviewer label, and history stays intact on both.

The consolidation (:mod:`core.labeling.consolidation`) puts gold first; reviewer
agreement leaves gold out (it is not a reviewer's opinion).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import ValidationError
from core.labeling.consolidation import vote_key
from core.labeling.criteria import Criterion, normalize_value
from core.labeling.labels import (
    Label,
    _check_reviewer,
    _client,
    _trace_info,
    check_rationale,
    current_from_assessments,
    iter_trace_infos,
    label_filter,
    set_label,
)


@dataclass(frozen=True)
class Dispute:
    """One trace where reviewers disagree on a criterion, and its gold label if settled."""

    trace_id: str
    """The trace."""
    criterion: str
    """The criterion."""
    labels: tuple[Label, ...]
    """Every reviewer's current label (gold excluded), by reviewer."""
    gold: Label | None
    """The newest gold label, once adjudicated."""
    request_preview: str = ""
    """MLflow's preview of the trace's request (text)."""

    @property
    def resolved(self) -> bool:
        """True once an adjudicator recorded a gold label."""
        return self.gold is not None


def in_disagreement(labels: Iterable[Label]) -> bool:
    """Whether two or more reviewers' current labels (gold ignored) differ in value."""
    reviewer_labels = [lab for lab in labels if not lab.adjudication]
    reviewers = {lab.reviewer for lab in reviewer_labels}
    return len(reviewers) >= 2 and len({vote_key(lab.value) for lab in reviewer_labels}) >= 2


def _newest_gold(labels: Iterable[Label]) -> Label | None:
    golds = [lab for lab in labels if lab.adjudication]
    return max(golds, key=lambda lab: (lab.created_ms, lab.reviewer)) if golds else None


def dispute_from_labels(
    trace_id: str, criterion: str, labels: Sequence[Label], request_preview: str = ""
) -> Dispute | None:
    """The dispute one trace's current labels (gold included) make, or None without one."""
    mine = [lab for lab in labels if lab.criterion == criterion]
    if not in_disagreement(mine):
        return None
    reviewer_labels = tuple(
        sorted((lab for lab in mine if not lab.adjudication), key=lambda lab: lab.reviewer)
    )
    return Dispute(trace_id, criterion, reviewer_labels, _newest_gold(mine), request_preview)


def disputes(
    experiment_id: str,
    criterion: str,
    *,
    include_resolved: bool = False,
    trace_ids: Iterable[str] | None = None,
) -> list[Dispute]:
    """The traces where reviewers disagree on ``criterion``, oldest first.

    Args:
        experiment_id: The experiment.
        criterion: The criterion's name.
        include_resolved: Also list the traces already adjudicated (with their gold).
        trace_ids: Only these traces.
    """
    out = []
    infos = iter_trace_infos(
        experiment_id,
        filter_string=None if trace_ids is not None else label_filter(criterion),
        trace_ids=trace_ids,
    )
    for info in infos:
        labels = current_from_assessments(info.assessments or [], criterion, gold=True)
        found = dispute_from_labels(info.trace_id, criterion, labels, info.request_preview or "")
        if found is not None and (include_resolved or not found.resolved):
            out.append(found)
    return out


def gold_labels(experiment_id: str, criterion: str) -> list[Label]:
    """Every current gold label of ``criterion`` in the experiment."""
    from core.labeling.labels import current_labels

    return [lab for lab in current_labels(experiment_id, criterion, gold=True) if lab.adjudication]


def adjudicate(
    trace_id: str,
    criterion: Criterion,
    adjudicator: str | None,
    value: Any,
    rationale: str | None,
) -> Label:
    """Record ``adjudicator``'s gold label on a trace in disagreement.

    A second adjudication of the same trace by the same adjudicator replaces their
    earlier gold label (a new version of the gold chain); their own reviewer label, if
    any, is left as it is.

    Args:
        trace_id: The trace.
        criterion: The criterion in dispute.
        adjudicator: Who decides (becomes the HUMAN source id).
        value: The gold value (any spelling the criterion accepts).
        rationale: Why; required.

    Returns:
        The gold label.

    Raises:
        ValidationError: no adjudicator, no value, no rationale, a value the criterion
            does not accept, or a trace where reviewers do not disagree; nothing is written.
        NotFoundError: no such trace.
    """
    if not isinstance(adjudicator, str) or not adjudicator.strip():
        raise ValidationError("Say who you are (the sidebar's name) before adjudicating.")
    who = _check_reviewer(adjudicator)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValidationError("Choose the gold value before saving the adjudication.")
    canonical = normalize_value(criterion, value)
    why = check_rationale(rationale)
    if not why:
        raise ValidationError(
            "A gold label must say why: write the rationale (what settles the disagreement)."
        )
    info = _trace_info(_client(), trace_id)
    labels = current_from_assessments(info.assessments or [], criterion.name)
    if not in_disagreement(labels):
        n = len({lab.reviewer for lab in labels})
        raise ValidationError(
            f"Reviewers do not disagree on {criterion.name!r} for trace {trace_id} "
            f"({n} reviewer label(s), {'one value' if n else 'none'}): there is nothing "
            "to adjudicate."
        )
    return set_label(trace_id, criterion, who, canonical, why, adjudication=True)
