"""Choosing the judge an alignment starts from, and checking an alignment before launch.

A judge is named after its criterion (its verdicts and the human labels share the name).
It starts either from the criterion's template (the criterion's own instructions, with
the trace's template variables added when they are missing) or from any registered
version of that judge. :func:`check_alignment` is the pre-launch view: pre-flight
findings and a cost estimate in one read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from core.labeling.criteria import Criterion
from core.optimization.spec import TEMPLATE_VARIABLES, AlignmentSettings, JudgeSpec

#: Default judge model: the offline demo stand-in (not an LLM).
DEFAULT_JUDGE_MODEL = "demo:/judge"
#: Default reflection / distillation model: the offline demo stand-in.
DEFAULT_REFLECTION_MODEL = "demo:/reflect"
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


def judge_spec(criterion: Criterion, instructions: str, model: str) -> JudgeSpec:
    """The judge of ``criterion`` with these instructions and model."""
    return JudgeSpec(
        name=criterion.name,
        instructions=instructions,
        value_type=criterion.kind,
        model=model.strip(),
        options=tuple(criterion.options),
    )


def alignment_settings(
    experiment_id: str,
    criterion: Criterion,
    *,
    instructions: str,
    optimizer: str,
    model: str = DEFAULT_JUDGE_MODEL,
    reflection_model: str = DEFAULT_REFLECTION_MODEL,
    max_metric_calls: int | None = None,
    workers: int = 8,
    seed: int = 0,
) -> AlignmentSettings:
    """Settings for aligning ``criterion``'s judge (a budget of 0 or None means automatic)."""
    return AlignmentSettings(
        experiment_id=str(experiment_id),
        judge=judge_spec(criterion, instructions, model),
        optimizer=optimizer,  # type: ignore[arg-type]  # preflight reports unknown names
        reflection_model=reflection_model.strip(),
        max_metric_calls=int(max_metric_calls) if max_metric_calls else None,
        workers=int(workers),
        seed=int(seed),
    )


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
    from core.optimization.dataset import load_examples, split_examples
    from core.optimization.preflight import estimate, preflight

    examples = load_examples(settings.experiment_id, settings.judge.name, settings.reviewers)
    findings = preflight(settings, examples)
    train, val, test = split_examples(examples)
    est = estimate(settings, len(train), len(val), len(test))
    demo = settings.judge.model.startswith("demo:/") and settings.reflection_model.startswith(
        "demo:/"
    )
    latency = ESTIMATE_LATENCY_S["demo" if demo else "default"]
    return AlignmentCheck(
        findings=tuple(findings),
        n_train=len(train),
        n_val=len(val),
        n_test=len(test),
        budget=settings.budget(len(train)),
        llm_calls=est.llm_calls,
        seconds=est.seconds_at(latency) + JOB_STARTUP_S,
        latency_s=latency,
        explanation=est.explanation,
    )
