"""An alignment run's record, read back into typed views for the Run explorer and Align page.

:func:`load_run_view` reads everything one run recorded (tags, params, and its run record
through :mod:`core.optimization.record`) and builds, without Streamlit:

- :class:`ProgressSeries`: every candidate's validation score against the metric calls
  used when it was found, the best-so-far step line and the Pareto aggregate;
- :class:`CandidateView` for each candidate, with its lineage depth and frontier/best flags;
- :class:`FrontierMatrix`: candidates x validation examples (score), frontier marked;
- :class:`LineageLayout`: nodes placed by depth, edges parent -> child;
- :func:`wins_and_losses`: the validation examples a candidate won and lost against its
  parent;
- :class:`TestComparison`: the test-split agreement before and after, and the per-trace
  predictions of both judges;
- the held-out verdict (``RunView.verdict_text``; :func:`run_verdict` for the Align page's
  finished panel) and why the search stopped (``RunView.stop_text``);
- MemAlign's :class:`Guideline` list (with source traces) and :class:`Episode` memory;
- :func:`build_guard_view`: each candidate's validation score with a 95% interval and its
  paired evidence against the seed, and the proposals (rejected ones with their reason).

:func:`metric_series` is the light read the Align page polls while a job runs (metric
histories only, any optimizer). The ``build_*`` functions are pure, for tests and reuse.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from core.errors import NotFoundError
from core.optimization import record
from core.optimization.jobs import KIND_PROMPT, TAG_PROMPT, TAG_PROMPT_VERSION
from core.optimization.verdict import IMPROVED, WORSE, describe
from core.store import config
from core.views.diffs import DiffOp, DiffStats, diff_stats, inserted_text, word_diff
from core.views.formatting import tokens_and_cost

#: Characters of instructions shown on hover.
PREVIEW_CHARS = 100
#: Metrics charted while a job runs.
LIVE_METRICS = ("val_score", "best_val_score", "pareto_aggregate", "metric_calls")
#: Artifacts a run view reads (JSON unless named .txt): the run record's.
ARTIFACTS = record.ARTIFACTS
#: The mark of the best candidate: the one the run returned (and registered), on every
#: chart and selector of the Run explorer.
BEST_MARK = "★"
#: The mark of a Pareto frontier candidate (another shape, so the two never read alike).
FRONTIER_MARK = "◆"
#: What the two marks mean, under each chart and selector that uses them.
MARKS_LEGEND = (
    f"{BEST_MARK} best: the candidate the run returned (highest validation score under the "
    f"run's selection rule), the one it registers. {FRONTIER_MARK} Pareto frontier: the "
    "candidates the search keeps as non-dominated (best on some validation example; of "
    "candidates scoring the same on every example it keeps one)."
)


def marks(is_best: bool, on_frontier: bool) -> str:
    """A candidate's marks: :data:`BEST_MARK` and/or :data:`FRONTIER_MARK` ("" for none)."""
    return (BEST_MARK if is_best else "") + (FRONTIER_MARK if on_frontier else "")


# --- views ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CandidateView:
    """One candidate of a search-based alignment."""

    id: int
    """Candidate index (0 is the seed)."""
    parent_ids: tuple[int, ...]
    """Candidates it was derived from (empty for the seed)."""
    instructions: str
    """Its full instructions."""
    val_score: float
    """Mean score on the validation examples."""
    val_scores: Mapping[str, float]
    """trace id -> score on that validation example."""
    iteration: int
    """Iteration that found it (0: the seed)."""
    metric_calls: int | None
    """Metric calls spent when it was found (None when unknown)."""
    depth: int = 0
    """Steps from a root of the lineage."""
    on_frontier: bool = False
    """On the Pareto frontier (best on some example, not dominated)."""
    is_best: bool = False
    """Best validation mean (ties: earliest), i.e. the aligned judge of a gepa run."""
    change_preview: str = ""
    """Start of the text it added to its first parent's instructions."""

    @property
    def is_seed(self) -> bool:
        """True for the candidate the search started from."""
        return not self.parent_ids

    @property
    def preview(self) -> str:
        """Start of its instructions, one line."""
        text = " ".join(self.instructions.split())
        return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"

    @property
    def label(self) -> str:
        """Short name, e.g. ``#3`` or ``#0 seed``."""
        return f"#{self.id}" + (" seed" if self.is_seed else "")

    @property
    def marks(self) -> str:
        """Its marks (:func:`marks`): ★ best, ◆ frontier."""
        return marks(self.is_best, self.on_frontier)

    @property
    def choice_label(self) -> str:
        """How the candidate selector names it, e.g. ``#6 · ★ best · ◆ frontier · val
        0.833 · iteration 5``: the same marks as the charts."""
        flags = [f"{BEST_MARK} best"] if self.is_best else []
        flags += [f"{FRONTIER_MARK} frontier"] if self.on_frontier else []
        return " · ".join(
            [self.label, *flags, f"val {self.val_score:.3f}", f"iteration {self.iteration}"]
        )


@dataclass(frozen=True)
class StepPoint:
    """One point of a line over the budget."""

    iteration: int
    metric_calls: int | None
    """x: metric calls used by then (None when unknown: chart by iteration)."""
    value: float
    """y."""


@dataclass(frozen=True)
class ProgressSeries:
    """What the per-iteration chart draws."""

    candidates: tuple[CandidateView, ...]
    """A point each (x: metric calls at discovery, y: validation score)."""
    best_so_far: tuple[StepPoint, ...]
    """Best validation score found by each iteration (a step line)."""
    pareto_aggregate: tuple[StepPoint, ...]
    """Mean over validation examples of the best score any candidate so far reached."""
    budget: int | None
    """The metric-call budget (a vertical line), when known."""
    x_is_metric_calls: bool = True
    """False when metric calls are unknown and x is the iteration instead."""

    @property
    def empty(self) -> bool:
        """True before any candidate was scored."""
        return not self.candidates and not self.best_so_far


@dataclass(frozen=True)
class FrontierMatrix:
    """Candidates x validation examples, for the Pareto heatmap."""

    candidate_ids: tuple[int, ...]
    """Rows, in id order."""
    example_ids: tuple[str, ...]
    """Columns: validation trace ids."""
    scores: tuple[tuple[float | None, ...], ...]
    """scores[row][col]; None where a candidate was not scored on an example."""
    best_on_example: tuple[tuple[bool, ...], ...]
    """True where the candidate reaches the best score on that example."""
    frontier: tuple[int, ...]
    """Ids of the frontier candidates."""
    best_scores: tuple[float | None, ...]
    """Per example: the best score any candidate reached."""
    aggregate: float | None
    """Mean of ``best_scores`` (the Pareto aggregate)."""
    best: int | None = None
    """The best candidate (the one the run returned), marked :data:`BEST_MARK`."""

    @property
    def empty(self) -> bool:
        """True when there is nothing to draw."""
        return not self.candidate_ids or not self.example_ids

    @property
    def row_labels(self) -> tuple[str, ...]:
        """The heatmap's row names: ``#6 ★``, ``#7 ◆`` (:func:`marks`)."""
        front = set(self.frontier)
        out = []
        for cid in self.candidate_ids:
            m = marks(cid == self.best, cid in front)
            out.append(f"#{cid} {m}" if m else f"#{cid}")
        return tuple(out)


@dataclass(frozen=True)
class LineageNode:
    """A candidate placed in the lineage tree."""

    id: int
    depth: int
    """x: generations from a root."""
    y: float
    """Vertical position within its depth (centred on 0)."""
    val_score: float
    on_frontier: bool
    is_best: bool
    preview: str
    """Start of the text it added."""

    @property
    def marks(self) -> str:
        """Its marks (:func:`marks`)."""
        return marks(self.is_best, self.on_frontier)


@dataclass(frozen=True)
class LineageLayout:
    """The candidate tree, laid out for a plot."""

    nodes: tuple[LineageNode, ...]
    edges: tuple[tuple[int, int], ...]
    """(parent id, child id)."""

    def node(self, cid: int) -> LineageNode:
        """The node of candidate ``cid``."""
        return next(n for n in self.nodes if n.id == cid)


@dataclass(frozen=True)
class ExampleOutcome:
    """A validation example where a candidate scored differently from its parent."""

    trace_id: str
    parent_score: float
    score: float


@dataclass(frozen=True)
class WinsLosses:
    """How a candidate did against its parent, example by example."""

    parent_id: int | None
    won: tuple[ExampleOutcome, ...]
    lost: tuple[ExampleOutcome, ...]
    tied: int
    """Examples with the same score."""


@dataclass(frozen=True)
class CandidateDiff:
    """A candidate's instructions against another's."""

    against: int
    """The other candidate."""
    ops: tuple[DiffOp, ...]
    stats: DiffStats


@dataclass(frozen=True)
class MetricRow:
    """One line of a two-column metric table: seed vs aligned judge (Run explorer), or
    version A vs version B (Versions page)."""

    metric: str
    """The metric's display name."""
    before: float | None
    """Left column: the seed judge, or version A."""
    after: float | None
    """Right column: the aligned judge, or version B."""
    before_ci: tuple[float, float] | None = None
    """95% interval of ``before``, when known."""
    after_ci: tuple[float, float] | None = None
    """95% interval of ``after``, when known."""

    @property
    def change(self) -> float | None:
        """after - before, when both are known."""
        if self.before is None or self.after is None:
            return None
        return self.after - self.before

    @property
    def a(self) -> float | None:
        """Version A's value (the Versions page's name for ``before``)."""
        return self.before

    @property
    def b(self) -> float | None:
        """Version B's value (``after``)."""
        return self.after

    @property
    def delta(self) -> float | None:
        """``b - a`` (``change``)."""
        return self.change


@dataclass(frozen=True)
class Confusion:
    """A confusion matrix: rows the human label, columns the judge's."""

    labels: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class TestComparison:
    """Seed judge vs aligned judge on the held-out test split."""

    n: int
    """Test traces."""
    rows: tuple[MetricRow, ...]
    """accuracy, Cohen's kappa (with CIs), TPR, TNR, ... as recorded."""
    before_confusion: Confusion | None
    after_confusion: Confusion | None
    note: str | None = None
    """Why numbers are missing, if they are."""
    predictions: tuple[record.Prediction, ...] = ()
    """Per test trace: human label, seed verdict, aligned verdict (empty in old runs)."""

    @property
    def available(self) -> bool:
        """True when at least one side was scored."""
        return any(r.before is not None or r.after is not None for r in self.rows)

    def flips(self) -> Flips:
        """The held-out examples the alignment fixed, broke, or could not judge."""
        return flips(self.predictions)

    def prediction_rows(self) -> list[dict[str, Any]]:
        """One row per test trace: the human label, both verdicts, and who agreed."""
        return [
            {
                "test trace": p.trace_id,
                "human": _label(p.human),
                "seed verdict": "failed" if p.seed is None else _label(p.seed),
                "aligned verdict": "failed" if p.aligned is None else _label(p.aligned),
                "seed agrees": p.seed is not None and p.seed == p.human,
                "aligned agrees": p.aligned is not None and p.aligned == p.human,
            }
            for p in self.predictions
        ]


@dataclass(frozen=True)
class Guideline:
    """A MemAlign guideline (semantic memory) with the traces it was distilled from."""

    index: int
    text: str
    source_trace_ids: tuple[str, ...]


@dataclass(frozen=True)
class Episode:
    """One example in MemAlign's episodic memory."""

    trace_id: str | None
    label: str | None
    rationale: str | None
    inputs: str
    outputs: str


@dataclass(frozen=True)
class RunInfo:
    """Who and what a run is."""

    run_id: str
    name: str
    experiment_id: str
    status: str
    """alignboard.status (queued/running/finished/failed/cancelled/interrupted)."""
    optimizer: str | None
    judge_name: str | None
    judge_version: int | None
    """Registered version it produced."""
    started_ms: int | None
    ended_ms: int | None
    params: Mapping[str, str]
    """The run's params (``AlignmentSettings.to_params()``)."""
    budget: int | None = None
    """The metric-call budget in force, once the job has started."""
    error: str | None = None
    kind: str = "alignment"
    """The run's ``alignboard.kind``: ``alignment`` or ``prompt_optimization``."""
    prompt_name: str | None = None
    """Prompt optimization runs: the optimized prompt."""
    prompt_version: int | None = None
    """Prompt optimization runs: the version registered, once there is one."""
    base_version: int | None = None
    """Prompt optimization runs: the version the run started from."""
    metrics: Mapping[str, float] = field(default_factory=dict)
    """The run's latest metric values (usage: ``llm_calls``, tokens, ``cost_usd``...)."""

    @property
    def usage(self) -> str | None:
        """Calls, tokens and cost so far as one line (:func:`usage_line`)."""
        return usage_line(self.metrics)

    @property
    def active(self) -> bool:
        """True while queued or running."""
        return self.status in ("queued", "running")

    @property
    def is_prompt(self) -> bool:
        """True for a prompt optimization run."""
        return self.kind == KIND_PROMPT


@dataclass(frozen=True)
class RunLabels:
    """The words the Run explorer uses for what a run evolves and how it is scored: a
    judge's instructions scored by agreement with humans, or an application prompt
    scored by the judges' verdicts on its outputs."""

    text: str
    """What a candidate is (``Instructions``, ``Template``)."""
    example: str
    """One validation example (``trace``, ``input``)."""
    score: str
    """What the validation score measures."""
    model: str
    """The model the candidate runs on (``judge model``, ``application model``)."""
    version: str
    """What a finished run registers (``Judge version``, ``Prompt version``)."""
    best: str
    """The run's result (``aligned judge``, ``best prompt``)."""
    final: str
    """The heading of the result's text."""


JUDGE_LABELS = RunLabels(
    text="Instructions",
    example="trace",
    score="agreement with the human labels",
    model="judge model",
    version="Judge version",
    best="aligned judge",
    final="Aligned instructions",
)
PROMPT_LABELS = RunLabels(
    text="Template",
    example="input",
    score="judge score of the application's outputs",
    model="application model",
    version="Prompt version",
    best="best prompt",
    final="Best prompt template",
)


@dataclass(frozen=True)
class RunView:
    """Everything the Run explorer shows about one run."""

    info: RunInfo
    settings: Mapping[str, Any]
    """The run's settings.json (judge, models, budget...)."""
    seed_instructions: str
    """The instructions the alignment started from."""
    final_instructions: str
    """The aligned judge's instructions."""
    candidates: tuple[CandidateView, ...]
    """Empty for optimizers that keep no candidates (MemAlign, SIMBA)."""
    progress: ProgressSeries
    frontier: FrontierMatrix
    lineage: LineageLayout
    test: TestComparison
    guidelines: tuple[Guideline, ...]
    episodes: tuple[Episode, ...]
    result: Mapping[str, Any] = field(default_factory=dict)
    """result.json (sizes, calls, wall time), empty until the run ends."""
    unaligned: tuple[str, ...] = ()
    """Traces an unalign run removed."""
    verdict: Mapping[str, Any] | None = None
    """The held-out verdict (``Verdict.to_dict`` plus ``registered``), None for runs
    recorded before verdicts existed or still running."""
    run_record: record.RunRecord | None = None
    """The parsed run record this view was built from."""

    @property
    def verdict_text(self) -> str:
        """The verdict in words ("Worse on held-out traces (...): not registered. ...")."""
        return describe(self.verdict) if self.verdict else ""

    @property
    def stop_text(self) -> str:
        """Why the search stopped, e.g. ``Stopped early: perfect validation score (1.0) at
        iteration 8, after 133 of 360 metric calls``; empty when the run recorded no
        reason (still running, another optimizer, or a run older than early stops)."""
        from core.optimization.stopping import stop_line

        return stop_line(self.result) or ""

    @property
    def verdict_tone(self) -> str:
        """How loudly to show the verdict: ``warning``, ``success`` or ``info``."""
        return verdict_tone(self.verdict)

    @property
    def is_memalign(self) -> bool:
        """True for a MemAlign run (guidelines and episodes)."""
        return self.info.optimizer == "memalign"

    @property
    def is_prompt(self) -> bool:
        """True for a prompt optimization run (candidates are prompt templates)."""
        return self.info.is_prompt

    @property
    def labels(self) -> RunLabels:
        """The words for this run's kind (:data:`JUDGE_LABELS`, :data:`PROMPT_LABELS`)."""
        return PROMPT_LABELS if self.is_prompt else JUDGE_LABELS

    @property
    def has_candidates(self) -> bool:
        """True for a search-based run with candidates to explore."""
        return bool(self.candidates)

    def candidate(self, cid: int) -> CandidateView:
        """Candidate ``cid``.

        Raises:
            NotFoundError: no such candidate.
        """
        for c in self.candidates:
            if c.id == cid:
                return c
        raise NotFoundError(f"Run {self.info.run_id} has no candidate {cid}.")

    @property
    def best_id(self) -> int | None:
        """The best candidate's id."""
        return next((c.id for c in self.candidates if c.is_best), None)

    def marked(self, mark: str = BEST_MARK) -> dict[str, frozenset[int]]:
        """The candidates each chart and the selector show with ``mark``.

        Every place draws its marks from the same flags (:func:`marks`), so for
        :data:`BEST_MARK` each set is the one best candidate and for :data:`FRONTIER_MARK`
        the frontier; the Run explorer's charts and selector use exactly these labels.
        """
        fm = self.frontier
        return {
            "iterations": frozenset(c.id for c in self.progress.candidates if mark in c.marks),
            "heatmap": frozenset(
                cid for cid, lab in zip(fm.candidate_ids, fm.row_labels, strict=True) if mark in lab
            ),
            "lineage": frozenset(n.id for n in self.lineage.nodes if mark in n.marks),
            "selector": frozenset(c.id for c in self.candidates if mark in c.choice_label),
        }

    @property
    def seed_id(self) -> int | None:
        """The seed candidate's id."""
        return next((c.id for c in self.candidates if c.is_seed), None)

    def diff(self, cid: int, against: int | None) -> CandidateDiff | None:
        """Word diff of candidate ``cid`` against candidate ``against``.

        None when there is nothing to compare with (no such candidate, or itself).
        """
        if against is None or against == cid:
            return None
        base = self.candidate(against)
        ops = word_diff(base.instructions, self.candidate(cid).instructions)
        return CandidateDiff(against, tuple(ops), diff_stats(ops))

    def wins_and_losses(self, cid: int) -> WinsLosses:
        """Validation examples candidate ``cid`` won and lost against its first parent."""
        return wins_and_losses(self.candidates, cid)


# --- pure builders ----------------------------------------------------------------------


def _int(value: Any) -> int | None:
    try:
        return None if value is None or value == "" else int(float(value))
    except (TypeError, ValueError):
        return None


def _depths(cands: Sequence[Mapping[str, Any]]) -> dict[int, int]:
    parents = {c["id"]: [p for p in c["parent_ids"]] for c in cands}
    depth: dict[int, int] = {}

    def of(cid: int, seen: frozenset[int]) -> int:
        if cid in depth:
            return depth[cid]
        known = [p for p in parents.get(cid, []) if p in parents and p not in seen]
        d = 0 if not known else 1 + max(of(p, seen | {cid}) for p in known)
        depth[cid] = d
        return d

    for cid in parents:
        of(cid, frozenset())
    return depth


def best_candidate_id(cands: Sequence[Mapping[str, Any]]) -> int | None:
    """Best validation mean; ties go to the earliest (gepa's choice)."""
    if not cands:
        return None
    return min(cands, key=lambda c: (-c["val_score"], c["id"]))["id"]


def build_candidates(
    cands: Sequence[Mapping[str, Any]],
    calls_at_iteration: Mapping[int, int],
    frontier: Iterable[int] = (),
    best_id: int | None = None,
) -> tuple[CandidateView, ...]:
    """Candidate views with depth, flags, metric calls at discovery and a change preview."""
    depth = _depths(cands)
    front = set(frontier)
    best = best_candidate_id(cands) if best_id is None else best_id
    by_id = {c["id"]: c for c in cands}
    out = []
    for c in cands:
        calls = c.get("metric_calls_at_discovery")
        if calls is None:
            calls = calls_at_iteration.get(c["iteration"])
        parent = next((p for p in c["parent_ids"] if p in by_id), None)
        change = ""
        if parent is not None:
            ops = word_diff(by_id[parent]["instructions"], c["instructions"])
            change = inserted_text(ops, PREVIEW_CHARS)
        out.append(
            CandidateView(
                id=c["id"],
                parent_ids=tuple(c["parent_ids"]),
                instructions=c["instructions"],
                val_score=c["val_score"],
                val_scores=dict(c["val_scores"]),
                iteration=c["iteration"],
                metric_calls=calls,
                depth=depth.get(c["id"], 0),
                on_frontier=c["id"] in front,
                is_best=c["id"] == best,
                change_preview=change,
            )
        )
    return tuple(out)


def _aggregate(cands: Sequence[CandidateView], example_ids: Sequence[str]) -> float | None:
    bests = []
    for tid in example_ids:
        scores = [c.val_scores[tid] for c in cands if tid in c.val_scores]
        if scores:
            bests.append(max(scores))
    return sum(bests) / len(bests) if bests else None


def build_progress(
    candidates: Sequence[CandidateView],
    iterations: Sequence[Mapping[str, Any]],
    example_ids: Sequence[str],
    budget: int | None,
) -> ProgressSeries:
    """The per-iteration chart's series from the candidates and the iteration log.

    The best-so-far line steps at every iteration (so the flat stretches where proposals
    were rejected show); the Pareto aggregate steps where a candidate was found.
    """
    known = all(c.metric_calls is not None for c in candidates)
    calls = {_int(e.get("iteration")): _int(e.get("metric_calls")) for e in iterations}
    steps = sorted({c.iteration for c in candidates} | {i for i in calls if i is not None})
    best_line, pareto_line = [], []
    for it in steps:
        found = [c for c in candidates if c.iteration <= it]
        if not found:
            continue
        x = calls.get(it)
        if x is None:
            x = max((c.metric_calls or 0) for c in found) if known else None
        best_line.append(StepPoint(it, x, max(c.val_score for c in found)))
        if any(c.iteration == it for c in candidates):
            agg = _aggregate(found, example_ids)
            if agg is not None:
                pareto_line.append(StepPoint(it, x, agg))
    return ProgressSeries(
        candidates=tuple(candidates),
        best_so_far=tuple(best_line),
        pareto_aggregate=tuple(pareto_line),
        budget=budget,
        x_is_metric_calls=known and all(p.metric_calls is not None for p in best_line),
    )


def build_frontier(
    candidates: Sequence[CandidateView],
    example_ids: Sequence[str],
    frontier: Iterable[int] = (),
) -> FrontierMatrix:
    """The candidates x examples matrix; ``example_ids`` fixes the column order."""
    ids = list(dict.fromkeys(example_ids)) or sorted(
        {tid for c in candidates for tid in c.val_scores}
    )
    rows = sorted(candidates, key=lambda c: c.id)
    scores = tuple(tuple(c.val_scores.get(tid) for tid in ids) for c in rows)
    bests: list[float | None] = []
    for j in range(len(ids)):
        col = [v for r in scores if (v := r[j]) is not None]
        bests.append(max(col) if col else None)
    best_on = tuple(tuple(v is not None and v == bests[j] for j, v in enumerate(r)) for r in scores)
    known = [b for b in bests if b is not None]
    return FrontierMatrix(
        candidate_ids=tuple(c.id for c in rows),
        example_ids=tuple(ids),
        scores=scores,
        best_on_example=best_on,
        frontier=tuple(sorted(set(frontier))),
        best_scores=tuple(bests),
        aggregate=sum(known) / len(known) if known else None,
        best=next((c.id for c in rows if c.is_best), None),
    )


def build_lineage(candidates: Sequence[CandidateView]) -> LineageLayout:
    """Nodes placed by depth (x) and spread evenly within a depth (y, centred on 0)."""
    by_depth: dict[int, list[CandidateView]] = {}
    for c in sorted(candidates, key=lambda c: c.id):
        by_depth.setdefault(c.depth, []).append(c)
    nodes = []
    for depth, group in sorted(by_depth.items()):
        mid = (len(group) - 1) / 2
        for i, c in enumerate(group):
            nodes.append(
                LineageNode(
                    id=c.id,
                    depth=depth,
                    y=mid - i,
                    val_score=c.val_score,
                    on_frontier=c.on_frontier,
                    is_best=c.is_best,
                    preview=c.change_preview or c.preview,
                )
            )
    ids = {c.id for c in candidates}
    edges = tuple((p, c.id) for c in candidates for p in c.parent_ids if p in ids)
    return LineageLayout(tuple(nodes), edges)


def wins_and_losses(candidates: Sequence[CandidateView], cid: int) -> WinsLosses:
    """Examples where candidate ``cid`` beat, and fell behind, its first parent."""
    by_id = {c.id: c for c in candidates}
    cand = by_id.get(cid)
    if cand is None:
        raise NotFoundError(f"No candidate {cid}.")
    parent = next((by_id[p] for p in cand.parent_ids if p in by_id), None)
    if parent is None:
        return WinsLosses(None, (), (), 0)
    won, lost, tied = [], [], 0
    for tid, score in cand.val_scores.items():
        before = parent.val_scores.get(tid)
        if before is None:
            continue
        if score > before:
            won.append(ExampleOutcome(tid, before, score))
        elif score < before:
            lost.append(ExampleOutcome(tid, before, score))
        else:
            tied += 1
    return WinsLosses(parent.id, tuple(won), tuple(lost), tied)


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return "Pass" if value else "Fail"
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return "Pass" if value.lower() == "true" else "Fail"
    return str(value)


def _confusion(report: Mapping[str, Any] | None) -> Confusion | None:
    conf = (report or {}).get("confusion")
    if not conf or not conf.get("labels"):
        return None
    return Confusion(
        labels=tuple(_label(x) for x in conf["labels"]),
        counts=tuple(tuple(int(v) for v in row) for row in conf["counts"]),
    )


def _ci(report: Mapping[str, Any] | None, key: str) -> tuple[float, float] | None:
    ci = (report or {}).get(key) or {}
    if ci.get("low") is None or ci.get("high") is None:
        return None
    return float(ci["low"]), float(ci["high"])


_TEST_ROWS = (
    ("accuracy", "accuracy", "accuracy_ci"),
    ("Cohen's kappa", "cohen_kappa", "cohen_kappa_ci"),
    ("TPR", "tpr", None),
    ("TNR", "tnr", None),
    ("weighted kappa", "weighted_kappa", None),
    ("mean absolute error", "mean_absolute_error", "mean_absolute_error_ci"),
)


def build_test(metrics: Mapping[str, Any] | record.TestMetrics | None) -> TestComparison:
    """The before/after table and confusion matrices from the test-metrics record."""
    if isinstance(metrics, record.TestMetrics):
        metrics = metrics.to_dict()
    metrics = metrics or {}
    before, after = metrics.get("before"), metrics.get("after")
    rows = []
    for name, key, ci_key in _TEST_ROWS:
        b = (before or {}).get(key)
        a = (after or {}).get(key)
        if b is None and a is None:
            continue
        rows.append(
            MetricRow(
                name,
                b,
                a,
                _ci(before, ci_key) if ci_key else None,
                _ci(after, ci_key) if ci_key else None,
            )
        )
    notes = [metrics.get("note"), metrics.get("before_error"), metrics.get("after_error")]
    note = "; ".join(str(n) for n in notes if n) or None
    if not metrics:
        note = "No test-split scores yet (they are computed when the run ends)."
    return TestComparison(
        n=int(metrics.get("n") or 0),
        rows=tuple(rows),
        before_confusion=_confusion(before),
        after_confusion=_confusion(after),
        note=note,
        predictions=tuple(record.Prediction.from_dict(p) for p in metrics.get("predictions") or ()),
    )


# --- held-out flips: which test examples the alignment changed, and why ---------------

#: A held-out example the seed judge got wrong and the aligned judge right.
FIXED = "fixed"
#: One the seed judge got right and the aligned judge wrong.
BROKEN = "broken"
#: One where a judge call failed (either judge): neither fixed nor broken.
FAILED = "failed"
#: What a flip shows for a rationale its run did not record.
NOT_RECORDED = "rationale not recorded (run predates it)"
#: What it shows for a rationale that was recorded empty.
NO_RATIONALE = "(no rationale given)"


def _reason_text(text: str | None) -> str:
    if text is None:
        return NOT_RECORDED
    return text or NO_RATIONALE


@dataclass(frozen=True)
class Flip:
    """One held-out example whose correctness changed (or could not be told), with the
    human label and both judges' verdicts and rationales, as plain text."""

    trace_id: str
    change: str
    """:data:`FIXED`, :data:`BROKEN` or :data:`FAILED`."""
    human: str
    """The human label (``Pass``/``Fail`` or the value)."""
    human_rationale: str
    seed: str
    """The seed judge's verdict, or ``failed``."""
    seed_rationale: str
    """Its rationale (the error of a failed call; :data:`NOT_RECORDED` in old runs)."""
    aligned: str
    """The aligned judge's verdict, or ``failed``."""
    aligned_rationale: str

    @property
    def link(self) -> str:
        """The Label page of the trace (relative, as the app's other trace links)."""
        return f"label?trace={self.trace_id}"

    def row(self) -> dict[str, Any]:
        """One table row: trace link and id, human, seed and aligned, each with its why."""
        return {
            "trace": self.link,
            "trace id": self.trace_id,
            "human": self.human,
            "human rationale": self.human_rationale,
            "seed judge": self.seed,
            "seed rationale": self.seed_rationale,
            "aligned judge": self.aligned,
            "aligned rationale": self.aligned_rationale,
        }


@dataclass(frozen=True)
class Flips:
    """The held-out examples by what the alignment did to them."""

    fixed: tuple[Flip, ...] = ()
    """Wrong under the seed judge, right under the aligned one."""
    broken: tuple[Flip, ...] = ()
    """Right under the seed judge, wrong under the aligned one."""
    failed: tuple[Flip, ...] = ()
    """A judge call failed (either judge)."""
    unchanged: int = 0
    """Both judges answered and were both right, or both wrong."""
    recorded: bool = True
    """False when the run predates rationales in its record (verdicts only)."""

    @property
    def changed(self) -> tuple[Flip, ...]:
        """Every flip: fixed, broken, then failed."""
        return (*self.fixed, *self.broken, *self.failed)

    @property
    def summary(self) -> str:
        """``Held-out changes: 2 fixed, 1 broken, 11 unchanged`` (and failed calls)."""
        text = (
            f"Held-out changes: {len(self.fixed)} fixed, {len(self.broken)} broken, "
            f"{self.unchanged} unchanged"
        )
        if self.failed:
            text += f", {len(self.failed)} with a failed judge call"
        return text

    @property
    def empty(self) -> bool:
        """True when no example was judged at all."""
        return not self.changed and not self.unchanged


def _verdict_text(value: Any) -> str:
    return "failed" if value is None else _label(value)


def flips(predictions: Sequence[record.Prediction]) -> Flips:
    """Split held-out predictions into fixed, broken, failed and unchanged.

    Right means equal to the human label, as the held-out verdict counts it
    (:func:`core.optimization.verdict.correctness`); examples without a human label are
    left out.
    """
    groups: dict[str, list[Flip]] = {FIXED: [], BROKEN: [], FAILED: []}
    unchanged = 0
    recorded = True
    for p in predictions:
        if p.human is None:
            continue
        if p.seed is None or p.aligned is None:
            change = FAILED
        else:
            before, after = p.seed == p.human, p.aligned == p.human
            if before == after:
                unchanged += 1
                continue
            change = FIXED if after else BROKEN
        if p.seed_rationale is None and p.aligned_rationale is None:
            recorded = False
        groups[change].append(
            Flip(
                trace_id=p.trace_id,
                change=change,
                human=_label(p.human),
                human_rationale=_reason_text(p.human_rationale),
                seed=_verdict_text(p.seed),
                seed_rationale=_reason_text(p.seed_rationale),
                aligned=_verdict_text(p.aligned),
                aligned_rationale=_reason_text(p.aligned_rationale),
            )
        )
    return Flips(
        fixed=tuple(groups[FIXED]),
        broken=tuple(groups[BROKEN]),
        failed=tuple(groups[FAILED]),
        unchanged=unchanged,
        recorded=recorded,
    )


# --- usage: calls, tokens, cost ---------------------------------------------------------


def usage_line(metrics: Mapping[str, float]) -> str | None:
    """A run's model usage as one line (:func:`core.views.formatting.tokens_and_cost`).

    A finished run has the engine's totals (``llm_calls_total``, ``tokens_total``,
    ``cost_usd``); a running one the latest per-iteration ``llm_calls``,
    ``prompt_tokens + completion_tokens`` and ``cost_usd``. ``cost_usd`` is logged only
    for priced models, so its absence reads "price unknown", never $0. None when the run
    has logged no usage yet.
    """
    if "tokens_total" in metrics or "llm_calls_total" in metrics:
        tokens = metrics.get("tokens_total")
        calls = metrics.get("llm_calls_total")
    elif any(k in metrics for k in ("prompt_tokens", "completion_tokens", "llm_calls")):
        parts = [metrics[k] for k in ("prompt_tokens", "completion_tokens") if k in metrics]
        tokens = sum(parts) if parts else None
        calls = metrics.get("llm_calls")
    else:
        return None
    return tokens_and_cost(tokens, metrics.get("cost_usd"), calls)


def build_guidelines(raw: Sequence[Mapping[str, Any]] | None) -> tuple[Guideline, ...]:
    """MemAlign guidelines from ``guidelines.json``."""
    return tuple(
        Guideline(
            index=int(g.get("index", i)),
            text=str(g.get("text") or ""),
            source_trace_ids=tuple(str(t) for t in g.get("source_trace_ids") or ()),
        )
        for i, g in enumerate(raw or [])
    )


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def build_episodes(raw: Sequence[Mapping[str, Any]] | None) -> tuple[Episode, ...]:
    """MemAlign's episodic memory from ``episodes.json``."""
    return tuple(
        Episode(
            trace_id=e.get("trace_id"),
            label=None if e.get("label") is None else _label(e.get("label")),
            rationale=e.get("rationale"),
            inputs=_text(e.get("inputs")),
            outputs=_text(e.get("outputs")),
        )
        for e in raw or []
    )


def _run_verdict(rec: record.RunRecord) -> dict[str, Any] | None:
    verdict = rec.test.verdict if rec.test is not None else None
    if not verdict:
        return None
    out = dict(verdict)
    if "registered" in rec.result:
        # The test record is written before registration; the result says what happened.
        out["registered"] = bool(rec.result["registered"])
    return out


def verdict_tone(verdict: Mapping[str, Any] | None) -> str:
    """``warning`` for a worse judge, ``success`` for a significant gain, else ``info``."""
    if not verdict:
        return "info"
    if verdict.get("verdict") == WORSE:
        return "warning"
    return (
        "success" if verdict.get("verdict") == IMPROVED and verdict.get("significant") else "info"
    )


@dataclass(frozen=True)
class RunVerdict:
    """A finished run's held-out verdict, as the Align page's result panel shows it."""

    verdict: str | None
    """``improved``, ``no_change``, ``worse``; None for runs recorded before verdicts."""
    registered: bool | None
    """Whether the aligned judge was registered (None when unknown)."""
    text: str
    """The verdict in words (empty when there is none)."""
    tone: str
    """``warning``, ``success`` or ``info``."""


def run_verdict(run_id: str) -> RunVerdict:
    """Read a run's verdict from its record (result and test metrics)."""
    rec = record.parse_run_record(
        record.read_artifacts(_client(), run_id, [record.TEST_METRICS, record.RESULT])
    )
    verdict = _run_verdict(rec)
    registered = rec.result.get("registered")
    return RunVerdict(
        verdict=(verdict or {}).get("verdict"),
        registered=None if registered is None else bool(registered),
        text=describe(verdict) if verdict else "",
        tone=verdict_tone(verdict),
    )


def build_run_view(info: RunInfo, artifacts: Mapping[str, Any] | record.RunRecord) -> RunView:
    """Assemble a :class:`RunView` from a run's info and its record.

    Args:
        info: The run's identity and status.
        artifacts: The parsed :class:`~core.optimization.record.RunRecord`, or artifact
            name -> parsed JSON (or text for ``.txt``), missing ones absent.
    """
    rec = (
        artifacts
        if isinstance(artifacts, record.RunRecord)
        else record.parse_run_record(artifacts, info.optimizer)
    )
    val_ids = list(rec.split.val)
    if info.optimizer == "mlflow-gepa":
        # MLflow's GEPA scores candidates on train + val.
        val_ids = [*rec.split.train, *val_ids]
    raw = [c.to_dict() for c in rec.candidates]
    pareto = rec.pareto
    example_ids = list(pareto.per_example) or val_ids
    if not example_ids:
        example_ids = sorted({t for c in raw for t in c["val_scores"]})
    iterations = [r.to_dict() for r in rec.iterations]
    calls = {r.iteration: r.metric_calls for r in rec.iterations if r.metric_calls is not None}
    best = _int(rec.extra.get("best_candidate_id"))
    if best is not None and best not in {c["id"] for c in raw}:
        best = None
    cands = build_candidates(raw, calls, pareto.frontier, best)
    budget = info.budget or _int(info.params.get("max_metric_calls"))
    seed_instr = str((rec.settings.get("judge") or {}).get("instructions") or "")
    if not seed_instr:
        # A prompt run's settings name the prompt by version: its seed is candidate 0.
        seed_instr = next((c.instructions for c in cands if c.is_seed), "")
    return RunView(
        info=info,
        settings=rec.settings,
        seed_instructions=seed_instr,
        final_instructions=rec.final_instructions,
        candidates=cands,
        progress=build_progress(cands, iterations, example_ids, budget),
        frontier=build_frontier(cands, example_ids, pareto.frontier),
        lineage=build_lineage(cands),
        test=build_test(rec.test),
        guidelines=build_guidelines(rec.guidelines),
        episodes=build_episodes(rec.episodes),
        result=rec.result,
        unaligned=rec.unaligned,
        verdict=_run_verdict(rec),
        run_record=rec,
    )


# --- reading a run ----------------------------------------------------------------------


def _client():
    from mlflow import MlflowClient

    config.configure()
    return MlflowClient()


def run_info(run_id: str) -> RunInfo:
    """A run's identity and status as recorded (no liveness check; see ``jobs.status``).

    Raises:
        NotFoundError: no such run.
    """
    from core.optimization import recorder as rec

    client = _client()
    try:
        run = client.get_run(run_id)
    except Exception as exc:
        raise NotFoundError(f"No run {run_id!r} in {config.tracking_uri()}.") from exc
    tags = run.data.tags
    params = dict(run.data.params)
    return RunInfo(
        run_id=run_id,
        name=run.info.run_name or run_id,
        experiment_id=run.info.experiment_id,
        status=tags.get(rec.TAG_STATUS) or run.info.status.lower(),
        optimizer=tags.get(rec.TAG_OPTIMIZER) or params.get("optimizer"),
        judge_name=tags.get(rec.TAG_JUDGE) or params.get("judge_name"),
        judge_version=_int(tags.get(rec.TAG_JUDGE_VERSION)),
        started_ms=run.info.start_time,
        ended_ms=run.info.end_time,
        params=params,
        budget=_int(tags.get(rec.TAG_BUDGET)),
        error=tags.get(rec.TAG_ERROR) or None,
        kind=tags.get(rec.TAG_KIND) or rec.KIND_ALIGNMENT,
        prompt_name=tags.get(TAG_PROMPT) or None,
        prompt_version=_int(tags.get(TAG_PROMPT_VERSION)),
        # The params name the prompts as "name@3[,other@1]": the first is the run's prompt.
        base_version=_int(params.get("prompt", "").split(",")[0].rpartition("@")[2] or None),
        metrics=dict(run.data.metrics),
    )


def read_artifacts(run_id: str, names: Iterable[str] = ARTIFACTS) -> dict[str, Any]:
    """The run's artifacts that exist, parsed (JSON) or as text (``.txt``)."""
    return record.read_artifacts(_client(), run_id, names)


def load_run_view(run_id: str) -> RunView:
    """Everything one alignment run recorded, as a :class:`RunView`.

    Works on running jobs too (their artifacts are rewritten every iteration).

    Raises:
        NotFoundError: no such run.
    """
    info = run_info(run_id)
    return build_run_view(info, record.read_run_record(_client(), run_id, info.optimizer))


@dataclass(frozen=True)
class LivePoint:
    """One logged step of a running job."""

    step: int
    metric_calls: float | None
    val_score: float | None
    best_val_score: float | None
    pareto_aggregate: float | None


@dataclass(frozen=True)
class LiveSeries:
    """The metric histories the Align page charts while a job runs."""

    points: tuple[LivePoint, ...]

    @property
    def empty(self) -> bool:
        """True before the first scored step."""
        return not any(p.val_score is not None or p.best_val_score is not None for p in self.points)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def build_live_series(history: Mapping[str, Sequence[tuple[int, float]]]) -> LiveSeries:
    """Join metric histories (name -> [(step, value)]) into one point per step.

    ``metric_calls`` is carried forward to steps that logged a score without it.
    """
    by_step: dict[int, dict[str, float]] = {}
    for name, points in history.items():
        for step, value in points:
            by_step.setdefault(int(step), {})[name] = float(value)
    out, calls = [], None
    for step in sorted(by_step):
        m = by_step[step]
        calls = m.get("metric_calls", calls)
        out.append(
            LivePoint(
                step,
                calls,
                m.get("val_score"),
                m.get("best_val_score"),
                m.get("pareto_aggregate"),
            )
        )
    return LiveSeries(tuple(out))


def metric_series(run_id: str) -> LiveSeries:
    """The job's per-iteration metrics so far (any optimizer), for a live chart."""
    client = _client()
    history = {
        name: [(m.step, m.value) for m in client.get_metric_history(run_id, name)]
        for name in LIVE_METRICS
    }
    return build_live_series(history)


# --- validation uncertainty and proposals (the proposal guard's view) ------------------


@dataclass(frozen=True)
class CandidateScore:
    """One candidate's validation score with its uncertainty and its evidence against the
    seed (the noise-aware selection rule's numbers)."""

    id: int
    """Candidate id (0 is the seed)."""
    val_score: float
    """Validation mean."""
    n: int
    """Validation examples it was scored on."""
    ci: tuple[float, float] | None
    """95% Wilson interval of the validation mean."""
    wins: int | None = None
    """Examples it scored higher on than the seed (None for the seed)."""
    losses: int | None = None
    """Examples it scored lower on."""
    p_value: float | None = None
    """One-sided sign-test p-value of its wins over the seed."""
    beats_seed: bool = False
    """True when the sign test says it beats the seed."""
    chosen: bool = False
    """True for the candidate the run returned."""

    @property
    def is_seed(self) -> bool:
        """True for the seed."""
        return self.wins is None


@dataclass(frozen=True)
class ProposalRow:
    """One reflection proposal as the Run explorer lists it (plain text, never HTML)."""

    iteration: int
    parent_id: int | None
    status: str
    """``accepted``, ``rejected`` or ``pending``."""
    reason: str | None
    """Guard reason code, ``not_better_on_minibatch``, or None."""
    message: str
    """Why, in a sentence."""
    degenerate: bool
    """Rejected by the proposal guard before any evaluation."""
    candidate_id: int | None
    """The candidate it became, when accepted."""
    proposed_text: str
    reflection_output: str
    """The reflection model's raw answer."""


@dataclass(frozen=True)
class GuardView:
    """Validation uncertainty of every candidate and the run's proposals."""

    scores: tuple[CandidateScore, ...] = ()
    """Every candidate, in id order."""
    rule: str = ""
    """The selection rule the run applied ("" for runs recorded without one)."""
    chosen_id: int | None = None
    """The candidate the run returned."""
    kept_seed_over: int | None = None
    """A higher-mean candidate the rule refused (the seed stayed), if any."""
    proposals: tuple[ProposalRow, ...] = ()
    """Every recorded proposal, in order."""
    saved_metric_calls: int = 0
    """Judge evaluations the guard saved by rejecting degenerate proposals unevaluated."""

    @property
    def rejected(self) -> tuple[ProposalRow, ...]:
        """The rejected proposals (degenerate or not better on the minibatch)."""
        return tuple(p for p in self.proposals if p.status == "rejected")

    @property
    def degenerate(self) -> tuple[ProposalRow, ...]:
        """The proposals the guard rejected before evaluation."""
        return tuple(p for p in self.proposals if p.degenerate)

    @property
    def empty(self) -> bool:
        """True when there is nothing to show (e.g. MemAlign)."""
        return not self.scores and not self.proposals

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def build_guard_view(rec: record.RunRecord) -> GuardView:
    """Candidates' validation scores with 95% Wilson intervals and paired evidence against
    the seed, and the run's proposals (rejected ones with reason and reflection output).

    The selection recorded by the run (``extra["selection"]``) is shown as recorded; for a
    run recorded without one (older runs, MLflow's GEPA) the paired numbers are computed
    here and ``rule`` stays empty, since that run did not apply the rule.
    """
    from core.optimization.selection import score_interval, select_candidate

    recorded = rec.extra.get("selection") if isinstance(rec.extra, Mapping) else None
    by_id = {c.id: c for c in rec.candidates}
    seed_id = next((c.id for c in rec.candidates if not c.parent_ids), min(by_id, default=0))
    computed = select_candidate({c.id: c.val_scores for c in rec.candidates}, seed_id=seed_id)
    if isinstance(recorded, Mapping):
        comparisons = {
            int(c["candidate_id"]): c
            for c in recorded.get("comparisons") or ()
            if "candidate_id" in c
        }
        chosen = _int(recorded.get("chosen_id"))
        rule = str(recorded.get("rule") or "")
    else:
        comparisons = {c.candidate_id: c.to_dict() for c in computed.comparisons}
        chosen = _int(rec.extra.get("best_candidate_id"))
        rule = ""
    scores = []
    for cid in sorted(by_id):
        c = by_id[cid]
        n = len(c.val_scores)
        mean = sum(c.val_scores.values()) / n if n else c.val_score
        comp = comparisons.get(cid)
        scores.append(
            CandidateScore(
                id=cid,
                val_score=mean,
                n=n,
                ci=score_interval(mean, n),
                wins=None if comp is None else int(comp["wins"]),
                losses=None if comp is None else int(comp["losses"]),
                p_value=None if comp is None else float(comp["p_value"]),
                beats_seed=bool(comp and comp.get("beats_seed")),
                chosen=cid == chosen,
            )
        )
    kept = None
    if chosen == seed_id and computed.highest_mean_id != seed_id:
        kept = computed.highest_mean_id
    proposals = record.read_proposals(rec.proposals)
    return GuardView(
        scores=tuple(scores),
        rule=rule,
        chosen_id=chosen,
        kept_seed_over=kept,
        proposals=tuple(
            ProposalRow(
                iteration=p.iteration,
                parent_id=p.parent_id,
                status=p.status,
                reason=p.reason,
                message=p.message,
                degenerate=p.degenerate,
                candidate_id=p.candidate_id,
                proposed_text=p.proposed_text,
                reflection_output=p.reflection_output,
            )
            for p in proposals
        ),
        saved_metric_calls=sum(p.saved_metric_calls for p in proposals),
    )
