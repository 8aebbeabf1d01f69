"""What the Score page shows: a judge's verdicts on an experiment, their distribution, its
drift against the humans, and the traces table.

A verdict is an MLflow ``Feedback`` named after the criterion, from an ``LLM_JUDGE``
source whose id names the version (``support_quality/v3``,
:func:`core.optimization.scoring.version_source_id`). Bulk scoring adds the metadata
``alignboard.run_id`` and ``alignboard.judge_version``; verdicts written before it (the
Agreement page's "Score version", prompt review) have no run id and form one batch of
their own, :data:`BEFORE_BULK`.

:func:`load_verdicts` is the only store read: one scan of the experiment's trace infos
(assessments, never spans) filtered in the database by the criterion, in pages. Everything
else here is pure and works on the :class:`Verdicts` it returns, so the numbers are tested
without a store; the drift numbers are :func:`core.agreement.compare` on the period's
pairs, nothing of our own.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast, get_args

from core.agreement import AgreementReport, compare
from core.errors import ValidationError
from core.labeling.consolidation import consolidate
from core.labeling.criteria import Criterion, display_value, normalize_value
from core.labeling.labels import Label, current_from_assessments, iter_trace_infos, label_filter
from core.labeling.splits import assign_split
from core.views.formatting import preview_text

#: Metadata key of the scoring run that wrote a verdict (bulk scoring).
RUN_ID_KEY = "alignboard.run_id"
#: Metadata key of the judge version that wrote a verdict (bulk scoring).
VERSION_KEY = "alignboard.judge_version"
#: The batch of verdicts written without a scoring run (score_version, prompt review).
BEFORE_BULK = "(before bulk scoring)"
#: Fewest (verdict, human label) pairs a drift period needs before its figures are read
#: as more than noise; smaller periods are shown, marked.
MIN_PAIRS = 10
#: Traces per drift batch when grouping "by batch" (fixed-size, in arrival order).
DEFAULT_BATCH = 20

DistributionBy = Literal["version", "day", "week", "run"]
DISTRIBUTION_BY: tuple[str, ...] = get_args(DistributionBy)
DriftBy = Literal["week", "batch", "run"]
DRIFT_BY: tuple[str, ...] = get_args(DriftBy)
AgreementFilter = Literal["all", "agree", "disagree", "unlabeled"]
AGREEMENT_FILTERS: tuple[str, ...] = get_args(AgreementFilter)

_SOURCE = re.compile(r"^(?P<judge>.+)/v(?P<version>\d+)$")


def parse_source_id(source_id: str | None, judge_name: str) -> int | None:
    """The version a verdict's source id names (``judge/v3`` -> 3), None for another judge."""
    match = _SOURCE.match(source_id or "")
    if match is None or match.group("judge") != judge_name:
        return None
    return int(match.group("version"))


@dataclass(frozen=True)
class Verdict:
    """One judge version's verdict on one trace, with the trace's human label if any."""

    trace_id: str
    version: int
    """The judge version (from the source id ``<judge>/v<N>``)."""
    value: Any
    """Canonical value (bool for pass/fail)."""
    rationale: str
    """The judge's rationale (text)."""
    request_ms: int
    """The trace's request time, epoch milliseconds (its arrival)."""
    scored_ms: int
    """When the verdict was written, epoch milliseconds."""
    run_id: str | None
    """The scoring run that wrote it (``alignboard.run_id``); None before bulk scoring."""
    human: Any = None
    """The trace's consolidated human label (canonical value), None when unlabeled."""
    human_rationale: str = ""
    """The rationale of the label the consolidation took."""
    request_preview: str = ""
    """The trace's request, as text."""

    @property
    def labeled(self) -> bool:
        """Whether the trace has a human label."""
        return self.human is not None

    @property
    def agrees(self) -> bool | None:
        """Whether the verdict equals the human label; None when unlabeled."""
        return None if self.human is None else self.value == self.human

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class Verdicts:
    """Every verdict of one judge on one experiment (the latest per trace and version)."""

    experiment_id: str
    criterion: Criterion
    verdicts: tuple[Verdict, ...]
    """Oldest trace first."""
    n_labeled: int = 0
    """Traces with a human label for the criterion (judged or not)."""

    @property
    def judge_name(self) -> str:
        """The judge, which is the criterion's name."""
        return self.criterion.name

    @property
    def versions(self) -> list[int]:
        """Versions with at least one verdict, ascending."""
        return sorted({v.version for v in self.verdicts})

    def of_version(self, version: int | None) -> list[Verdict]:
        """The verdicts of one version (every version when None), oldest trace first."""
        return [v for v in self.verdicts if version is None or v.version == version]

    def display(self, value: Any) -> str:
        """How a value reads in the UI (``Pass``, ``partial``, ``4``)."""
        return display_value(self.criterion, value)


def _human_value(criterion: Criterion, label: Label) -> Any:
    try:
        return normalize_value(criterion, label.value)
    except ValidationError:
        return None


def load_verdicts(experiment_id: str, criterion: Criterion) -> Verdicts:
    """Read every verdict of the criterion's judge, with each trace's human label.

    One scan of trace infos (with assessments, no spans), ``iter_trace_infos`` pages,
    filtered in the database by ``feedback.<criterion> IS NOT NULL``. Per trace and
    version the latest valid verdict counts; feedback carrying an error, or a value the
    criterion does not accept, is skipped. The human label is the consolidation of the
    current labels (:func:`core.optimization.dataset.consolidate`): the same value an
    alignment trains and tests against.
    """
    name = criterion.name
    rows: list[tuple[Any, dict[int, tuple[int, Verdict]]]] = []
    labels: list[Label] = []
    for info in iter_trace_infos(experiment_id, filter_string=label_filter(name)):
        # Gold labels too: the consolidation puts an adjudicator's decision first.
        labels.extend(current_from_assessments(info.assessments, name, gold=True))
        found: dict[int, tuple[int, Verdict]] = {}
        for a in info.assessments or ():
            src = a.source
            if (
                a.name != name
                or src is None
                or src.source_type != "LLM_JUDGE"
                or a.valid is False
                or getattr(a, "error", None) is not None
            ):
                continue
            version = parse_source_id(src.source_id, name)
            if version is None:
                continue
            try:
                value = normalize_value(criterion, getattr(a, "value", None))
            except ValidationError:
                continue
            stamp = a.create_time_ms or 0
            if version in found and stamp < found[version][0]:
                continue
            meta = a.metadata or {}
            found[version] = (
                stamp,
                Verdict(
                    trace_id=info.trace_id,
                    version=version,
                    value=value,
                    rationale=a.rationale or "",
                    request_ms=int(info.request_time or 0),
                    scored_ms=stamp,
                    run_id=meta.get(RUN_ID_KEY) or None,
                    request_preview=preview_text(info.request_preview),
                ),
            )
        if found:
            rows.append((info, found))
    chosen = consolidate(labels)
    out: list[Verdict] = []
    for info, found in rows:
        label = chosen.get(info.trace_id)
        human = None if label is None else _human_value(criterion, label)
        for version in sorted(found):
            v = found[version][1]
            if human is not None:
                v = _with_human(v, human, (label.rationale if label else None) or "")
            out.append(v)
    return Verdicts(str(experiment_id), criterion, tuple(out), n_labeled=len(chosen))


def _with_human(v: Verdict, human: Any, rationale: str) -> Verdict:
    return replace(v, human=human, human_rationale=rationale)


# ---- periods ---------------------------------------------------------------------------


def _day(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def day_of(ms: int) -> str:
    """The UTC day of a time in epoch milliseconds: ``"2026-11-23"``."""
    return _day(ms).strftime("%Y-%m-%d")


def week_of(ms: int) -> str:
    """The UTC week (starting Monday) of a time in epoch ms: ``"week of 2026-11-23"``."""
    start = _day(ms)
    start -= timedelta(days=start.weekday())
    return "week of " + start.strftime("%Y-%m-%d")


def _arrival(v: Verdict) -> tuple[int, str]:
    return (v.request_ms, v.trace_id)


@dataclass(frozen=True)
class _Group:
    label: str
    start_ms: int
    items: list[Verdict] = field(default_factory=list)


def _group_by(
    items: Iterable[Verdict], key: Callable[[Verdict], str], start: Callable[[Verdict], int]
) -> list[_Group]:
    """Groups in order of their earliest member (``start``), members in arrival order."""
    groups: dict[str, _Group] = {}
    for v in sorted(items, key=_arrival):
        k = key(v)
        if k not in groups:
            groups[k] = _Group(k, start(v))
        g = groups[k]
        g.items.append(v)
        if start(v) < g.start_ms:
            groups[k] = _Group(k, start(v), g.items)
    return sorted(groups.values(), key=lambda g: (g.start_ms, g.label))


def _by_run(items: Iterable[Verdict]) -> list[_Group]:
    # A run's place in time is when it wrote its first verdict.
    return _group_by(items, lambda v: v.run_id or BEFORE_BULK, lambda v: v.scored_ms)


def _batches(items: Iterable[Verdict], size: int) -> list[_Group]:
    ordered = sorted(items, key=_arrival)
    out = []
    for i in range(0, len(ordered), size):
        part = ordered[i : i + size]
        label = f"traces {i + 1}-{i + len(part)}"
        out.append(_Group(label, part[0].request_ms, list(part)))
    return out


# ---- distribution ----------------------------------------------------------------------


@dataclass(frozen=True)
class DistributionRow:
    """How often one value was given in one group (a version, a day, a week, a run)."""

    group: str
    """``v3``, ``2026-11-23``, ``week of 2026-11-23``, or the run id."""
    value: str
    """The value as displayed (``Pass``)."""
    count: int
    share: float
    """``count`` over the group's verdicts."""
    total: int
    """Verdicts in the group."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def value_order(verdicts: Verdicts) -> list[str]:
    """Display values in the criterion's order (then any other value seen, sorted)."""
    crit = verdicts.criterion
    if crit.kind == "pass_fail":
        base = [crit.positive_label, crit.negative_label]
    elif crit.kind == "categorical":
        base = list(crit.options)
    else:
        base = []
    seen = {verdicts.display(v.value) for v in verdicts.verdicts}
    key: Callable[[str], Any] = str
    if crit.kind == "numeric":

        def key(s: str) -> Any:
            try:
                return (0, float(s), s)
            except ValueError:
                return (1, 0.0, s)

    return base + sorted(seen - set(base), key=key)


def distribution(
    verdicts: Verdicts, by: DistributionBy = "version", *, version: int | None = None
) -> list[DistributionRow]:
    """Counts and shares of each value per version, or over time for one version.

    Args:
        verdicts: From :func:`load_verdicts`.
        by: ``version`` (one group per version), ``day`` / ``week`` (UTC, by the trace's
            request time), or ``run`` (per scoring run, :data:`BEFORE_BULK` for verdicts
            without one).
        version: Only this version's verdicts (every version's when None; for ``by``
            other than ``version`` pick one, or the groups mix versions).

    Returns:
        One row per (group, value given in it), groups in time (or version) order, values
        in :func:`value_order`.
    """
    if by not in DISTRIBUTION_BY:
        raise ValidationError(f"Unknown grouping {by!r}; use one of {', '.join(DISTRIBUTION_BY)}.")
    items = verdicts.of_version(version)
    groups: list[tuple[str, list[Verdict]]]
    if by == "version":
        per: dict[int, list[Verdict]] = defaultdict(list)
        for v in items:
            per[v.version].append(v)
        groups = [(f"v{n}", per[n]) for n in sorted(per)]
    elif by == "run":
        groups = [(g.label, g.items) for g in _by_run(items)]
    else:
        fmt = day_of if by == "day" else week_of
        groups = [(g.label, g.items) for g in _group_by(items, lambda v: fmt(v.request_ms), _rq_ms)]
    order = value_order(verdicts)
    rows: list[DistributionRow] = []
    for label, members in groups:
        counts = Counter(verdicts.display(v.value) for v in members)
        total = len(members)
        rows.extend(
            DistributionRow(label, value, counts[value], counts[value] / total, total)
            for value in order
            if counts[value]
        )
    return rows


def _rq_ms(v: Verdict) -> int:
    return v.request_ms


# ---- drift -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftPoint:
    """Agreement of the judge with the humans on one period's (verdict, label) pairs."""

    period: str
    """``week of 2026-11-23``, ``traces 1-20``, a run id, or ``overall``."""
    start_ms: int
    """The period's first trace request time (per run: its first verdict's time)."""
    n: int
    """Traces with both a verdict and a human label in the period."""
    report: AgreementReport
    """:func:`core.agreement.compare` (humans as reference) on those pairs."""
    too_few: bool
    """Fewer than ``min_pairs`` pairs: shown, but not to be read as a trend."""

    @property
    def accuracy(self) -> float:
        """Share of pairs where the judge matches the humans."""
        return self.report.accuracy

    @property
    def kappa(self) -> float | None:
        """Cohen's kappa (None when undefined)."""
        return self.report.cohen_kappa

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "period": self.period,
            "start_ms": self.start_ms,
            "n": self.n,
            "too_few": self.too_few,
            "report": self.report.to_dict(),
        }


@dataclass(frozen=True)
class Drift:
    """The judge's agreement with the humans over time, per period and overall."""

    version: int
    by: str
    points: tuple[DriftPoint, ...]
    overall: DriftPoint | None
    """Every pair at once; None when there is none."""
    min_pairs: int
    n_verdicts: int
    """The version's verdicts (with and without a human label)."""

    @property
    def n_pairs(self) -> int:
        """Verdicts with a human label (what the drift is computed on)."""
        return self.overall.n if self.overall else 0


def _report(verdicts: Verdicts, items: list[Verdict], *, n_bootstrap: int, seed: int):
    crit = verdicts.criterion
    labels = list(crit.options) if crit.kind == "categorical" else None
    return compare(
        {v.trace_id: v.human for v in items},
        {v.trace_id: v.value for v in items},
        crit.kind,
        labels=labels,
        n_bootstrap=n_bootstrap,
        seed=seed,
        reference_name="humans",
        predicted_name=f"{crit.name} v{items[0].version}",
    )


def drift(
    verdicts: Verdicts,
    version: int,
    by: DriftBy = "week",
    *,
    batch_size: int = DEFAULT_BATCH,
    min_pairs: int = MIN_PAIRS,
    n_bootstrap: int = 1000,
    seed: int = 0,
    held_out: bool = False,
) -> Drift:
    """Accuracy and Cohen's kappa (with bootstrap 95% CIs) of one version against the
    humans, per period, on the traces that have both a verdict and a human label.

    Args:
        verdicts: From :func:`load_verdicts`.
        version: The judge version.
        by: ``week`` (UTC, by trace request time), ``batch`` (fixed-size batches of
            ``batch_size`` labeled traces in arrival order; the last may be smaller) or
            ``run`` (per scoring run; :data:`BEFORE_BULK` for verdicts without one).
        batch_size: Traces per batch (``by="batch"``).
        min_pairs: Periods with fewer pairs are marked ``too_few`` (never dropped).
        n_bootstrap: Resamples of each interval (:func:`core.agreement.compare`).
        seed: Resampling seed (the same data and seed give the same figures).
        held_out: Only traces of the test split: an alignment learns from the train and
            validation splits (by trace id, :func:`core.labeling.splits.assign_split`), so
            agreement there overstates how the judge does on traces it never saw.

    Raises:
        ValidationError: unknown grouping, or a batch size below 1.
    """
    if by not in DRIFT_BY:
        raise ValidationError(f"Unknown grouping {by!r}; use one of {', '.join(DRIFT_BY)}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValidationError(
            f"Batch size must be a whole number of traces >= 1; got {batch_size!r}."
        )
    mine = verdicts.of_version(version)
    pairs = sorted(
        (v for v in mine if v.labeled and (not held_out or assign_split(v.trace_id) == "test")),
        key=_arrival,
    )
    if by == "week":
        groups = _group_by(pairs, lambda v: week_of(v.request_ms), _rq_ms)
    elif by == "batch":
        groups = _batches(pairs, batch_size)
    else:
        groups = _by_run(pairs)

    def point(label: str, start: int, items: list[Verdict]) -> DriftPoint:
        report = _report(verdicts, items, n_bootstrap=n_bootstrap, seed=seed)
        return DriftPoint(label, start, len(items), report, len(items) < min_pairs)

    points = tuple(point(g.label, g.start_ms, g.items) for g in groups)
    overall = point("overall", pairs[0].request_ms, pairs) if pairs else None
    return Drift(version, by, points, overall, min_pairs, len(mine))


# ---- the traces table ------------------------------------------------------------------


@dataclass(frozen=True)
class TraceRow:
    """One row of the traces table (every field text or a flag: nothing is rendered)."""

    trace_id: str
    request_time: str
    """``YYYY-MM-DD HH:MM:SS`` UTC."""
    request: str
    verdict: str
    rationale: str
    human: str
    """The human label as displayed, ``""`` when unlabeled."""
    agrees: bool | None
    run_id: str

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def trace_rows(
    verdicts: Verdicts,
    version: int,
    *,
    values: Collection[str] | None = None,
    agreement: AgreementFilter = "all",
) -> list[TraceRow]:
    """The version's verdicts as table rows, newest trace first, filtered.

    Args:
        verdicts: From :func:`load_verdicts`.
        version: The judge version.
        values: Keep only verdicts whose displayed value is one of these (all when None
            or empty).
        agreement: ``all``, ``agree`` / ``disagree`` (labeled traces where the verdict
            matches / differs from the human label) or ``unlabeled``.

    Raises:
        ValidationError: unknown agreement filter.
    """
    if agreement not in AGREEMENT_FILTERS:
        raise ValidationError(
            f"Unknown agreement filter {agreement!r}; use one of {', '.join(AGREEMENT_FILTERS)}."
        )
    wanted = set(values or ())
    keep: dict[str, Callable[[Verdict], bool]] = {
        "all": lambda v: True,
        "agree": lambda v: v.agrees is True,
        "disagree": lambda v: v.agrees is False,
        "unlabeled": lambda v: not v.labeled,
    }
    out = []
    for v in sorted(verdicts.of_version(version), key=_arrival, reverse=True):
        shown = verdicts.display(v.value)
        if (wanted and shown not in wanted) or not keep[agreement](v):
            continue
        out.append(
            TraceRow(
                trace_id=v.trace_id,
                request_time=_utc(v.request_ms),
                request=v.request_preview,
                verdict=shown,
                rationale=v.rationale,
                human=verdicts.display(v.human) if v.labeled else "",
                agrees=v.agrees,
                run_id=v.run_id or BEFORE_BULK,
            )
        )
    return out


def _utc(ms: int) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


# ---- the judge behind the verdicts -----------------------------------------------------


def version_model(experiment_id: str, judge_name: str, version: int) -> str | None:
    """The model URI a registered judge version calls (``demo:/judge``), None when unknown.

    Only for saying so where its verdicts are shown: a version that no longer loads (a
    deleted scorer) is unknown, not an error.
    """
    from core.optimization.registry import load_version

    try:
        judge = load_version(experiment_id, judge_name, version)
    except Exception:  # a scorer that cannot load: nothing to say
        return None
    model = getattr(judge, "model", None)
    return str(model) if model else None


def is_demo_model(model: str | None) -> bool:
    """Whether a model URI is the offline demo stand-in (``demo:/...``)."""
    return bool(model) and str(model).startswith("demo:/")


# ---- the launch form -------------------------------------------------------------------

#: How the page names each selection mode.
MODE_LABELS: dict[str, str] = {
    "unlabeled": "Unlabeled",
    "all": "All",
    "labeled": "Labeled (a split)",
    "queue": "A review queue",
}


def parse_tags(text: str | None) -> dict[str, str]:
    """``"env=prod, app=shop"`` -> ``{"env": "prod", "app": "shop"}`` (empty text: none).

    Raises:
        ValidationError: a part without ``=`` or with an empty key (the message names it).
    """
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValidationError(f"Tag filter {part!r}: write key=value, separated by commas.")
        out[key.strip()] = value.strip()
    return out


def day_start_ms(day: Any) -> int:
    """Epoch ms of 00:00 UTC on a ``datetime.date``."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def form_selection(
    mode: str,
    *,
    queue: str | None = None,
    split: str = "all",
    days: tuple[Any, ...] = (),
    tags: str = "",
    limit: int | None = None,
) -> Any:
    """The ``TraceSelection`` the Score page's form describes.

    Args:
        mode: unlabeled, all, labeled or queue.
        queue: The queue (mode ``queue``).
        split: The split (mode ``labeled``).
        days: ``()`` (any time), ``(first day,)`` or ``(first day, last day)``
            (``datetime.date``, UTC, both included).
        tags: ``key=value`` pairs, comma separated (:func:`parse_tags`).
        limit: At most this many traces; None or 0 for no limit.

    Raises:
        ValidationError: a malformed tag filter, or a queue mode without a queue.
    """
    from core.optimization.score_spec import SelectionMode, TraceSelection

    if mode == "queue" and not queue:
        raise ValidationError("Pick the review queue whose traces to score.")
    since = day_start_ms(days[0]) if days else None
    until = day_start_ms(days[-1] + timedelta(days=1)) if len(days) > 1 else None
    return TraceSelection(
        mode=cast(SelectionMode, mode),  # checked by build_score_settings
        queue=queue if mode == "queue" else None,
        since_ms=since,
        until_ms=until,
        tags=parse_tags(tags),
        split=split if mode == "labeled" else "all",
        limit=limit or None,
    )
