"""Checks run before an alignment spends anything, and a rough cost estimate.

:func:`preflight` returns every problem at once (errors refuse the run, warnings are
recorded with it), each with a message that says what to do next. :func:`estimate`
tells the dashboard roughly how many LLM calls and how long a run will take.
"""

from __future__ import annotations

import math
import os
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
    # The judge too: every path that calls a judge on a base URL (our evaluator, and
    # MLflow's own judge.align through core.optimization.mlflow_judge.served_judge_route)
    # hands a keyless server a placeholder key, as bulk scoring and Optimize already do.
    models = {
        "judge": (settings.judge.model, settings.judge.base_url),
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
    if settings.optimizer in ("mlflow-gepa", "simba") and settings.judge.base_url:
        # MLflow rebuilds their judges without the base URL, so the run sends openai:/
        # calls to the judge's server (mlflow_judge.served_judge_route): say where the
        # reflection goes when it is an openai:/ model too.
        try:
            reflection_provider = parse_model(settings.reflection_model).provider
        except Exception:  # a bad model URI: the model checks report it
            return []
        if reflection_provider == "openai":
            return [
                _warning(
                    "reflection_on_judge_server",
                    f"{settings.optimizer} reaches the judge's server "
                    f"({settings.judge.base_url}) by pointing openai:/ calls at it for the "
                    f"run (MLflow's optimizer drops base URLs), so the reflection model "
                    f"{settings.reflection_model!r} is asked there too.",
                )
            ]
        return []
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
    learn = counts["train"] + counts["val"]
    if settings.optimizer in ("mlflow-gepa", "simba") and learn < MIN_TRACES:
        # MLflow refuses fewer itself, but only after the run has started.
        out.append(
            _error(
                "too_few_traces_for_mlflow",
                f"MLflow's {settings.optimizer} needs at least {MIN_TRACES} labeled traces "
                f"in train + validation; {learn} are. Label {MIN_TRACES - learn} more, or "
                "use gepa or memalign.",
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


# --- cost estimate ---------------------------------------------------------------------

#: Fewest traces MLflow's DSPy optimizers (SIMBA, MLflow's GEPA) accept.
MIN_TRACES = 10
#: SIMBA's new candidates per step (dspy's default is 6; fewer fit small budgets).
SIMBA_CANDIDATES = 3
#: Smallest SIMBA batch preferred when the budget is tight (smaller only if nothing fits).
SIMBA_MIN_BATCH = 4

# Time model of a job beyond its model calls' latency (seconds on an idle machine:
# measured on the 2-core development machine with the demo stand-ins, which answer at once
# plus their configured latency; see benchmarks/b9_estimates.py). Work done in Python
# (imports, per-call bookkeeping) slows down when the cores are busy: every CPU figure is
# scaled by how much slower than idle the experiment's recent job starts were, or, before
# any, by :func:`load_factor` (:func:`recorded_overheads`).
#: From Launch to the optimizer's first call: process spawn, imports (MLflow, LiteLLM, about
#: 6 s of CPU), loading the examples. Idle: about 7 s; replaced by the recorded median.
DEFAULT_JOB_START_S = 7.0
#: After the held-out scoring: registration, the result, the final status, the page's
#: next poll. Replaced by the recorded median registration time plus a write.
DEFAULT_FINISH_S = 1.0
#: Serial work per call besides its latency (prompt rendering, LiteLLM, parsing, the
#: evaluator's bookkeeping): Python runs it one call at a time whatever the workers.
CALL_OVERHEAD_S = {"judge": 0.008, "reflection": 0.02, "embedding": 0.003}
#: What a runner does before its first call (MLflow's optimizers import dspy; MemAlign
#: builds its memory): seconds.
RUNNER_SETUP_S = {"gepa": 0.3, "memalign": 0.8, "mlflow-gepa": 0.8, "simba": 0.5}
#: The engine's metric of the load factor while the job started (see :func:`load_factor`).
LOAD_FACTOR_METRIC = "cpu_load_factor"
#: The engine's metric of a run's mean model-call latency (answered calls only).
SECONDS_PER_CALL_METRIC = "seconds_per_call"


def load_factor() -> float:
    """How much slower than idle Python work runs now: ``(load + 1) / (cores + 1)`` from
    the 1-minute load average, at least 1 (1 where the platform has no load average).

    On the 2-core development machine a job's start took 6-7 s at load 1.3 and 12-21 s at
    load 6-8: this gives 1 and 2.3-3.
    """
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        return 1.0
    return max(1.0, (load + 1) / ((os.cpu_count() or 1) + 1))


def simba_cost(bsize: int, num_candidates: int, max_steps: int, n_examples: int) -> int:
    """The most metric calls ``dspy.SIMBA`` can make with these knobs (dspy 3's
    ``teleprompt/simba.py``).

    Each step samples ``bsize * num_candidates`` trajectories, then scores at most
    ``min(bsize, num_candidates + 1)`` new programs (one per bucket, capped) on the same
    batch. At the end the winners, at most ``min(num_candidates + 1, max_steps + 1)``
    distinct programs, are scored on every example.
    """
    per_step = bsize * (num_candidates + min(bsize, num_candidates + 1))
    final = min(num_candidates + 1, max_steps + 1) * n_examples
    return max_steps * per_step + final


def simba_plan(budget: int, n_examples: int) -> dict[str, int]:
    """SIMBA knobs whose worst case (:func:`simba_cost`) fits ``budget`` metric calls.

    Preference: every example, ``SIMBA_CANDIDATES`` candidates and batches of
    ``MIN_TRACES``, with as many steps as fit; when even one step does not fit, fewer
    candidates, then smaller batches, then fewer examples (never below ``MIN_TRACES``:
    SIMBA's last scoring of every example is what costs most), keeping batches of at least
    ``SIMBA_MIN_BATCH`` while any plan allows it. ``fits`` is 0 when no plan fits (the
    smallest is returned; the SIMBA runner refuses it).

    Returns:
        ``{"bsize", "num_candidates", "max_steps", "examples", "fits", "worst_case"}``;
        ``examples`` is how many of the examples SIMBA is given.
    """
    n_examples = max(int(n_examples), 1)

    def plan(n: int, c: int, b: int) -> dict[str, int] | None:
        steps = 0
        while simba_cost(b, c, steps + 1, n) <= budget:
            steps += 1
        if steps < 1:
            return None
        return {
            "bsize": b,
            "num_candidates": c,
            "max_steps": steps,
            "examples": n,
            "fits": 1,
            "worst_case": simba_cost(b, c, steps, n),
        }

    floor = min(MIN_TRACES, n_examples)
    # First with batches of at least SIMBA_MIN_BATCH (a step learns from the spread of
    # scores within its batch), then with any batch.
    for smallest in (min(SIMBA_MIN_BATCH, floor), 1):
        for n in range(n_examples, floor - 1, -1):
            for c in range(SIMBA_CANDIDATES, 0, -1):
                for b in range(min(MIN_TRACES, n), smallest - 1, -1):
                    found = plan(n, c, b)
                    if found is not None:
                        return found
    return {
        "bsize": 1,
        "num_candidates": 1,
        "max_steps": 1,
        "examples": floor,
        "fits": 0,
        "worst_case": simba_cost(1, 1, 1, floor),
    }


@dataclass(frozen=True)
class Overheads:
    """What a job spends besides its model calls, in seconds (see :func:`recorded_overheads`)."""

    job_start_s: float = DEFAULT_JOB_START_S
    """Launch to the optimizer's first call."""
    finish_s: float = DEFAULT_FINISH_S
    """Registration, result and final status."""
    runs: int = 0
    """Finished runs of the experiment the figures come from (0: the defaults)."""
    cpu_factor: float = 1.0
    """How much slower than idle Python work runs now (:func:`load_factor`); scales the
    per-call work and the runner's set-up."""


@dataclass(frozen=True)
class Estimate:
    """A rough forecast of what an alignment will spend (an upper bound, not a promise)."""

    judge_calls: int
    """Judge evaluations (cache hits make the real number lower), test scoring included."""
    reflection_calls: int
    """Calls to the reflection / distillation model."""
    embedding_calls: int
    """Embedding calls (MemAlign)."""
    workers: int
    """Judge calls in flight at once."""
    explanation: str
    """How the numbers were derived, for the UI."""
    test_calls: int = 0
    """Of ``judge_calls``, the held-out scoring's (seed and aligned judge on the test split)."""
    optimizer: str = "gepa"
    """The optimizer, for its set-up time (:data:`RUNNER_SETUP_S`)."""

    @property
    def llm_calls(self) -> int:
        """Every model call, all roles together."""
        return self.judge_calls + self.reflection_calls + self.embedding_calls

    def seconds_at(self, latency_s: float) -> float:
        """Time the calls' latency alone takes if every call takes ``latency_s`` seconds.

        Judge calls run ``workers`` at a time; reflection calls run one after another.
        :meth:`wall_seconds` adds what a job spends besides.
        """
        parallel = math.ceil(self.judge_calls / max(self.workers, 1))
        return (parallel + self.reflection_calls + self.embedding_calls / 16) * latency_s

    def phases(self, latency_s: float, overheads: Overheads | None = None) -> dict[str, float]:
        """The wall time by phase: ``job_start``, ``optimize``, ``held_out``, ``finish``.

        Each phase's calls cost their latency (judge calls ``workers`` at a time) plus
        :data:`CALL_OVERHEAD_S` each, one at a time.
        """
        o = overheads or Overheads()
        workers = max(self.workers, 1)
        judge = self.judge_calls - self.test_calls

        cpu = o.cpu_factor

        def judging(n: int) -> float:
            return math.ceil(n / workers) * latency_s + n * CALL_OVERHEAD_S["judge"] * cpu

        # MemAlign's judge embeds each test trace to retrieve its examples.
        test_embeddings = self.test_calls if self.embedding_calls else 0
        embeddings = self.embedding_calls - test_embeddings
        embed = CALL_OVERHEAD_S["embedding"] * cpu
        optimize = (
            RUNNER_SETUP_S.get(self.optimizer, 1.0) * cpu
            + judging(judge)
            + self.reflection_calls * (latency_s + CALL_OVERHEAD_S["reflection"] * cpu)
            + embeddings * embed
            + math.ceil(embeddings / 16) * latency_s
        )
        held_out = judging(self.test_calls) + test_embeddings * (embed + latency_s / workers)
        return {
            "job_start": o.job_start_s,
            "optimize": optimize,
            "held_out": held_out,
            "finish": o.finish_s,
        }

    def wall_seconds(self, latency_s: float, overheads: Overheads | None = None) -> float:
        """Launch to final status: job start, the optimizer, held-out scoring, finish."""
        return sum(self.phases(latency_s, overheads).values())

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (with ``llm_calls``)."""
        return {**asdict(self), "llm_calls": self.llm_calls}


def recorded_overheads(experiment_id: str, *, last: int = 5) -> Overheads:
    """Job start and finish times as the experiment's last finished runs recorded them.

    The engine logs ``job_start_seconds`` (launch to the optimizer's first call) and
    ``register_seconds``; their medians over the ``last`` finished runs of any optimizer
    (starting a job costs the same whichever runs) replace the defaults, and how much
    slower than :data:`DEFAULT_JOB_START_S` the job start was scales the per-call work (the
    same Python, on the same cores). No such run (or an unreadable store): the defaults,
    scaled by :func:`load_factor`.
    """
    from statistics import median

    from core.optimization import recorder as rec

    runs = _last_finished_runs(
        experiment_id,
        f"tags.`{rec.TAG_KIND}` = '{rec.KIND_ALIGNMENT}' AND metrics.job_start_seconds >= 0",
        last,
    )
    if not runs:
        now = load_factor()
        return Overheads(
            job_start_s=DEFAULT_JOB_START_S * now, finish_s=DEFAULT_FINISH_S * now, cpu_factor=now
        )
    start = float(median(r.data.metrics["job_start_seconds"] for r in runs))
    cpu = min(max(start / DEFAULT_JOB_START_S, 1.0), 4.0)
    finish = float(median(r.data.metrics.get("register_seconds", 0.0) for r in runs))
    return Overheads(
        job_start_s=start,
        # Registration as recorded, plus the result, the status and the page's poll.
        finish_s=finish + 0.5 * cpu,
        runs=len(runs),
        cpu_factor=cpu,
    )


@dataclass(frozen=True)
class Latency:
    """The per-call latency an estimate assumes, and where it comes from."""

    seconds: float
    """Seconds per model call."""
    runs: int = 0
    """Finished runs of this model in the experiment it is the median of (0: a default)."""

    def describe(self) -> str:
        """Where the figure comes from, in words ("" for a default)."""
        if not self.runs:
            return ""
        return (
            f"{self.seconds:.3g} s per call is the median measured in the last {self.runs} "
            f"finished run{'s' if self.runs != 1 else ''} with this model here."
        )


def recorded_latency_s(
    experiment_id: str, param: str, model: str, default_s: float, *, last: int = 5
) -> Latency:
    """The per-call latency of ``model``, as the experiment's finished runs measured it.

    The engine logs each run's mean latency of its answered model calls
    (:data:`SECONDS_PER_CALL_METRIC`, reflection calls included). The median over the
    ``last`` finished runs whose run param ``param`` (``judge_model``, ``task_model``) is
    ``model`` replaces ``default_s``: a model on a 2-core llama.cpp server answers in 20 s,
    not the 1.5 s a hosted model takes, and the estimate said ~30 s for a 14-minute run.

    Args:
        experiment_id: The experiment.
        param: The run param naming the model.
        model: The model URI.
        default_s: What to assume without a measured run (or an unreadable store).
    """
    from statistics import median

    if "'" in model:  # not a model URI the filter can quote; nothing was measured
        return Latency(default_s)
    runs = _last_finished_runs(
        experiment_id, f"params.{param} = '{model}' AND metrics.{SECONDS_PER_CALL_METRIC} > 0", last
    )
    if not runs:
        return Latency(default_s)
    return Latency(
        float(median(r.data.metrics[SECONDS_PER_CALL_METRIC] for r in runs)), runs=len(runs)
    )


def _last_finished_runs(experiment_id: str, where: str, last: int) -> list[Any]:
    """The experiment's newest ``last`` finished runs that also match ``where`` (an MLflow
    filter); empty when the store cannot be read: an estimate never fails a page."""
    try:
        from mlflow import MlflowClient

        from core.optimization import recorder as rec

        return list(
            MlflowClient().search_runs(
                [str(experiment_id)],
                filter_string=f"tags.`{rec.TAG_STATUS}` = 'finished' AND {where}",
                order_by=["attributes.start_time DESC"],
                max_results=last,
            )
        )
    except Exception:
        return []


def estimate_latency_s(demo: bool, default_s: float) -> float:
    """Latency per call the time estimate assumes: for the demo stand-ins the latency they
    are set to sleep (``ALIGNBOARD_DEMO_LATENCY_MS``, :mod:`core.models.demo`; 0 by
    default), otherwise ``default_s``."""
    if not demo:
        return default_s
    from core.models.demo import LATENCY_ENV

    try:
        return max(float(os.environ.get(LATENCY_ENV) or 0), 0.0) / 1000
    except ValueError:
        return 0.0


def describe_time(est: Estimate, latency_s: float, overheads: Overheads) -> str:
    """The time estimate in words: the phases, and where the job start comes from."""
    p = est.phases(latency_s, overheads)
    source = (
        f"median of the last {overheads.runs} finished run{'s' if overheads.runs != 1 else ''} here"
        if overheads.runs
        else "default for this machine"
    )
    if overheads.cpu_factor > 1.05:
        source += f", x{overheads.cpu_factor:.1f} for the busy CPU"
    return (
        f"Time: includes ~{p['job_start']:.0f} s job start ({source}), ~{p['optimize']:.0f} s "
        f"optimizing, ~{p['held_out']:.0f} s held-out scoring and ~{p['finish']:.0f} s "
        f"registering, at {latency_s:g} s per call plus "
        f"{CALL_OVERHEAD_S['judge'] * overheads.cpu_factor * 1000:.0f} ms of work per judge "
        "call."
    )


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

    found = replace(_estimate(settings, n_train, n_val, n_test), optimizer=settings.optimizer)
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
    budget = settings.budget(n_train)
    if settings.optimizer == "gepa":
        # Each iteration judges a minibatch twice (parent, child) and, when the child
        # improves, the whole validation set; assume half the children improve.
        per_iter = 2 * mb + n_val / 2
        iterations = max(int((budget - n_val) / per_iter), 0) if per_iter else 0
        return Estimate(
            judge_calls=budget + test_calls,
            reflection_calls=iterations,
            embedding_calls=0,
            workers=settings.workers,
            test_calls=test_calls,
            explanation=(
                f"gepa: budget {budget} judge calls (max_metric_calls"
                f"{'' if settings.max_metric_calls else ', default 10x train'}; never more "
                f"than one minibatch beyond it), about "
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
            test_calls=test_calls,
            explanation=(
                f"memalign: about {batches} distillation calls for {n_train} train traces, "
                f"{n_train} embeddings for the episodic memory, then {test_calls} test calls "
                "(seed and aligned judge) with one embedding each for retrieval. No "
                "metric-call budget applies: MemAlign judges nothing while aligning."
            ),
        )
    n = n_train + n_val
    if settings.optimizer == "mlflow-gepa":
        # MLflow's GEPA validates on all n examples: a search stops before an iteration
        # whose worst case (2 minibatches + n) could pass the budget by more than a
        # minibatch, so it spends between budget - (mb + n) and budget + mb.
        spent = max(n, budget - (mb + n) // 2)
        reflections = max((spent - n) // max(2 * mb + n // 2, 1), 1)
        # The seed's validation (n) and one iteration's worst case (2 mb + n), within the
        # budget and one minibatch of slack.
        least = 2 * n + mb
        small = (
            f" A budget of {budget} fits no iteration (the seed is validated on all {n} "
            f"examples first, then each iteration may take {2 * mb + n}): give at least "
            f"{least}."
            if budget < least
            else ""
        )
        return Estimate(
            judge_calls=spent + test_calls,
            reflection_calls=reflections,
            embedding_calls=0,
            workers=settings.workers,
            test_calls=test_calls,
            explanation=(
                f"mlflow-gepa: budget {budget} judge calls, about {spent} spent (it validates "
                f"on all {n} examples, so it stops early rather than overshoot), about "
                f"{reflections} reflection calls, plus {test_calls} test calls.{small}"
            ),
        )
    plan = simba_plan(budget, n)
    # Each new candidate comes from one reflection (append_a_rule) or none (a demo).
    reflections = plan["max_steps"] * min(plan["bsize"], plan["num_candidates"] + 1)
    return Estimate(
        judge_calls=plan["worst_case"] + test_calls,
        reflection_calls=reflections,
        embedding_calls=0,
        workers=settings.workers,
        test_calls=test_calls,
        explanation=(
            f"{settings.optimizer}: {plan['max_steps']} step(s) of {plan['num_candidates']} "
            f"candidates on batches of {plan['bsize']}, then the winners on "
            f"{plan['examples']} examples: at most {plan['worst_case']} judge calls of the "
            f"budget {budget}, plus {test_calls} test calls."
        ),
    )
