"""Building and checking a prompt optimization before anything is spent.

:func:`build_prompt_settings` is the one settings builder for the CLI, the Optimize page
and the tests: it resolves the prompt and judge references (``name``, ``name@3``,
``name@production``) to versions, so the run optimizes what the user saw even if an alias
moves later. :func:`preflight_prompt` refuses, with what to do next, when:

- the prompt, a version or an alias does not exist (the registry's error names what does);
- a template variable is provided by no dataset field (naming the fields there are), or
  rows lack a mapped field (how many, and the first line numbers);
- a judge is not registered, or its version/alias is unknown;
- a model's credentials are missing;
- the dataset is too small for the split, or the budget is below one validation pass.

It warns (the run goes ahead, the warning is recorded) when a judge's agreement with the
humans is unknown or below kappa 0.6 on its test split: optimizing against a judge that
humans disagree with teaches the application to please the judge, not the experts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from core.errors import AlignboardError, CredentialsError, NotFoundError, ValidationError
from core.io.prompt_data import DatasetRow
from core.optimization.preflight import Finding, check_models
from core.optimization.prompt_spec import (
    AGGREGATIONS,
    BUILTIN_SCORERS,
    COMPARE,
    DEFAULT_ALIAS,
    PROMPT_OPTIMIZERS,
    JudgeChoice,
    PromptChoice,
    PromptSettings,
)
from core.optimization.stopping import StopPolicy, estimate_note

#: A judge whose held-out kappa with the humans is below this is not trusted.
MIN_JUDGE_KAPPA = 0.6
#: Rows each split needs at least (train for reflection, val to compare, test to prove).
MIN_ROWS = {"train": 3, "val": 2, "test": 2}
#: Seconds one model call is assumed to take, for the estimate (demo: no latency knob).
ESTIMATE_LATENCY_S = {"demo": 0.005, "default": 1.5}
#: Seconds of job start-up (a worker process importing MLflow, gepa, litellm).
JOB_STARTUP_S = 6.0


def _error(code: str, message: str) -> Finding:
    return Finding("error", code, message)


def _warning(code: str, message: str) -> Finding:
    return Finding("warning", code, message)


def resolve_judge(experiment_id: str, ref: str) -> JudgeChoice:
    """Resolve ``name``, ``name@3`` or ``name@alias`` to a registered judge version.

    Raises:
        NotFoundError: no such judge, version or alias (the message names what exists).
        ValidationError: the reference is malformed.
    """
    from core.optimization.registry import get_alias, list_judges, list_versions

    text = (ref or "").strip()
    name, _, which = text.partition("@")
    if not name:
        raise ValidationError(
            f"Judge reference {ref!r} is empty; use NAME, NAME@VERSION or NAME@ALIAS."
        )
    versions = [v.version for v in list_versions(experiment_id, name)]
    if not versions:
        known = ", ".join(list_judges(experiment_id)) or "none"
        raise NotFoundError(
            f"No judge {name!r} is registered in this experiment (registered judges: {known}). "
            "Align one on the Align page (or `alignboard align`) to register it."
        )
    if not which:
        return JudgeChoice(name, max(versions), text)
    if which.isdigit():
        if int(which) not in versions:
            raise NotFoundError(f"Judge {name!r} has no version {which}; versions: {versions}.")
        return JudgeChoice(name, int(which), text)
    version = get_alias(experiment_id, name, which)
    if version is None:
        from core.optimization.registry import list_versions as lv

        aliases = sorted({a for v in lv(experiment_id, name) for a in v.aliases})
        raise NotFoundError(
            f"Judge {name!r} has no alias {which!r}; aliases: {', '.join(aliases) or 'none'}."
        )
    return JudgeChoice(name, int(version), text)


def build_prompt_settings(
    experiment_id: str,
    *,
    prompts: Sequence[str],
    dataset: str,
    task_model: str,
    judges: Sequence[str],
    optimizer: str = "gepa",
    reflection_model: str = "demo:/reflect",
    scorers: Sequence[str] = (),
    mapping: Mapping[str, str] | None = None,
    dataset_queue: str | None = None,
    dataset_tags: Mapping[str, str] | None = None,
    task_base_url: str | None = None,
    reflection_base_url: str | None = None,
    task_temperature: float | None = None,
    task_max_tokens: int | None = None,
    max_metric_calls: int | None = None,
    workers: int = 8,
    seed: int = 0,
    minibatch_size: int = 3,
    alias: str | None = DEFAULT_ALIAS,
    aggregation: str = "mean",
    value_maps: Mapping[str, Mapping[str, float]] | None = None,
    register_if_worse: bool = False,
    register_if_cancelled: bool = False,
    scorer_model: str | None = None,
    stop_at_score: float | None = 1.0,
    stop: StopPolicy | None = None,
) -> PromptSettings:
    """The settings of one prompt optimization, with every reference resolved.

    ``stop`` is the gepa search's early-stop policy
    (:class:`core.optimization.stopping.StopPolicy`); without it, ``stop_at_score`` and
    the other defaults apply (a policy given wins over ``stop_at_score``).

    Raises:
        ValidationError: a malformed value (unknown optimizer, scorer, aggregation...).
        NotFoundError: a prompt, version, alias or judge that does not exist.
    """
    from pathlib import Path

    from core.io.prompt_data import parse_source
    from core.optimization.registry import ALIAS_PATTERN
    from core.store.prompts import load_prompt, parse_prompt_ref

    if optimizer not in PROMPT_OPTIMIZERS:
        raise ValidationError(
            f"Unknown optimizer {optimizer!r} for prompts; choose one of {', '.join(PROMPT_OPTIMIZERS)}."
        )
    unknown = [s for s in scorers if s not in BUILTIN_SCORERS]
    if unknown:
        raise ValidationError(
            f"Unknown scorer(s) {', '.join(unknown)}; built-in scorers: {', '.join(BUILTIN_SCORERS)}."
        )
    if aggregation not in AGGREGATIONS:
        raise ValidationError(
            f"Unknown aggregation {aggregation!r}; use {' or '.join(AGGREGATIONS)}."
        )
    if not prompts:
        raise ValidationError("Name the prompt to optimize (--prompt NAME[@VERSION|@ALIAS]).")
    if not judges and not scorers:
        raise ValidationError(
            "Choose at least one scorer: a registered judge (--judge NAME[@VERSION|@ALIAS]) "
            "or a built-in (--scorer correctness|exact_match)."
        )
    if alias and not ALIAS_PATTERN.match(alias):
        raise ValidationError(
            f"Alias {alias!r} must start with a letter and use only letters, digits, _ or -."
        )
    for name, value in (("workers", workers), ("minibatch size", minibatch_size)):
        if int(value) < 1:
            raise ValidationError(f"The {name} must be at least 1; got {value}.")
    if stop_at_score is not None and not 0 < float(stop_at_score) <= 1:
        raise ValidationError(
            f"The stop score is a validation score in (0, 1]; got {stop_at_score}."
        )
    if max_metric_calls is not None and int(max_metric_calls) < 1:
        raise ValidationError(
            f"The budget must be a positive number of calls; got {max_metric_calls}."
        )
    if task_temperature is not None and not 0 <= float(task_temperature) <= 2:
        raise ValidationError(
            f"The application's temperature is between 0 and 2; got {task_temperature}."
        )
    if task_max_tokens is not None and int(task_max_tokens) < 1:
        raise ValidationError(
            f"The application's max tokens must be at least 1; got {task_max_tokens}."
        )
    chosen = []
    for text in prompts:
        ref = parse_prompt_ref(text)
        info = load_prompt(ref)
        chosen.append(PromptChoice(info.name, info.version, str(text).strip()))
    if len({p.name for p in chosen}) != len(chosen):
        raise ValidationError("The same prompt is named twice; optimize each prompt once.")
    judge_choices = tuple(resolve_judge(experiment_id, j) for j in judges)
    dataset = str(dataset).strip()
    if parse_source(dataset).kind == "file":
        # The job may run with another working directory (a worker, another host).
        dataset = str(Path(dataset).expanduser().resolve())
    return PromptSettings(
        experiment_id=str(experiment_id),
        prompts=tuple(chosen),
        dataset=dataset,
        task_model=task_model.strip(),
        judges=judge_choices,
        optimizer=optimizer,  # type: ignore[arg-type]
        reflection_model=reflection_model.strip(),
        scorers=tuple(scorers),
        mapping=tuple(sorted((str(k), str(v)) for k, v in (mapping or {}).items() if v)),
        dataset_queue=dataset_queue or None,
        dataset_tags=tuple(sorted((dataset_tags or {}).items())),
        task_base_url=(task_base_url or "").strip() or None,
        reflection_base_url=(reflection_base_url or "").strip() or None,
        task_temperature=None if task_temperature is None else float(task_temperature),
        task_max_tokens=None if task_max_tokens is None else int(task_max_tokens),
        max_metric_calls=int(max_metric_calls) if max_metric_calls else None,
        workers=int(workers),
        seed=int(seed),
        minibatch_size=int(minibatch_size),
        alias=alias or "",
        aggregation=aggregation,
        value_maps=tuple(
            (name, tuple(sorted((str(k), float(v)) for k, v in m.items())))
            for name, m in sorted((value_maps or {}).items())
        ),
        register_if_worse=bool(register_if_worse),
        register_if_cancelled=bool(register_if_cancelled),
        scorer_model=scorer_model or None,
        **(
            stop or StopPolicy(at_score=None if stop_at_score is None else float(stop_at_score))
        ).settings_fields(),
    )


def build_comparison_settings(
    experiment_id: str,
    prompt: str,
    version_a: int,
    version_b: int,
    *,
    dataset: str,
    task_model: str,
    judges: Sequence[str],
    scorers: Sequence[str] = (),
    mapping: Mapping[str, str] | None = None,
    task_base_url: str | None = None,
    workers: int = 8,
) -> PromptSettings:
    """Settings that score versions ``version_a`` and ``version_b`` of ``prompt`` on the
    held-out rows of ``dataset`` with the given judges (optimizer ``compare``: nothing is
    optimized or registered; the record holds both outputs of every test row).

    Raises:
        ValidationError: the two versions are the same.
        NotFoundError: the prompt, a version or a judge does not exist.
    """
    from dataclasses import replace

    from core.store.prompts import PromptRef, load_prompt

    if int(version_a) == int(version_b):
        raise ValidationError("Choose two different versions to compare.")
    load_prompt(PromptRef(prompt, version=int(version_b)))
    base = build_prompt_settings(
        experiment_id,
        prompts=[f"{prompt}@{int(version_a)}"],
        dataset=dataset,
        task_model=task_model,
        judges=judges,
        scorers=scorers,
        mapping=mapping,
        task_base_url=task_base_url,
        workers=workers,
        alias=None,
    )
    return replace(base, optimizer="compare", compare_version=int(version_b))


def load_rows_for(settings: PromptSettings) -> list[DatasetRow]:
    """The dataset rows of the run's source (with its queue/tag filter)."""
    from core.io.prompt_data import load_rows, parse_source

    source = parse_source(
        settings.dataset, queue=settings.dataset_queue, tags=settings.tags_dict or None
    )
    return load_rows(source)


def preflight_prompt(settings: PromptSettings) -> tuple[list[DatasetRow], list[Finding]]:
    """Load the rows and check everything before a prompt optimization starts.

    Returns:
        ``(rows, findings)``; rows are empty when the dataset could not be read (then an
        error finding says why).
    """
    findings: list[Finding] = []
    try:
        rows = load_rows_for(settings)
    except (ValidationError, NotFoundError) as exc:
        return [], [_error("dataset_unreadable", str(exc))]
    findings += check_prompts(settings, rows)
    findings += check_judges(settings)
    findings += check_credentials(settings)
    findings += check_sizes(settings, rows)
    return rows, findings


def check_prompts(settings: PromptSettings, rows: Sequence[DatasetRow]) -> list[Finding]:
    """The prompts exist at their versions, are text templates, and every variable is
    provided by the dataset."""
    from core.io.prompt_data import check_mapping, field_paths, resolve_mapping
    from core.store.prompts import PromptRef, load_prompt

    out: list[Finding] = []
    used: set[str] = set()
    for p in settings.prompts:
        try:
            info = load_prompt(PromptRef(p.name, version=p.version))
            used |= set(info.variables)
        except NotFoundError as exc:
            out.append(_error("prompt_not_found", str(exc)))
            continue
        if info.is_chat:
            out.append(
                _error(
                    "chat_prompt",
                    f"Prompt {p.name!r} v{p.version} is a chat template; prompt optimization "
                    "evolves text templates. Register the system prompt as a text prompt.",
                )
            )
            continue
        if not info.variables:
            out.append(
                _warning(
                    "no_variables",
                    f"Prompt {p.name!r} v{p.version} has no template variables, so every row "
                    "gets the same request.",
                )
            )
        if not rows:
            continue
        try:
            # Each prompt of a multi-prompt app checks the mapping of its own variables.
            own = {k: v for k, v in settings.mapping_dict.items() if k in info.variables}
            mapping = resolve_mapping(info.variables, rows, own)
        except ValidationError as exc:
            out.append(_error("bad_mapping", str(exc)))
            continue
        check = check_mapping(info.variables, rows, mapping)
        if check.unmapped:
            fields = ", ".join(check.available or field_paths(rows)) or "none"
            out.append(
                _error(
                    "unmapped_variables",
                    f"Prompt {p.name!r} uses {', '.join('{{ ' + v + ' }}' for v in check.unmapped)}, "
                    f"which no dataset field provides. Fields available: {fields}. Map each "
                    "variable to a field (--map VARIABLE=FIELD, or the mapping on the "
                    "Optimize page).",
                )
            )
        for var, (count, lines) in check.missing_rows.items():
            where = ", ".join(str(n) for n in lines)
            out.append(
                _error(
                    "rows_missing_field",
                    f"{count} row(s) lack the field mapped to {{{{ {var} }}}} (first at "
                    f"line/record {where}). Fix those rows or map the variable to another field.",
                )
            )
    return out + (_unused_mapping(settings, used) if rows else [])


def _unused_mapping(settings: PromptSettings, used: set[str]) -> list[Finding]:
    unused = sorted(set(settings.mapping_dict) - used)
    if not unused:
        return []
    return [
        _error(
            "bad_mapping",
            f"The mapping names {', '.join(map(repr, unused))}, which no prompt uses; their "
            f"variables: {', '.join(sorted(used)) or 'none'}.",
        )
    ]


def check_judges(settings: PromptSettings) -> list[Finding]:
    """The judge versions exist, and their agreement with the humans is known and good."""
    from core.optimization.registry import list_versions
    from core.optimization.trace_spans import uses_trace

    out: list[Finding] = []
    for j in settings.judges:
        meta = next(
            (v for v in list_versions(settings.experiment_id, j.name) if v.version == j.version),
            None,
        )
        if meta is None:
            out.append(
                _error(
                    "judge_not_found", f"Judge {j.name!r} has no registered version {j.version}."
                )
            )
            continue
        if uses_trace(meta.instructions):
            out.append(
                _error(
                    "trace_judge_scorer",
                    f"{j.label} reads {{{{ trace }}}} (the spans of an agent's trace), but the "
                    "outputs a prompt optimization scores are the application's replies, "
                    "which have no trace to read. Score with a judge that uses "
                    "{{ inputs }} and {{ outputs }}.",
                )
            )
            continue
        kappa = meta.test_metrics.get("test_kappa_after")
        if kappa is None:
            out.append(
                _warning(
                    "judge_agreement_unknown",
                    f"{j.label}: its agreement with the humans on held-out traces is unknown. "
                    "Optimizing against a judge nobody checked may teach the application to "
                    "please the judge, not your experts. Score it on the Agreement page first.",
                )
            )
        elif float(kappa) < MIN_JUDGE_KAPPA:
            out.append(
                _warning(
                    "judge_disagrees_with_humans",
                    f"{j.label}: optimizing against a judge that humans disagree with (held-out "
                    f"kappa {float(kappa):.2f} < {MIN_JUDGE_KAPPA}). Realign it with more labels "
                    "first, or treat the gains with caution.",
                )
            )
    return out


def check_credentials(settings: PromptSettings) -> list[Finding]:
    """Every model of the run can be called (keys present, names valid)."""
    from core.models.secrets import require_credentials
    from core.models.uris import parse_model

    models = {
        "application": (settings.task_model, settings.task_base_url),
        "reflection": (settings.reflection_model, settings.reflection_base_url),
    }
    if "correctness" in settings.scorers and settings.scorer_model:
        models["scorer"] = (settings.scorer_model, None)
    out = check_models(models)
    try:
        from core.optimization.prompt_eval import build_scorers

        for scorer in build_scorers(settings):
            if scorer.spec is not None:
                require_credentials(parse_model(scorer.spec.model, scorer.spec.base_url))
    except CredentialsError as exc:
        out.append(_error("missing_credentials", f"A judge's model cannot be used: {exc}"))
    except NotFoundError:
        pass  # reported by check_judges
    return out


def check_sizes(settings: PromptSettings, rows: Sequence[DatasetRow]) -> list[Finding]:
    """Enough rows in every split, and a budget of at least one validation pass."""
    from core.io.prompt_data import split_rows

    train, val, test = split_rows(list(rows))
    sizes = {"train": len(train), "val": len(val), "test": len(test)}
    # A comparison scores the test rows only.
    needed = {"test": MIN_ROWS["test"]} if settings.optimizer == COMPARE else MIN_ROWS
    short = {k: n for k, n in sizes.items() if k in needed and n < needed[k]}
    out = []
    if short:
        need = ", ".join(f"{MIN_ROWS[k]} {k}" for k in short)
        out.append(
            _error(
                "dataset_too_small",
                f"The dataset has {len(rows)} row(s): {sizes['train']} train, {sizes['val']} "
                f"validation, {sizes['test']} test; at least {need} are needed. Add rows (about "
                "30 or more give a held-out score that means something).",
            )
        )
    budget = settings.budget(len(train))
    if settings.optimizer != COMPARE and val and budget < len(val) + 2 * settings.minibatch_size:
        out.append(
            _error(
                "budget_too_small",
                f"A budget of {budget} metric calls cannot evaluate the seed on the "
                f"{len(val)} validation rows and try one proposal; use at least "
                f"{len(val) + 2 * settings.minibatch_size}.",
            )
        )
    return out


@dataclass(frozen=True)
class PromptCheck:
    """Pre-flight findings and a forecast, for the Optimize page and the CLI."""

    findings: tuple[Finding, ...]
    n_train: int
    n_val: int
    n_test: int
    budget: int
    app_calls: int
    """Application calls at most (budget, plus two per test row)."""
    judge_calls: int
    """Scorer calls at most."""
    reflection_calls: int
    """About this many reflection calls."""
    seconds: float
    """Wall-time forecast, including job start-up."""
    tokens: int
    """Rough token forecast (rendered prompt and reply lengths)."""
    explanation: str
    preview: tuple[str, ...] = ()
    """The rendered prompt for the first rows (what the application will be sent)."""

    @property
    def ok(self) -> bool:
        """No error among the findings."""
        return not any(f.level == "error" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        d = asdict(self)
        d["findings"] = [f.to_dict() for f in self.findings]
        d["preview"] = list(self.preview)
        return d


def check_prompt_optimization(settings: PromptSettings, preview_rows: int = 3) -> PromptCheck:
    """Pre-flight plus a forecast of calls, time and tokens, and a preview of rendered
    prompts for the first rows."""
    from core.io.prompt_data import split_rows, values_for
    from core.store.prompts import PromptRef, load_prompt, render, to_messages

    rows, findings = preflight_prompt(settings)
    train, val, test = split_rows(rows) if rows else ([], [], [])
    budget = settings.budget(len(train))
    n_scorers = len(settings.judges) + len(settings.scorers)
    app_calls = budget + 2 * len(test)
    mb = max(settings.minibatch_size, 1)
    per_iter = 2 * mb + len(val) / 2
    reflections = max(int((budget - len(val)) / per_iter), 0) if per_iter else 0
    demo = all(m.startswith("demo:/") for m in (settings.task_model, settings.reflection_model))
    measured = None
    if demo:
        latency = ESTIMATE_LATENCY_S["demo"]
    else:
        from core.optimization.preflight import recorded_latency_s

        measured = recorded_latency_s(
            settings.experiment_id, "task_model", settings.task_model, ESTIMATE_LATENCY_S["default"]
        )
        latency = measured.seconds
    # Rounds of parallel calls: app then judges per round, workers wide.
    rounds = 2 * math.ceil(app_calls / max(settings.workers, 1)) + reflections
    preview: list[str] = []
    chars = 0
    try:
        info = load_prompt(PromptRef(settings.prompt.name, version=settings.prompt.version))
        for row in rows[:preview_rows]:
            mapping = {v: settings.mapping_dict.get(v) or v for v in info.variables}
            msgs = to_messages(render(info.template, values_for(row, mapping)))
            preview.append("\n\n".join(f"{m['role']}: {m['content']}" for m in msgs))
        chars = sum(len(p) for p in preview) // max(len(preview), 1)
    except (AlignboardError, KeyError):
        pass
    tokens = int((app_calls * (1 + n_scorers)) * (chars / 4 + 120))
    return PromptCheck(
        findings=tuple(findings),
        n_train=len(train),
        n_val=len(val),
        n_test=len(test),
        budget=budget,
        app_calls=app_calls,
        judge_calls=app_calls * n_scorers,
        reflection_calls=reflections,
        seconds=round(rounds * latency + JOB_STARTUP_S, 1),
        tokens=tokens,
        explanation=(
            f"{settings.optimizer}: budget {budget} row evaluations (each one application call "
            f"and {n_scorers} scorer call(s)), about {reflections} reflection calls, plus "
            f"{2 * len(test)} held-out evaluations (seed and best on {len(test)} test rows). "
            "Cached pairs are not paid twice."
            + (f" {m}" if measured is not None and (m := measured.describe()) else "")
            + (f" {note}" if (note := estimate_note(settings)) else "")
        ),
        preview=tuple(preview),
    )


def errors_in(findings: Iterable[Finding]) -> list[Finding]:
    """The error findings."""
    return [f for f in findings if f.level == "error"]
