"""Checks run before an alignment spends anything, and a rough cost estimate.

:func:`preflight` returns every problem at once (errors refuse the run, warnings are
recorded with it), each with a message that says what to do next. :func:`estimate`
tells the dashboard roughly how many LLM calls and how long a run will take.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from core.errors import AlignboardError, CredentialsError, ValidationError
from core.optimization.spec import OPTIMIZERS, TEMPLATE_VARIABLES, AlignmentSettings, Example

#: Fewest labeled traces the search-based optimizers accept.
MIN_LABELED = 10
#: Search-based optimizers (they need train and validation examples).
SEARCH_OPTIMIZERS = ("gepa", "mlflow-gepa", "simba")
#: Cohen's kappa below which reviewers are said to disagree (Landis & Koch: "fair").
MIN_REVIEWER_KAPPA = 0.4
#: Fewest traces two reviewers must both have labeled for their kappa to count in the
#: agreement gate (a kappa on two or three traces is noise, not agreement).
MIN_GATE_OVERLAP = 5
#: Finding codes of the agreement gate that refuse a run (the Align page offers the
#: override for exactly these) and of an overridden gate (recorded with the run).
GATE_CODES = ("reviewer_kappa_below_minimum", "reviewer_kappa_unknown")
GATE_OVERRIDDEN = "reviewer_kappa_overridden"
#: Read the criterion's minimum kappa from its rules (see :func:`preflight`).
_FROM_RULES: Any = object()


@dataclass(frozen=True)
class Finding:
    """One pre-flight problem."""

    level: Literal["error", "warning"]
    """``error`` refuses the run; ``warning`` is recorded with it."""
    code: str
    """Stable identifier, e.g. ``too_few_labels``."""
    message: str
    """What is wrong and what to do about it."""

    def to_dict(self) -> dict[str, str]:
        """Return a JSON-ready dict."""
        return asdict(self)


def _error(code: str, message: str) -> Finding:
    return Finding("error", code, message)


def _warning(code: str, message: str) -> Finding:
    return Finding("warning", code, message)


def preflight(
    settings: AlignmentSettings,
    examples: Sequence[Example],
    *,
    labels: Iterable[Any] | None = None,
    label_names: Iterable[str] | None = None,
    min_reviewer_kappa: float | None = _FROM_RULES,
) -> list[Finding]:
    """Check an alignment before it starts.

    Args:
        settings: The alignment asked for.
        examples: The labeled examples it would use (all splits).
        labels: Every current human label of the judge's criterion (``core.labeling.labels.Label``
            or ``(trace_id, reviewer, value)`` rows), for reviewer agreement; None reads
            them from the store. Gold labels among them are left out of agreement.
        label_names: Names of the human labels that exist in the experiment, to explain a
            mismatch; None reads them from the store when needed.
        min_reviewer_kappa: The agreement gate (see :func:`_check_gate`); by default the
            criterion's ``LabelRules.min_reviewer_kappa`` as the lead set it.

    Returns:
        Every finding, errors first.
    """
    findings: list[Finding] = []
    findings += _check_optimizer(settings)
    findings += _check_instructions(settings)
    findings += _check_credentials(settings)
    findings += _check_base_urls(settings)
    findings += _check_labels(settings, examples, label_names)
    findings += _check_trace(settings, examples)
    findings += _check_reviewers(settings, examples, labels, min_reviewer_kappa)
    return sorted(findings, key=lambda f: f.level != "error")


def load_and_preflight(settings: AlignmentSettings) -> tuple[list[Example], list[Finding]]:
    """Load the judge's labeled examples and run :func:`preflight` on them.

    The criterion's labels are read once and serve both the examples and the reviewer
    agreement check (one label scan, not two).

    Returns:
        ``(examples, findings)``; the findings are errors first.
    """
    from core.labeling.labels import current_labels
    from core.optimization import dataset

    labels = current_labels(settings.experiment_id, settings.judge.name, gold=True)
    examples = dataset.load_examples(
        settings.experiment_id, settings.judge.name, settings.reviewers, labels=labels
    )
    return examples, preflight(settings, examples, labels=labels)


def findings_from_dicts(rows: Iterable[dict[str, Any]]) -> list[Finding]:
    """Inverse of :meth:`Finding.to_dict` over a list (as recorded in a run)."""
    return [Finding(r["level"], r["code"], r["message"]) for r in rows]


def errors_of(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that refuse a run."""
    return [f for f in findings if f.level == "error"]


def refuse_on_errors(findings: Iterable[Finding], what: str = "Alignment") -> None:
    """Raise when any finding refuses the run, listing every one.

    Args:
        findings: The pre-flight findings.
        what: What is refused, for the message (``Alignment``, ``Prompt optimization``).

    Raises:
        ValidationError: at least one finding is an error.
    """
    errors = errors_of(findings)
    if errors:
        raise ValidationError(
            f"{what} refused before spending anything:\n"
            + "\n".join(f"- {f.message}" for f in errors)
        )


def _check_optimizer(settings: AlignmentSettings) -> list[Finding]:
    if settings.optimizer in OPTIMIZERS:
        return []
    return [
        _error(
            "unknown_optimizer",
            f"Unknown optimizer {settings.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}.",
        )
    ]


def _check_instructions(settings: AlignmentSettings) -> list[Finding]:
    if settings.judge.template_variables():
        return []
    return [
        _error(
            "no_template_variables",
            f"The instructions of judge {settings.judge.name!r} use no template variable, so "
            "the judge would never see the trace. Mention at least one of "
            f"{', '.join(TEMPLATE_VARIABLES)}, e.g. 'Is {{{{ outputs }}}} a good answer to "
            "{{ inputs }}?'.",
        )
    ]


def _check_credentials(settings: AlignmentSettings) -> list[Finding]:
    # (model, base URL) per role: a model on an OpenAI-compatible server needs no key.
    # Except the judge: MLflow's judge with a base_url still refuses to run without
    # OPENAI_API_KEY (its gateway client reads it), so the registered judge needs it.
    models = {
        "judge": (settings.judge.model, None),
        "reflection": (settings.reflection_model, settings.reflection_base_url),
    }
    if settings.optimizer == "memalign":
        models["embedding"] = (settings.embedding_model, settings.embedding_base_url)
    return check_models(models)


def check_models(models: Mapping[str, tuple[str, str | None]]) -> list[Finding]:
    """One finding per model that cannot be used (bad name, missing key).

    Args:
        models: role (e.g. ``judge``) -> (model URI, base URL or None).
    """
    from core.models.secrets import require_credentials
    from core.models.uris import parse_model

    out = []
    for role, (uri, base_url) in models.items():
        try:
            require_credentials(parse_model(uri, base_url))
        except AlignboardError as exc:
            code = "missing_credentials" if isinstance(exc, CredentialsError) else "bad_model"
            out.append(_error(code, f"The {role} model cannot be used: {exc}"))
    return out


def _check_base_urls(settings: AlignmentSettings) -> list[Finding]:
    """Base URLs an optimizer cannot honour. mlflow-gepa and simba take none for their
    reflection model; MemAlign reaches one through the environment: one URL, openai:/ only.

    MLflow builds MemAlign's reflection model and embedder from bare names, so the run
    points LiteLLM's OpenAI provider at their base URL (``core.models.endpoints``). Every
    ``openai:/`` model of the run without a base URL of its own would go there as well.
    """
    from core.models.uris import parse_model

    if settings.optimizer in ("mlflow-gepa", "simba") and settings.reflection_base_url:
        return [
            _error(
                "base_url_unsupported",
                f"{settings.optimizer} cannot send its reflection model to a base URL "
                "(MLflow's optimizer takes a bare model name): use gepa or memalign, or a "
                "reflection model without a base URL.",
            )
        ]
    if settings.optimizer != "memalign":
        return []
    routed = {
        role: (uri, url)
        for role, uri, url in (
            ("reflection", settings.reflection_model, settings.reflection_base_url),
            ("embedding", settings.embedding_model, settings.embedding_base_url),
        )
        if url
    }
    if not routed:
        return []
    out = []
    urls = sorted({url.rstrip("/") for _, url in routed.values()})
    if len(urls) > 1:
        out.append(
            _error(
                "memalign_base_urls",
                "MemAlign's reflection and embedding models must be on the same server "
                f"(got {' and '.join(urls)}): MLflow builds both from bare model names, so "
                "they can only be pointed at one OpenAI-compatible base URL.",
            )
        )
    try:
        unrouted = {
            "judge": (settings.judge.model, settings.judge.base_url),
            "reflection": (settings.reflection_model, settings.reflection_base_url),
            "embedding": (settings.embedding_model, settings.embedding_base_url),
        }
        for role, (uri, url) in unrouted.items():
            provider = parse_model(uri).provider
            if url and role in routed and provider != "openai":
                out.append(
                    _error(
                        "base_url_needs_openai",
                        f"The {role} model {uri!r} has a base URL, which MemAlign supports "
                        "for OpenAI-compatible servers only: write it as 'openai:/<model>'.",
                    )
                )
            elif not url and provider == "openai":
                out.append(
                    _error(
                        "base_url_conflict",
                        f"The {role} model {uri!r} has no base URL, but MemAlign sends every "
                        f"openai:/ model of the run to {urls[0]}: give it that base URL "
                        "too, or use another provider for it.",
                    )
                )
    except AlignboardError:
        pass  # a malformed model name is reported by _check_credentials
    return out


def _check_labels(
    settings: AlignmentSettings,
    examples: Sequence[Example],
    label_names: Iterable[str] | None,
) -> list[Finding]:
    name = settings.judge.name
    n = len(examples)
    if n == 0:
        names = sorted(set(label_names) if label_names is not None else _label_names(settings))
        others = [x for x in names if x != name]
        listed = ", ".join(repr(x) for x in others) or "none"
        return [
            _error(
                "no_labels_for_judge",
                f"No human labels named {name!r} (the judge's name) in this experiment. "
                f"Label names that exist: {listed}. Label traces for {name!r} in the "
                "dashboard, or align the judge whose name matches your labels.",
            )
        ]
    out = []
    if settings.optimizer in SEARCH_OPTIMIZERS and n < MIN_LABELED:
        out.append(
            _error(
                "too_few_labels",
                f"{settings.optimizer} needs at least {MIN_LABELED} labeled traces for "
                f"{name!r}; {n} are labeled. Label {MIN_LABELED - n} more, or use memalign, "
                "which learns from a handful.",
            )
        )
    values = {_hashable(e.label) for e in examples}
    if len(values) == 1:
        only = next(iter(values))
        out.append(
            _warning(
                "single_label_value",
                f"Every label for {name!r} is {only!r}: the judge can only learn to say that. "
                "Label some traces with other values for a useful alignment.",
            )
        )
    counts = {s: sum(e.split == s for e in examples) for s in ("train", "val", "test")}
    for split, count in counts.items():
        # gepa picks candidates on the validation split and reflects on train examples:
        # with either empty it cannot run at all (gepa asserts), so refuse it up front.
        fatal = settings.optimizer == "gepa" and split in ("train", "val")
        if count == 0:
            out.append(
                (_error if fatal else _warning)(
                    f"empty_{split}_split",
                    f"No labeled trace falls in the {split} split ({counts['train']} train, "
                    f"{counts['val']} val, {counts['test']} test). Label more traces; "
                    + (
                        "without a test split the before/after agreement cannot be measured."
                        if split == "test"
                        else "gepa cannot run without it."
                        if fatal
                        else "the optimizer has less to learn from."
                    ),
                )
            )
    return out


def _check_trace(settings: AlignmentSettings, examples: Sequence[Example]) -> list[Finding]:
    """A ``{{ trace }}`` judge is fine; on traces that are one span each it has nothing
    beyond the inputs and outputs to look at (and pays for the tool calls anyway)."""
    from core.optimization.trace_spans import uses_trace

    if not uses_trace(settings.judge.instructions):
        return []
    known = [e for e in examples if e.span_count]
    single = [e for e in known if e.span_count == 1]
    if not known or len(single) < len(known):
        return []
    return [
        _warning(
            "trace_single_span",
            f"Judge {settings.judge.name!r} reads {{{{ trace }}}}, but every one of the "
            f"{len(known)} labeled traces has a single span: there is nothing beyond the "
            "inputs and outputs for it to look at, and each verdict still costs several "
            "tool-calling rounds. Use {{ inputs }} and {{ outputs }} instead, or label traces "
            "recorded with their spans (tool calls, retrievals).",
        )
    ]


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def _label_names(settings: AlignmentSettings) -> set[str]:
    from core.labeling.labels import current_labels

    return {lab.criterion for lab in current_labels(settings.experiment_id)}


def _rules_kappa(settings: AlignmentSettings) -> float | None:
    from mlflow.exceptions import MlflowException

    from core.labeling.rules import criterion_rules

    try:
        return criterion_rules(settings.experiment_id, settings.judge.name).min_reviewer_kappa
    except (MlflowException, AlignboardError):
        # No readable experiment (a check of settings alone): there is no rule to apply.
        return None


def _check_reviewers(
    settings: AlignmentSettings,
    examples: Sequence[Example],
    labels: Iterable[Any] | None,
    min_kappa: float | None = _FROM_RULES,
) -> list[Finding]:
    from core.agreement import reviewer_matrix

    if labels is None:
        if not examples:
            return []
        from core.labeling.labels import current_labels

        labels = current_labels(settings.experiment_id, settings.judge.name)
    rows: list[tuple[Any, ...]] = []
    for lab in labels:
        # Gold labels (a 4th element, or Label.adjudication) are not a reviewer's rating.
        if isinstance(lab, tuple):
            if len(lab) < 4 or not lab[3]:
                rows.append(lab[:3])
        elif not getattr(lab, "adjudication", False):
            rows.append((lab.trace_id, lab.reviewer, _hashable(lab.value)))
    if settings.reviewers:
        rows = [r for r in rows if r[1] in settings.reviewers]
    if not rows:
        return []
    if min_kappa is _FROM_RULES:
        min_kappa = _rules_kappa(settings)
    try:
        matrix = reviewer_matrix(rows)
    except AlignboardError:
        matrix = None
    out = []
    for p in matrix.pairs if matrix is not None else ():
        if p.n_overlap and p.cohen_kappa is not None and p.cohen_kappa < MIN_REVIEWER_KAPPA:
            out.append(
                _warning(
                    "reviewer_disagreement",
                    f"Reviewers {p.reviewer_a} and {p.reviewer_b} disagree on "
                    f"{settings.judge.name!r}: Cohen's kappa {p.cohen_kappa:.2f} on {p.n_overlap} "
                    f"traces both labeled (raw agreement {p.agreement:.0%}; below "
                    f"{MIN_REVIEWER_KAPPA} is weak). A judge cannot agree with both; settle the "
                    "guideline, or align on one reviewer's labels.",
                )
            )
    if min_kappa is not None:
        out += _check_gate(settings, matrix, float(min_kappa))
    return out


def _check_gate(settings: AlignmentSettings, matrix: Any, min_kappa: float) -> list[Finding]:
    """The agreement gate the lead set on the criterion (``LabelRules.min_reviewer_kappa``).

    Every pair of reviewers with at least :data:`MIN_GATE_OVERLAP` traces both labeled
    counts, with its Cohen's kappa as the warning above computes it (a pair that agrees on
    every trace but used one value only has an undefined kappa and counts as 1). The
    lowest such kappa below the minimum **blocks** the run. Too little overlap to compute
    any kappa **blocks** too: the lead asked for agreement to be shown, and it is not
    (have a second reviewer label some of the same traces). Either block is lifted by a
    written override reason in the settings, recorded as a warning naming who and why.
    """
    name = settings.judge.name
    pairs = list(matrix.pairs) if matrix is not None else []
    counted = []
    for p in pairs:
        if p.n_overlap < MIN_GATE_OVERLAP:
            continue
        kappa = p.cohen_kappa
        if kappa is None and p.agreement == 1.0:
            kappa = 1.0
        if kappa is not None:
            counted.append((kappa, p))
    finding: Finding | None = None
    if not counted:
        most = max((p.n_overlap for p in pairs), default=0)
        finding = _error(
            "reviewer_kappa_unknown",
            f"Reviewer agreement on {name!r} cannot be checked against the minimum kappa "
            f"{min_kappa:.2f} set for this criterion: no two reviewers have both labeled at "
            f"least {MIN_GATE_OVERLAP} of the same traces (the most any pair shares: {most}). "
            "Have a second reviewer label some of the same traces, or launch anyway with a "
            "written reason.",
        )
    else:
        kappa, worst = min(counted, key=lambda kp: (kp[0], kp[1].reviewer_a, kp[1].reviewer_b))
        if kappa < min_kappa:
            finding = _error(
                "reviewer_kappa_below_minimum",
                f"Reviewer agreement on {name!r} is below the minimum set for this criterion: "
                f"{worst.reviewer_a} and {worst.reviewer_b} have Cohen's kappa {kappa:.2f} on "
                f"{worst.n_overlap} traces both labeled (minimum {min_kappa:.2f}). Adjudicate "
                "their disagreements and settle the guideline (Adjudicate page), or launch "
                "anyway with a written reason.",
            )
    if finding is None:
        return []
    reason = (settings.kappa_override_reason or "").strip()
    if not reason:
        return [finding]
    who = (settings.kappa_override_by or "").strip() or "unknown"
    return [
        _warning(
            GATE_OVERRIDDEN,
            f"Reviewer agreement gate overridden by {who}: {reason} (the gate said: "
            f"{finding.message})",
        )
    ]


# --- cost estimate ----------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A rough forecast of what an alignment will spend (an upper bound, not a promise)."""

    judge_calls: int
    """Judge evaluations (cache hits make the real number lower)."""
    reflection_calls: int
    """Calls to the reflection / distillation model."""
    embedding_calls: int
    """Embedding calls (MemAlign)."""
    workers: int
    """Judge calls in flight at once."""
    explanation: str
    """How the numbers were derived, for the UI."""

    @property
    def llm_calls(self) -> int:
        """Every model call, all roles together."""
        return self.judge_calls + self.reflection_calls + self.embedding_calls

    def seconds_at(self, latency_s: float) -> float:
        """Wall time if every call takes ``latency_s`` seconds.

        Judge calls run ``workers`` at a time; reflection calls run one after another.
        """
        parallel = math.ceil(self.judge_calls / max(self.workers, 1))
        return (parallel + self.reflection_calls + self.embedding_calls / 16) * latency_s

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (with ``llm_calls``)."""
        return {**asdict(self), "llm_calls": self.llm_calls}


def estimate(
    settings: AlignmentSettings, n_train: int, n_val: int, n_test: int | None = None
) -> Estimate:
    """Forecast the calls an alignment makes.

    Args:
        settings: The alignment.
        n_train: Labeled traces in the train split.
        n_val: Labeled traces in the validation split.
        n_test: Labeled traces in the test split (default: the same as ``n_val``); the
            seed and the aligned judge are both scored on it.
    """
    from dataclasses import replace

    from core.optimization.trace_spans import uses_trace

    found = _estimate(settings, n_train, n_val, n_test)
    if not uses_trace(settings.judge.instructions):
        return found
    # The unit stays the judge evaluation; a trace judge's takes several model calls.
    return replace(
        found,
        explanation=found.explanation
        + " A {{ trace }} judge makes several model calls per evaluation (it reads the "
        "spans through MLflow's tool calls; the demo stand-in makes 3).",
    )


def _estimate(
    settings: AlignmentSettings, n_train: int, n_val: int, n_test: int | None
) -> Estimate:
    n_test = n_val if n_test is None else n_test
    test_calls = 2 * n_test
    mb = max(settings.minibatch_size, 1)
    if settings.optimizer == "gepa":
        budget = settings.budget(n_train)
        # Each iteration judges a minibatch twice (parent, child) and, when the child
        # improves, the whole validation set; assume half the children improve.
        per_iter = 2 * mb + n_val / 2
        iterations = max(int((budget - n_val) / per_iter), 0) if per_iter else 0
        return Estimate(
            judge_calls=budget + test_calls,
            reflection_calls=iterations,
            embedding_calls=0,
            workers=settings.workers,
            explanation=(
                f"gepa: budget {budget} judge calls (max_metric_calls"
                f"{'' if settings.max_metric_calls else ', default 10x train'}), about "
                f"{iterations} iterations of one reflection call each (2 x minibatch {mb} + "
                f"half the {n_val} validation traces per iteration), plus {test_calls} test "
                "calls (seed and aligned judge). Cached pairs are not paid twice."
            ),
        )
    if settings.optimizer == "memalign":
        batches = math.ceil(n_train / 10) if n_train else 0
        return Estimate(
            judge_calls=test_calls,
            reflection_calls=batches,
            embedding_calls=n_train + 2 * n_test,
            workers=settings.workers,
            explanation=(
                f"memalign: about {batches} distillation calls for {n_train} train traces, "
                f"{n_train} embeddings for the episodic memory, then {test_calls} test calls "
                "(seed and aligned judge) with one embedding each for retrieval."
            ),
        )
    n = n_train + n_val
    if settings.optimizer == "mlflow-gepa":
        budget = settings.max_metric_calls or 4 * n
        reflections = max(budget // max(2 * mb + n_val, 1), 1)
        return Estimate(
            judge_calls=budget + test_calls,
            reflection_calls=reflections,
            embedding_calls=0,
            workers=settings.workers,
            explanation=(
                f"mlflow-gepa: MLflow's budget {budget} judge calls (default 4x the {n} "
                f"examples), about {reflections} reflection calls, plus {test_calls} test calls."
            ),
        )
    # simba: a few steps over minibatches, several candidates per step.
    steps, candidates = 8, 6
    judge = min(steps * candidates * max(mb, min(n, 32)), 40 * max(n, 1)) + test_calls
    return Estimate(
        judge_calls=judge,
        reflection_calls=steps * 2,
        embedding_calls=0,
        workers=settings.workers,
        explanation=(
            f"{settings.optimizer}: about {steps} steps of {candidates} candidates judged on a "
            f"minibatch, plus {test_calls} test calls; dspy decides the exact count."
        ),
    )
