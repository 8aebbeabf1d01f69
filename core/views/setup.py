"""The Setup page: criteria, queues, the lead's rules and the team's progress.

Everything here is read-only and built from :mod:`core.labeling`; the page's forms
call the labeling functions directly (one per action). The parsers turn what a form
holds (comma-separated options, an optional number typed as text) into the arguments
those functions take, with a clear message for what cannot be read.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from core.errors import ValidationError
from core.labeling import rules as rules_mod
from core.labeling.criteria import Criterion, list_criteria
from core.labeling.flags import list_flags
from core.labeling.queues import Queue, list_queues, queue_items, reviewer_progress

KIND_TEXT = {"pass_fail": "pass/fail", "categorical": "categorical", "numeric": "numeric"}
#: The queue-override choice that keeps the criterion's own rule.
INHERIT = "criterion's rule"


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:=])")


def plain(text: str) -> str:
    """``text`` escaped so Streamlit's markdown shows it as typed (names, values, ids)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def parse_options(text: str | None) -> list[str]:
    """Categorical options from a form: one per line or separated by commas."""
    return [o.strip() for o in re.split(r"[\n,]+", text or "") if o.strip()]


def parse_number(text: Any, label: str) -> float | None:
    """An optional number typed as text (empty means none).

    Raises:
        ValidationError: text that is not a finite number (the message names ``label``).
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        number = float(text.strip() if isinstance(text, str) else text)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{label} must be a number or empty, not {text!r}.") from exc
    if not math.isfinite(number):
        raise ValidationError(f"{label} must be a finite number, not {text!r}.")
    return number


def parse_reviewers(text: str | None) -> list[str]:
    """Reviewer names from a form: separated by commas or new lines, duplicates dropped."""
    return list(dict.fromkeys(r.strip() for r in re.split(r"[\n,]+", text or "") if r.strip()))


def rules_text(rules: rules_mod.LabelRules) -> str:
    """One line describing a criterion's rules, for the criteria table."""
    parts = [
        f"rationale {rules_mod.POLICY_TEXT[rules.rationale_policy]}",
        "blind" if rules.blind else "not blind",
    ]
    if rules.min_reviewer_kappa is not None:
        parts.append(f"min kappa {rules.min_reviewer_kappa:g}")
    return "; ".join(parts)


def queue_rules_text(over: rules_mod.QueueRules) -> str:
    """One line describing a queue's overrides ("none" when it follows its criteria)."""
    parts = []
    if over.rationale_policy is not None:
        parts.append(f"rationale {rules_mod.POLICY_TEXT[over.rationale_policy]}")
    if over.blind is not None:
        parts.append("blind" if over.blind else "not blind")
    return "; ".join(parts) or "none (the criteria's rules)"


@dataclass(frozen=True)
class CriterionRow:
    """One criterion as the Setup page lists it."""

    name: str
    kind: str
    """pass/fail, categorical or numeric."""
    values: str
    """What a label may be (the two labels, the options, the range)."""
    instructions: str
    rules: str
    """The lead's rules, in words."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def criterion_values(crit: Criterion) -> str:
    """What a label of ``crit`` may be, in words."""
    if crit.kind == "pass_fail":
        return f"{crit.positive_label} / {crit.negative_label}"
    return crit.allowed_values()


def criteria_rows(experiment_id: str) -> list[CriterionRow]:
    """The experiment's criteria with their rules, sorted by name."""
    return [
        CriterionRow(
            name=c.name,
            kind=KIND_TEXT[c.kind],
            values=criterion_values(c),
            instructions=c.instructions,
            rules=rules_text(rules_mod.criterion_rules(experiment_id, c.name)),
        )
        for c in list_criteria(experiment_id)
    ]


@dataclass(frozen=True)
class ReviewerRow:
    """One reviewer's progress through one queue."""

    reviewer: str
    done: int
    """Items with the reviewer's current label on every queue criterion."""
    total: int
    flagged: int
    """Items the reviewer flagged (unsure / broken) for a queue criterion."""


@dataclass(frozen=True)
class QueueProgress:
    """A queue as the lead follows it."""

    queue: Queue
    items: int
    complete: int
    """Items complete in MLflow (every assigned reviewer labeled them)."""
    flagged: int
    """Items flagged by anyone for a queue criterion."""
    rules: str
    """The queue's rule overrides, in words."""
    reviewers: list[ReviewerRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "queue": self.queue.name,
            "criteria": list(self.queue.criteria),
            "items": self.items,
            "complete": self.complete,
            "flagged": self.flagged,
            "rules": self.rules,
            "reviewers": [asdict(r) for r in self.reviewers],
        }


def queue_progress(queue: Queue) -> QueueProgress:
    """One queue's progress: per reviewer, MLflow's completed items and the flags."""
    items = queue_items(queue)
    ids = [i.trace_id for i in items]
    flags = (
        [f for f in list_flags(queue.experiment_id, trace_ids=ids) if f.criterion in queue.criteria]
        if ids
        else []
    )
    by_reviewer: dict[str, set[str]] = {}
    for f in flags:
        by_reviewer.setdefault(f.reviewer, set()).add(f.trace_id)
    return QueueProgress(
        queue=queue,
        items=len(items),
        complete=sum(1 for i in items if i.status == "complete"),
        flagged=len({f.trace_id for f in flags}),
        rules=queue_rules_text(rules_mod.queue_rules(queue.experiment_id, queue.name)),
        reviewers=[
            ReviewerRow(p.reviewer, p.done, p.total, len(by_reviewer.get(p.reviewer, ())))
            for p in reviewer_progress(queue)
        ],
    )


def team_progress(experiment_id: str) -> list[QueueProgress]:
    """Every queue's progress, oldest queue first."""
    return [queue_progress(q) for q in list_queues(experiment_id)]


def progress_rows(progress: list[QueueProgress]) -> list[dict[str, Any]]:
    """The Team progress table: one row per queue and reviewer."""
    rows: list[dict[str, Any]] = []
    for p in progress:
        for r in p.reviewers or [ReviewerRow("(nobody assigned)", 0, p.items, 0)]:
            rows.append(
                {
                    "queue": p.queue.name,
                    "reviewer": r.reviewer,
                    "done": f"{r.done} / {r.total}",
                    "flagged": r.flagged,
                    "queue complete in MLflow": f"{p.complete} / {p.items}",
                    "queue flagged": p.flagged,
                }
            )
    return rows
