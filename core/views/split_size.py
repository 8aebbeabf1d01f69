"""Is a run's test split big enough for its held-out verdict to mean anything?

A run's held-out verdict rests on a paired difference: per test example, 1 when only the
aligned judge agrees with the human, -1 when only the seed does, 0 otherwise. The mean is
the accuracy change; the engine's 95% paired bootstrap interval says whether it could be
noise (:mod:`core.optimization.verdict`). With 14 test examples that interval spans tens
of points, so a real improvement and a lucky draw look the same. This module says so in
numbers the reviewer can act on.

The arithmetic (normal approximation, no-change variance): let ``q`` be the share of test
examples on which the two judges' correctness differs (*discordant*). Under "no change" a
paired difference has standard deviation ``sqrt(q)``, so

- the **noise band** with ``n`` examples is ``±1.96 * sqrt(q / n)``: a change inside it is
  indistinguishable from noise at the 95% level;
- **detecting** a change of ``e`` (interval excluding zero with 80% power) needs
  ``n >= ((1.96 + 0.84) * sqrt(q) / e) ** 2`` examples.

``q`` is read back from the run's own interval (its half-width is about
``1.96 * sqrt((q - diff**2) / n)``), or is :data:`DEFAULT_DISCORDANT` without one; it is
never below the change it is about, because a change of ``e`` needs at least a share
``e`` of the examples to differ.

Pure: no Streamlit, no MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: z of a two-sided 95% interval, and of 80% power.
Z_ALPHA = 1.96
Z_POWER = 0.84
#: The smallest change (accuracy points, as a fraction) a test split should be able to
#: detect; a smaller observed change is judged against this one.
MIN_EFFECT = 0.10
#: Discordant share assumed when the run records no interval (an alignment that rewrites
#: the instructions typically changes the verdict on a quarter to a third of the traces).
DEFAULT_DISCORDANT = 0.3
#: Share of newly labeled traces that land in the test split (the default 0.6/0.2/0.2).
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class SplitSizeWarning:
    """Why a run's test split is too small to tell its change from noise."""

    n: int
    """Paired test examples the verdict rests on."""
    noise_band: float
    """Half-width of the no-change band, as a fraction (0.29 = ±29 points)."""
    effect: float
    """The change the advice aims to detect (the observed one, at least :data:`MIN_EFFECT`)."""
    needed: int
    """Test examples needed to detect ``effect`` (95% interval, 80% power)."""
    more: int
    """``needed - n``: test labels to add."""
    more_labels: int
    """Labeled traces to add so that about ``more`` of them land in the test split."""
    text: str
    """The warning in words, as the Run explorer shows it."""


def noise_band(n: int, discordant: float = DEFAULT_DISCORDANT) -> float:
    """Half-width of the 95% no-change band of a paired accuracy difference over ``n``
    examples, ``1.96 * sqrt(q / n)``; 1.0 (everything is noise) without examples."""
    if n <= 0:
        return 1.0
    return min(1.0, Z_ALPHA * math.sqrt(max(discordant, 0.0) / n))


def examples_needed(effect: float, discordant: float = DEFAULT_DISCORDANT) -> int:
    """Test examples needed for a paired change of ``effect`` to exclude zero from its 95%
    interval with 80% power: ``((1.96 + 0.84) * sqrt(q) / effect) ** 2``, rounded up."""
    if effect <= 0:
        raise ValueError("effect must be > 0")
    return math.ceil(((Z_ALPHA + Z_POWER) * math.sqrt(max(discordant, 0.0)) / effect) ** 2)


def discordant_share(
    n: int, diff: float | None, low: float | None, high: float | None, effect: float = 0.0
) -> float:
    """The discordant share ``q`` implied by a run's paired interval (see module docstring),
    :data:`DEFAULT_DISCORDANT` without an interval; at least ``effect`` and ``|diff|``
    (a change needs at least that share of examples to differ), at most 1."""
    d = abs(diff or 0.0)
    if n <= 0 or low is None or high is None:
        q = DEFAULT_DISCORDANT
    else:
        half = max(0.0, (high - low) / 2)
        q = n * (half / Z_ALPHA) ** 2 + d * d
    return min(1.0, max(q, effect, d))


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _points(fraction: float) -> str:
    return f"{fraction * 100:.0f}"


def split_size_warning(verdict: Mapping[str, Any] | None) -> SplitSizeWarning | None:
    """The warning for a run's held-out verdict, or None when none is due.

    Due when the 95% interval of the accuracy change includes zero (the verdict is not
    significant) **and** the test split is smaller than the size at which a change of the
    observed size (at least :data:`MIN_EFFECT`) could be detected. A significant change
    needs no warning; neither does a large split whose interval includes zero (the change
    is genuinely small, and more labels would not reveal a 10-point one).

    Args:
        verdict: The run's verdict (``Verdict.to_dict``: ``n``, ``diff``, ``diff_low``,
            ``diff_high``, ``significant``); None or one without ``n`` gives None.
    """
    if not verdict:
        return None
    n = verdict.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        return None
    diff, low, high = (_num(verdict.get(k)) for k in ("diff", "diff_low", "diff_high"))
    if verdict.get("significant") or (
        low is not None and high is not None and (low > 0 or high < 0)
    ):
        return None
    effect = max(MIN_EFFECT, abs(diff or 0.0))
    q = discordant_share(n, diff, low, high, effect)
    needed = examples_needed(effect, q)
    if n >= needed:
        return None
    band = noise_band(n, q)
    more = needed - n
    more_labels = math.ceil(more / TEST_FRACTION)
    observed = (
        f" (this run: {'+' if (diff or 0) >= 0 else '−'}{_points(abs(diff))} points, 95% "
        f"interval {_points(low)} to {_points(high)})"
        if diff is not None and low is not None and high is not None
        else ""
    )
    text = (
        f"**The test split is too small to tell this change from noise.** With {n} held-out "
        f"examples, a change under ±{_points(band)} points is indistinguishable from noise"
        f"{observed}. Detecting a {_points(effect)}-point change needs about {needed}: label "
        f"at least {more} more test example{'s' if more != 1 else ''} (about {more_labels} more "
        "labeled traces, since "
        f"a fifth of new labels land in the test split)."
    )
    return SplitSizeWarning(n, band, effect, needed, more, more_labels, text)
