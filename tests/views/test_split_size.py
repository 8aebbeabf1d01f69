"""When a run's test split is too small for its held-out verdict to mean anything."""

from __future__ import annotations

import math

import pytest

from core.views.split_size import (
    DEFAULT_DISCORDANT,
    MIN_EFFECT,
    discordant_share,
    examples_needed,
    noise_band,
    split_size_warning,
)


def _verdict(n: int, diff: float, low: float, high: float, **kw) -> dict:
    significant = low > 0 or high < 0
    return {
        "n": n,
        "diff": diff,
        "diff_low": low,
        "diff_high": high,
        "significant": significant,
        **kw,
    }


def test_fourteen_examples_and_an_interval_across_zero_warn_with_the_numbers() -> None:
    # The small demo's test split: +21 points, 95% interval -7 to +50.
    w = split_size_warning(_verdict(14, 0.21, -0.07, 0.50))
    assert w is not None
    assert w.n == 14
    assert 0.25 <= w.noise_band <= 0.35  # about ±30 points
    assert w.effect == pytest.approx(0.21)
    assert 50 <= w.needed <= 70
    assert w.more == w.needed - 14
    assert w.more_labels == math.ceil(w.more / 0.2)
    assert "With 14 held-out examples" in w.text
    assert f"under ±{round(w.noise_band * 100)} points is indistinguishable from noise" in w.text
    assert f"label at least {w.more} more test examples" in w.text
    assert "+21 points, 95% interval -7 to 50" in w.text


def test_a_significant_change_needs_no_warning_however_small_the_split() -> None:
    assert split_size_warning(_verdict(14, 0.43, 0.14, 0.71)) is None
    # The recorded flag counts even when the bounds are missing.
    assert split_size_warning({"n": 14, "diff": 0.4, "significant": True}) is None


def test_a_large_split_with_no_change_is_not_called_too_small() -> None:
    # 99 held-out traces (the large demo set), judges identical: a 10-point change would show.
    assert split_size_warning(_verdict(99, 0.0, 0.0, 0.0)) is None
    assert split_size_warning(_verdict(99, 0.02, -0.03, 0.07)) is None


def test_a_small_split_with_no_change_still_warns() -> None:
    w = split_size_warning(_verdict(14, 0.0, 0.0, 0.0))
    assert w is not None and w.effect == MIN_EFFECT
    assert w.needed == examples_needed(MIN_EFFECT, MIN_EFFECT) == 79
    assert "+0 points" in w.text


def test_noisier_runs_need_more_examples() -> None:
    # A wide interval at the same n means many discordant pairs: more examples needed.
    narrow = split_size_warning(_verdict(40, 0.05, -0.05, 0.15))
    wide = split_size_warning(_verdict(40, 0.05, -0.20, 0.30))
    assert narrow is not None and wide is not None
    assert wide.needed > narrow.needed
    assert wide.noise_band > narrow.noise_band


def test_no_interval_uses_the_default_discordant_share() -> None:
    w = split_size_warning({"n": 20, "diff": None, "significant": False})
    assert w is not None
    assert w.noise_band == pytest.approx(noise_band(20, DEFAULT_DISCORDANT))
    assert w.needed == examples_needed(MIN_EFFECT, DEFAULT_DISCORDANT)
    assert "this run" not in w.text


@pytest.mark.parametrize(
    "verdict", [None, {}, {"n": 0}, {"n": None}, {"n": True}, {"diff": 0.1, "significant": False}]
)
def test_no_verdict_or_no_examples_gives_no_warning(verdict) -> None:
    assert split_size_warning(verdict) is None


def test_the_formulas() -> None:
    # ±1.96 * sqrt(q / n) and ((1.96 + 0.84) * sqrt(q) / e) ** 2.
    assert noise_band(100, 0.25) == pytest.approx(1.96 * 0.05)
    assert examples_needed(0.1, 0.25) == math.ceil((2.8 * 0.5 / 0.1) ** 2)
    assert noise_band(0) == 1.0
    with pytest.raises(ValueError):
        examples_needed(0.0)
    # The share implied by an interval: n * (half / 1.96)**2 + diff**2, at least the effect.
    assert discordant_share(100, 0.0, -0.098, 0.098) == pytest.approx(0.25, rel=0.01)
    assert discordant_share(100, 0.0, 0.0, 0.0, effect=0.1) == 0.1
    assert discordant_share(10, 0.3, None, None) == DEFAULT_DISCORDANT
