"""The rules a lead sets for labeling: per criterion, optionally overridden per queue.

Reviewers do not choose these for themselves (that let a reviewer turn blind mode or the
rationale requirement off). They are stored as JSON in experiment tags, so they live in
MLflow next to the label schemas and queues they govern:

- ``alignboard.rules.criterion.<name>``: :class:`LabelRules` of a criterion;
- ``alignboard.rules.queue.<queue name>``: a :class:`QueueRules` override.

Rationale policies:

- ``always``: every label needs a rationale;
- ``disagree_humans``: a rationale is needed when the saved value disagrees with another
  reviewer's current label. In blind mode this is checked *after* the save (the other
  labels are revealed then), so nothing before the save depends on hidden labels;
- ``optional``: never required.

No policy depends on the judge's verdict: that requirement leaked the hidden verdict.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, get_args

from core.errors import ValidationError

RationalePolicy = Literal["always", "disagree_humans", "optional"]
RATIONALE_POLICIES: tuple[str, ...] = get_args(RationalePolicy)
POLICY_TEXT = {
    "always": "always",
    "disagree_humans": "when the label disagrees with another reviewer (checked after saving)",
    "optional": "optional",
}
CRITERION_TAG_PREFIX = "alignboard.rules.criterion."
QUEUE_TAG_PREFIX = "alignboard.rules.queue."


@dataclass(frozen=True)
class LabelRules:
    """How reviewers label one criterion."""

    rationale_policy: RationalePolicy = "disagree_humans"
    """When a rationale is required (see the module docstring)."""
    blind: bool = True
    """Hide the judge's verdict and other reviewers' labels until the reviewer has saved."""
    min_reviewer_kappa: float | None = None
    """Alignment on this criterion is blocked while reviewer agreement (Cohen's kappa) is
    below this, unless the engineer overrides with a written reason."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class QueueRules:
    """A queue's overrides of its criteria's rules (None keeps the criterion's)."""

    rationale_policy: RationalePolicy | None = None
    """Overrides the criterion's rationale policy for this queue's work list."""
    blind: bool | None = None
    """Overrides the criterion's blind mode for this queue's work list."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def check_policy(policy: Any) -> RationalePolicy:
    """Return ``policy`` if it is a known rationale policy.

    Raises:
        ValidationError: any other value (the message lists the policies).
    """
    if policy not in RATIONALE_POLICIES:
        raise ValidationError(
            f"Unknown rationale policy {policy!r}; use one of {', '.join(RATIONALE_POLICIES)}."
        )
    return policy


def _check_kappa(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        kappa = float(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"Minimum reviewer kappa must be a number, not {value!r}.") from exc
    if not -1.0 <= kappa <= 1.0:
        raise ValidationError(f"Minimum reviewer kappa must be between -1 and 1 (got {kappa}).")
    return kappa


def parse_rules(raw: str | None) -> LabelRules:
    """Read a criterion's rules from its tag value; defaults for a missing or unreadable tag."""
    if not raw:
        return LabelRules()
    try:
        d = json.loads(raw)
        return LabelRules(
            rationale_policy=check_policy(d.get("rationale_policy", "disagree_humans")),
            blind=bool(d.get("blind", True)),
            min_reviewer_kappa=_check_kappa(d.get("min_reviewer_kappa")),
        )
    except (ValueError, AttributeError, ValidationError):
        # A tag edited by hand into something unreadable must not break labeling.
        return LabelRules()


def parse_queue_rules(raw: str | None) -> QueueRules:
    """Read a queue's overrides from its tag value; none for a missing or unreadable tag."""
    if not raw:
        return QueueRules()
    try:
        d = json.loads(raw)
        policy = d.get("rationale_policy")
        blind = d.get("blind")
        return QueueRules(
            rationale_policy=None if policy is None else check_policy(policy),
            blind=None if blind is None else bool(blind),
        )
    except (ValueError, AttributeError, ValidationError):
        return QueueRules()


def _tags(experiment_id: str) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    from core.store import config

    config.configure()
    return dict(MlflowClient().get_experiment(str(experiment_id)).tags)


def _set_tag(experiment_id: str, key: str, value: dict[str, Any]) -> None:
    from mlflow.tracking import MlflowClient

    from core.store import config

    config.configure()
    MlflowClient().set_experiment_tag(str(experiment_id), key, json.dumps(value, sort_keys=True))


def criterion_rules(experiment_id: str, criterion: str) -> LabelRules:
    """The rules of ``criterion`` (defaults when the lead has set none)."""
    return parse_rules(_tags(experiment_id).get(CRITERION_TAG_PREFIX + criterion))


def set_criterion_rules(
    experiment_id: str,
    criterion: str,
    *,
    rationale_policy: Any = None,
    blind: bool | None = None,
    min_reviewer_kappa: Any = "keep",
) -> LabelRules:
    """Change some of a criterion's rules (None / "keep" leave a rule as it is).

    Raises:
        ValidationError: an unknown policy or a kappa outside [-1, 1]; nothing is written.
    """
    rules = criterion_rules(experiment_id, criterion)
    if rationale_policy is not None:
        rules = replace(rules, rationale_policy=check_policy(rationale_policy))
    if blind is not None:
        rules = replace(rules, blind=bool(blind))
    if min_reviewer_kappa != "keep":
        rules = replace(rules, min_reviewer_kappa=_check_kappa(min_reviewer_kappa))
    _set_tag(experiment_id, CRITERION_TAG_PREFIX + criterion, rules.to_dict())
    return rules


def queue_rules(experiment_id: str, queue: str) -> QueueRules:
    """A queue's overrides (none when the lead has set none)."""
    return parse_queue_rules(_tags(experiment_id).get(QUEUE_TAG_PREFIX + queue))


def set_queue_rules(
    experiment_id: str,
    queue: str,
    *,
    rationale_policy: Any = None,
    blind: bool | None = None,
) -> QueueRules:
    """Set a queue's overrides; ``None`` means "use the criterion's rule".

    Raises:
        ValidationError: an unknown policy; nothing is written.
    """
    rules = QueueRules(
        rationale_policy=None if rationale_policy is None else check_policy(rationale_policy),
        blind=blind,
    )
    _set_tag(experiment_id, QUEUE_TAG_PREFIX + queue, rules.to_dict())
    return rules


def effective_rules(experiment_id: str, criterion: str, queue: str | None = None) -> LabelRules:
    """The rules that apply to ``criterion`` in ``queue``'s work list (queue overrides win)."""
    tags = _tags(experiment_id)
    rules = parse_rules(tags.get(CRITERION_TAG_PREFIX + criterion))
    if not queue:
        return rules
    over = parse_queue_rules(tags.get(QUEUE_TAG_PREFIX + queue))
    if over.rationale_policy is not None:
        rules = replace(rules, rationale_policy=over.rationale_policy)
    if over.blind is not None:
        rules = replace(rules, blind=over.blind)
    return rules
