"""What the Adjudicate page shows: disputes with every label side by side, flags for the
lead, and the one-line precedence summary of an alignment run (for the Run explorer)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from core.labeling.adjudication import Dispute, disputes
from core.labeling.consolidation import PRECEDENCE, PRECEDENCE_TEXT
from core.labeling.criteria import Criterion, display_value
from core.labeling.flags import FLAG_TEXT, Flag, list_flags
from core.optimization.preflight import GATE_CODES, GATE_OVERRIDDEN
from core.views.formatting import preview_text, when_ms


@dataclass(frozen=True)
class LabelRow:
    """One reviewer's label on a disputed trace, as text."""

    reviewer: str
    value: str
    """Display text of the value (``Pass``, ``partial``, ``4``)."""
    rationale: str
    """The rationale, or an empty string."""
    when: str
    """When the label was written."""


@dataclass(frozen=True)
class DisputeView:
    """One trace in dispute, ready to show."""

    trace_id: str
    preview: str
    """The request preview (text)."""
    labels: tuple[LabelRow, ...]
    """Every reviewer's current label, by reviewer."""
    values: str
    """The distinct values given, e.g. ``Pass 1 · Fail 1``."""
    resolved: bool
    gold_value: str = ""
    """The gold label's display value, once adjudicated."""
    gold_rationale: str = ""
    gold_by: str = ""
    gold_when: str = ""

    @property
    def status(self) -> str:
        """``resolved: <gold>`` or ``open``."""
        return f"resolved: {self.gold_value}" if self.resolved else "open"


def dispute_view(criterion: Criterion, dispute: Dispute) -> DisputeView:
    """Build the view of one dispute (every value shown as the criterion displays it)."""
    rows = tuple(
        LabelRow(
            lab.reviewer,
            display_value(criterion, lab.value),
            lab.rationale or "",
            when_ms(lab.created_ms),
        )
        for lab in dispute.labels
    )
    tally: dict[str, int] = {}
    for row in rows:
        tally[row.value] = tally.get(row.value, 0) + 1
    gold = dispute.gold
    return DisputeView(
        trace_id=dispute.trace_id,
        preview=preview_text(dispute.request_preview),
        labels=rows,
        values=" · ".join(f"{v} {n}" for v, n in sorted(tally.items())),
        resolved=gold is not None,
        gold_value=display_value(criterion, gold.value) if gold else "",
        gold_rationale=(gold.rationale or "") if gold else "",
        gold_by=gold.reviewer if gold else "",
        gold_when=when_ms(gold.created_ms) if gold else "",
    )


def dispute_views(
    experiment_id: str, criterion: Criterion, *, include_resolved: bool = False
) -> list[DisputeView]:
    """The criterion's disputes (open ones only unless ``include_resolved``), oldest first."""
    return [
        dispute_view(criterion, d)
        for d in disputes(experiment_id, criterion.name, include_resolved=include_resolved)
    ]


def dispute_table(views: Iterable[DisputeView]) -> list[dict[str, Any]]:
    """Rows of the page's dispute table (plain text; the trace link opens the Label page)."""
    return [
        {
            "trace": v.trace_id,
            "request": v.preview,
            "labels": v.values,
            "reviewers": ", ".join(r.reviewer for r in v.labels),
            "status": v.status,
        }
        for v in views
    ]


def label_link(trace_id: str) -> str:
    """The Label page's address for one trace."""
    return f"label?trace={trace_id}"


def flag_rows(flags: Iterable[Flag]) -> list[dict[str, Any]]:
    """Rows of the "Flagged traces" table: kind, criterion, reviewer, comment, when, link."""
    return [
        {
            "kind": FLAG_TEXT.get(f.kind, f.kind),
            "criterion": f.criterion,
            "reviewer": f.reviewer,
            "comment": f.comment,
            "when": when_ms(f.time_ms),
            "trace": label_link(f.trace_id),
            "trace id": f.trace_id,
        }
        for f in flags
    ]


def flagged(experiment_id: str, criterion: str | None = None) -> list[Flag]:
    """The experiment's flags, newest first (of one criterion when given)."""
    return list_flags(experiment_id, criterion=criterion)


def precedence_line(result: Mapping[str, Any] | None) -> str | None:
    """How an alignment's examples got their human value, in one line, e.g.
    ``Human labels: 3 gold (adjudicated), 40 majority of reviewers, 2 tie, primary reviewer,
    35 single reviewer.``; None for a run that did not record it (older runs).

    Args:
        result: The run's ``result.json`` (``AlignmentResult.to_dict``) or None.
    """
    counts = (result or {}).get("label_sources") or {}
    if not counts:
        return None
    parts = [f"{int(counts.get(k, 0))} {PRECEDENCE_TEXT[k]}" for k in PRECEDENCE]
    return "Human labels: " + ", ".join(parts) + "."


def gate_findings(findings: Iterable[Any]) -> list[Any]:
    """The findings of pre-flight's agreement gate that refuse a run (the Align page
    offers "launch anyway with a reason" for these)."""
    return [f for f in findings if getattr(f, "code", None) in GATE_CODES]


def only_gate_blocks(findings: Iterable[Any]) -> bool:
    """True when the agreement gate is the only thing refusing the run."""
    errors = [f for f in findings if getattr(f, "level", None) == "error"]
    return bool(errors) and all(f.code in GATE_CODES for f in errors)


def override_finding(findings: Iterable[Any]) -> Any | None:
    """The recorded "gate overridden by <who>: <reason>" finding, if any."""
    return next((f for f in findings if getattr(f, "code", None) == GATE_OVERRIDDEN), None)
