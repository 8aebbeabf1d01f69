"""Choosing the judge an alignment starts from, and checking an alignment before launch.

A judge is named after its criterion (its verdicts and the human labels share the name).
It starts either from the criterion's template (the criterion's own instructions, with
the trace's template variables added when they are missing) or from any registered
version of that judge. :func:`build_settings` is the one way from a user's choices to
:class:`~core.optimization.spec.AlignmentSettings` (the CLI's flags and the Align page's
form both go through it). :func:`check_alignment` is the pre-launch view: pre-flight
findings and a cost estimate in one read, which the launch hands on instead of repeating.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from core.labeling.criteria import Criterion
from core.optimization.spec import TEMPLATE_VARIABLES, AlignmentSettings, JudgeSpec
from core.optimization.stopping import StopPolicy, estimate_note

#: Default judge model: the offline demo stand-in (not an LLM).
DEFAULT_JUDGE_MODEL = "demo:/judge"
#: Default reflection / distillation model: the offline demo stand-in.
DEFAULT_REFLECTION_MODEL = "demo:/reflect"
#: Default embedding model (MemAlign): the offline demo stand-in.
DEFAULT_EMBEDDING_MODEL = "demo:/embed"
#: Optimizers offered, with a one-line description.
OPTIMIZER_CHOICES: dict[str, str] = {
    "gepa": "GEPA: reflective search over instructions, human rationales in the loop",
    "memalign": "MemAlign: guidelines + episodic memory distilled from the labels",
    "mlflow-gepa": "MLflow GEPA: MLflow's own GEPAAlignmentOptimizer (baseline)",
    "simba": "SIMBA: MLflow's default dspy optimizer (baseline)",
}
#: Latency assumed per model call for the time estimate.
ESTIMATE_LATENCY_S = {"demo": 0.01, "default": 1.5}
#: Seconds a job process takes to start (imports, loading the examples) before any call.
JOB_STARTUP_S = 5.0
_FOOTER = "\n\nConversation:\n{{ inputs }}\n\nResponse under review:\n{{ outputs }}"


@dataclass(frozen=True)
class StartingPoint:
    """Instructions an alignment can start from."""

    key: str
    """``template`` or ``v<N>``."""
    label: str
    """What the picker shows."""
    instructions: str
    version: int | None = None
    """The registered version, when it is one."""


def template_instructions(criterion: Criterion) -> str:
    """The criterion's instructions as a judge prompt (template variables added if missing)."""
    text = (criterion.instructions or "").rstrip()
    if any(v in text for v in TEMPLATE_VARIABLES):
        return text
    return (text or f"Judge the response for {criterion.name}.") + _FOOTER


def starting_points(experiment_id: str, criterion: Criterion) -> list[StartingPoint]:
    """The criterion's template, then every registered version of its judge, newest first."""
    from core.optimization.registry import list_versions

    points = [
        StartingPoint(
            "template",
            "New judge from the criterion's instructions",
            template_instructions(criterion),
        )
    ]
    for v in reversed(list_versions(experiment_id, criterion.name)):
        aliases = f" ({', '.join(v.aliases)})" if v.aliases else ""
        kind = f", {v.optimizer}" if v.optimizer else ""
        points.append(
            StartingPoint(
                f"v{v.version}",
                f"Registered {criterion.name} v{v.version}{aliases}{kind}",
                v.instructions,
                v.version,
            )
        )
    return points


def judge_spec(
    criterion: Criterion, instructions: str, model: str, base_url: str | None = None
) -> JudgeSpec:
    """The judge of ``criterion`` with these instructions and model."""
    return JudgeSpec(
        name=criterion.name,
        instructions=instructions,
        value_type=criterion.kind,
        model=model.strip(),
        options=tuple(criterion.options),
        base_url=_url(base_url),
    )


def _url(text: str | None) -> str | None:
    # A blank text input means "the provider's own endpoint".
    return (text or "").strip().rstrip("/") or None


def build_settings(
    experiment_id: str,
    criterion: Criterion,
    *,
    optimizer: str,
    instructions: str | None = None,
    model: str = DEFAULT_JUDGE_MODEL,
    reflection_model: str = DEFAULT_REFLECTION_MODEL,
    base_url: str | None = None,
    reflection_base_url: str | None = None,
    embedding_model: str = DEFAULT_EMBEDDING_MODEL,
    embedding_base_url: str | None = None,
    max_metric_calls: int | None = None,
    workers: int = 8,
    seed: int = 0,
    minibatch_size: int = 3,
    proposals_in_flight: int = 4,
    retrieval_k: int = 5,
    reviewers: Iterable[str] = (),
    register_if_worse: bool = False,
    register_if_cancelled: bool = False,
    kappa_override_reason: str | None = None,
    kappa_override_by: str | None = None,
    stop: StopPolicy | None = None,
) -> AlignmentSettings:
    """Settings for aligning ``criterion``'s judge: the one builder the CLI and the UI share.

    Args:
        experiment_id: The experiment holding the traces, labels and the run.
        criterion: The criterion whose judge is aligned (its name is the judge's name).
        optimizer: gepa, memalign, mlflow-gepa or simba (pre-flight reports other names).
        instructions: The seed instructions as given (used as is, so pre-flight can refuse
            ones without template variables); None starts from the criterion's
            :func:`template_instructions`, as the Align page's "New judge" does.
        model: Judge model, ``provider:/model``.
        reflection_model: Model proposing instructions (GEPA) or distilling (MemAlign).
        base_url: OpenAI-compatible server of the judge model (blank: the provider's).
        reflection_base_url: OpenAI-compatible server of the reflection model.
        embedding_model: MemAlign's embedding model.
        embedding_base_url: OpenAI-compatible server of the embedding model.
        max_metric_calls: Budget in judge evaluations; 0 or None means automatic.
        workers: Judge calls in flight.
        seed: The optimizer's random seed.
        minibatch_size: Examples per GEPA reflection.
        proposals_in_flight: GEPA proposals worked on at once (1: gepa's sequential loop).
        retrieval_k: MemAlign: examples retrieved per judgement.
        reviewers: Only these reviewers' labels (empty: everyone's); order does not matter.
        register_if_worse: Register the aligned judge even when it scores worse than the
            seed on the held-out split (off: such a run registers nothing).
        register_if_cancelled: Register the best candidate found so far when the run is
            cancelled (off: a cancelled run registers nothing).
        kappa_override_reason: Launch although reviewer agreement is below the
            criterion's minimum kappa, for this written reason (blank: no override).
        kappa_override_by: Who overrides (required with a reason).
        stop: When the gepa search stops early
            (:class:`core.optimization.stopping.StopPolicy`; None: the defaults, a perfect
            validation score or :data:`~core.optimization.stopping.DEFAULT_PATIENCE`
            proposals without improvement). Other optimizers ignore it.

    Returns:
        The settings, model names checked.

    Raises:
        ModelError: a model name or base URL is malformed; the message shows the form.
        ValidationError: an override reason without who gives it.
    """
    from core.models.uris import parse_model

    # Checked here once; pre-flight and the runners parse the same names from the cache.
    for uri, url in (
        (model, base_url),
        (reflection_model, reflection_base_url),
        (embedding_model, embedding_base_url),
    ):
        parse_model(uri, _url(url))
    reason, by = _override(kappa_override_reason, kappa_override_by, required=False)
    return AlignmentSettings(
        experiment_id=str(experiment_id),
        judge=judge_spec(
            criterion,
            template_instructions(criterion) if instructions is None else instructions,
            model,
            base_url,
        ),
        optimizer=optimizer,  # type: ignore[arg-type]  # preflight reports unknown names
        reflection_model=reflection_model.strip(),
        max_metric_calls=int(max_metric_calls) if max_metric_calls else None,
        workers=int(workers),
        seed=int(seed),
        minibatch_size=int(minibatch_size),
        proposals_in_flight=max(1, int(proposals_in_flight)),
        retrieval_k=int(retrieval_k),
        embedding_model=embedding_model.strip(),
        reviewers=tuple(sorted({r.strip() for r in reviewers if r and r.strip()})),
        reflection_base_url=_url(reflection_base_url),
        embedding_base_url=_url(embedding_base_url),
        register_if_worse=bool(register_if_worse),
        register_if_cancelled=bool(register_if_cancelled),
        kappa_override_reason=reason,
        kappa_override_by=by,
        **(stop or StopPolicy()).settings_fields(),
    )


#: Longest override reason accepted (a reason is a sentence or two, not a document).
MAX_OVERRIDE_CHARS = 2000


def _override(
    reason: str | None, by: str | None, *, required: bool
) -> tuple[str | None, str | None]:
    from core.errors import ValidationError

    text = (reason or "").strip()
    who = (by or "").strip()
    if not text:
        if required:
            raise ValidationError(
                "Write why you launch although reviewers disagree (the reason is recorded "
                "with the run); nothing was launched."
            )
        return None, None
    if len(text) > MAX_OVERRIDE_CHARS:
        raise ValidationError(
            f"The override reason is {len(text)} characters; keep it under {MAX_OVERRIDE_CHARS}."
        )
    if not who:
        raise ValidationError(
            "Say who you are (the sidebar's name, or --override-by) before overriding the "
            "reviewer agreement gate."
        )
    return text, who


def with_kappa_override(
    settings: AlignmentSettings, reason: str | None, by: str | None
) -> AlignmentSettings:
    """The settings with the agreement gate overridden for a written reason.

    Raises:
        ValidationError: a blank reason, an overlong one, or no one to give it; the
            message says what to do and nothing is launched.
    """
    from dataclasses import replace

    text, who = _override(reason, by, required=True)
    return replace(settings, kappa_override_reason=text, kappa_override_by=who)


@dataclass(frozen=True)
class AlignmentCheck:
    """What the Align page shows before launch."""

    findings: tuple[Any, ...]
    """Pre-flight findings (``core.optimization.Finding``), errors first."""
    n_train: int
    n_val: int
    n_test: int
    budget: int
    """The metric-call budget in force."""
    llm_calls: int
    """Estimated model calls, all roles."""
    seconds: float
    """Estimated wall time at the assumed latency, job start-up included."""
    latency_s: float
    """Latency per call the time assumes."""
    explanation: str
    """How the estimate was derived."""

    @property
    def errors(self) -> tuple[Any, ...]:
        """Findings that refuse the launch."""
        return tuple(f for f in self.findings if f.level == "error")

    @property
    def warnings(self) -> tuple[Any, ...]:
        """Findings recorded with the run."""
        return tuple(f for f in self.findings if f.level != "error")

    @property
    def can_launch(self) -> bool:
        """True when nothing refuses the run."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        d = asdict(self)
        d["findings"] = [f.to_dict() for f in self.findings]
        return d


def uses_demo(settings: AlignmentSettings) -> bool:
    """True when any model of the alignment is the offline demo stand-in."""
    models = [settings.judge.model, settings.reflection_model]
    if settings.optimizer == "memalign":
        models.append(settings.embedding_model)
    return any(m.startswith("demo:/") for m in models)


def check_alignment(settings: AlignmentSettings) -> AlignmentCheck:
    """Load the labeled examples, run the pre-flight checks and estimate the cost."""
    from core.optimization.dataset import split_examples
    from core.optimization.preflight import (
        describe_time,
        estimate,
        estimate_latency_s,
        load_and_preflight,
        recorded_latency_s,
        recorded_overheads,
    )

    examples, findings = load_and_preflight(settings)
    train, val, test = split_examples(examples)
    est = estimate(settings, len(train), len(val), len(test))
    demo = settings.judge.model.startswith("demo:/") and settings.reflection_model.startswith(
        "demo:/"
    )
    # The demo stand-ins' own latency setting; a real model's as its finished runs here
    # measured it (else the default); job start and finish as recorded here.
    measured = None
    if demo:
        latency = estimate_latency_s(demo, ESTIMATE_LATENCY_S["default"])
    else:
        measured = recorded_latency_s(
            settings.experiment_id,
            "judge_model",
            settings.judge.model,
            ESTIMATE_LATENCY_S["default"],
        )
        latency = measured.seconds
    overheads = recorded_overheads(settings.experiment_id)
    return AlignmentCheck(
        findings=tuple(findings),
        n_train=len(train),
        n_val=len(val),
        n_test=len(test),
        budget=settings.budget(len(train)),
        llm_calls=est.llm_calls,
        seconds=est.wall_seconds(latency, overheads),
        latency_s=latency,
        explanation=" ".join(
            t
            for t in (
                est.explanation,
                describe_time(est, latency, overheads),
                measured.describe() if measured is not None else "",
                estimate_note(settings),
            )
            if t
        ),
    )
