"""When a gepa search stops before its budget is spent, and why it stopped.

A search that has reached a perfect validation score, or has not improved its best
validation score for many iterations, spends the rest of its budget with nothing to gain
(the demo's GEPA run reached 1.0 at iteration 8 of 74, after about a fifth of its 347
metric calls). :class:`StopPolicy` says when to stop early:

- ``at_score``: a candidate scores this on the whole validation set (default 1.0, a
  perfect score: selection compares validation scores, so nothing is left to gain);
- ``patience``: the best validation score has not improved over this many candidate
  proposals (default :data:`DEFAULT_PATIENCE`, MLflow's GEPA tutorial's
  ``max_iterations_without_improvement``): one per iteration in gepa's sequential loop,
  ``proposals_in_flight`` per iteration with several in flight, so a patience means the
  same search effort in both modes;
- ``max_seconds``: the search has run this long (this attempt's wall time);
- ``max_cost_usd``: the run's models have cost this much (only models with a known price
  count: the demo and self-hosted models cost nothing and never trip it).

All conditions are checked at gepa's iteration boundaries, so an iteration in flight is
finished (a time or cost limit may be passed by up to one iteration). They apply to the
``gepa`` optimizer (judge alignment and prompt optimization); MemAlign and MLflow's
baselines run their own loops and ignore them.

:func:`build_stoppers` makes gepa ``StopperProtocol`` callables (``stopper(state) ->
bool``) that remember that they fired; :func:`stop_reason` turns what fired into the
:class:`StopReason` a run records (tag ``alignboard.stop_reason``, ``stop_reason`` and
``stop_detail`` in ``result.json``). The stoppers read only gepa's state, never how
many times they were called, so they work whatever loop calls them and across a resume.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from core.errors import ValidationError

if TYPE_CHECKING:
    from gepa.core.state import GEPAState

#: Proposals (one per sequential iteration) without an improvement of the best validation score before a search stops.
#: Measured on the demo store and B1's setup (20 gepa runs, seeds 0-9, stand-in models):
#: sequential runs: improvements came 1 to 7 iterations apart (median 2), the last one at iteration 4-12
#: of runs that went on to 29-79 iterations. 12 is 1.7x the longest gap seen, so a search
#: that still improves is not cut short (real models propose more noisily than the
#: stand-in), while one that has stalled stops 12 iterations after its last gain.
DEFAULT_PATIENCE = 12

#: Why a run stopped (the tag's value and ``result.json``'s ``stop_reason``).
BUDGET = "budget"
PERFECT = "perfect_score"
SCORE = "score_reached"
NO_IMPROVEMENT = "no_improvement"
TIME_LIMIT = "time_limit"
COST_LIMIT = "cost_limit"
CANCELLED = "cancelled"
REASONS: tuple[str, ...] = (
    BUDGET,
    PERFECT,
    SCORE,
    NO_IMPROVEMENT,
    TIME_LIMIT,
    COST_LIMIT,
    CANCELLED,
)
#: The run tag holding the reason (the same name as ``core.optimization.jobs``').
TAG_STOP_REASON = "alignboard.stop_reason"

#: Short words for each reason (the Run explorer's and the CLI's line starts with them).
REASON_TEXT: Mapping[str, str] = {
    BUDGET: "budget exhausted",
    PERFECT: "perfect validation score",
    SCORE: "validation score reached",
    NO_IMPROVEMENT: "no improvement",
    TIME_LIMIT: "time limit",
    COST_LIMIT: "cost limit",
    CANCELLED: "cancelled",
}

#: The tooltip of a run's stop line (Run explorer) and of the pages' early-stop controls.
STOP_HELP = (
    "A gepa search stops before its budget is spent once nothing is left to gain: at a "
    "perfect validation score, or after some proposals without improvement of the best "
    "validation score (and at a time or cost limit, when set). Conditions are checked "
    "between iterations; the run's stop_* params record the policy."
)
#: What the Align and Optimize pages say about optimizers that are not gepa's loop.
GEPA_ONLY_NOTE = (
    "Early-stop conditions apply to the gepa optimizer only; this optimizer runs its own "
    "loop and spends its budget."
)


def _positive(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    x = float(value)
    if not math.isfinite(x) or x <= 0:
        raise ValidationError(f"The {what} must be a positive number (or off); got {value}.")
    return x


@dataclass(frozen=True)
class StopPolicy:
    """When a gepa search stops before its budget is spent (None turns a condition off)."""

    at_score: float | None = 1.0
    """Stop once a candidate scores this on the whole validation set (1.0: perfect)."""
    patience: int | None = DEFAULT_PATIENCE
    """Stop after this many candidate proposals without an improvement of the best
    validation score (one per iteration unless several are in flight)."""
    max_seconds: float | None = None
    """Stop once the search has run this many seconds (checked between iterations)."""
    max_cost_usd: float | None = None
    """Stop once the priced model calls of the run cost this much (USD)."""

    def __post_init__(self) -> None:
        if self.at_score is not None and not 0 < float(self.at_score) <= 1:
            raise ValidationError(
                f"The stop score is a validation score in (0, 1]; got {self.at_score}."
            )
        if self.patience is not None and int(self.patience) < 1:
            raise ValidationError(
                f"Patience is a number of proposals, at least 1 (or off); got {self.patience}."
            )
        _positive(self.max_seconds, "time limit")
        _positive(self.max_cost_usd, "cost limit")

    @classmethod
    def off(cls) -> StopPolicy:
        """No early stop: the search spends its whole budget (a cancel still stops it)."""
        return cls(at_score=None, patience=None, max_seconds=None, max_cost_usd=None)

    @property
    def at_perfect(self) -> bool:
        """Whether the search stops at a perfect validation score."""
        return self.at_score is not None and float(self.at_score) >= 1.0

    @property
    def enabled(self) -> bool:
        """Whether any early-stop condition is on."""
        return any(
            v is not None
            for v in (self.at_score, self.patience, self.max_seconds, self.max_cost_usd)
        )

    def to_params(self) -> dict[str, str]:
        """Flat MLflow run params (``off`` for a condition that is off)."""
        return {
            "stop_at_score": _fmt(self.at_score),
            "stop_patience": "off" if self.patience is None else str(int(self.patience)),
            "stop_max_seconds": _fmt(self.max_seconds),
            "stop_max_cost_usd": _fmt(self.max_cost_usd),
        }

    def describe(self) -> str:
        """The policy in words, e.g. ``at a perfect validation score, or after 10
        proposals without improvement``; ``never (the whole budget is spent)`` when off."""
        parts = []
        if self.at_score is not None:
            parts.append(
                "at a perfect validation score"
                if self.at_perfect
                else f"at a validation score of {self.at_score:g}"
            )
        if self.patience is not None:
            parts.append(f"after {int(self.patience)} proposals without improvement")
        if self.max_seconds is not None:
            parts.append(f"after {_duration(self.max_seconds)}")
        if self.max_cost_usd is not None:
            parts.append(f"at ${self.max_cost_usd:g} of model cost")
        if not parts:
            return "never (the whole budget is spent)"
        return ", ".join(parts[:-1]) + (" or " if len(parts) > 1 else "") + parts[-1]

    def settings_fields(self) -> dict[str, Any]:
        """The policy as the settings' flat ``stop_*`` fields (settings.json stays flat;
        :func:`policy_of` reads them back)."""
        return {
            "stop_at_score": self.at_score,
            "stop_patience": None if self.patience is None else int(self.patience),
            "stop_max_seconds": self.max_seconds,
            "stop_max_cost_usd": self.max_cost_usd,
        }

    def apply(self, settings: Any) -> Any:
        """A copy of alignment or prompt settings with this policy."""
        return replace(settings, **self.settings_fields())


def _fmt(value: float | None) -> str:
    return "off" if value is None else f"{float(value):g}"


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def make_policy(
    *,
    early_stop: bool = True,
    at_perfect: bool = True,
    at_score: float | None = None,
    patience: int | None = DEFAULT_PATIENCE,
    max_minutes: float | None = None,
    max_cost_usd: float | None = None,
) -> StopPolicy:
    """A policy from the CLI's and the pages' controls (one place that reads them).

    Args:
        early_stop: False turns every condition off (``--no-early-stop``).
        at_perfect: Stop at a perfect validation score.
        at_score: Another validation score to stop at (prompt optimization's
            ``--stop-at-score``); overrides ``at_perfect``.
        patience: Iterations without improvement; 0 or None turns it off.
        max_minutes: Wall-time limit in minutes; 0 or None: none.
        max_cost_usd: Cost limit in USD; 0 or None: none.

    Raises:
        ValidationError: a value out of range; the message says which.
    """
    if not early_stop:
        return StopPolicy.off()
    score = at_score if at_score is not None else (1.0 if at_perfect else None)
    return StopPolicy(
        at_score=score,
        patience=int(patience) if patience else None,
        max_seconds=float(max_minutes) * 60 if max_minutes else None,
        max_cost_usd=float(max_cost_usd) if max_cost_usd else None,
    )


def policy_of(settings: Any) -> StopPolicy:
    """The stop policy of alignment or prompt settings (their ``stop_*`` fields); settings
    without them (written before they existed) stop as the defaults do."""
    d = StopPolicy()
    return StopPolicy(
        at_score=getattr(settings, "stop_at_score", d.at_score),
        patience=getattr(settings, "stop_patience", d.patience),
        max_seconds=getattr(settings, "stop_max_seconds", d.max_seconds),
        max_cost_usd=getattr(settings, "stop_max_cost_usd", d.max_cost_usd),
    )


# --- gepa stoppers -------------------------------------------------------------------------


def _best_val(state: GEPAState) -> float | None:
    scores = list(getattr(state, "program_full_scores_val_set", None) or [])
    return max(scores) if scores else None


def _iterations_done(state: GEPAState) -> int:
    # gepa's ``i`` is the index of the last iteration begun (-1 before the first); a
    # stopper runs between iterations, so i + 1 of them are done. The seed is iteration 0.
    return int(getattr(state, "i", -1)) + 1


class Stop:
    """A gepa stopper that remembers it fired (and at which iteration)."""

    reason: str = ""

    def __init__(self) -> None:
        self.fired = False
        self.at_iteration: int | None = None
        self.metric_calls: int | None = None

    def check(self, state: GEPAState) -> bool:
        """Whether the condition holds now (subclasses)."""
        raise NotImplementedError

    def __call__(self, state: GEPAState) -> bool:
        if not self.fired and self.check(state):
            self.fired = True
            self.at_iteration = _iterations_done(state)
            self.metric_calls = int(getattr(state, "total_num_evals", 0) or 0)
        return self.fired

    def detail(self) -> str:
        """What fired, in words."""
        return REASON_TEXT.get(self.reason, self.reason)


class ScoreStop(Stop):
    """Stop once a candidate reaches ``threshold`` on the whole validation set."""

    def __init__(self, threshold: float) -> None:
        from gepa.utils.stop_condition import ScoreThresholdStopper

        super().__init__()
        self.threshold = float(threshold)
        self.reason = PERFECT if self.threshold >= 1.0 else SCORE
        self._inner = ScoreThresholdStopper(self.threshold)

    def check(self, state: GEPAState) -> bool:
        return bool(self._inner(state))

    def detail(self) -> str:
        what = (
            "perfect validation score (1.0)"
            if self.reason == PERFECT
            else f"validation score reached {self.threshold:g}"
        )
        return f"{what} at iteration {self.at_iteration}"


class PatienceStop(Stop):
    """Stop after ``patience`` proposals without an improvement of the best validation
    score (``per_iteration`` proposals are tried per gepa iteration).

    gepa's ``NoImprovementStopper`` counts its own calls; this one counts gepa's iterations
    (its state's ``i``) from the iteration that first reached the best score, read from
    the state's program trace, so it is right however often a loop calls it and after a
    resume.
    """

    reason = NO_IMPROVEMENT

    def __init__(self, patience: int, per_iteration: int = 1) -> None:
        super().__init__()
        self.patience = int(patience)
        self.per_iteration = max(int(per_iteration), 1)
        self._best: float | None = None
        self._since: int = 0

    def _best_found_at(self, state: GEPAState, best: float) -> int | None:
        # The iteration (1-based; the seed is 0) whose new candidate first scored ``best``.
        scores = list(getattr(state, "program_full_scores_val_set", None) or [])
        found: dict[int, int] = {0: 0}
        for entry in getattr(state, "full_program_trace", None) or []:
            for idx in entry.get("new_program_indices", []) or []:
                found.setdefault(int(idx), int(entry.get("i", 0)) + 1)
        at = [found[i] for i, s in enumerate(scores) if s >= best and i in found]
        return min(at) if at else None

    def check(self, state: GEPAState) -> bool:
        best = _best_val(state)
        done = _iterations_done(state)
        if best is None:
            return False
        if self._best is None or best > self._best:
            at = self._best_found_at(state, best)
            self._best, self._since = best, done if at is None else at
        return (done - self._since) * self.per_iteration >= self.patience

    def detail(self) -> str:
        if self.per_iteration == 1:
            span = f"{self.patience} iterations"
        else:
            # Whole iterations: the patience rounded up to the proposals of one iteration.
            its = -(-self.patience // self.per_iteration)
            unit = "iteration" if its == 1 else "iterations"
            span = f"{its} {unit} of {self.per_iteration} proposals (patience {self.patience})"
        return (
            f"no improvement of the best validation score for {span} "
            f"(best since iteration {self._since})"
        )


class TimeStop(Stop):
    """Stop once the search has run ``max_seconds`` (from the stopper's creation)."""

    reason = TIME_LIMIT

    def __init__(self, max_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.max_seconds = float(max_seconds)
        self._clock = clock
        self._started = clock()

    def check(self, state: GEPAState) -> bool:
        return self._clock() - self._started >= self.max_seconds

    def detail(self) -> str:
        return f"time limit of {_duration(self.max_seconds)} reached"


class CostStop(Stop):
    """Stop once ``spent()`` (USD of the priced model calls so far; None: no price known)
    reaches ``max_cost_usd``."""

    reason = COST_LIMIT

    def __init__(self, max_cost_usd: float, spent: Callable[[], float | None]) -> None:
        super().__init__()
        self.max_cost_usd = float(max_cost_usd)
        self._spent = spent
        self.last: float | None = None

    def check(self, state: GEPAState) -> bool:
        self.last = self._spent()
        return self.last is not None and self.last >= self.max_cost_usd

    def detail(self) -> str:
        spent = f" (${self.last:.4g} spent)" if self.last is not None else ""
        return f"cost limit of ${self.max_cost_usd:g} reached{spent}"


def build_stoppers(
    policy: StopPolicy,
    *,
    spent_usd: Callable[[], float | None] | None = None,
    proposals_per_iteration: int = 1,
) -> list[Stop]:
    """gepa stoppers for ``policy``, in the order their reasons take precedence.

    Args:
        policy: What to stop at.
        spent_usd: The run's priced cost so far (None while no call has a price); needed
            for a cost limit, which is left out without it.
        proposals_per_iteration: Candidates gepa proposes per iteration (the patience
            counts proposals).

    Returns:
        ``StopperProtocol`` callables; each has ``fired`` and ``detail()``.
    """
    out: list[Stop] = []
    if policy.at_score is not None:
        out.append(ScoreStop(policy.at_score))
    if policy.max_cost_usd is not None and spent_usd is not None:
        out.append(CostStop(policy.max_cost_usd, spent_usd))
    if policy.max_seconds is not None:
        out.append(TimeStop(policy.max_seconds))
    if policy.patience is not None:
        out.append(PatienceStop(policy.patience, proposals_per_iteration))
    return out


@dataclass(frozen=True)
class StopReason:
    """Why a run's search stopped (what the record, the Run explorer and the CLI show)."""

    code: str
    """One of :data:`REASONS`."""
    detail: str
    """The reason in words, e.g. ``perfect validation score (1.0) at iteration 8``."""

    def to_dict(self) -> dict[str, str]:
        """``{"stop_reason": code, "stop_detail": detail}`` (the result's fields)."""
        return {"stop_reason": self.code, "stop_detail": self.detail}


def stop_reason(
    stoppers: Sequence[Any],
    *,
    cancelled: bool,
    metric_calls: int,
    budget: int,
) -> StopReason:
    """The reason a search ended: a cancel first, then the first early stop that fired,
    else its budget.

    Args:
        stoppers: The run's :class:`Stop` objects (others are ignored).
        cancelled: Whether a cancel request stopped it.
        metric_calls: Metric calls spent.
        budget: The budget in force.
    """
    if cancelled:
        return StopReason(CANCELLED, f"cancelled after {metric_calls} of {budget} metric calls")
    for s in stoppers:
        if isinstance(s, Stop) and s.fired:
            return StopReason(
                s.reason, f"{s.detail()}, after {metric_calls} of {budget} metric calls"
            )
    return StopReason(BUDGET, f"budget exhausted: {metric_calls} of {budget} metric calls spent")


def estimate_note(settings: Any) -> str:
    """What a cost estimate adds about early stops: that the run may end before its
    budget (gepa with a policy on), else nothing."""
    if getattr(settings, "optimizer", None) != "gepa":
        return ""
    policy = policy_of(settings)
    if not policy.enabled:
        return "Early stop is off: the whole budget is spent."
    return f"The estimate is for the whole budget; the run may stop earlier: {policy.describe()}."


def stop_line(result: Mapping[str, Any]) -> str | None:
    """``Stopped early: <detail>`` / ``Stopped: <detail>`` from a run's result, or None
    when the run recorded no reason (another optimizer, or a run older than this)."""
    code = result.get("stop_reason")
    if not code:
        return None
    detail = str(result.get("stop_detail") or REASON_TEXT.get(str(code), str(code)))
    early = code not in (BUDGET, CANCELLED)
    return ("Stopped early: " if early else "Stopped: ") + detail
