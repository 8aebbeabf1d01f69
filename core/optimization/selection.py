"""Noise-aware selection: which candidate a search returns, given a small validation set.

The rule. The search returns the candidate with the highest validation mean **among those
that beat the seed in a paired comparison on the validation examples**; when none does,
the seed stays. A candidate beats the seed when, over the validation examples both were
scored on, it wins (scores higher than the seed) on enough more examples than it loses:
a one-sided sign test on the discordant pairs (wins + losses; ties carry no evidence)
gives ``p = P(X >= wins)`` for ``X ~ Binomial(wins + losses, 1/2)``, and the candidate
beats the seed when ``p <= alpha`` with ``alpha = 0.1`` (:data:`SIGN_TEST_ALPHA`). With no
losses that needs 4 wins; one net win (the incident of issue 9: 0.69 vs 0.62 on 13
examples) never does. Ties on the mean go to the earliest candidate.

Why the seed and not the running best: the seed is the criterion the user wrote, the only
candidate not chosen for its validation score, so beating it is evidence that does not
depend on which other candidates the search happened to try.

:func:`score_interval` gives the Wilson interval of a validation mean, which the Run
explorer shows beside each candidate's score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

#: One-sided significance level of the sign test a candidate must pass to replace the seed.
SIGN_TEST_ALPHA = 0.1
RULE = (
    "highest validation mean among candidates that beat the seed in a paired sign test "
    "on the validation examples (one-sided, alpha={alpha}); otherwise the seed"
)


@dataclass(frozen=True)
class PairedComparison:
    """One candidate against the seed, example by example on validation."""

    candidate_id: int
    """The candidate compared."""
    wins: int
    """Examples where it scored higher than the seed."""
    losses: int
    """Examples where it scored lower."""
    ties: int
    """Examples where both scored the same."""
    mean: float
    """Its validation mean."""
    mean_diff: float
    """Mean over the paired examples of (candidate - seed)."""
    p_value: float
    """One-sided sign-test p-value of ``wins`` among ``wins + losses``."""
    beats_seed: bool
    """True when ``p_value <= alpha``."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class Selection:
    """Which candidate the search returns, and the evidence for it."""

    chosen_id: int
    """The candidate returned (the seed when no candidate beats it)."""
    seed_id: int
    """The seed's id."""
    highest_mean_id: int
    """The candidate with the highest validation mean (what a mean-only rule returns)."""
    alpha: float
    """The sign test's level."""
    rule: str
    """The rule, in words."""
    comparisons: tuple[PairedComparison, ...]
    """Every non-seed candidate against the seed, in id order."""

    @property
    def kept_seed_over(self) -> int | None:
        """The higher-mean candidate the rule refused, when the seed stayed."""
        if self.chosen_id == self.seed_id and self.highest_mean_id != self.seed_id:
            return self.highest_mean_id
        return None

    def comparison(self, candidate_id: int) -> PairedComparison | None:
        """The paired comparison of one candidate (None for the seed)."""
        return next((c for c in self.comparisons if c.candidate_id == candidate_id), None)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (recorded as the run's ``selection``)."""
        d = asdict(self)
        d["comparisons"] = [c.to_dict() for c in self.comparisons]
        return d


def sign_test_p(wins: int, losses: int) -> float:
    """One-sided sign test: ``P(X >= wins)`` for ``X ~ Binomial(wins + losses, 1/2)``.

    Returns 1.0 without discordant pairs (no evidence either way).
    """
    n = wins + losses
    if n <= 0 or wins <= 0:
        return 1.0
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n


def compare_paired(
    candidate_id: int,
    seed: Mapping[str, float],
    candidate: Mapping[str, float],
    alpha: float = SIGN_TEST_ALPHA,
) -> PairedComparison:
    """Compare a candidate with the seed on the examples both were scored on."""
    shared = [k for k in candidate if k in seed]
    diffs = [float(candidate[k]) - float(seed[k]) for k in shared]
    wins = sum(1 for d in diffs if d > 1e-12)
    losses = sum(1 for d in diffs if d < -1e-12)
    p = sign_test_p(wins, losses)
    values = list(candidate.values())
    return PairedComparison(
        candidate_id=candidate_id,
        wins=wins,
        losses=losses,
        ties=len(diffs) - wins - losses,
        mean=sum(values) / len(values) if values else 0.0,
        mean_diff=sum(diffs) / len(diffs) if diffs else 0.0,
        p_value=p,
        beats_seed=wins > losses and p <= alpha,
    )


def select_candidate(
    val_scores: Mapping[int, Mapping[str, float]],
    seed_id: int = 0,
    alpha: float = SIGN_TEST_ALPHA,
) -> Selection:
    """Pick the search's result by the module's rule.

    Args:
        val_scores: candidate id -> (validation example id -> score).
        seed_id: The seed's id (gepa's is 0).
        alpha: One-sided level of the sign test against the seed.

    Returns:
        The chosen candidate with every paired comparison.
    """
    seed = val_scores.get(seed_id, {})

    def mean(cid: int) -> float:
        values = list(val_scores[cid].values())
        return sum(values) / len(values) if values else 0.0

    comparisons = tuple(
        compare_paired(cid, seed, val_scores[cid], alpha)
        for cid in sorted(val_scores)
        if cid != seed_id
    )
    ids = sorted(val_scores)
    highest = min(ids, key=lambda c: (-mean(c), c)) if ids else seed_id
    eligible = [c.candidate_id for c in comparisons if c.beats_seed]
    chosen = min(eligible, key=lambda c: (-mean(c), c)) if eligible else seed_id
    return Selection(
        chosen_id=chosen,
        seed_id=seed_id,
        highest_mean_id=highest,
        alpha=alpha,
        rule=RULE.format(alpha=alpha),
        comparisons=comparisons,
    )


def score_interval(mean: float, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """Wilson interval (95% by default) of a validation mean of ``n`` scores in [0, 1].

    Exact for pass/fail agreement (a proportion); for graded scores it treats the mean as
    one. None when ``n`` is 0.
    """
    if n <= 0:
        return None
    p = min(1.0, max(0.0, mean))
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
