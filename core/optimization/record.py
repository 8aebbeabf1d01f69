"""The run record: every artifact an optimization run writes, its type, and how to read it.

One schema shared by the code that writes a run (engine, runners) and the code that reads
it back (Run explorer, Versions page, jobs, scoring), so the two can never drift apart.
No artifact name is spelled anywhere else.

Artifact (written by; record type; read by the Run explorer unless said otherwise):

- ``settings.json`` (engine ``create_run``; :class:`AlignmentSettings`; also the job
  process and ``load_settings``)
- ``preflight.json`` (engine; ``{"findings": [...]}``)
- ``split.json`` (engine; :class:`Split`)
- ``candidates.json`` (gepa and mlflow-gepa runners; list of :class:`Candidate`; MLflow
  GEPA's candidates are converted to ours by its writer)
- ``pareto.json``, ``lineage.json``, ``iterations.json`` (gepa runner; :class:`Pareto`,
  :class:`Lineage`, list of :class:`IterationRow`)
- ``proposals.json`` (gepa runner: :class:`Proposal`; mlflow-gepa: MLflow's raw entries,
  read by :meth:`Proposal.from_dict` too)
- ``test_metrics.json`` (engine ``_score_on_test``; :class:`TestMetrics` with per-example
  :class:`Prediction` and the held-out verdict; also the Versions page)
- ``result.json`` (engine; :class:`AlignmentResult`, the CLI's ``--json`` too)
- ``outcome_extra.json`` (engine; the optimizer's totals, free form)
- ``final_instructions.txt`` (engine, gepa runner; text)
- ``guidelines.json``, ``episodes.json`` (memalign runners; MemAlign memory)
- ``unaligned_traces.json`` (memalign unalign; trace ids)
- ``mlflow_gepa.json``, ``simba.json`` (MLflow baseline runners; totals)
- bulk scoring runs (:mod:`core.optimization.bulk_scoring`): ``settings.json``
  (:class:`core.optimization.score_spec.ScoreSettings`), ``preflight.json``,
  ``score_traces.json`` (:class:`ScoreTraces`: the selected trace ids, fixed at launch so a
  resume judges the same set) and ``result.json`` (:class:`ScoreResult`)

Records written before this module existed still read (``tests/fixtures/runs/*_v0``):
:meth:`Candidate.from_dict` accepts MLflow GEPA's old ``idx``-keyed candidates with
per-example scores by position, and every ``from_dict`` tolerates missing fields.

Adding a record field: add it to the dataclass with a default and a one-line docstring,
write it in ``to_dict`` and read it with ``.get`` in ``from_dict`` (old runs lack it), and
extend the round-trip test in ``tests/optimization/test_record.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from core.optimization.spec import AlignmentSettings, RunRecorder

if TYPE_CHECKING:
    from core.optimization.prompt_spec import PromptSettings
    from core.optimization.score_spec import ScoreSettings

SETTINGS = "settings.json"
PREFLIGHT = "preflight.json"
SPLIT = "split.json"
CANDIDATES = "candidates.json"
PARETO = "pareto.json"
LINEAGE = "lineage.json"
ITERATIONS = "iterations.json"
#: Reserved for the proposal record (reflection prompt and output, accepted or rejected).
PROPOSALS = "proposals.json"
TEST_METRICS = "test_metrics.json"
RESULT = "result.json"
OUTCOME_EXTRA = "outcome_extra.json"
FINAL_INSTRUCTIONS = "final_instructions.txt"
GUIDELINES = "guidelines.json"
EPISODES = "episodes.json"
UNALIGNED = "unaligned_traces.json"
MLFLOW_GEPA_TOTALS = "mlflow_gepa.json"
SIMBA_TOTALS = "simba.json"
#: Bulk scoring: the trace ids the launch selected (:class:`ScoreTraces`).
SCORE_TRACES = "score_traces.json"

#: Everything a run view reads (JSON unless the name ends in ``.txt``).
ARTIFACTS: tuple[str, ...] = (
    SETTINGS,
    CANDIDATES,
    PARETO,
    LINEAGE,
    ITERATIONS,
    PROPOSALS,
    TEST_METRICS,
    RESULT,
    OUTCOME_EXTRA,
    SPLIT,
    GUIDELINES,
    EPISODES,
    UNALIGNED,
    FINAL_INSTRUCTIONS,
)


def _int(value: Any) -> int | None:
    try:
        return None if value is None or value == "" else int(float(value))
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


# --- records ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Which labeled traces went to which split."""

    train: tuple[str, ...] = ()
    """Trace ids the optimizer trained on."""
    val: tuple[str, ...] = ()
    """Trace ids it validated on."""
    test: tuple[str, ...] = ()
    """Held-out trace ids both judges were scored on."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {"train": list(self.train), "val": list(self.val), "test": list(self.test)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Split:
        """Read a split back (missing keys: empty)."""
        d = d or {}
        return cls(*(tuple(str(t) for t in d.get(k) or ()) for k in ("train", "val", "test")))


@dataclass(frozen=True)
class Candidate:
    """One candidate of a search: a judge text and how it scored on validation."""

    id: int
    """Candidate index (0 is the seed)."""
    parent_ids: tuple[int, ...] = ()
    """Candidates it was derived from (empty for the seed)."""
    instructions: str = ""
    """Its full instructions (the one text component of a judge)."""
    val_score: float = 0.0
    """Mean score on the validation examples."""
    val_scores: Mapping[str, float] = field(default_factory=dict)
    """trace id -> score on that validation example."""
    iteration: int = 0
    """Iteration that found it (0: the seed)."""
    metric_calls_at_discovery: int | None = None
    """Metric calls spent when it was found (None when unknown)."""
    proposed_instructions: str | None = None
    """What the reflection model proposed, when it had to be repaired (template check)."""
    template: str | None = None
    """Template check of the proposal (``ok``, or how it was repaired)."""
    template_note: str | None = None
    """What the template check said."""
    components: Mapping[str, str] = field(default_factory=dict)
    """Every text component by name, when a candidate has several (a prompt optimization
    of an app with several prompts); empty when ``instructions`` is the only one."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the ``candidates.json`` entry)."""
        d = asdict(self)
        d["parent_ids"] = list(self.parent_ids)
        d["val_scores"] = dict(self.val_scores)
        d["components"] = dict(self.components)
        if not self.components:
            d.pop("components")
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], val_ids: Sequence[str] = ()) -> Candidate | None:
        """Read a candidate; None when it has no id.

        Also reads MLflow GEPA's old records (``idx`` and ``scores_by_example`` keyed by
        position in ``val_ids``).
        """
        cid = _int(d.get("id", d.get("idx")))
        if cid is None:
            return None
        scores = d.get("val_scores")
        if scores is None:
            scores = {}
            for k, v in (d.get("scores_by_example") or {}).items():
                pos = _int(k)
                key = val_ids[pos] if pos is not None and 0 <= pos < len(val_ids) else str(k)
                scores[key] = v
        return cls(
            id=cid,
            parent_ids=tuple(int(p) for p in d.get("parent_ids") or () if p is not None),
            instructions=str(d.get("instructions") or ""),
            val_score=float(d.get("val_score") or 0.0),
            val_scores={str(k): float(v) for k, v in scores.items() if v is not None},
            iteration=_int(d.get("iteration")) or 0,
            metric_calls_at_discovery=_int(d.get("metric_calls_at_discovery")),
            proposed_instructions=d.get("proposed_instructions"),
            template=d.get("template"),
            template_note=d.get("template_note"),
            components={str(k): str(v) for k, v in (d.get("components") or {}).items()},
        )


def candidates_from_list(
    raw: Iterable[Mapping[str, Any]] | None, val_ids: Sequence[str] = ()
) -> tuple[Candidate, ...]:
    """Candidates from a ``candidates.json`` list, in id order, first of each id kept."""
    out: dict[int, Candidate] = {}
    for d in raw or ():
        c = Candidate.from_dict(d, val_ids)
        if c is not None:
            out.setdefault(c.id, c)
    return tuple(out[k] for k in sorted(out))


@dataclass(frozen=True)
class ParetoEntry:
    """The best score on one validation example and the candidates that reach it."""

    best_score: float
    """Highest score any candidate reached on the example."""
    candidate_ids: tuple[int, ...]
    """Candidates reaching it."""


@dataclass(frozen=True)
class Pareto:
    """The Pareto frontier over validation examples (gepa's definition)."""

    per_example: Mapping[str, ParetoEntry] = field(default_factory=dict)
    """trace id -> best score and who reaches it."""
    frontier: tuple[int, ...] = ()
    """Non-dominated candidate ids."""
    aggregate: float = 0.0
    """Mean over examples of the best score reached."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (``pareto.json``)."""
        return {
            "per_example": {
                t: {"best_score": e.best_score, "candidate_ids": list(e.candidate_ids)}
                for t, e in self.per_example.items()
            },
            "frontier": list(self.frontier),
            "aggregate": self.aggregate,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Pareto:
        """Read a frontier back (missing: empty)."""
        d = d or {}
        per = {
            str(t): ParetoEntry(
                float(e.get("best_score") or 0.0),
                tuple(int(i) for i in e.get("candidate_ids") or ()),
            )
            for t, e in (d.get("per_example") or {}).items()
        }
        return cls(
            per, tuple(int(i) for i in d.get("frontier") or ()), float(d.get("aggregate") or 0)
        )


@dataclass(frozen=True)
class Lineage:
    """Parent -> child edges between candidates (for MLflow's own artifact viewer)."""

    nodes: tuple[Mapping[str, Any], ...] = ()
    """One per candidate: id, val_score, iteration, template."""
    edges: tuple[tuple[int, int], ...] = ()
    """(parent id, child id)."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (``lineage.json``)."""
        return {
            "nodes": [dict(n) for n in self.nodes],
            "edges": [{"parent": p, "child": c} for p, c in self.edges],
        }

    @classmethod
    def of(cls, candidates: Sequence[Candidate]) -> Lineage:
        """The lineage of ``candidates``."""
        nodes = tuple(
            {"id": c.id, "val_score": c.val_score, "iteration": c.iteration, "template": c.template}
            for c in candidates
        )
        return cls(nodes, tuple((p, c.id) for c in candidates for p in c.parent_ids))


@dataclass(frozen=True)
class IterationRow:
    """One optimizer iteration: what it cost and whether it produced a candidate."""

    iteration: int
    """Iteration number (0: the seed's evaluation)."""
    kind: str = ""
    """``seed_eval`` or ``reflective_mutation``."""
    accepted: bool = False
    """True when the iteration's proposal became a candidate."""
    metric_calls: int | None = None
    """Metric calls spent by the end of the iteration."""
    seconds: float | None = None
    """Wall time of the iteration."""
    llm_calls: int | None = None
    """Model calls made in the iteration."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Everything else the runner logged (rounds, parent id, rejection reason...)."""

    _KNOWN = ("iteration", "kind", "accepted", "metric_calls", "seconds", "llm_calls")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (one ``iterations.json`` entry, flat)."""
        d = {k: getattr(self, k) for k in self._KNOWN}
        return {**d, **dict(self.extra)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IterationRow | None:
        """Read an iteration row; None without an iteration number."""
        it = _int(d.get("iteration"))
        if it is None:
            return None
        return cls(
            iteration=it,
            kind=str(d.get("kind") or ""),
            accepted=bool(d.get("accepted")),
            metric_calls=_int(d.get("metric_calls")),
            seconds=_float(d.get("seconds")),
            llm_calls=_int(d.get("llm_calls")),
            extra={k: v for k, v in d.items() if k not in cls._KNOWN},
        )


#: Characters of a rationale a :class:`Prediction` keeps (the record stays small; a judge
#: that writes an essay keeps its first 2,000 characters).
RATIONALE_CHARS = 2000


def cap_rationale(text: Any, limit: int = RATIONALE_CHARS) -> str | None:
    """``text`` as a string of at most ``limit`` characters (None stays None)."""
    if text is None:
        return None
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Prediction:
    """One held-out example: the human label and both judges' verdicts, with the reasons.

    The rationales are None in records written before they were kept (the Run explorer
    says so); a recorded but empty rationale is ``""``.
    """

    trace_id: str
    """The test trace."""
    human: Any
    """The human label the judges are compared with."""
    seed: Any
    """The seed judge's verdict (None when its call failed)."""
    aligned: Any
    """The aligned judge's verdict (None when its call failed)."""
    seed_rationale: str | None = None
    """The seed judge's rationale, or why its call failed (at most
    :data:`RATIONALE_CHARS`)."""
    aligned_rationale: str | None = None
    """The aligned judge's rationale, or why its call failed."""
    human_rationale: str | None = None
    """The rationale behind the human label."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Prediction:
        """Read a prediction back (records without rationales read them as None)."""
        return cls(
            str(d.get("trace_id")),
            d.get("human"),
            d.get("seed"),
            d.get("aligned"),
            seed_rationale=cap_rationale(d.get("seed_rationale")),
            aligned_rationale=cap_rationale(d.get("aligned_rationale")),
            human_rationale=cap_rationale(d.get("human_rationale")),
        )


@dataclass(frozen=True)
class TestOutput:
    """One held-out row of a prompt optimization: both prompts' outputs and their scores."""

    __test__ = False  # not a pytest class, despite the name

    row_id: str
    """The dataset row."""
    values: Mapping[str, str] = field(default_factory=dict)
    """The template values the row supplied (what the application was asked)."""
    before: str | None = None
    """The seed prompt's output (None when the call failed)."""
    after: str | None = None
    """The best prompt's output (None when the call failed)."""
    before_score: float | None = None
    """The seed output's aggregated score in [0, 1]."""
    after_score: float | None = None
    """The best output's aggregated score in [0, 1]."""
    before_verdicts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Scorer name -> ``{value, score, rationale, error, skipped}`` for the seed output."""
    after_verdicts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """The same for the best output."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "row_id": self.row_id,
            "values": dict(self.values),
            "before": self.before,
            "after": self.after,
            "before_score": self.before_score,
            "after_score": self.after_score,
            "before_verdicts": {k: dict(v) for k, v in self.before_verdicts.items()},
            "after_verdicts": {k: dict(v) for k, v in self.after_verdicts.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TestOutput:
        """Read one back."""
        names = cls.__dataclass_fields__
        known = {k: v for k, v in d.items() if k in names}
        known["row_id"] = str(d.get("row_id"))
        return cls(**known)


@dataclass(frozen=True)
class TestMetrics:
    """Seed vs aligned judge on the held-out split."""

    __test__ = False  # not a pytest class, despite the name

    n: int = 0
    """Test traces."""
    before: Mapping[str, Any] | None = None
    """AgreementReport dict of the seed judge (None when unknown)."""
    after: Mapping[str, Any] | None = None
    """AgreementReport dict of the aligned judge (None when unknown)."""
    failed: int = 0
    """Judge calls that failed on the test split (both judges)."""
    predictions: tuple[Prediction, ...] = ()
    """Per example: human label, seed verdict, aligned verdict (empty in old records)."""
    verdict: Mapping[str, Any] | None = None
    """The held-out verdict (``core.optimization.verdict.Verdict.to_dict``)."""
    note: str | None = None
    """Why there are no scores (e.g. no labeled test trace)."""
    before_error: str | None = None
    """Why the seed's report is missing."""
    after_error: str | None = None
    """Why the aligned judge's report is missing."""
    outputs: tuple[TestOutput, ...] = ()
    """Prompt optimization: per held-out row, both prompts' outputs and scores."""
    scores: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Prompt optimization: scorer name (and ``overall``) -> ``{before, after, before_ci,
    after_ci, n}``, mean scores in [0, 1] with bootstrap 95% intervals."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (``test_metrics.json``); unset notes are left out."""
        d: dict[str, Any] = {
            "before": None if self.before is None else dict(self.before),
            "after": None if self.after is None else dict(self.after),
            "failed": self.failed,
            "n": self.n,
            "predictions": [p.to_dict() for p in self.predictions],
        }
        if self.verdict is not None:
            d["verdict"] = dict(self.verdict)
        for k in ("note", "before_error", "after_error"):
            if getattr(self, k):
                d[k] = getattr(self, k)
        if self.outputs:
            d["outputs"] = [o.to_dict() for o in self.outputs]
        if self.scores:
            d["scores"] = {k: dict(v) for k, v in self.scores.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> TestMetrics | None:
        """Read test metrics back; None when the run has none yet."""
        if not d:
            return None
        return cls(
            n=int(d.get("n") or 0),
            before=d.get("before"),
            after=d.get("after"),
            failed=int(d.get("failed") or 0),
            predictions=tuple(Prediction.from_dict(p) for p in d.get("predictions") or ()),
            verdict=d.get("verdict"),
            note=d.get("note"),
            before_error=d.get("before_error"),
            after_error=d.get("after_error"),
            outputs=tuple(TestOutput.from_dict(o) for o in d.get("outputs") or ()),
            scores=dict(d.get("scores") or {}),
        )


@dataclass(frozen=True)
class AlignmentResult:
    """What one alignment did (``result.json``; also the ``--json`` output of
    ``alignboard align``)."""

    run_id: str
    """The MLflow run recording it."""
    status: str
    """finished, or cancelled (the best candidate so far was scored on the held-out split;
    registered only with ``register_if_cancelled``)."""
    optimizer: str
    """Which optimizer ran."""
    judge_name: str
    """The judge (= criterion) name."""
    judge_version: int | None
    """Registered version of the aligned judge; None when nothing was registered."""
    train_size: int
    """Labeled traces the optimizer trained on."""
    val_size: int
    """Labeled traces it validated on."""
    test_size: int
    """Held-out traces both judges were scored on."""
    metric_calls: int
    """Judge evaluations the optimizer spent."""
    llm_calls: int
    """Model calls made by this process (judge, reflection, test scoring)."""
    iterations: int
    """Optimizer iterations completed."""
    failed_examples: int
    """Examples whose judge call failed after retries (optimizer and test scoring)."""
    test_accuracy_before: float | None
    """Seed judge's accuracy against the human labels on the test split."""
    test_accuracy_after: float | None
    """Aligned judge's accuracy on the test split."""
    test_kappa_before: float | None
    """Seed judge's Cohen's kappa on the test split."""
    test_kappa_after: float | None
    """Aligned judge's Cohen's kappa on the test split."""
    wall_seconds: float
    """Wall time of this process's work on the run."""
    instructions: str
    """The aligned judge's instructions."""
    tokens: int | None = None
    """Tokens used, when the providers report them."""
    resumed: bool = False
    """True when this continued an earlier, interrupted attempt."""
    test_before: dict[str, Any] | None = None
    """Full agreement report of the seed judge on the test split."""
    test_after: dict[str, Any] | None = None
    """Full agreement report of the aligned judge on the test split."""
    warnings: list[dict[str, str]] = field(default_factory=list)
    """Pre-flight warnings."""
    registered: bool = False
    """True when the aligned judge was registered as a new version."""
    verdict: str | None = None
    """Held-out verdict: ``improved``, ``no_change`` or ``worse`` (see
    :mod:`core.optimization.verdict`); a ``worse`` judge is registered only on request."""
    significant: bool = False
    """True when the 95% paired bootstrap interval of the accuracy gain excludes zero."""
    accuracy_diff: float | None = None
    """Test accuracy difference, aligned minus seed, paired per example."""
    accuracy_diff_ci: list[float | None] | None = None
    """``[low, high]``: 95% paired bootstrap interval of ``accuracy_diff``."""
    verdict_text: str = ""
    """The verdict in words, as the Align page and the Run explorer show it."""
    label_sources: dict[str, int] = field(default_factory=dict)
    """How the examples' human values were chosen (``core.labeling.consolidation``):
    counts ``{gold, majority, primary_tiebreak, single}``; empty for older runs."""
    not_registered_reason: str | None = None
    """Why no version was registered: ``cancelled`` (cancelled and "Register if
    cancelled" was off), ``worse`` (held-out verdict), ``unchanged``; None when one was."""
    register_if_cancelled: bool = False
    """Whether the user asked to register the best so far of a cancelled run."""
    stop_reason: str | None = None
    """Why the search stopped: ``budget``, ``perfect_score``, ``score_reached``,
    ``no_improvement``, ``time_limit``, ``cost_limit`` or ``cancelled``
    (:mod:`core.optimization.stopping`; also the ``alignboard.stop_reason`` tag); None for
    an optimizer that does not say (MemAlign, MLflow's baselines) and older runs."""
    stop_detail: str | None = None
    """``stop_reason`` in words, e.g. ``perfect validation score (1.0) at iteration 8,
    after 120 of 370 metric calls``."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AlignmentResult:
        """Read a result back; fields a run of an older version did not write get their
        defaults (``registered`` from the version number)."""
        names = cls.__dataclass_fields__
        known = {k: v for k, v in d.items() if k in names}
        known.setdefault("registered", d.get("judge_version") is not None)
        return cls(**known)


@dataclass(frozen=True)
class ScoreTraces:
    """The traces a bulk scoring run judges, selected once at launch."""

    trace_ids: tuple[str, ...] = ()
    """Selected trace ids, oldest first (already judged ones included: they are skipped)."""
    selection: str = ""
    """The selection in words (``TraceSelection.describe``)."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {"trace_ids": list(self.trace_ids), "selection": self.selection}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ScoreTraces:
        """Inverse of :meth:`to_dict`."""
        d = d or {}
        return cls(tuple(str(t) for t in d.get("trace_ids") or ()), str(d.get("selection") or ""))


@dataclass(frozen=True)
class ScoreResult:
    """What one bulk scoring run did (``result.json``; also ``alignboard score --json``)."""

    run_id: str
    """The MLflow run recording it."""
    status: str
    """finished, or cancelled (the batches judged before the cancel are written)."""
    judge_name: str
    """The judge (= criterion, = feedback) name."""
    judge_version: int
    """The version whose verdicts were written."""
    source_id: str
    """Feedback source id of the verdicts (``name/vN``)."""
    n_selected: int
    """Traces the selection holds."""
    n_scored: int
    """Traces judged and written by this attempt."""
    n_skipped: int
    """Traces that already carried this version's verdict (not judged again)."""
    n_failed: int
    """Traces whose judge call failed after retries (nothing written for them)."""
    value_counts: dict[str, int] = field(default_factory=dict)
    """Verdicts written by this attempt, per value (``pass``/``fail`` for pass/fail)."""
    wall_seconds: float = 0.0
    """Wall time of this process's work on the run."""
    selection: str = ""
    """The selection in words."""
    llm_calls: int = 0
    """Judge calls made (retries included)."""
    retries: int = 0
    """Judge calls that were retries."""
    resumed: bool = False
    """True when this continued an earlier, interrupted attempt."""
    warnings: list[dict[str, str]] = field(default_factory=list)
    """Pre-flight warnings."""
    write_seconds: float = 0.0
    """Time spent writing verdicts (while later batches were being judged)."""

    @property
    def n_done(self) -> int:
        """Traces accounted for: scored, skipped or failed."""
        return self.n_scored + self.n_skipped + self.n_failed

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ScoreResult:
        """Read a result back (fields an older run did not write get their defaults)."""
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class RunRecord:
    """Everything one run recorded, parsed; missing parts are empty."""

    settings: Mapping[str, Any] = field(default_factory=dict)
    """The settings as recorded (``AlignmentSettings.to_dict``; a dict so that runs written
    by another version still read)."""
    split: Split = field(default_factory=Split)
    """Trace ids per split."""
    candidates: tuple[Candidate, ...] = ()
    """Search candidates, in id order."""
    pareto: Pareto = field(default_factory=Pareto)
    """The validation frontier."""
    iterations: tuple[IterationRow, ...] = ()
    """Per-iteration rows."""
    proposals: tuple[Mapping[str, Any], ...] = ()
    """Raw ``proposals.json`` entries (parsed into typed proposals by their reader)."""
    test: TestMetrics | None = None
    """Held-out scores, once the run ended."""
    result: Mapping[str, Any] = field(default_factory=dict)
    """The ``AlignmentResult`` dict."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Optimizer totals (``outcome_extra.json``)."""
    final_instructions: str = ""
    """The aligned judge's instructions."""
    guidelines: tuple[Mapping[str, Any], ...] = ()
    """MemAlign guidelines."""
    episodes: tuple[Mapping[str, Any], ...] = ()
    """MemAlign episodic memory."""
    unaligned: tuple[str, ...] = ()
    """Trace ids an unalign removed."""

    @property
    def alignment_result(self) -> AlignmentResult | None:
        """The result as :class:`AlignmentResult`; None before the run ended."""
        try:
            return AlignmentResult.from_dict(self.result) if self.result else None
        except TypeError:
            return None

    @property
    def alignment_settings(self) -> AlignmentSettings | None:
        """The settings as :class:`AlignmentSettings`, None when unreadable."""
        try:
            return AlignmentSettings.from_dict(dict(self.settings))
        except Exception:
            return None


def parse_run_record(artifacts: Mapping[str, Any], optimizer: str | None = None) -> RunRecord:
    """Build a :class:`RunRecord` from parsed artifacts (name -> JSON, or text for .txt).

    Args:
        artifacts: What :func:`read_artifacts` returns; missing names are absent.
        optimizer: The run's optimizer; old ``mlflow-gepa`` records key per-example scores
            by position over train + val.
    """
    split = Split.from_dict(artifacts.get(SPLIT))
    val_ids: Sequence[str] = split.val
    if optimizer == "mlflow-gepa":
        # MLflow's GEPA scores candidates on train + val (old records: by position).
        val_ids = (*split.train, *split.val)
    iterations = (IterationRow.from_dict(e) for e in artifacts.get(ITERATIONS) or ())
    return RunRecord(
        settings=artifacts.get(SETTINGS) or {},
        split=split,
        candidates=candidates_from_list(artifacts.get(CANDIDATES), val_ids),
        pareto=Pareto.from_dict(artifacts.get(PARETO)),
        iterations=tuple(r for r in iterations if r is not None),
        proposals=tuple(artifacts.get(PROPOSALS) or ()),
        test=TestMetrics.from_dict(artifacts.get(TEST_METRICS)),
        result=artifacts.get(RESULT) or {},
        extra=artifacts.get(OUTCOME_EXTRA) or {},
        final_instructions=str(artifacts.get(FINAL_INSTRUCTIONS) or ""),
        guidelines=tuple(artifacts.get(GUIDELINES) or ()),
        episodes=tuple(artifacts.get(EPISODES) or ()),
        unaligned=tuple(str(t) for t in artifacts.get(UNALIGNED) or ()),
    )


# --- reading ----------------------------------------------------------------------------


def read_artifacts(client: Any, run_id: str, names: Iterable[str] = ARTIFACTS) -> dict[str, Any]:
    """The run's artifacts that exist, parsed (JSON) or as text (``.txt``).

    A JSON artifact caught mid-write on a remote store is skipped; the next read gets it.
    """
    from core.optimization import recorder as rec

    out: dict[str, Any] = {}
    for name in names:
        text = rec.read_artifact_text(client, run_id, name)
        if text is None:
            continue
        if name.endswith(".json"):
            try:
                out[name] = json.loads(text)
            except json.JSONDecodeError:
                continue
        else:
            out[name] = text
    return out


def read_run_record(client: Any, run_id: str, optimizer: str | None = None) -> RunRecord:
    """Read everything one run recorded.

    Args:
        client: An ``MlflowClient`` for the run's store.
        run_id: The run.
        optimizer: The run's optimizer (read from its tags when None).
    """
    if optimizer is None:
        from core.optimization import recorder as rec

        try:
            optimizer = client.get_run(run_id).data.tags.get(rec.TAG_OPTIMIZER)
        except Exception:
            optimizer = None
    return parse_run_record(read_artifacts(client, run_id), optimizer)


def read_test_metrics(client: Any, run_id: str) -> TestMetrics | None:
    """The run's held-out scores; None when absent or unreadable.

    Raises nothing: a missing record is an answer, not an error.
    """
    try:
        got = read_artifacts(client, run_id, [TEST_METRICS])
    except Exception:
        return None
    return TestMetrics.from_dict(got.get(TEST_METRICS))


# --- writing ----------------------------------------------------------------------------


def write_settings(
    recorder: RunRecorder, settings: AlignmentSettings | PromptSettings | ScoreSettings
) -> None:
    """Write ``settings.json`` (an alignment's, a prompt optimization's or a bulk scoring
    run's settings)."""
    recorder.log_text(SETTINGS, settings.to_json())


def write_preflight(recorder: RunRecorder, findings: list[dict[str, str]]) -> None:
    """Write ``preflight.json``."""
    recorder.log_json(PREFLIGHT, {"findings": findings})


def write_split(recorder: RunRecorder, split: Split) -> None:
    """Write ``split.json``."""
    recorder.log_json(SPLIT, split.to_dict())


def write_candidates(recorder: RunRecorder, candidates: Sequence[Candidate]) -> None:
    """Write ``candidates.json`` (the whole list, replacing the previous one)."""
    recorder.log_json(CANDIDATES, [c.to_dict() for c in candidates])


def write_search(
    recorder: RunRecorder,
    candidates: Sequence[Candidate],
    pareto: Pareto,
    iterations: Sequence[Mapping[str, Any]],
    final_instructions: str,
) -> None:
    """Write a search's candidates, frontier, lineage, iterations and current best text."""
    write_candidates(recorder, candidates)
    recorder.log_json(PARETO, pareto.to_dict())
    recorder.log_json(LINEAGE, Lineage.of(candidates).to_dict())
    recorder.log_json(ITERATIONS, [dict(i) for i in iterations])
    write_final_instructions(recorder, final_instructions)


def write_final_instructions(recorder: RunRecorder, text: str) -> None:
    """Write ``final_instructions.txt``."""
    recorder.log_text(FINAL_INSTRUCTIONS, text or "")


def write_test_metrics(recorder: RunRecorder, metrics: TestMetrics) -> None:
    """Write ``test_metrics.json``."""
    recorder.log_json(TEST_METRICS, metrics.to_dict())


def write_result(
    recorder: RunRecorder, result: AlignmentResult | ScoreResult | Mapping[str, Any]
) -> None:
    """Write ``result.json``."""
    recorder.log_json(
        RESULT,
        result.to_dict() if isinstance(result, AlignmentResult | ScoreResult) else dict(result),
    )


def write_score_traces(recorder: RunRecorder, traces: ScoreTraces) -> None:
    """Write ``score_traces.json`` (a bulk scoring run's selection, fixed at launch)."""
    recorder.log_json(SCORE_TRACES, traces.to_dict())


def read_score_traces(client: Any, run_id: str) -> ScoreTraces | None:
    """A bulk scoring run's recorded selection; None when it has none yet."""
    got = read_artifacts(client, run_id, [SCORE_TRACES]).get(SCORE_TRACES)
    return None if got is None else ScoreTraces.from_dict(got)


def read_result(client: Any, run_id: str) -> dict[str, Any] | None:
    """A run's ``result.json`` as a dict; None before the run ended (or unreadable)."""
    try:
        got = read_artifacts(client, run_id, [RESULT]).get(RESULT)
    except Exception:
        return None
    return dict(got) if isinstance(got, Mapping) else None


def write_outcome_extra(recorder: RunRecorder, extra: Mapping[str, Any]) -> None:
    """Write ``outcome_extra.json``."""
    recorder.log_json(OUTCOME_EXTRA, dict(extra))


def write_memalign(
    recorder: RunRecorder, guidelines: Sequence[Any], episodes: Sequence[Any]
) -> None:
    """Write MemAlign's ``guidelines.json`` and ``episodes.json``."""
    recorder.log_json(GUIDELINES, list(guidelines))
    recorder.log_json(EPISODES, list(episodes))


def write_unaligned(recorder: RunRecorder, trace_ids: Sequence[str]) -> None:
    """Write ``unaligned_traces.json``."""
    recorder.log_json(UNALIGNED, list(trace_ids))


def write_baseline_totals(recorder: RunRecorder, optimizer: str, totals: Mapping[str, Any]) -> None:
    """Write an MLflow baseline's totals (``mlflow_gepa.json`` or ``simba.json``)."""
    name = MLFLOW_GEPA_TOTALS if optimizer == "mlflow-gepa" else SIMBA_TOTALS
    recorder.log_json(name, dict(totals))


def write_raw_proposals(recorder: RunRecorder, proposals: Sequence[Mapping[str, Any]]) -> None:
    """Write ``proposals.json`` as given (MLflow GEPA's proposals, recorded as MLflow exposes
    them; alignboard's gepa writes typed proposals through ``write_proposals``)."""
    recorder.log_json(PROPOSALS, [dict(p) for p in proposals])


# --- proposals (the guard engineer's section: Proposal, write_proposals, read_proposals) --

#: Proposal statuses: ``pending`` until gepa's minibatch check decides (a run stopped in
#: between leaves it pending), then ``accepted`` (became candidate ``candidate_id``) or
#: ``rejected`` (``reason`` says why).
PROPOSAL_STATUSES = ("pending", "accepted", "rejected")
#: The rejection reason when gepa's minibatch check turned a proposal down.
NOT_BETTER_ON_MINIBATCH = "not_better_on_minibatch"


@dataclass(frozen=True)
class Proposal:
    """One text a reflection model proposed, and what became of it."""

    iteration: int
    """The optimizer iteration that asked for it."""
    parent_id: int | None = None
    """The candidate it revises."""
    component: str = "instructions"
    """The text component it is for."""
    proposed_text: str = ""
    """The text extracted from the reflection output."""
    reflection_prompt: str = ""
    """The prompt sent to the reflection model."""
    reflection_output: str = ""
    """The reflection model's raw answer."""
    status: str = "pending"
    """``pending``, ``accepted`` or ``rejected`` (see :data:`PROPOSAL_STATUSES`)."""
    reason: str | None = None
    """Why it was rejected: a guard reason code (degenerate, never evaluated) or
    :data:`NOT_BETTER_ON_MINIBATCH`."""
    message: str = ""
    """The reason as a sentence."""
    degenerate: bool = False
    """True when the proposal guard rejected it before any evaluation."""
    candidate_id: int | None = None
    """The candidate it became, when accepted."""
    minibatch_before: float | None = None
    """The parent's minibatch score sum (gepa's acceptance check)."""
    minibatch_after: float | None = None
    """The proposal's minibatch score sum."""
    saved_metric_calls: int = 0
    """Judge evaluations not spent because the guard rejected it (its minibatch)."""
    guard: Mapping[str, Any] = field(default_factory=dict)
    """The guard's measures (echo run and share, kept shares, missing terms)."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (one ``proposals.json`` entry)."""
        d = asdict(self)
        d["guard"] = dict(self.guard)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Proposal:
        """Read a proposal; also MLflow GEPA's raw entries (``new_instructions``,
        ``accepted_as``, ``rejected``)."""
        accepted_as = _int(d.get("candidate_id", d.get("accepted_as")))
        status = str(d.get("status") or "")
        if status not in PROPOSAL_STATUSES:
            status = "accepted" if accepted_as is not None else "pending"
            if "rejected" in d:
                status = "rejected"
        reason = d.get("reason")
        if reason is None and "rejected" in d:
            reason = NOT_BETTER_ON_MINIBATCH
        return cls(
            iteration=_int(d.get("iteration")) or 0,
            parent_id=_int(d.get("parent_id")),
            component=str(d.get("component") or "instructions"),
            proposed_text=str(d.get("proposed_text", d.get("new_instructions")) or ""),
            reflection_prompt=str(d.get("reflection_prompt") or ""),
            reflection_output=str(d.get("reflection_output") or ""),
            status=status,
            reason=None if reason is None else str(reason),
            message=str(d.get("message") or d.get("rejected") or ""),
            degenerate=bool(d.get("degenerate")),
            candidate_id=accepted_as,
            minibatch_before=_float(d.get("minibatch_before")),
            minibatch_after=_float(d.get("minibatch_after")),
            saved_metric_calls=_int(d.get("saved_metric_calls")) or 0,
            guard=dict(d.get("guard") or {}),
        )


def write_proposals(recorder: RunRecorder, proposals: Sequence[Proposal]) -> None:
    """Write ``proposals.json``: every proposal of the run, in the order they were made."""
    recorder.log_json(PROPOSALS, [p.to_dict() for p in proposals])


def read_proposals(raw: Iterable[Mapping[str, Any]] | None) -> tuple[Proposal, ...]:
    """Typed proposals from ``proposals.json`` entries (e.g. :attr:`RunRecord.proposals`)."""
    return tuple(Proposal.from_dict(d) for d in raw or () if isinstance(d, Mapping))
