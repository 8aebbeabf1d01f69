"""Two versions of a judge (or of a registered prompt), side by side.

A version's text is a judge's instructions or a prompt's template. Its held-out numbers
come from the run it came from: the ``after`` report of that run's ``test_metrics.json``
(the aligned judge scored on the test split). A judge version registered without such an
artifact falls back to the scalar test metrics recorded at registration; a prompt version
has judge scores when a finished prompt optimization run compared it with the other
version shown (:func:`core.views.prompt_runs.compare_prompt_versions`, found through the
``alignboard.run_id`` / ``alignboard.base_version`` tags the registrar writes): the
per-scorer held-out scores with intervals and both versions' outputs side by side
(``VersionComparison.prompt_pair``).

Aliases (e.g. ``production``) live in MLflow: experiment tags for judges (see
:mod:`core.optimization.registry`), MLflow's own prompt aliases for prompts. Every change
is recorded in the alias history (:mod:`core.optimization.alias_history`), and "Roll back"
returns an alias to its previous target in that history.

Metric deltas are against the seed: the producing run's ``before`` report (the judge it
started from, on the same test split), labelled "vs seed" wherever they are shown.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from core.errors import NotFoundError, ValidationError
from core.optimization import alias_history, record, registry
from core.optimization import recorder as rec
from core.optimization.alias_history import AliasChange
from core.store import config
from core.views.diffs import DiffOp, DiffStats, diff_html, diff_stats, word_diff
from core.views.formatting import tokens_and_cost, when_ms
from core.views.prompt_runs import VERSION_TAG_RUN, PromptPair, compare_prompt_versions
from core.views.runs import MetricRow

__all__ = [
    "AliasChange",
    "Metrics",
    "RollbackPlan",
    "Subject",
    "VersionComparison",
    "VersionSide",
    "VersionSummary",
    "alias_history_rows",
    "alias_map",
    "compare_versions",
    "delta_vs_seed",
    "list_aliases",
    "list_subjects",
    "list_version_summaries",
    "rollback",
    "rollback_plan",
    "run_explorer_link",
    "set_alias",
    "side_html",
    "undo",
    "usage_line",
]

Kind = Literal["judge", "prompt"]
KINDS: tuple[str, ...] = ("judge", "prompt")
RUN_EXPLORER_PATH = "run_explorer"
_LINKED_PROMPTS_TAG = "mlflow.linkedPrompts"
_MAX_LINKED_RUNS = 200


@dataclass(frozen=True)
class Subject:
    """Something that has versions: a registered judge or a registered prompt."""

    kind: str
    """``judge`` or ``prompt``."""
    name: str
    """Registered name."""
    latest: int
    """Highest version number."""

    @property
    def label(self) -> str:
        """How the picker shows it."""
        return f"{self.kind}: {self.name} (v{self.latest})"


@dataclass(frozen=True)
class VersionSummary:
    """One version as a picker lists it."""

    version: int
    """Version number."""
    aliases: tuple[str, ...] = ()
    """Aliases pointing at it."""
    created_ms: int | None = None
    """Registration time, epoch milliseconds."""
    optimizer: str | None = None
    """Which optimizer produced it (judges only)."""

    @property
    def label(self) -> str:
        """``v3 · gepa · production``."""
        parts = [f"v{self.version}"]
        if self.optimizer:
            parts.append(self.optimizer)
        if self.aliases:
            parts.append(", ".join(self.aliases))
        return " · ".join(parts)


@dataclass(frozen=True)
class Metrics:
    """Held-out (test split) agreement of one version with the humans."""

    source: str
    """``run`` (the run's full report) or ``registration`` (scalars kept at registration)."""
    n: int | None = None
    """Test traces compared."""
    accuracy: float | None = None
    """Share of test traces where the version agrees with the human label."""
    accuracy_ci: tuple[float, float] | None = None
    """95% bootstrap interval of the accuracy."""
    cohen_kappa: float | None = None
    """Cohen's kappa with the humans."""
    cohen_kappa_ci: tuple[float, float] | None = None
    """95% bootstrap interval of kappa."""
    tpr: float | None = None
    """Share of human passes the version also passes (pass/fail only)."""
    tnr: float | None = None
    """Share of human fails the version also fails (pass/fail only)."""
    confusion_labels: tuple[str, ...] = ()
    """Display labels of the confusion matrix (rows: human, columns: this version)."""
    confusion_counts: tuple[tuple[int, ...], ...] = ()
    """Confusion counts, ``[human][version]``; empty when unknown."""
    baseline_accuracy: float | None = None
    """The seed judge's accuracy on the same test split (the run's ``before``)."""
    baseline_kappa: float | None = None
    """The seed judge's kappa on the same test split."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class VersionSide:
    """One of the two versions being compared."""

    kind: str
    """``judge`` or ``prompt``."""
    name: str
    """Registered name."""
    version: int
    """Version number."""
    text: str
    """Instructions (judge) or template (prompt)."""
    run_id: str | None
    """The run it came from (judge) or the run linking it (prompt), if any."""
    run_name: str | None = None
    """That run's name."""
    run_status: str | None = None
    """That run's alignboard status (finished, cancelled, ...), or MLflow's."""
    optimizer: str | None = None
    """Optimizer that produced it."""
    created_ms: int | None = None
    """Registration time, epoch milliseconds."""
    aliases: tuple[str, ...] = ()
    """Aliases pointing at it."""
    note: str | None = None
    """Commit message (prompts) or other registration note."""
    metrics: Metrics | None = None
    """Held-out metrics, None when no run recorded any."""
    metrics_missing: str | None = None
    """Why there are no metrics (shown instead of them)."""
    usage: str | None = None
    """The producing run's model calls, tokens and cost (``formatting.tokens_and_cost``:
    "price unknown" when unpriced), None when the run recorded no usage."""

    @property
    def run_link(self) -> str | None:
        """Relative URL of the run in the Run explorer."""
        return run_explorer_link(self.run_id) if self.run_id else None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        d = asdict(self)
        d["run_link"] = self.run_link
        return d


@dataclass(frozen=True)
class VersionComparison:
    """Two versions of one judge or prompt: texts, word diff, metrics."""

    kind: str
    name: str
    a: VersionSide
    """The version on the left (usually the older one)."""
    b: VersionSide
    """The version on the right."""
    ops: tuple[DiffOp, ...] = field(default_factory=tuple)
    """Word diff from ``a.text`` to ``b.text``."""
    stats: DiffStats | None = None
    """Words added, removed, unchanged."""
    prompt_pair: PromptPair | None = None
    """Prompts: both versions' held-out judge scores and outputs, or why there are none."""

    @property
    def identical(self) -> bool:
        """True when both texts are the same."""
        return self.a.text == self.b.text

    def metric_rows(self) -> list[MetricRow]:
        """Accuracy, kappa, TPR, TNR, n of both sides (rows where neither is known dropped)."""
        rows = []
        for key, title in (
            ("accuracy", "accuracy"),
            ("cohen_kappa", "Cohen's kappa"),
            ("tpr", "TPR"),
            ("tnr", "TNR"),
            ("n", "test traces"),
        ):
            va = getattr(self.a.metrics, key, None) if self.a.metrics else None
            vb = getattr(self.b.metrics, key, None) if self.b.metrics else None
            if va is not None or vb is not None:
                rows.append(MetricRow(title, va, vb))
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "kind": self.kind,
            "name": self.name,
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "ops": [op.to_dict() for op in self.ops],
            "stats": self.stats.to_dict() if self.stats else None,
            "prompt_pair": self.prompt_pair.to_dict() if self.prompt_pair else None,
        }


@dataclass(frozen=True)
class RollbackPlan:
    """Where "Roll back" would move an alias, or why it cannot."""

    alias: str
    current: int | None
    """Where the alias points now (None: unset)."""
    target: int | None
    """Its previous target per history (None: no roll back possible)."""
    reason: str | None = None
    """Why there is no target (shown next to the disabled button)."""

    @property
    def label(self) -> str:
        """The button's words: ``Roll back production to v1 (its previous target)``."""
        if self.target is None:
            return f"Roll back {self.alias}"
        return f"Roll back {self.alias} to v{self.target} (its previous target)"


# --- helpers ---------------------------------------------------------------------------


def _client():
    from mlflow import MlflowClient

    config.configure()
    return MlflowClient()


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValidationError(f"Unknown kind {kind!r}; choose judge or prompt.")


def run_explorer_link(run_id: str) -> str:
    """Relative URL opening ``run_id`` in the Run explorer page."""
    return f"{RUN_EXPLORER_PATH}?run={run_id}"


def side_html(ops: list[DiffOp] | tuple[DiffOp, ...], side: Literal["a", "b"]) -> str:
    """One side of a side-by-side diff as safe HTML.

    Side ``a`` is the old text with its deleted words struck out; side ``b`` the new
    text with its inserted words highlighted. Built by :func:`core.views.diffs.diff_html`, which
    escapes every text.
    """
    drop = "insert" if side == "a" else "delete"
    return diff_html([op for op in ops if op.kind != drop])


def _ci(report: dict[str, Any], key: str) -> tuple[float, float] | None:
    ci = report.get(key) or {}
    if ci.get("low") is None or ci.get("high") is None:
        return None
    return float(ci["low"]), float(ci["high"])


def _display_labels(experiment_id: str, criterion: str | None, labels: list[Any]) -> list[str]:
    from core.labeling.criteria import display_value, get_criterion

    crit = None
    if criterion:
        try:
            crit = get_criterion(experiment_id, criterion)
        except (NotFoundError, ValidationError):
            crit = None
    return [display_value(crit, v) if crit else str(v) for v in labels]


def metrics_from_report(
    report: dict[str, Any],
    experiment_id: str,
    criterion: str | None,
    baseline: dict[str, Any] | None = None,
) -> Metrics:
    """:class:`Metrics` from an AgreementReport dict (as in ``test_metrics.json``)."""
    confusion = report.get("confusion") or {}
    labels = list(confusion.get("labels") or [])
    counts = tuple(tuple(int(c) for c in row) for row in (confusion.get("counts") or []))
    return Metrics(
        source="run",
        n=report.get("n"),
        accuracy=report.get("accuracy"),
        accuracy_ci=_ci(report, "accuracy_ci"),
        cohen_kappa=report.get("cohen_kappa"),
        cohen_kappa_ci=_ci(report, "cohen_kappa_ci"),
        tpr=report.get("tpr"),
        tnr=report.get("tnr"),
        confusion_labels=tuple(_display_labels(experiment_id, criterion, labels)),
        confusion_counts=counts,
        baseline_accuracy=(baseline or {}).get("accuracy"),
        baseline_kappa=(baseline or {}).get("cohen_kappa"),
    )


def _run_report(run_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str | None]:
    """The run's test ``(after, before)`` reports, or a reason they are missing."""
    data = record.read_test_metrics(_client(), run_id)
    if data is None:
        return None, None, f"run {run_id} recorded no readable {record.TEST_METRICS}"
    before = None if data.before is None else dict(data.before)
    if not data.after:
        why = data.after_error or data.note or "no test score"
        return None, before, f"run {run_id}: {why}"
    return dict(data.after), before, None


def _run_info(run_id: str | None) -> tuple[str | None, str | None, str | None]:
    """The run's name, status and usage line (None for what is unknown)."""
    if not run_id:
        return None, None, None
    try:
        run = _client().get_run(run_id)
    except Exception:
        return None, None, None
    status = run.data.tags.get(rec.TAG_STATUS) or run.info.status
    return run.info.run_name, status, usage_line(run.data.metrics)


def usage_line(metrics: dict[str, float]) -> str | None:
    """A run's totals (``tokens_total``, ``cost_usd``, ``llm_calls_total``) as one line.

    None when the run logged neither tokens nor calls (older runs); a run without
    ``cost_usd`` had no priced model and reads "price unknown", never $0.
    """
    tokens, calls = metrics.get("tokens_total"), metrics.get("llm_calls_total")
    if tokens is None and calls is None:
        return None
    return tokens_and_cost(tokens, metrics.get("cost_usd"), calls)


def delta_vs_seed(value: float | None, seed: float | None, digits: int = 3) -> str | None:
    """``"+0.120 vs seed"``: a version's metric minus the seed judge's on the same test
    split (None when either is unknown). The sign leads, so a dashboard colours it."""
    if value is None or seed is None:
        return None
    return f"{round(value - seed, digits):+.{digits}f} vs seed"


def _registration_metrics(test: dict[str, float]) -> Metrics | None:
    acc, kappa = test.get("test_accuracy_after"), test.get("test_kappa_after")
    if acc is None and kappa is None:
        return None
    n = test.get("test_size")
    return Metrics(
        source="registration",
        n=int(n) if n is not None else None,
        accuracy=acc,
        cohen_kappa=kappa,
        baseline_accuracy=test.get("test_accuracy_before"),
        baseline_kappa=test.get("test_kappa_before"),
    )


# --- subjects and versions -------------------------------------------------------------


def _prompt_names() -> dict[str, int]:
    import mlflow

    config.configure()
    out: dict[str, int] = {}
    for prompt in mlflow.genai.search_prompts(max_results=1000):
        versions = _prompt_versions(prompt.name)
        if versions:
            out[prompt.name] = max(int(v.version) for v in versions)
    return dict(sorted(out.items()))


def _prompt_versions(name: str) -> list[Any]:
    client = _client()
    found: list[Any] = []
    token = None
    while True:
        page = client.search_prompt_versions(name, max_results=100, page_token=token)
        found.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return sorted(found, key=lambda v: int(v.version))


def list_subjects(experiment_id: str) -> list[Subject]:
    """Registered judges of the experiment, then registered prompts (MLflow's registry).

    Prompts live in MLflow's workspace-wide registry, so every prompt is listed whatever
    the experiment.
    """
    subjects = [Subject("judge", n, v) for n, v in registry.list_judges(experiment_id).items()]
    subjects += [Subject("prompt", n, v) for n, v in _prompt_names().items()]
    return subjects


def list_version_summaries(experiment_id: str, kind: str, name: str) -> list[VersionSummary]:
    """Versions of a judge or prompt, oldest first, with their aliases."""
    _check_kind(kind)
    if kind == "judge":
        return [
            VersionSummary(v.version, v.aliases, v.created_ms, v.optimizer)
            for v in registry.list_versions(experiment_id, name)
        ]
    aliases = _prompt_aliases(name)
    by_version: dict[int, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(version, []).append(alias)
    return [
        VersionSummary(
            int(v.version),
            tuple(sorted(by_version.get(int(v.version), []))),
            getattr(v, "creation_timestamp", None),
        )
        for v in _prompt_versions(name)
    ]


def _prompt_aliases(name: str) -> dict[str, int]:
    # search_prompt_versions leaves aliases empty; get_prompt_version fills them.
    client = _client()
    out: dict[str, int] = {}
    for v in _prompt_versions(name):
        full = client.get_prompt_version(name, int(v.version))
        for alias in full.aliases or []:
            out[alias] = int(v.version)
    return out


def list_aliases(experiment_id: str, kind: str, name: str) -> dict[str, int]:
    """Alias -> version of a judge or prompt, sorted by alias."""
    _check_kind(kind)
    if kind == "prompt":
        return dict(sorted(_prompt_aliases(name).items()))
    out: dict[str, int] = {}
    for v in registry.list_versions(experiment_id, name):
        for alias in v.aliases:
            out[alias] = v.version
    return dict(sorted(out.items()))


def _judge_side(experiment_id: str, name: str, version: int) -> VersionSide:
    found = {v.version: v for v in registry.list_versions(experiment_id, name)}
    if int(version) not in found:
        raise NotFoundError(
            f"Judge {name!r} has no version {version}; registered versions: "
            f"{sorted(found) or 'none'}."
        )
    jv = found[int(version)]
    metrics, missing = None, None
    if jv.run_id:
        after, before, missing = _run_report(jv.run_id)
        if after:
            metrics = metrics_from_report(after, experiment_id, name, before)
    else:
        missing = "registered outside an alignment run"
    if metrics is None:
        metrics = _registration_metrics(jv.test_metrics)
    run_name, run_status, usage = _run_info(jv.run_id)
    return VersionSide(
        kind="judge",
        name=name,
        version=jv.version,
        text=jv.instructions,
        run_id=jv.run_id,
        run_name=run_name,
        run_status=run_status,
        optimizer=jv.optimizer,
        created_ms=jv.created_ms,
        aliases=jv.aliases,
        metrics=metrics,
        metrics_missing=None if metrics else missing,
        usage=usage,
    )


def _linked_run(experiment_id: str, name: str, version: int) -> str | None:
    """Newest run of the experiment whose ``mlflow.linkedPrompts`` names this version."""
    client = _client()
    pattern = f'%"name": "{name}"%'.replace("'", "")
    try:
        runs = client.search_runs(
            [str(experiment_id)],
            filter_string=f"tags.`{_LINKED_PROMPTS_TAG}` LIKE '{pattern}'",
            order_by=["attributes.start_time DESC"],
            max_results=_MAX_LINKED_RUNS,
        )
    except Exception:
        return None
    for run in runs:
        try:
            linked = json.loads(run.data.tags.get(_LINKED_PROMPTS_TAG) or "[]")
        except ValueError:
            continue
        if any(p.get("name") == name and str(p.get("version")) == str(version) for p in linked):
            return run.info.run_id
    return None


def _prompt_side(experiment_id: str, name: str, version: int) -> VersionSide:
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        pv = client.get_prompt_version(name, int(version))
    except MlflowException as exc:
        raise NotFoundError(f"Prompt {name!r} has no version {version}.") from exc
    if pv is None:
        raise NotFoundError(f"Prompt {name!r} has no version {version}.")
    template = pv.template if isinstance(pv.template, str) else json.dumps(pv.template, indent=1)
    tags = dict(getattr(pv, "tags", None) or {})
    # A version an alignboard optimization registered names its run; judge scores for
    # prompts are the pair's (VersionComparison.prompt_pair), not agreement metrics.
    run_id = tags.get(VERSION_TAG_RUN)
    missing: str | None = None
    metrics = None
    if run_id is None:
        run_id = _linked_run(experiment_id, name, int(version))
        missing = "no run in this experiment links this prompt version"
        if run_id:
            after, before, missing = _run_report(run_id)
            if after:
                metrics = metrics_from_report(after, experiment_id, None, before)
    run_name, run_status, usage = _run_info(run_id)
    return VersionSide(
        kind="prompt",
        name=name,
        version=int(pv.version),
        text=template,
        run_id=run_id,
        run_name=run_name,
        run_status=run_status,
        optimizer=tags.get("alignboard.optimizer"),
        created_ms=getattr(pv, "creation_timestamp", None),
        aliases=tuple(sorted(pv.aliases or [])),
        note=pv.commit_message,
        metrics=metrics,
        metrics_missing=None if metrics else missing,
        usage=usage,
    )


def version_side(experiment_id: str, kind: str, name: str, version: int) -> VersionSide:
    """Everything shown about one version.

    Raises:
        NotFoundError: no such judge/prompt version.
    """
    _check_kind(kind)
    if kind == "judge":
        return _judge_side(experiment_id, name, int(version))
    return _prompt_side(experiment_id, name, int(version))


def compare_versions(
    experiment_id: str, kind: str, name: str, version_a: int, version_b: int
) -> VersionComparison:
    """Compare two versions of a judge or prompt.

    Args:
        experiment_id: The experiment whose judges (and runs) are meant.
        kind: ``judge`` or ``prompt``.
        name: The judge's or prompt's registered name.
        version_a: Left-hand version (the diff goes from it).
        version_b: Right-hand version (the diff goes to it).

    Raises:
        NotFoundError: either version does not exist.
    """
    a = version_side(experiment_id, kind, name, version_a)
    b = version_side(experiment_id, kind, name, version_b)
    ops = word_diff(a.text, b.text)
    pair = (
        compare_prompt_versions(name, a.version, b.version, experiment_id)
        if kind == "prompt"
        else None
    )
    return VersionComparison(kind, name, a, b, tuple(ops), diff_stats(ops), pair)


# --- aliases ---------------------------------------------------------------------------


def _current(experiment_id: str, kind: str, name: str, alias: str) -> int | None:
    if kind == "judge":
        return registry.get_alias(experiment_id, name, alias)
    return alias_history.prompt_alias_target(name, alias)


def set_alias(
    experiment_id: str,
    kind: str,
    name: str,
    alias: str,
    version: int,
    *,
    action: str = "set",
    who: str | None = None,
) -> AliasChange:
    """Point ``alias`` at ``version`` (judge: alignboard's alias tags; prompt: MLflow's
    native prompt alias) and record the change in the alias history.

    Args:
        experiment_id: The experiment worked in (holds the history, prompts' too).
        kind: ``judge`` or ``prompt``.
        name: Registered name.
        alias: A simple word, e.g. ``production``.
        version: The version it moves to.
        action: ``set``, ``promote``, ``rollback`` or ``undo`` (as the history shows it).
        who: Who did it (the dashboard's user; default: the process's user).

    Returns:
        The recorded change, with the version the alias pointed at before (for an undo).

    Raises:
        ValidationError: the alias is not a simple word.
        NotFoundError: no such version.
    """
    _check_kind(kind)
    alias = (alias or "").strip()
    if kind == "judge":
        return registry.set_alias(experiment_id, name, alias, int(version), action=action, who=who)
    if not registry.ALIAS_PATTERN.match(alias):
        raise ValidationError(
            f"Alias {alias!r} must start with a letter and use only letters, digits, _ or -."
        )
    return alias_history.set_prompt_alias(
        experiment_id, name, alias, int(version), action=action, who=who
    )


def undo(
    experiment_id: str, kind: str, name: str, alias: str, version: int, *, who: str | None = None
) -> AliasChange:
    """Undo the last change: put ``alias`` back on ``version`` (recorded as ``undo``)."""
    return set_alias(experiment_id, kind, name, alias, version, action="undo", who=who)


def alias_map(summaries: list[VersionSummary]) -> dict[str, int]:
    """Alias -> version, from :func:`list_version_summaries` output (sorted by alias)."""
    return dict(sorted((a, s.version) for s in summaries for a in s.aliases))


def _label(kind: str, name: str, alias: str) -> str:
    return f"Alias {alias!r} of {kind} {name!r}"


def rollback_plan(experiment_id: str, kind: str, name: str, alias: str) -> RollbackPlan:
    """Where "Roll back" would move ``alias``: its previous target per history, or why not.

    The reason is the refusal :func:`rollback` would raise (no history, nothing before,
    moved outside alignboard).
    """
    _check_kind(kind)
    current = _current(experiment_id, kind, name, alias)
    changes = alias_history.history(experiment_id, kind, name, alias)
    try:
        target = alias_history.rollback_target(changes, current, _label(kind, name, alias))
    except ValidationError as exc:
        return RollbackPlan(alias, current, None, str(exc))
    return RollbackPlan(alias, current, target)


def rollback(
    experiment_id: str, kind: str, name: str, alias: str, *, who: str | None = None
) -> AliasChange:
    """Return ``alias`` to the target it had before its current one, per its history
    (v1 -> v5 -> roll back = v1; again: whatever was before v1, or refused).

    Returns:
        The recorded change; ``previous_version`` is the version to restore for an undo.

    Raises:
        ValidationError: the alias is not set, has no history, or nothing came before.
    """
    plan = rollback_plan(experiment_id, kind, name, alias)
    if plan.target is None:
        raise ValidationError(plan.reason or f"{_label(kind, name, alias)} cannot roll back.")
    return set_alias(experiment_id, kind, name, alias, plan.target, action="rollback", who=who)


def alias_history_rows(experiment_id: str, kind: str, name: str) -> list[dict[str, Any]]:
    """The alias history of a judge or prompt as table rows, newest first.

    Each row: ``when`` (local time, seconds), ``action``, ``alias``, ``version``,
    ``previous`` ("unset" when it was not set), ``who`` and ``run`` (a Run explorer link,
    None when the run is unknown). Prompts: the changes made from this experiment.
    """
    _check_kind(kind)
    return [
        {
            "when": when_ms(c.when_ms, seconds=True),
            "action": c.action,
            "alias": c.alias,
            "version": f"v{c.version}",
            "previous": "unset" if c.previous_version is None else f"v{c.previous_version}",
            "who": c.who,
            "run": run_explorer_link(c.run_id) if c.run_id else None,
        }
        for c in alias_history.history(experiment_id, kind, name)
    ]
