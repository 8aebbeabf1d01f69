"""The held-out verdict of a run: did the aligned judge beat the seed on the test split?

Rules (pure functions; the engine applies them after test scoring, before registering):

- ``worse``: the aligned judge's accuracy **or** Cohen's kappa on the test split is below
  the seed's (point estimates). A ``worse`` run registers nothing unless the user asked
  for it (``AlignmentSettings.register_if_worse``, ``--register-worse``, the Align page's
  checkbox).
- ``no_change``: neither is below and both are equal. When the best candidate *is* the seed
  (same text), it is scored once and its verdicts stand for both (``same_as_seed``): with a
  sampling model, scoring the same judge or prompt twice would flip verdicts by chance
  and could call an unchanged candidate ``improved`` (and register it) or ``worse``.
- ``improved``: otherwise (at least one is higher, none lower).
- ``significant``: the 95% paired bootstrap interval of the accuracy difference (aligned
  minus seed, per test example: 1 when a judge agrees with the human, else 0; examples
  resampled with both judges' outcomes kept together) excludes zero.

A failed judge call counts as a disagreement: a judge that cannot answer is not right.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from core.agreement.bootstrap import bootstrap_stat, mean_stat

IMPROVED = "improved"
NO_CHANGE = "no_change"
WORSE = "worse"
VERDICTS = (IMPROVED, NO_CHANGE, WORSE)
#: Why a run registered nothing (``Verdict.not_registered_reason``): the user cancelled it
#: (and did not ask to register a cancelled run), it scored worse on held-out traces, or
#: the best candidate was the seed (the registrar found nothing new).
CANCELLED = "cancelled"
WORSE_REASON = "worse"
UNCHANGED = "unchanged"
#: Bootstrap resamples of the paired difference.
N_RESAMPLES = 2000
#: 1 - coverage of the difference's interval.
ALPHA = 0.05


@dataclass(frozen=True)
class Verdict:
    """How the aligned judge compares with the seed on held-out traces."""

    verdict: str
    """``improved``, ``no_change`` or ``worse``."""
    significant: bool
    """True when the 95% interval of the accuracy difference excludes zero."""
    accuracy_before: float | None
    """Seed judge's test accuracy."""
    accuracy_after: float | None
    """Aligned judge's test accuracy."""
    kappa_before: float | None
    """Seed judge's test kappa."""
    kappa_after: float | None
    """Aligned judge's test kappa."""
    diff: float | None
    """Accuracy difference, aligned minus seed, over the paired examples."""
    diff_low: float | None
    """Lower bound of the difference's interval (None when unknown)."""
    diff_high: float | None
    """Upper bound of the difference's interval."""
    n: int
    """Paired test examples."""
    registered: bool = False
    """Whether the aligned judge was registered (set by the engine)."""
    override: bool = False
    """True when a worse judge was registered because the user asked for it."""
    metric: str = "accuracy"
    """What ``accuracy_before/after`` measure: ``accuracy`` (judge alignment: agreement
    with the humans) or ``judge score`` (prompt optimization: the judges' mean score)."""
    cancelled: bool = False
    """True when the run was cancelled (its best candidate so far was scored)."""
    not_registered_reason: str | None = None
    """Why nothing was registered (:data:`CANCELLED`, :data:`WORSE_REASON`,
    :data:`UNCHANGED`); None when a version was registered or before the engine decided."""
    same_as_seed: bool = False
    """True when the best candidate is the seed itself (same text): scored once, verdict
    ``no_change``, nothing new to register."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Verdict:
        """Read a verdict back."""
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def blocks_registration(self) -> bool:
        """True when this verdict alone keeps the judge from being registered."""
        return self.verdict == WORSE


def decide(
    accuracy_before: float | None,
    accuracy_after: float | None,
    kappa_before: float | None = None,
    kappa_after: float | None = None,
) -> str:
    """``worse`` / ``no_change`` / ``improved`` from point estimates (see module rules).

    A metric unknown on either side is left out; with nothing comparable the verdict is
    ``no_change`` (there is no evidence either way, and registration stays as it was).
    """
    pairs = [
        (b, a)
        for b, a in ((accuracy_before, accuracy_after), (kappa_before, kappa_after))
        if b is not None and a is not None
    ]
    if any(a < b for b, a in pairs):
        return WORSE
    if any(a > b for b, a in pairs):
        return IMPROVED
    return NO_CHANGE


def paired_difference_ci(
    seed_correct: Sequence[float],
    aligned_correct: Sequence[float],
    *,
    n: int = N_RESAMPLES,
    alpha: float = ALPHA,
    seed: int = 0,
) -> tuple[float | None, float | None, float | None]:
    """Mean and percentile bootstrap interval of ``aligned - seed`` over paired examples.

    Returns:
        ``(difference, low, high)``; all None without examples.
    """
    if len(seed_correct) != len(aligned_correct):
        raise ValueError("seed and aligned outcomes must be paired (same length)")
    if not seed_correct:
        return None, None, None
    d = np.asarray(aligned_correct, dtype=np.float64) - np.asarray(seed_correct, dtype=np.float64)
    ci = bootstrap_stat(mean_stat(d), len(d), estimate=float(d.mean()), n=n, alpha=alpha, seed=seed)
    return ci.estimate, ci.low, ci.high


def correctness(predictions: Sequence[Any]) -> tuple[list[float], list[float]]:
    """Per example 1/0 agreement with the human for the seed and the aligned judge.

    ``predictions`` are :class:`core.optimization.record.Prediction` records; examples
    without a human label are left out.
    """
    seed, aligned = [], []
    for p in predictions:
        if p.human is None:
            continue
        seed.append(1.0 if p.seed is not None and p.seed == p.human else 0.0)
        aligned.append(1.0 if p.aligned is not None and p.aligned == p.human else 0.0)
    return seed, aligned


def judge_verdict(
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    predictions: Sequence[Any],
    *,
    seed: int = 0,
    same_as_seed: bool = False,
) -> Verdict:
    """The verdict from the two test reports and the per-example predictions
    (``same_as_seed``: the aligned judge is the seed, see :attr:`Verdict.same_as_seed`)."""
    acc_b, acc_a = _get(before, "accuracy"), _get(after, "accuracy")
    kap_b, kap_a = _get(before, "cohen_kappa"), _get(after, "cohen_kappa")
    s, a = correctness(predictions)
    diff, low, high = paired_difference_ci(s, a, seed=seed)
    significant = low is not None and high is not None and (low > 0 or high < 0)
    return Verdict(
        verdict=NO_CHANGE if same_as_seed else decide(acc_b, acc_a, kap_b, kap_a),
        significant=bool(significant),
        accuracy_before=acc_b,
        accuracy_after=acc_a,
        kappa_before=kap_b,
        kappa_after=kap_a,
        diff=diff,
        diff_low=low,
        diff_high=high,
        n=len(s),
        same_as_seed=same_as_seed,
    )


def score_verdict(
    before: Sequence[float],
    after: Sequence[float],
    *,
    seed: int = 0,
    same_as_seed: bool = False,
) -> Verdict:
    """The verdict of a prompt optimization: the best prompt's per-row held-out scores
    (in [0, 1], paired with the seed prompt's on the same rows) against the seed's.

    ``worse`` / ``no_change`` / ``improved`` compare the mean scores; ``significant`` is the
    paired bootstrap interval of the mean difference excluding zero, as for judges.
    """
    b = sum(before) / len(before) if before else None
    a = sum(after) / len(after) if after else None
    diff, low, high = paired_difference_ci(before, after, seed=seed)
    significant = low is not None and high is not None and (low > 0 or high < 0)
    return Verdict(
        verdict=NO_CHANGE if same_as_seed else decide(b, a),
        significant=bool(significant),
        accuracy_before=b,
        accuracy_after=a,
        kappa_before=None,
        kappa_after=None,
        diff=diff,
        diff_low=low,
        diff_high=high,
        n=len(before),
        metric="judge score",
        same_as_seed=same_as_seed,
    )


def _get(report: Mapping[str, Any] | None, key: str) -> float | None:
    value = None if report is None else report.get(key)
    return None if value is None else float(value)


def _num(x: float | None) -> str:
    return "?" if x is None else f"{x:.2f}"


def _signed(x: float | None) -> str:
    return "?" if x is None else f"{x:+.2f}"


def describe(v: Mapping[str, Any] | Verdict | None) -> str:
    """The verdict in words a user understands, for the Align page, Run explorer and CLI.

    E.g. "Worse on held-out traces (accuracy 0.36 vs 0.50): not registered. ...".
    """
    if v is None:
        return ""
    if not isinstance(v, Verdict):
        v = Verdict.from_dict(v)
    if not v.cancelled:
        return _describe_scores(v)
    if v.not_registered_reason == CANCELLED:
        note = (
            "Cancelled: not registered (cancelled runs are not registered; relaunch with "
            '"Register if cancelled" to keep the best so far).'
        )
    elif v.registered:
        note = 'Cancelled: the best so far was registered ("Register if cancelled" was on).'
    else:
        note = "Cancelled."
    scores = _describe_scores(v)
    if scores.endswith("registered as usual."):
        scores = "No held-out scores to compare (no labeled test trace was scored)."
    return f"{note} Best so far vs the seed: {scores}"


def _describe_scores(v: Verdict) -> str:
    if v.accuracy_before is None and v.accuracy_after is None:
        return (
            "No held-out scores to compare (no labeled test trace was scored): registered as usual."
        )
    ci = f"CI {_signed(v.diff_low)}..{_signed(v.diff_high)}"
    scores = f"{v.metric} {_num(v.accuracy_after)} vs {_num(v.accuracy_before)} for the seed"
    if v.kappa_before is not None and v.kappa_after is not None:
        scores += f", kappa {_num(v.kappa_after)} vs {_num(v.kappa_before)}"
    if v.verdict == WORSE:
        if v.registered:
            return (
                f"Worse on held-out traces ({scores}): registered anyway because "
                "'register even if worse' was chosen."
            )
        return (
            f"Worse on held-out traces ({scores}): not registered. Override: relaunch with "
            "'Register even if it scores worse on held-out traces' "
            f"(CLI: alignboard {'optimize' if v.metric != 'accuracy' else 'align'} "
            "--register-worse)."
        )
    if v.same_as_seed:
        what = "judge's instructions" if v.metric == "accuracy" else "prompt"
        return (
            f"No change: the search kept the seed {what} (scored once on held-out traces; "
            f"{scores})."
        )
    if v.verdict == IMPROVED:
        if v.significant:
            return f"Improved, significant ({ci}; {scores})."
        return f"Improved, but not significant ({ci}; {scores})."
    return f"No significant change ({ci}; {scores})."
