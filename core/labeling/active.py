"""Active labeling: which unlabeled traces a reviewer should label next, and why.

A label teaches most where the judge is likely wrong or unsure. :func:`rank` orders the
pool (unlabeled traces of a criterion) from plain data; :func:`rank_informative` reads
that data from the store and :func:`fill_queue` puts the top picks into a review queue.

**Signals** (each one, when present, adds a readable reason to the pick):

- *versions disagree*: two judge versions gave the trace different verdicts (for a
  numeric criterion: verdicts at least a quarter of the scale apart). Strength 1.
- *neighbours disagree*: the judge's verdict (its newest version with a verdict on the
  trace) differs from the majority human label of the ``k`` most similar labeled traces
  (for a numeric criterion: from their mean by at least a quarter of the scale).
  Strength: the share of those neighbours that disagree with the judge (above 0.5, at
  most 1). Neighbours with no word in common with the trace are not neighbours.
- *judge unsure*: the verdict exposes the judge's certainty, either as a numeric value
  (strength 1 at the middle of the scale, 0 at either end) or as a ``confidence`` (of its
  own verdict: strength ``1 - confidence``) or ``probability`` (of a pass: strength
  ``1 - |2p - 1|``) in the feedback metadata. The least sure version counts. When no
  version exposes its certainty, :class:`Ranking` says so in its notes.

**Score** = the sum of the strengths (0 to 3). Traces are ordered by score, highest
first; equal scores (to 6 decimals) by novelty, highest first (``1 -`` the similarity to
the nearest labeled trace: a trace unlike anything labeled teaches more), then by arrival
order. Traces with no signal at all come last, in arrival order, with the reason
"no signal: arrival order".

**Similarity** is local and deterministic, no model call: TF-IDF cosine over each trace's
input and output text (MLflow's request and response previews: no spans are loaded),
words lower-cased, the ``MAX_TERMS`` terms found in most traces kept, computed with numpy;
the newest ``MAX_NEIGHBOURS`` labeled traces are the candidate neighbours (memory stays
bounded on large stores).

**Human labels** of a neighbour are consolidated as the alignment does it
(:mod:`core.labeling.consolidation`: the majority value of its reviewers; a tie goes to the
reviewer with most labels of the criterion, then by name).
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from core.errors import ValidationError
from core.labeling.consolidation import consolidate_values, vote_key

if TYPE_CHECKING:
    from core.labeling.criteria import Criterion

#: Neighbours consulted by the "neighbours disagree" signal.
DEFAULT_K = 5
#: Vocabulary kept for TF-IDF (the terms in most traces), to bound memory on large pools.
MAX_TERMS = 4096
#: Labeled traces consulted as neighbours at most (the newest ones).
MAX_NEIGHBOURS = 5000
#: Pool traces vectorised at once.
CHUNK = 512
#: Metadata keys read as the judge's certainty in its own verdict, in [0, 1].
CONFIDENCE_KEYS = ("confidence", "alignboard.confidence")
#: Metadata keys read as the judge's probability that the trace passes, in [0, 1].
PROBABILITY_KEYS = ("probability", "alignboard.probability")
#: Neighbours named in a reason before "...".
NAMED_NEIGHBOURS = 3
NO_SIGNAL = "no signal: arrival order"
_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
_VERSION_SOURCE = re.compile(r"^(?P<judge>.+)/v(?P<version>\d+)$")


@dataclass(frozen=True)
class Pick:
    """One trace of the ranked pool."""

    trace_id: str
    """The trace."""
    score: float
    """Sum of the signal strengths (0: no signal)."""
    reasons: tuple[str, ...]
    """Why it was picked, one readable sentence per signal."""
    novelty: float = 0.0
    """1 - similarity to the nearest labeled trace (the first tie-break)."""
    signals: tuple[str, ...] = ()
    """Which signals fired: ``versions``, ``neighbours``, ``unsure``."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    """One judge version's verdict on a trace, as the ranking needs it."""

    version: int
    """The judge version."""
    value: Any
    """Its verdict (canonical: bool for pass/fail, str, float)."""
    confidence: float | None = None
    """The judge's certainty in this verdict, in [0, 1], when it exposes one."""


@dataclass(frozen=True)
class Ranking:
    """The ranked pool and what the ranking could and could not use."""

    picks: list[Pick]
    """Every pool trace, most informative first."""
    notes: tuple[str, ...] = ()
    """Caveats a reviewer should read (a signal that could not be computed, and why)."""
    n_pool: int = 0
    """Traces in the pool."""
    n_labeled: int = 0
    """Labeled traces used as neighbours."""
    n_with_verdicts: int = 0
    """Pool traces with at least one judge verdict."""
    versions: tuple[int, ...] = ()
    """Judge versions with a verdict on some pool trace, oldest first."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {**asdict(self), "picks": [p.to_dict() for p in self.picks]}


# --- similarity -----------------------------------------------------------------------


def tokens(text: str) -> list[str]:
    """The words of ``text``, lower-cased (letters and digits, inner ``-`` and ``'`` kept)."""
    return _TOKEN.findall((text or "").lower())


class TfIdf:
    """TF-IDF fitted on a set of texts; :meth:`vectors` turns texts into unit rows.

    IDF is smoothed (``log((1 + n) / (1 + df)) + 1``); the ``max_terms`` terms with the
    highest document frequency are kept (ties by the term), so the result is the same on
    every run. A text with no kept word is a zero row (similar to nothing).
    """

    def __init__(self, texts: Iterable[str], max_terms: int = MAX_TERMS) -> None:
        import numpy as np

        df: Counter[str] = Counter()
        n = 0
        for text in texts:
            df.update(set(tokens(text)))
            n += 1
        vocab = sorted(df, key=lambda t: (-df[t], t))[:max_terms]
        self.columns = {t: i for i, t in enumerate(vocab)}
        self.idf = np.array(
            [math.log((1 + n) / (1 + df[t])) + 1.0 for t in vocab], dtype=np.float32
        )

    def vectors(self, texts: Sequence[str]) -> Any:
        """L2-normalised TF-IDF rows (numpy, float32), one per text."""
        import numpy as np

        m = np.zeros((len(texts), len(self.columns)), dtype=np.float32)
        for i, text in enumerate(texts):
            for term, count in Counter(tokens(text)).items():
                j = self.columns.get(term)
                if j is not None:
                    m[i, j] = count
        m *= self.idf
        norms = np.linalg.norm(m, axis=1, keepdims=True)
        np.divide(m, norms, out=m, where=norms > 0)
        return m


def similarities(query_texts: Sequence[str], ref_texts: Sequence[str]) -> Any:
    """Cosine similarity of each query text to each reference text (numpy, q x r).

    The IDF is fitted on both sets together.
    """
    import numpy as np

    if not query_texts or not ref_texts:
        return np.zeros((len(query_texts), len(ref_texts)), dtype=np.float32)
    model = TfIdf([*query_texts, *ref_texts])
    return model.vectors(query_texts) @ model.vectors(ref_texts).T


def _similarity_rows(
    pool_texts: Sequence[str], ref_texts: Sequence[str], chunk: int = CHUNK
) -> Iterator[Any]:
    """Each pool text's similarities to the reference texts, one row at a time.

    Memory stays bounded: the references are vectorised once, the pool ``chunk`` texts at
    a time.
    """
    import numpy as np

    if not ref_texts:
        for _ in pool_texts:
            yield np.zeros(0, dtype=np.float32)
        return
    model = TfIdf([*pool_texts, *ref_texts])
    refs_t = model.vectors(ref_texts).T
    for start in range(0, len(pool_texts), chunk):
        yield from model.vectors(pool_texts[start : start + chunk]) @ refs_t


# --- labels and values ----------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class _Scale:
    """How values compare: exactly, or numbers within a quarter of the scale."""

    numeric: bool
    low: float | None = None
    high: float | None = None

    @property
    def tolerance(self) -> float:
        if self.low is None or self.high is None or self.high <= self.low:
            return 1.0
        return (self.high - self.low) / 4

    def differ(self, a: Any, b: Any) -> bool:
        if self.numeric:
            x, y = _number(a), _number(b)
            if x is not None and y is not None:
                return abs(x - y) >= self.tolerance
        return vote_key(a) != vote_key(b)

    def unsureness(self, value: Any) -> float | None:
        """1 at the middle of the scale, 0 at its ends; None without a numeric scale."""
        x = _number(value)
        if not self.numeric or x is None or self.low is None or self.high is None:
            return None
        if self.high <= self.low:
            return None
        half = (self.high - self.low) / 2
        return max(0.0, 1.0 - abs(x - (self.low + half)) / half)


# --- the ranking ------------------------------------------------------------------------


def rank(
    trace_ids: Sequence[str],
    texts: Mapping[str, str],
    verdicts: Mapping[str, Sequence[Verdict]],
    labels: Mapping[str, Any],
    *,
    judge: str,
    k: int = DEFAULT_K,
    numeric: bool = False,
    scale: tuple[float | None, float | None] = (None, None),
    show: Callable[[Any], str] = str,
    names: Mapping[str, str] | None = None,
) -> Ranking:
    """Rank the pool by how much a label would teach (the rule is in the module docstring).

    Pure: everything comes in as plain data.

    Args:
        trace_ids: The pool (unlabeled traces), in arrival order.
        texts: Trace id -> its input and output text, for the pool and the labeled traces.
        verdicts: Trace id -> the judge versions' verdicts on it (any order).
        labels: Labeled trace id -> its consolidated human value (the neighbours).
        judge: The judge (criterion) name, for the reasons.
        k: Neighbours consulted per trace.
        numeric: Values are numbers on ``scale`` (closeness, not equality, counts).
        scale: ``(low, high)`` of a numeric criterion; the middle is "least sure".
        show: How a value reads in a reason (``Pass``, ``partial``, ``4``).
        names: Trace id -> the name a reviewer knows it by (e.g. its import id).

    Returns:
        The ranking: every pool trace once, most informative first, plus notes.
    """
    import numpy as np

    if k < 1:
        raise ValidationError(f"k must be at least 1, got {k}.")
    pool = list(dict.fromkeys(trace_ids))
    in_pool = set(pool)
    # The newest labeled traces are the neighbours (bounded, so memory is too).
    labeled = [t for t in labels if t not in in_pool][-MAX_NEIGHBOURS:]
    names = names or {}
    sc = _Scale(numeric, *scale)

    def name(trace_id: str) -> str:
        return names.get(trace_id) or trace_id

    rows = _similarity_rows([texts.get(t, "") for t in pool], [texts.get(t, "") for t in labeled])
    scored: list[tuple[float, float, int, Pick]] = []
    unscored: list[Pick] = []
    exposes_certainty = False
    versions_seen: set[int] = set()
    with_verdicts = 0
    for i, trace_id in enumerate(pool):
        vs = sorted(verdicts.get(trace_id, ()), key=lambda v: v.version)
        versions_seen.update(v.version for v in vs)
        with_verdicts += bool(vs)
        row = next(rows)
        novelty = float(1.0 - row.max()) if len(labeled) else 1.0
        reasons: list[str] = []
        signals: list[str] = []
        score = 0.0

        # 1. Two versions disagree: the first pair found, oldest version first.
        pair = next(
            (
                (a, b)
                for a in vs
                for b in vs
                if a.version < b.version and sc.differ(a.value, b.value)
            ),
            None,
        )
        if pair is not None:
            a, b = pair
            reasons.append(
                f"{judge} v{a.version} says {show(a.value)}, v{b.version} says {show(b.value)}"
            )
            signals.append("versions")
            score += 1.0

        # 2. The newest verdict against the labels of the most similar labeled traces.
        if vs and len(labeled):
            newest = vs[-1]
            # The k most similar (ties by position, so the order is reproducible).
            top = np.argpartition(-row, k - 1)[:k] if len(row) > k else np.arange(len(row))
            order = sorted(top.tolist(), key=lambda j: (-row[j], j))
            near = [int(j) for j in order if row[j] > 0]
            if near:
                found = _neighbour_signal(newest, near, row, labeled, labels, sc, show, name)
                if found is not None:
                    strength, text = found
                    reasons.append(text)
                    signals.append("neighbours")
                    score += strength

        # 3. The least sure version, when any exposes its certainty.
        unsure = _unsure_signal(vs, sc, show)
        if unsure is not None:
            exposes_certainty = True
            strength, text = unsure
            if strength > 0:
                reasons.append(text)
                signals.append("unsure")
                score += strength

        if not signals:
            unscored.append(Pick(trace_id, 0.0, (NO_SIGNAL,), round(novelty, 6), ()))
            continue
        pick = Pick(trace_id, round(score, 6), tuple(reasons), round(novelty, 6), tuple(signals))
        scored.append((-round(score, 6), -round(novelty, 6), i, pick))

    scored.sort(key=lambda s: s[:3])
    notes: list[str] = []
    if with_verdicts == 0 and pool:
        notes.append(
            f"No judge verdicts on these traces yet: score the unlabeled traces with a "
            f"version of {judge} first (Score page, or `alignboard score`); until then the "
            "order is arrival order."
        )
    elif pool and not exposes_certainty:
        notes.append(
            "No judge version exposes how sure it is (no numeric scale, no confidence or "
            "probability in the verdicts' metadata), so the 'judge unsure' signal is off."
        )
    if pool and not labeled:
        notes.append("No labeled traces yet, so the 'similar labeled traces' signal is off.")
    return Ranking(
        picks=[s[3] for s in scored] + unscored,
        notes=tuple(notes),
        n_pool=len(pool),
        n_labeled=len(labeled),
        n_with_verdicts=with_verdicts,
        versions=tuple(sorted(versions_seen)),
    )


def _neighbour_signal(
    verdict: Verdict,
    near: list[int],
    row: Any,
    labeled: list[str],
    labels: Mapping[str, Any],
    sc: _Scale,
    show: Callable[[Any], str],
    name: Callable[[str], str],
) -> tuple[float, str] | None:
    """(strength, reason) when the verdict differs from the neighbours' majority label."""
    ids = [labeled[j] for j in near]
    values = [labels[t] for t in ids]
    if sc.numeric and all(_number(v) is not None for v in values):
        mean = sum(_number(v) or 0.0 for v in values) / len(values)
        if not sc.differ(verdict.value, mean):
            return None
        against = [t for t, v in zip(ids, values, strict=True) if sc.differ(verdict.value, v)]
        share = len(against) / len(ids)
        if share <= 0.5:
            return None
        listed = _listed(against, name)
        return share, (
            f"judge (v{verdict.version}) says {show(verdict.value)}; the {len(ids)} most similar labeled traces "
            f"average {mean:.3g} ({listed})"
        )
    votes = Counter(vote_key(v) for v in values)
    top, n_top = max(votes.items(), key=lambda kv: (kv[1], str(kv[0])))
    if n_top * 2 <= len(values) or not sc.differ(verdict.value, top):
        return None  # no majority, or the majority agrees with the judge
    majority = next(v for v in values if vote_key(v) == top)
    against = [t for t, v in zip(ids, values, strict=True) if vote_key(v) == top]
    share = n_top / len(values)
    return share, (
        f"judge (v{verdict.version}) says {show(verdict.value)}; {n_top} of the {len(values)} most similar "
        f"labeled traces were labeled {show(majority)} ({_listed(against, name)})"
    )


def _listed(ids: list[str], name: Callable[[str], str]) -> str:
    shown = [name(t) for t in ids[:NAMED_NEIGHBOURS]]
    return ", ".join(shown) + (", ..." if len(ids) > NAMED_NEIGHBOURS else "")


def _unsure_signal(
    vs: Sequence[Verdict], sc: _Scale, show: Callable[[Any], str]
) -> tuple[float, str] | None:
    """(strength, reason) of the least sure version; None when no version exposes it."""
    best: tuple[float, str] | None = None
    for v in vs:
        if v.confidence is not None:
            strength = max(0.0, min(1.0, 1.0 - v.confidence))
            text = (
                f"judge unsure: v{v.version} says {show(v.value)} "
                f"with confidence {v.confidence:.2f}"
            )
        else:
            middle = sc.unsureness(v.value)
            if middle is None:
                continue
            strength = middle
            text = (
                f"judge unsure: v{v.version} gave {_number(v.value):g}, "
                f"{'the middle' if middle == 1 else 'near the middle'} of its "
                f"{sc.low:g}-{sc.high:g} scale"
            )
        if best is None or strength > best[0]:
            best = (strength, text)
    return best


# --- reading the store --------------------------------------------------------------------


def confidence_of(metadata: Mapping[str, Any] | None) -> float | None:
    """The judge's certainty in its verdict from a feedback's metadata, in [0, 1], or None.

    ``confidence`` is read as is; ``probability`` (of a pass) as ``max(p, 1 - p)``.
    """
    if not metadata:
        return None
    for key in CONFIDENCE_KEYS:
        x = _number(metadata.get(key))
        if x is not None and 0 <= x <= 1:
            return x
    for key in PROBABILITY_KEYS:
        x = _number(metadata.get(key))
        if x is not None and 0 <= x <= 1:
            return max(x, 1 - x)
    return None


def judge_verdicts(assessments: Iterable[Any], judge: str) -> list[Verdict]:
    """The judge versions' verdicts among one trace's assessments (newest per version).

    A verdict is valid ``LLM_JUDGE`` feedback named ``judge`` whose source id is
    ``<judge>/v<N>`` (``core.optimization.scoring.version_source_id``) and that holds a
    value (not an error).
    """
    newest: dict[int, Any] = {}
    for a in assessments:
        source = getattr(a, "source", None)
        if getattr(a, "name", None) != judge or source is None or a.valid is False:
            continue
        if str(source.source_type) != "LLM_JUDGE" or getattr(a, "value", None) is None:
            continue
        m = _VERSION_SOURCE.match(source.source_id or "")
        if m is None or m["judge"] != judge:
            continue
        version = int(m["version"])
        if version not in newest or (a.create_time_ms or 0) >= (
            newest[version].create_time_ms or 0
        ):
            newest[version] = a
    return [
        Verdict(v, a.value, confidence_of(getattr(a, "metadata", None)))
        for v, a in sorted(newest.items())
    ]


@dataclass
class PoolData:
    """What :func:`rank` needs, read from the store in one scan of trace infos."""

    pool: list[str] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    verdicts: dict[str, list[Verdict]] = field(default_factory=dict)
    labels: dict[str, Any] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    previews: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Pool trace id -> MLflow's (request, response) previews."""
    excluded: int = 0
    """Unlabeled traces left out because they are in ``exclude``."""


def read_pool(experiment_id: str, criterion: str, *, exclude: Iterable[str] = ()) -> PoolData:
    """Read the pool (unlabeled traces not in ``exclude``), the labels and the verdicts.

    One scan of the experiment's trace infos (previews, tags and assessments; no spans).
    """
    from core.labeling.labels import current_from_assessments, iter_trace_infos
    from core.labeling.traces import SOURCE_ID_TAG

    skip = set(exclude)
    data = PoolData()
    human: list[tuple[Any, ...]] = []
    for info in iter_trace_infos(experiment_id):
        tid = info.trace_id
        # Gold labels too (marked), so a neighbour's value is the one alignment uses.
        current = current_from_assessments(info.assessments or [], criterion, gold=True)
        if current:
            human.extend(
                (lab.trace_id, lab.reviewer, lab.value, lab.adjudication, lab.created_ms)
                for lab in current
            )
        elif tid not in skip:
            data.pool.append(tid)
            vs = judge_verdicts(info.assessments or [], criterion)
            if vs:
                data.verdicts[tid] = vs
            data.previews[tid] = (info.request_preview or "", info.response_preview or "")
        else:
            data.excluded += 1
            continue
        data.texts[tid] = f"{info.request_preview or ''}\n{info.response_preview or ''}"
        source = (info.tags or {}).get(SOURCE_ID_TAG)
        if source:
            data.names[tid] = source
    data.labels = consolidate_values(human)
    return data


def informative_ranking(
    experiment_id: str,
    criterion: str,
    *,
    pool: Literal["unlabeled"] = "unlabeled",
    exclude_queue: str | None = None,
    k: int = DEFAULT_K,
) -> Ranking:
    """Rank a criterion's unlabeled traces by how much a label would teach.

    Args:
        experiment_id: The experiment.
        criterion: The criterion (= the judge's name).
        pool: Which traces are candidates: ``unlabeled`` (no human label for the criterion).
        exclude_queue: Leave out the traces already in this queue (if it exists).
        k: Neighbours consulted per trace.

    Raises:
        NotFoundError: unknown criterion.
        ValidationError: unknown pool.
    """
    return rank_pool(
        *load_pool(experiment_id, criterion, pool=pool, exclude_queue=exclude_queue), k=k
    )


def load_pool(
    experiment_id: str,
    criterion: str,
    *,
    pool: Literal["unlabeled"] = "unlabeled",
    exclude_queue: str | None = None,
) -> tuple[Criterion, PoolData]:
    """The criterion and its pool data (see :func:`informative_ranking`)."""
    from core.labeling.criteria import get_criterion

    if pool != "unlabeled":
        raise ValidationError(f"Unknown pool {pool!r}; the pool is 'unlabeled'.")
    crit = get_criterion(experiment_id, criterion)
    exclude = _queue_trace_ids(experiment_id, exclude_queue) if exclude_queue else set()
    return crit, read_pool(experiment_id, crit.name, exclude=exclude)


def rank_pool(crit: Criterion, data: PoolData, *, k: int = DEFAULT_K) -> Ranking:
    """:func:`rank` applied to pool data read for ``crit``."""
    from core.labeling.criteria import display_value

    return rank(
        data.pool,
        data.texts,
        data.verdicts,
        data.labels,
        judge=crit.name,
        k=k,
        numeric=crit.kind == "numeric",
        scale=(crit.min_value, crit.max_value),
        show=lambda v: display_value(crit, v),
        names=data.names,
    )


def rank_informative(
    experiment_id: str,
    criterion: str,
    *,
    pool: Literal["unlabeled"] = "unlabeled",
    limit: int | None = None,
    exclude_queue: str | None = None,
) -> list[Pick]:
    """The pool's traces, most informative first (at most ``limit``), each with reasons.

    See :func:`informative_ranking` (which also returns the ranking's notes).
    """
    picks = informative_ranking(
        experiment_id, criterion, pool=pool, exclude_queue=exclude_queue
    ).picks
    return picks if limit is None else picks[: max(0, limit)]


def _queue_trace_ids(experiment_id: str, name: str) -> set[str]:
    from core.errors import NotFoundError
    from core.labeling.queues import get_queue, queue_items

    try:
        queue = get_queue(experiment_id, name)
    except NotFoundError:
        return set()
    return {item.trace_id for item in queue_items(queue)}


def fill_queue(
    experiment_id: str,
    criterion: str,
    queue_name: str,
    n: int,
    *,
    reviewers: Iterable[str] = (),
) -> list[Pick]:
    """Add the ``n`` most informative unlabeled traces to a review queue.

    The queue is created (asking for ``criterion``) when it does not exist; given
    reviewers are assigned to it (added to those already there). A trace already in the
    queue is never added again, so calling this twice adds the next ``n``.

    Returns:
        The picks added, in rank order, with their reasons.

    Raises:
        ValidationError: ``n`` below 1, a bad queue name or reviewers, or an existing queue
            that does not ask for ``criterion``.
        NotFoundError: unknown criterion.
    """
    from core.errors import NotFoundError
    from core.labeling.queues import add_traces, assign_reviewers, create_queue, get_queue

    if n < 1:
        raise ValidationError(f"Add at least one trace (n = {n}).")
    name = (queue_name or "").strip()
    if not name:
        raise ValidationError("A queue needs a name.")
    wanted = [r.strip() for r in reviewers]
    try:
        queue = get_queue(experiment_id, name)
    except NotFoundError:
        queue = create_queue(experiment_id, name, [criterion], wanted)
    else:
        if criterion not in queue.criteria:
            raise ValidationError(
                f"Queue {name!r} asks for {', '.join(queue.criteria)}, not {criterion!r}; "
                "pick another queue or a new name."
            )
        merged = list(dict.fromkeys([*queue.reviewers, *wanted]))
        if merged != list(queue.reviewers):
            queue = assign_reviewers(queue, merged)
    picks = rank_informative(experiment_id, criterion, limit=n, exclude_queue=name)
    for pick in picks:
        # One call per trace, each at a later millisecond: the queue's working order is
        # attach time (then trace id), so reviewers meet the most informative first.
        add_traces(queue, [pick.trace_id])
        time.sleep(0.002)
    return picks
