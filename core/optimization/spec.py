"""What an alignment is asked to do, and the contract every optimizer runner follows.

One alignment takes a judge (its name is the criterion's name; its instructions use
MLflow's template variables) and that criterion's human labels, and produces a better
judge plus a complete record of how. The pieces:

- :class:`JudgeSpec` and :class:`AlignmentSettings`: the inputs, serialisable so a job
  process can be started from them (they never hold secrets);
- :class:`Example`: one labeled trace, with its deterministic split;
- :class:`RunRecorder`: where a runner writes progress (an MLflow run in practice);
- :class:`AlignmentOutcome`: what a runner returns (for any task: see
  :mod:`core.optimization.task`);
- :data:`Runner`: the signature of a judge runner (every optimizer of judge alignment has
  one; runners that work on any task follow :data:`core.optimization.task.TaskRunner`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from core.optimization.stopping import DEFAULT_PATIENCE, policy_of

OptimizerName = Literal["gepa", "memalign", "mlflow-gepa", "simba"]
OPTIMIZERS: tuple[str, ...] = ("gepa", "memalign", "mlflow-gepa", "simba")
ValueType = Literal["pass_fail", "categorical", "numeric"]
#: MLflow's template variables alignboard judges use. ``{{ trace }}`` makes MLflow's
#: agent-as-judge: the judge gets the trace and reads its spans through MLflow's tools
#: (:mod:`core.optimization.trace_spans`).
TEMPLATE_VARIABLES: tuple[str, ...] = (
    "{{ inputs }}",
    "{{ outputs }}",
    "{{ expectations }}",
    "{{ trace }}",
)


@dataclass(frozen=True)
class JudgeSpec:
    """An LLM judge as alignboard optimises it."""

    name: str
    """The judge's name, which is the criterion's (and the human labels') name."""
    instructions: str
    """The prompt, with MLflow template variables such as ``{{ inputs }}``."""
    value_type: ValueType
    """pass_fail (bool values), categorical (one of ``options``) or numeric (float)."""
    model: str
    """Model in MLflow's ``provider:/model`` form, e.g. ``demo:/judge``."""
    options: tuple[str, ...] = ()
    """Categories, for a categorical judge."""
    base_url: str | None = None
    """Base URL of an OpenAI-compatible server, when the model is served there."""

    def template_variables(self) -> list[str]:
        """The template variables the instructions use, in canonical order."""
        return [v for v in TEMPLATE_VARIABLES if v in self.instructions]

    def with_instructions(self, instructions: str) -> JudgeSpec:
        """A copy with other instructions (a candidate)."""
        return replace(self, instructions=instructions)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JudgeSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**d, "options": tuple(d.get("options") or ())})


@dataclass(frozen=True)
class AlignmentSettings:
    """Everything an alignment run needs, minus the data. Never holds secrets."""

    experiment_id: str
    """Experiment holding the traces, labels and the run."""
    judge: JudgeSpec
    """The seed judge."""
    optimizer: OptimizerName
    """gepa, memalign, mlflow-gepa or simba."""
    reflection_model: str
    """Model that proposes new instructions (GEPA) or distils guidelines (MemAlign)."""
    max_metric_calls: int | None = None
    """Budget in judge evaluations; None means about 10x the training set."""
    workers: int = 8
    """Judge calls in flight at once."""
    seed: int = 0
    """Random seed for the optimizer."""
    minibatch_size: int = 3
    """Examples shown to the reflection model per GEPA iteration."""
    proposals_in_flight: int = 4
    """GEPA: proposals worked on at once per iteration (1 = gepa's sequential loop)."""
    retrieval_k: int = 5
    """MemAlign: examples retrieved from episodic memory per judgement."""
    embedding_model: str = "demo:/embed"
    """MemAlign: model used to embed examples."""
    reviewers: tuple[str, ...] = ()
    """Only use labels by these reviewers (empty: everyone's)."""
    reflection_base_url: str | None = None
    """Base URL of an OpenAI-compatible server serving ``reflection_model`` (e.g. vLLM at
    ``http://localhost:8000/v1``); None for the provider's own endpoint."""
    embedding_base_url: str | None = None
    """MemAlign: base URL of an OpenAI-compatible server serving ``embedding_model``."""
    register_if_worse: bool = False
    """Register the aligned judge even when it scores below the seed on the test split
    (verdict ``worse``); by default such a run registers nothing."""
    register_if_cancelled: bool = False
    """Register the best candidate found so far when the run is cancelled; by default a
    cancelled run registers nothing (and says so)."""
    kappa_override_reason: str | None = None
    """Why the run goes ahead although reviewer agreement is below the criterion's
    minimum kappa (pre-flight's agreement gate); None: the gate applies."""
    kappa_override_by: str | None = None
    """Who overrode the agreement gate."""
    # Early stop of the gepa search (:class:`core.optimization.stopping.StopPolicy`; None
    # turns a condition off). On by default: a perfect score, or DEFAULT_PATIENCE.
    stop_at_score: float | None = 1.0
    """gepa: stop once a candidate scores this on the whole validation set."""
    stop_patience: int | None = DEFAULT_PATIENCE
    """gepa: stop after this many proposals without improvement of the best
    validation score (:data:`core.optimization.stopping.DEFAULT_PATIENCE`)."""
    stop_max_seconds: float | None = None
    """gepa: stop once the search has run this many seconds."""
    stop_max_cost_usd: float | None = None
    """gepa: stop once the run's priced model calls cost this much (USD)."""

    def budget(self, train_size: int) -> int:
        """The metric-call budget in force for a training set of ``train_size``."""
        return self.max_metric_calls or max(10 * train_size, 50)

    def to_params(self) -> dict[str, str]:
        """Flat MLflow run params (strings; no secrets, no instructions text)."""
        return {
            "optimizer": self.optimizer,
            "judge_name": self.judge.name,
            "judge_model": self.judge.model,
            "value_type": self.judge.value_type,
            "reflection_model": self.reflection_model,
            "max_metric_calls": str(self.max_metric_calls or "auto"),
            "workers": str(self.workers),
            "seed": str(self.seed),
            "minibatch_size": str(self.minibatch_size),
            "proposals_in_flight": str(self.proposals_in_flight),
            "retrieval_k": str(self.retrieval_k),
            "embedding_model": self.embedding_model,
            "reviewers": ",".join(self.reviewers) or "all",
            "register_if_worse": str(self.register_if_worse).lower(),
            "register_if_cancelled": str(self.register_if_cancelled).lower(),
            **self._stop_params(),
            # Only when used, so the params of every other run stay as they were; MLflow
            # caps a param's value, the full reason is in the settings.
            **(
                {
                    "kappa_override_by": self.kappa_override_by or "unknown",
                    "kappa_override_reason": self.kappa_override_reason[:500],
                }
                if self.kappa_override_reason
                else {}
            ),
        }

    def _stop_params(self) -> dict[str, str]:
        # The early-stop policy applies to the gepa loop only; other optimizers' params
        # say nothing of it.
        if self.optimizer != "gepa":
            return {}
        return policy_of(self).to_params()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (stored as the run's settings artifact)."""
        d = asdict(self)
        d["judge"] = self.judge.to_dict()
        return d

    def to_json(self) -> str:
        """Serialise for a job process."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AlignmentSettings:
        """Inverse of :meth:`to_dict`."""
        return cls(
            **{
                **d,
                "judge": JudgeSpec.from_dict(d["judge"]),
                "reviewers": tuple(d.get("reviewers") or ()),
            }
        )


@dataclass(frozen=True)
class Example:
    """One labeled trace, ready for a judge."""

    trace_id: str
    """The trace."""
    inputs: Any
    """The trace's inputs."""
    outputs: Any
    """The trace's outputs."""
    expectations: dict[str, Any]
    """The trace's expectations (may be empty)."""
    label: Any
    """The consolidated human value (bool for pass/fail)."""
    rationale: str | None
    """The human rationale behind ``label``."""
    reviewer: str
    """Whose label ``label`` is."""
    split: Literal["train", "val", "test"]
    """Deterministic split by a hash of the trace id."""
    label_version: str
    """Assessment id of the label, so caches notice a relabel."""
    span_count: int = 0
    """Spans in the trace (0: not known), so pre-flight can tell a ``{{ trace }}`` judge
    that single-span traces give it nothing beyond inputs and outputs."""
    precedence: str = ""
    """How ``label`` was chosen among the trace's labels: ``gold``, ``majority``,
    ``primary_tiebreak`` or ``single`` (:mod:`core.labeling.consolidation`)."""


class RunRecorder(Protocol):
    """Where a runner reports progress. The engine backs it with an MLflow run."""

    run_id: str
    work_dir: Path
    """A folder that survives the process, for resumable optimizer state."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Log metrics at ``step`` (the iteration number)."""

    def log_json(self, name: str, obj: Any) -> None:
        """Write ``obj`` as the JSON artifact ``name`` (e.g. ``candidates.json``)."""

    def log_text(self, name: str, text: str) -> None:
        """Write a text artifact."""

    def should_stop(self) -> bool:
        """True once a cancel was requested; runners stop at the next iteration boundary."""

    def heartbeat(self) -> None:
        """Tell watchers the job is alive."""


@dataclass
class AlignmentOutcome:
    """What a runner returns to the engine."""

    optimizer: str
    """Which optimizer ran."""
    instructions: str
    """The aligned judge's instructions."""
    judge: Any
    """The aligned judge as an MLflow ``Judge`` (e.g. a MemoryAugmentedJudge), ready to call
    and to register."""
    iterations: int = 0
    """Iterations completed."""
    metric_calls: int = 0
    """Judge evaluations spent (the budget's unit)."""
    cancelled: bool = False
    """True when the run stopped early on a cancel request (best so far is kept)."""
    failed_examples: int = 0
    """Examples whose judge call failed after retries."""
    stop_reason: str | None = None
    """Why the search stopped (:data:`core.optimization.stopping.REASONS`); None from a
    runner that does not say (MemAlign, MLflow's baselines)."""
    stop_detail: str | None = None
    """``stop_reason`` in words (e.g. ``perfect validation score (1.0) at iteration 8``)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Optimizer-specific results (e.g. MemAlign guidelines), JSON-ready."""
    candidate: dict[str, str] = field(default_factory=dict)
    """The best candidate as named text components, from a runner that works on any task
    (the generic ``gepa``); empty from a judge-only runner, whose result is ``judge``."""

    def best_candidate(self, component: str = "instructions") -> dict[str, str]:
        """The best candidate's components (``{component: instructions}`` when the runner
        gave none)."""
        return dict(self.candidate) or {component: self.instructions}


#: A judge runner: ``run(settings, train, val, recorder) -> AlignmentOutcome``. Every optimizer
#: of judge alignment exposes one; the judge task adapts it to the engine's
#: :data:`core.optimization.task.TaskRunner` (which takes a task instead of settings).
Runner = Callable[[AlignmentSettings, list[Example], list[Example], RunRecorder], AlignmentOutcome]
