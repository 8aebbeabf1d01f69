"""The seams of the optimization engine: what a task, its adapter and its registrar provide.

The engine (:func:`core.optimization.engine.run_optimization`) runs one optimization, start
to finish, without knowing what is optimized. Everything that depends on it comes from the
task it is given:

- :class:`OptimizationTask`: the seed candidate as named text components, the examples and
  their split, the runner of the chosen optimizer, how the seed and the best candidate are
  scored on the held-out split (the verdict), what the result looks like, and the
  :class:`Registrar`;
- :class:`TaskAdapter`: gepa's adapter (how an example is evaluated, what feedback the
  reflection model sees) plus what the generic ``gepa`` runner records about it
  (:class:`BaseTaskAdapter` gives the bookkeeping, so an adapter writes two methods);
- :class:`GuardContext`: what the proposal guard compares each proposal with;
- :class:`Registrar`: what a finished run registers (a scorer version for a judge, a
  Prompt Registry version for a prompt), called only when the verdict allows it;
- :data:`TaskRunner`: the signature of a runner that works on any task.

Judge alignment is one task (:class:`core.optimization.judge_task.JudgeTask`); prompt
optimization is the second (:class:`core.optimization.prompt_task.PromptTask`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from core.errors import ValidationError

if TYPE_CHECKING:
    from core.optimization.preflight import Finding
    from core.optimization.spec import AlignmentOutcome, AlignmentSettings, RunRecorder
    from core.optimization.verdict import Verdict

#: Task kinds. A runner that only works for one kind says so (see :func:`judge_settings`).
JUDGE = "judge"


@dataclass(frozen=True)
class GuardContext:
    """What the proposal guard checks each proposal against
    (:func:`core.optimization.guards.check_proposal`)."""

    seed: Mapping[str, str]
    """The seed candidate (component -> text): its template variables must survive, and its
    key terms (the criterion's or the prompt's own words) must not all be dropped."""

    def template_variables(self, component: str) -> set[str]:
        """The template variables a proposal for ``component`` must keep."""
        from core.optimization.guards import template_variables

        return template_variables(self.seed.get(component, ""))

    def key_terms(self, component: str) -> tuple[str, ...]:
        """The seed's key terms for ``component``."""
        from core.optimization.guards import key_terms

        return key_terms(self.seed.get(component, ""))


@dataclass(frozen=True)
class TextCheck:
    """What the adapter made of one proposed text before evaluating it."""

    status: str
    """ok, repaired (``text`` was evaluated instead) or rejected (scored 0)."""
    text: str
    """The text actually evaluated."""
    note: str = ""
    """A sentence for humans and for the reflection model."""

    @property
    def instructions(self) -> str:
        """Alias of ``text`` (the run record calls a candidate's text its instructions)."""
        return self.text

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class HeldOut:
    """The seed and the best candidate scored on the held-out split, and the verdict."""

    verdict: Verdict
    """What the held-out evidence says (improved / no_change / worse, significance)."""
    n: int
    """Held-out examples."""
    failed: int = 0
    """Held-out evaluations that failed after retries (seed and best together)."""
    metrics: Mapping[str, float] = field(default_factory=dict)
    """Scalar test metrics, as tagged on a registered version (e.g. accuracy before/after)."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Task-specific reports (e.g. the agreement reports), for the result."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "verdict": self.verdict.to_dict(),
            "n": self.n,
            "failed": self.failed,
            "metrics": dict(self.metrics),
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class RunSummary:
    """What the engine knows about every run, whatever its task (the task's result adds
    its own fields)."""

    run_id: str
    status: str
    optimizer: str
    train_size: int
    val_size: int
    test_size: int
    metric_calls: int
    llm_calls: int
    iterations: int
    failed_examples: int
    wall_seconds: float
    tokens: int | None
    resumed: bool
    warnings: list[dict[str, str]]
    final_text: str
    """The best candidate's text as recorded (:meth:`OptimizationTask.final_text`)."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


class Registrar(Protocol):
    """What a finished run registers. Called by the engine only when the verdict allows it
    (not ``worse``, or ``worse`` with the user's override)."""

    def register(
        self,
        outcome: AlignmentOutcome,
        *,
        recorder: RunRecorder,
        verdict: Verdict,
        test_metrics: Mapping[str, float],
    ) -> int | None:
        """Register the outcome's best candidate.

        Args:
            outcome: What the runner returned (``outcome.candidate``: the best candidate).
            recorder: The run (``recorder.run_id``), to tag with what was registered.
            verdict: The held-out verdict (``registered`` is True here).
            test_metrics: The held-out metrics to keep with the version.

        Returns:
            The new version number, or None when nothing was registered.
        """
        ...


@runtime_checkable
class TaskAdapter(Protocol):
    """gepa's ``GEPAAdapter`` for one task, plus what the generic ``gepa`` runner records.

    ``evaluate`` and ``make_reflective_dataset`` are gepa's contract (how an example is
    evaluated; what feedback reflection sees). The rest feeds the run record.
    """

    propose_new_texts: Any

    def evaluate(self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False):
        """Evaluate ``candidate`` on ``batch`` (a ``gepa.core.adapter.EvaluationBatch``)."""
        ...

    def make_reflective_dataset(
        self, candidate: dict[str, str], eval_batch: Any, components_to_update: list[str]
    ) -> Mapping[str, Sequence[Mapping[str, Any]]]:
        """The records the reflection model reads, per component."""
        ...

    def check(self, text: str) -> Any:
        """What was made of a proposed text (``status``, ``instructions``, ``note``)."""
        ...

    def note_round(self, row: dict[str, Any]) -> None:
        """Record one round of model calls (e.g. a reflection call)."""
        ...

    def take_rounds(self) -> list[dict[str, Any]]:
        """Return and forget the rounds recorded so far."""
        ...

    def metrics(self) -> dict[str, float]:
        """Counters logged each iteration (e.g. cache hits, failures, retries)."""
        ...

    def state(self) -> Any:
        """JSON-ready state that makes a resumed run cheaper (e.g. a verdict cache)."""
        ...

    def failed_examples(self) -> int:
        """Examples whose evaluation failed after retries."""
        ...

    def outcome_extra(self) -> dict[str, Any]:
        """Adapter-specific totals for the outcome's ``extra``."""
        ...

    def close(self) -> None:
        """Release workers."""
        ...


class BaseTaskAdapter:
    """The bookkeeping half of :class:`TaskAdapter`: a new adapter subclasses it and writes
    ``evaluate`` and ``make_reflective_dataset``."""

    # gepa looks this attribute up; None means "use gepa's default LLM proposer".
    propose_new_texts = None

    def __init__(self) -> None:
        self.rounds: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def check(self, text: str) -> Any:
        """Every text is evaluated as proposed."""
        return TextCheck("ok", text)

    def note_round(self, row: dict[str, Any]) -> None:
        """Record one round of model calls."""
        with self._lock:
            self.rounds.append(row)

    def take_rounds(self) -> list[dict[str, Any]]:
        """Return and forget the rounds recorded so far."""
        with self._lock:
            out, self.rounds = self.rounds, []
            return out

    def metrics(self) -> dict[str, float]:
        """No counters."""
        return {}

    def state(self) -> Any:
        """No resumable state."""
        return []

    def failed_examples(self) -> int:
        """No failures counted."""
        return 0

    def outcome_extra(self) -> dict[str, Any]:
        """Nothing extra."""
        return {}

    def close(self) -> None:
        """Nothing to release."""


class SettingsBacked:
    """The task attributes every task reads from its settings (``self.settings``: an
    :class:`AlignmentSettings` or a :class:`core.optimization.prompt_spec.PromptSettings`)."""

    settings: Any

    @property
    def optimizer(self) -> str:
        """The optimizer's name."""
        return str(self.settings.optimizer)

    @property
    def register_if_worse(self) -> bool:
        """The user's override of the ``worse`` verdict."""
        return bool(self.settings.register_if_worse)

    @property
    def register_if_cancelled(self) -> bool:
        """The user's choice to register a cancelled run's best candidate."""
        return bool(getattr(self.settings, "register_if_cancelled", False))

    @property
    def reflection_model(self) -> str:
        """The reflection model."""
        return str(self.settings.reflection_model)

    @property
    def reflection_base_url(self) -> str | None:
        """Its base URL."""
        url: str | None = self.settings.reflection_base_url
        return url

    @property
    def minibatch_size(self) -> int:
        """Examples per reflection minibatch."""
        return int(self.settings.minibatch_size)

    @property
    def seed(self) -> int:
        """Random seed."""
        return int(self.settings.seed)


class OptimizationTask(Protocol):
    """One kind of thing the engine optimizes, with its settings and data source.

    The engine calls, in order: :meth:`create_run` (when it has no run), :meth:`load`,
    :meth:`example_id` (the split record), :meth:`budget`, :meth:`runner` then the runner
    inside :meth:`endpoints`, :meth:`score_held_out`, ``registrar.register`` (when the
    verdict allows it), :meth:`final_text` and :meth:`result`. The generic ``gepa`` runner
    also uses :meth:`seed_candidate`, :meth:`make_adapter`, :meth:`guard_context`,
    :meth:`artifact` and the search attributes.
    """

    @property
    def kind(self) -> str:
        """What is optimized: ``judge`` (judge alignment) or ``prompt``."""
        ...

    @property
    def optimizer(self) -> str:
        """The optimizer's name (a key of :data:`core.optimization.engine.RUNNERS` or
        :data:`core.optimization.engine.TASK_RUNNERS`)."""
        ...

    @property
    def register_if_worse(self) -> bool:
        """Register even when the verdict is ``worse`` (the user's explicit override)."""
        ...

    @property
    def register_if_cancelled(self) -> bool:
        """Register the best candidate of a cancelled run (off by default)."""
        ...

    @property
    def registrar(self) -> Registrar:
        """What a finished run registers."""
        ...

    @property
    def reflection_model(self) -> str:
        """The model gepa reflects with."""
        ...

    @property
    def reflection_base_url(self) -> str | None:
        """Its OpenAI-compatible base URL, if any."""
        ...

    @property
    def minibatch_size(self) -> int:
        """Examples per reflection minibatch."""
        ...

    @property
    def seed(self) -> int:
        """Random seed."""
        ...

    @property
    def label(self) -> str:
        """A short name for logs and messages (e.g. ``alignment``)."""
        ...

    def create_run(
        self, status: str, *, findings: Sequence[Finding] | None, allow_concurrent: bool
    ) -> str:
        """Create the MLflow run that records this task; return its id."""
        ...

    def load(
        self, findings: Sequence[Finding] | None = None
    ) -> tuple[list[Any], list[Any], list[Any], list[Finding]]:
        """Load and split the examples and run pre-flight (unless ``findings`` are given).

        Returns ``(train, val, test, findings)``; raises ValidationError on a pre-flight
        error."""
        ...

    def example_id(self, example: Any) -> str:
        """The stable id of an example (recorded in the split)."""
        ...

    def budget(self, train_size: int) -> int:
        """The metric-call budget in force."""
        ...

    def runner(self) -> TaskRunner:
        """The runner of :attr:`optimizer` for this task (ValidationError if it has none)."""
        ...

    def endpoints(self) -> contextlib.AbstractContextManager[Any]:
        """A context held while the optimizer and the held-out scoring run."""
        ...

    def seed_candidate(self) -> dict[str, str]:
        """The seed as named text components (for a judge: ``{"instructions": ...}``)."""
        ...

    def make_adapter(self, train: list[Any], val: list[Any], state: Any) -> TaskAdapter:
        """gepa's adapter for this task; ``state`` is what a previous attempt's
        :meth:`TaskAdapter.state` saved (empty on a fresh run)."""
        ...

    def guard_context(self) -> GuardContext:
        """What proposals are checked against."""
        ...

    def artifact(self, candidate: Mapping[str, str]) -> Any:
        """The usable thing a candidate stands for (for a judge: an MLflow judge)."""
        ...

    def score_held_out(
        self, outcome: AlignmentOutcome, test: list[Any], recorder: RunRecorder
    ) -> HeldOut:
        """Score the seed and the outcome's best candidate on the held-out split, record
        the test metrics, and decide the verdict."""
        ...

    def final_text(self, outcome: AlignmentOutcome) -> str:
        """The text recorded as the run's final candidate."""
        ...

    def result(
        self, summary: RunSummary, held_out: HeldOut, version: int | None, verdict: Verdict
    ) -> Any:
        """The run's result (has ``to_dict``; written as ``result.json``)."""
        ...


#: A runner that works on any task: ``run(task, train, val, recorder) -> outcome``.
TaskRunner = Callable[[Any, list[Any], list[Any], "RunRecorder"], "AlignmentOutcome"]


def judge_settings(task_or_settings: Any, optimizer: str) -> AlignmentSettings:
    """The alignment settings of a judge-only runner's argument.

    Runners that call MLflow's ``judge.align`` (memalign, mlflow-gepa, simba) align judges
    and nothing else; they accept :class:`AlignmentSettings` or a judge task.

    Raises:
        ValidationError: ``task_or_settings`` is a task of another kind.
    """
    from core.optimization.spec import AlignmentSettings

    if isinstance(task_or_settings, AlignmentSettings):
        return task_or_settings
    kind = getattr(task_or_settings, "kind", None)
    settings = getattr(task_or_settings, "settings", None)
    if kind == JUDGE and isinstance(settings, AlignmentSettings):
        return settings
    raise ValidationError(
        f"The {optimizer} optimizer aligns judges only (it runs MLflow's judge.align); "
        f"this is a {kind or type(task_or_settings).__name__} task. Choose gepa."
    )
