"""Agreement as the dashboard shows it: who agrees with whom on one criterion, from the store.

One pass over the experiment's trace infos (never spans) collects, per trace, every
reviewer's current label and every judge's latest verdict for the criterion. The
functions below then compare any two *raters* on any split:

- a reviewer (``Rater.reviewer("maria.chen")``);
- the humans together (``Rater.humans()``): the trace's gold label when an adjudicator
  settled it, else the majority value of its human labels, ties to the primary reviewer
  (the precedence of :mod:`core.labeling.consolidation`);
- a judge (``Rater.judge(source)``): non-human feedback named after the criterion, from
  one source (an LLM judge, a registered judge version logging its verdicts, code).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from mlflow.entities import Feedback

from core.agreement import AgreementReport, ReviewerMatrix, compare, reviewer_matrix
from core.errors import ValidationError
from core.labeling.criteria import Criterion, display_value, normalize_value
from core.labeling.labels import (
    current_from_assessments,
    is_human_feedback,
    iter_trace_infos,
    label_filter,
)
from core.labeling.splits import SPLITS, assign_split

SplitName = Literal["all", "train", "val", "test"]
SPLIT_CHOICES: tuple[str, ...] = ("all", *SPLITS)


@dataclass(frozen=True)
class Rating:
    """One rater's value on one trace."""

    value: Any
    """Canonical value."""
    rationale: str | None
    who: str
    """The reviewer, the reviewers behind a majority, or the judge source."""


@dataclass(frozen=True)
class TraceRatings:
    """Everything said about one trace for the criterion."""

    trace_id: str
    split: str
    request_preview: str
    response_preview: str
    humans: dict[str, Rating] = field(default_factory=dict)
    """reviewer -> current label (gold labels are not a reviewer's: see ``gold``)."""
    gold: Rating | None = None
    """The newest gold label (an adjudication), which the humans' value takes first."""
    judges: dict[str, Rating] = field(default_factory=dict)
    """judge source -> latest verdict."""


@dataclass(frozen=True)
class Ratings:
    """All ratings of one criterion in an experiment."""

    experiment_id: str
    criterion: Criterion
    traces: tuple[TraceRatings, ...]

    @property
    def reviewers(self) -> list[str]:
        """Reviewers with at least one label, sorted."""
        return sorted({r for t in self.traces for r in t.humans})

    @property
    def judge_sources(self) -> list[str]:
        """Judge sources with at least one verdict, sorted."""
        return sorted({j for t in self.traces for j in t.judges})

    @property
    def primary_order(self) -> tuple[str, ...]:
        """Reviewers by labels given (most first, then by name): ties go to the first.

        The same rule as :func:`core.optimization.dataset.consolidate`, so "the humans" here
        are exactly the labels alignments train and test against.
        """
        counts = Counter(r for t in self.traces for r in t.humans)
        return tuple(sorted(counts, key=lambda r: (-counts[r], r)))

    def on_split(self, split: str) -> list[TraceRatings]:
        """The traces of one split (``all`` for every trace)."""
        _check_split(split)
        return [t for t in self.traces if split == "all" or t.split == split]


@dataclass(frozen=True)
class Rater:
    """Who gave a set of ratings: one reviewer, the humans' majority, or one judge."""

    kind: Literal["reviewer", "humans", "judge"]
    name: str = ""

    @classmethod
    def reviewer(cls, name: str) -> Rater:
        return cls("reviewer", name)

    @classmethod
    def humans(cls) -> Rater:
        return cls("humans", "")

    @classmethod
    def judge(cls, source: str) -> Rater:
        return cls("judge", source)

    @property
    def label(self) -> str:
        """How the rater reads in the UI."""
        if self.kind == "humans":
            return "humans (majority)"
        if self.kind == "judge":
            return f"judge: {self.name}"
        return self.name


def _check_split(split: str) -> None:
    if split not in SPLIT_CHOICES:
        raise ValidationError(f"Unknown split {split!r}; use one of {', '.join(SPLIT_CHOICES)}.")


def _source_key(fb: Feedback) -> str:
    src = fb.source
    if src is None:
        return "unknown"
    return src.source_id or str(src.source_type)


def load_ratings(experiment_id: str, criterion: Criterion) -> Ratings:
    """Collect every current human label and latest judge verdict for ``criterion``.

    Judge values the criterion does not accept, and feedback carrying an error, are
    skipped.
    """
    out: list[TraceRatings] = []
    for info in iter_trace_infos(experiment_id, filter_string=label_filter(criterion.name)):
        current = current_from_assessments(info.assessments, criterion.name, gold=True)
        humans = {
            lab.reviewer: Rating(lab.value, lab.rationale, lab.reviewer)
            for lab in current
            if not lab.adjudication
        }
        golds = sorted(
            (lab for lab in current if lab.adjudication), key=lambda g: (g.created_ms, g.reviewer)
        )
        gold = (
            Rating(golds[-1].value, golds[-1].rationale, f"gold: {golds[-1].reviewer}")
            if golds
            else None
        )
        judges: dict[str, tuple[int, Rating]] = {}
        for a in info.assessments:
            if (
                not isinstance(a, Feedback)
                or is_human_feedback(a)
                or a.name != criterion.name
                or a.valid is False
                or a.error is not None
            ):
                continue
            try:
                value = normalize_value(criterion, a.value)
            except ValidationError:
                continue
            key = _source_key(a)
            stamp = a.create_time_ms or 0
            if key not in judges or stamp >= judges[key][0]:
                judges[key] = (stamp, Rating(value, a.rationale, key))
        if not humans and not judges:
            continue
        out.append(
            TraceRatings(
                trace_id=info.trace_id,
                split=assign_split(info.trace_id),
                request_preview=info.request_preview or "",
                response_preview=info.response_preview or "",
                humans=humans,
                judges={k: r for k, (_, r) in judges.items()},
                gold=gold,
            )
        )
    return Ratings(str(experiment_id), criterion, tuple(out))


def ratings_of(
    trace: TraceRatings, rater: Rater, primary_order: tuple[str, ...] = ()
) -> Rating | None:
    """The rater's rating of one trace, or None.

    For the humans: the gold label when there is one; otherwise the majority, where a tie
    goes to the value of the first reviewer of
    ``primary_order`` who labeled the trace (see :attr:`Ratings.primary_order`); with no
    order given, a tie has no majority.
    """
    if rater.kind == "reviewer":
        return trace.humans.get(rater.name)
    if rater.kind == "judge":
        return trace.judges.get(rater.name)
    if trace.gold is not None:
        return trace.gold  # an adjudicator settled it: gold first, as everywhere
    if not trace.humans:
        return None
    counts = Counter(r.value for r in trace.humans.values())
    top = counts.most_common()
    value = top[0][0]
    if len(top) > 1 and top[0][1] == top[1][1]:
        tied = {v for v, n in top if n == top[0][1]}
        decider = next(
            (
                trace.humans[r]
                for r in primary_order
                if r in trace.humans and trace.humans[r].value in tied
            ),
            None,
        )
        if decider is None:
            return None  # a tie with no primary reviewer among the voters
        value = decider.value
    voters = [r for r in trace.humans.values() if r.value == value]
    rationale = "\n".join(f"{r.who}: {r.rationale}" for r in voters if r.rationale) or None
    return Rating(value, rationale, ", ".join(sorted(r.who for r in voters)))


def raters(ratings: Ratings) -> list[Rater]:
    """Every rater present: the humans' majority, each reviewer, each judge source."""
    out = [Rater.humans()] if ratings.reviewers else []
    out += [Rater.reviewer(r) for r in ratings.reviewers]
    out += [Rater.judge(j) for j in ratings.judge_sources]
    return out


#: The split the Agreement page opens on: the held-out traces no alignment trained on.
DEFAULT_SPLIT = "test"
#: What the page says before any judge has verdicts on the criterion.
NO_JUDGE_VERDICTS = "No judge verdicts yet: score a version (Score page) or run an alignment"
JUDGE_VS_HUMANS = "Judge vs humans"
REVIEWER_VS_REVIEWER = "Reviewer vs reviewer"


@dataclass(frozen=True)
class RaterPair:
    """The two raters the Agreement page compares first, and what the comparison is."""

    reference: Rater
    predicted: Rater
    has_judge: bool
    """True when some judge has verdicts on the criterion (then ``predicted`` is one)."""
    note: str | None = None
    """Why the pair is not a judge against the humans (:data:`NO_JUDGE_VERDICTS`)."""

    @property
    def heading(self) -> str:
        """What the pair compares (:func:`pair_heading`)."""
        return pair_heading(self.reference, self.predicted)


def pair_heading(reference: Rater, predicted: Rater) -> str:
    """The section heading of a comparison: ``Judge vs humans`` for a judge against the
    consolidated human labels, ``Reviewer vs reviewer`` for two reviewers, else the two
    raters' names."""
    if predicted.kind == "judge" and reference.kind == "humans":
        return JUDGE_VS_HUMANS
    if predicted.kind == "reviewer" and reference.kind == "reviewer":
        return REVIEWER_VS_REVIEWER
    return f"{predicted.label} vs {reference.label}"


def default_pair(ratings: Ratings, split: str = DEFAULT_SPLIT) -> RaterPair | None:
    """The comparison to open on: a judge's verdicts against the consolidated human labels
    (the judge with the most verdicts on ``split``; ties by name); with no judge verdicts
    yet, the two reviewers who share the most labeled traces on the split, said so
    (:data:`NO_JUDGE_VERDICTS`), never two humans passed off as a judge check. None when
    there are not two raters.
    """
    traces = ratings.on_split(split)
    judges = ratings.judge_sources
    if judges:
        on_split = Counter(j for t in traces for j in t.judges)
        judge = min(judges, key=lambda j: (-on_split[j], j))
        return RaterPair(Rater.humans(), Rater.judge(judge), has_judge=True)
    reviewers = ratings.reviewers
    if len(reviewers) < 2:
        return None
    shared = Counter((a, b) for t in traces for a in t.humans for b in t.humans if a < b)
    pairs = [(a, b) for a in reviewers for b in reviewers if a < b]
    a, b = min(pairs, key=lambda p: (-shared[p], p))
    return RaterPair(Rater.reviewer(a), Rater.reviewer(b), has_judge=False, note=NO_JUDGE_VERDICTS)


def reviewer_agreement(ratings: Ratings, split: str = "all") -> ReviewerMatrix:
    """Pairwise Cohen's kappa and overall Fleiss' kappa among the reviewers on a split.

    Raises:
        ValidationError: no human labels on the split.
    """
    rows = [
        (t.trace_id, r, rating.value)
        for t in ratings.on_split(split)
        for r, rating in t.humans.items()
    ]
    if not rows:
        raise ValidationError(
            f"No human labels on the {split} split yet; label some traces first."
            if split != "all"
            else "No human labels yet; label some traces first."
        )
    return reviewer_matrix(rows)


def compare_raters(
    ratings: Ratings,
    reference: Rater,
    predicted: Rater,
    split: str = "all",
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> AgreementReport:
    """How well ``predicted`` (e.g. a judge) agrees with ``reference`` (e.g. the humans).

    Raises:
        ValidationError: the two raters share no rated trace on the split (the message
            says who and where).
    """
    ref: dict[str, Any] = {}
    pred: dict[str, Any] = {}
    for t in ratings.on_split(split):
        order = ratings.primary_order
        a, b = ratings_of(t, reference, order), ratings_of(t, predicted, order)
        if a is not None and b is not None:
            ref[t.trace_id] = a.value
            pred[t.trace_id] = b.value
    if not ref:
        where = "" if split == "all" else f" on the {split} split"
        raise ValidationError(
            f"No trace rated by both {reference.label} and {predicted.label}{where}; "
            "label (or judge) more traces, or pick another split."
        )
    labels = list(ratings.criterion.options) if ratings.criterion.kind == "categorical" else None
    return compare(
        ref,
        pred,
        ratings.criterion.kind,
        labels=labels,
        n_bootstrap=n_bootstrap,
        seed=seed,
        reference_name=reference.label,
        predicted_name=predicted.label,
    )


@dataclass(frozen=True)
class Disagreement:
    """One trace two raters labeled differently, with both rationales."""

    trace_id: str
    split: str
    request_preview: str
    value_a: str
    """Display text of rater A's value."""
    rationale_a: str
    who_a: str
    value_b: str
    rationale_b: str
    who_b: str

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return dict(self.__dict__)


def disagreements(ratings: Ratings, a: Rater, b: Rater, split: str = "all") -> list[Disagreement]:
    """Traces both raters rated, with different values; in trace order."""
    out = []
    crit = ratings.criterion
    for t in ratings.on_split(split):
        order = ratings.primary_order
        ra, rb = ratings_of(t, a, order), ratings_of(t, b, order)
        if ra is None or rb is None or ra.value == rb.value:
            continue
        out.append(
            Disagreement(
                trace_id=t.trace_id,
                split=t.split,
                request_preview=t.request_preview,
                value_a=display_value(crit, ra.value),
                rationale_a=ra.rationale or "",
                who_a=ra.who,
                value_b=display_value(crit, rb.value),
                rationale_b=rb.rationale or "",
                who_b=rb.who,
            )
        )
    return out


def confusion_rows(
    report: AgreementReport, criterion: Criterion
) -> tuple[list[str], list[list[int]]]:
    """The report's confusion matrix as (display labels, counts), rows = reference."""
    if report.confusion is None:
        return [], []
    names = [display_value(criterion, v) for v in report.confusion.labels]
    return names, [list(r) for r in report.confusion.counts]


def kappa_grid(matrix: ReviewerMatrix) -> tuple[list[str], list[list[float | None]]]:
    """Reviewer names and the square Cohen's kappa grid (None: undefined, no overlap, diagonal)."""
    names = list(matrix.reviewers)
    index = {r: i for i, r in enumerate(names)}
    grid: list[list[float | None]] = [[None] * len(names) for _ in names]
    for p in matrix.pairs:
        a, b = index[p.reviewer_a], index[p.reviewer_b]
        grid[a][b] = grid[b][a] = p.cohen_kappa
    return names, grid
