"""Judge versions: every aligned judge is a new version of a registered MLflow scorer.

The scorer is registered in the experiment under the judge's name, so MLflow's own API
loads any version (``mlflow.genai.scorers.get_scorer(name=..., experiment_id=...,
version=...)``) in a process that knows nothing about alignboard.

MLflow scorer versions carry no metadata and no aliases, so alignboard keeps them as
experiment tags (readable in MLflow's UI too), small JSON well under MLflow's 20,000
character limit for an experiment tag value:

* ``alignboard.judge.<name>.v<N>``: ``{"run_id", "optimizer", "test": {metric: number},
  "created_ms", "base_url"}`` (``base_url``: the OpenAI-compatible server the judge's model
  is served by, only when it has one; MLflow does not serialize a judge's base URL, so
  without it a loaded judge would go to the provider's default endpoint);
* ``alignboard.judge.<name>.alias.<alias>``: the version number the alias points at;
* the alignment run gets the tag ``alignboard.judge_version`` = ``<N>`` (and
  ``alignboard.judge_name``).

A registered MemAlign judge stores only the ids of its episodic traces and re-embeds them
on first use: those traces must stay in the store.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from core.errors import NotFoundError, ValidationError
from core.optimization import alias_history
from core.store import config

TAG_PREFIX = "alignboard.judge."
RUN_VERSION_TAG = "alignboard.judge_version"
RUN_NAME_TAG = "alignboard.judge_name"
#: MLflow's limit for an experiment tag value; metadata must stay well below it.
MAX_TAG_CHARS = 20_000
#: Longest metadata JSON written (test metrics beyond it are dropped, largest first).
MAX_METADATA_CHARS = 2_000
#: What an alias may look like (e.g. ``production``); version_compare checks the same.
ALIAS_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class JudgeVersion:
    """One registered version of a judge."""

    name: str
    """The judge's (and criterion's) name."""
    version: int
    """MLflow's scorer version number."""
    instructions: str
    """The judge's instructions (for MemAlign: base instructions plus guidelines)."""
    run_id: str | None
    """The alignment run that produced it, if any."""
    optimizer: str | None
    """gepa, memalign, mlflow-gepa, simba; None when registered outside alignboard."""
    test_metrics: dict[str, float] = field(default_factory=dict)
    """Held-out (test split) metrics recorded at registration, e.g. accuracy, kappa."""
    created_ms: int | None = None
    """Registration time, epoch milliseconds (None outside alignboard)."""
    aliases: tuple[str, ...] = ()
    """Aliases pointing at this version."""
    is_memalign: bool = False
    """True for a MemAlign judge (needs its episodic traces in the store)."""
    base_url: str | None = None
    """The OpenAI-compatible server of the judge's model, when registered with one; every
    scoring of the version goes there (None: the provider's own endpoint)."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        d = asdict(self)
        d["aliases"] = list(self.aliases)
        return d


def version_tag(name: str, version: int) -> str:
    """Experiment tag key holding a version's metadata."""
    return f"{TAG_PREFIX}{name}.v{int(version)}"


def alias_tag(name: str, alias: str) -> str:
    """Experiment tag key holding an alias."""
    return f"{TAG_PREFIX}{name}.alias.{alias}"


def _client():
    import mlflow

    config.configure()
    return mlflow.MlflowClient()


def _tags(experiment_id: str) -> dict[str, str]:
    return dict(_client().get_experiment(str(experiment_id)).tags)


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """Scalar, finite metrics only (a confusion matrix belongs in the run, not a tag)."""
    out = {}
    for k, v in (metrics or {}).items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if math.isfinite(v):
            out[str(k)] = round(float(v), 6)
    return out


def storable_base_url(base_url: str | None) -> str | None:
    """``base_url`` as it may be stored with a version: without user info (``user:pass@``)
    or query parameters, where credentials could hide; keys come from the environment."""
    from urllib.parse import urlsplit, urlunsplit

    if not base_url or not base_url.strip():
        return None
    parts = urlsplit(base_url.strip())
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", "")) or None


def _metadata(
    run_id: str | None,
    optimizer: str | None,
    test: dict[str, float],
    base_url: str | None = None,
) -> str:
    kept = dict(test)
    meta: dict[str, Any] = {"run_id": run_id, "optimizer": optimizer, "test": kept}
    meta["created_ms"] = int(time.time() * 1000)
    if url := storable_base_url(base_url):
        meta["base_url"] = url
    text = json.dumps(meta, separators=(",", ":"), sort_keys=True)
    # Keep the tag compact: drop the longest-named metrics until it fits.
    while len(text) > MAX_METADATA_CHARS and kept:
        kept.pop(max(kept, key=len))
        text = json.dumps(meta, separators=(",", ":"), sort_keys=True)
    return text


def _optimizer_of(judge: Any, run_id: str | None) -> str | None:
    if run_id:
        try:
            found = _client().get_run(run_id).data.params.get("optimizer")
        except Exception:
            found = None
        if found:
            return found
    return "memalign" if _is_memalign(judge) else None


def _is_memalign(scorer: Any) -> bool:
    from mlflow.genai.scorers.base import ScorerKind

    return getattr(scorer, "kind", None) == ScorerKind.MEMORY_AUGMENTED


#: What the store says when two jobs create the same scorer at once (sqlite, PostgreSQL).
_CREATE_RACE = ("UNIQUE constraint failed", "IntegrityError", "duplicate key value")


def _register_once_created(judge: Any, experiment_id: str) -> Any:
    """``judge.register``, tried again when another job created the scorer a moment
    before: its first version's insert then collides with the other's scorer row, and a
    second try adds a version to the scorer that now exists."""
    for attempt in range(3):
        try:
            return judge.register(name=judge.name, experiment_id=experiment_id)
        except Exception as exc:
            if attempt == 2 or not any(m in str(exc) for m in _CREATE_RACE):
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def register_version(
    judge: Any,
    experiment_id: str,
    *,
    run_id: str | None,
    test_metrics: dict[str, Any],
    optimizer: str | None = None,
    base_url: str | None = None,
) -> int:
    """Register ``judge`` as a new version of the scorer named after it.

    Args:
        judge: An MLflow judge (``make_judge`` result or MemoryAugmentedJudge).
        experiment_id: The experiment holding the traces and labels.
        run_id: The alignment run that produced it (tagged with the version), or None.
        test_metrics: Held-out metrics; scalar numbers are kept (e.g. accuracy, kappa).
        optimizer: Which optimizer produced it (default: the run's ``optimizer`` param,
            else ``memalign`` for a MemAlign judge).
        base_url: The OpenAI-compatible server of the judge's model (stored with the
            version, without credentials: see :func:`storable_base_url`), or None.

    Returns:
        The new version number.
    """
    config.configure()
    registered = _register_once_created(judge, str(experiment_id))
    version = registered.scorer_version
    if version is None:
        raise RuntimeError(f"MLflow registered {judge.name!r} without a version number.")
    meta = _metadata(
        run_id, optimizer or _optimizer_of(judge, run_id), _numbers(test_metrics), base_url
    )
    client = _client()
    client.set_experiment_tag(str(experiment_id), version_tag(judge.name, version), meta)
    if run_id:
        client.set_tag(run_id, RUN_VERSION_TAG, str(version))
        client.set_tag(run_id, RUN_NAME_TAG, judge.name)
    return int(version)


def _aliases(tags: dict[str, str], name: str) -> dict[str, int]:
    prefix = alias_tag(name, "")
    out = {}
    for key, value in tags.items():
        if key.startswith(prefix) and value.strip().isdigit():
            out[key[len(prefix) :]] = int(value)
    return out


def _version_from(scorer: Any, version: int, name: str, tags: dict[str, str]) -> JudgeVersion:
    try:
        meta = json.loads(tags.get(version_tag(name, version), "{}"))
    except ValueError:
        meta = {}
    aliases = tuple(sorted(a for a, v in _aliases(tags, name).items() if v == version))
    return JudgeVersion(
        name=name,
        version=int(version),
        instructions=str(getattr(scorer, "instructions", "") or ""),
        run_id=meta.get("run_id"),
        optimizer=meta.get("optimizer"),
        test_metrics=dict(meta.get("test") or {}),
        created_ms=meta.get("created_ms"),
        aliases=aliases,
        is_memalign=_is_memalign(scorer),
        base_url=meta.get("base_url") or None,
    )


def list_versions(experiment_id: str, name: str) -> list[JudgeVersion]:
    """Every registered version of judge ``name``, oldest first (empty if none)."""
    from mlflow.exceptions import MlflowException
    from mlflow.genai.scorers.registry import list_scorer_versions

    config.configure()
    try:
        found = list_scorer_versions(name=name, experiment_id=str(experiment_id))
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return []
        raise
    tags = _tags(experiment_id)
    return sorted((_version_from(s, v, name, tags) for s, v in found), key=lambda jv: jv.version)


def load_version(experiment_id: str, name: str, version: int | None = None) -> Any:
    """The registered judge as MLflow loads it (``get_scorer``); latest when no version.

    Raises:
        NotFoundError: no such judge or version.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.genai.scorers import get_scorer

    config.configure()
    try:
        return get_scorer(name=name, experiment_id=str(experiment_id), version=version)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            which = f"version {version} of " if version is not None else ""
            raise NotFoundError(
                f"No {which}judge {name!r} is registered in experiment {experiment_id}. "
                "Run an alignment to register one."
            ) from exc
        raise


def _check_version(experiment_id: str, name: str, version: int) -> JudgeVersion:
    found = {jv.version: jv for jv in list_versions(experiment_id, name)}
    if int(version) not in found:
        raise NotFoundError(
            f"Judge {name!r} has no version {version}; registered versions: "
            f"{sorted(found) or 'none'}."
        )
    return found[int(version)]


def set_alias(
    experiment_id: str,
    name: str,
    alias: str,
    version: int,
    *,
    action: str = "set",
    who: str | None = None,
) -> alias_history.AliasChange:
    """Point ``alias`` (e.g. ``production``) at ``version`` of judge ``name``, and record the
    change in the alias history (:mod:`core.optimization.alias_history`): every judge alias
    write goes through here. The alias is an experiment tag because MLflow 3.17's scorer
    registry has no aliases.

    Args:
        experiment_id: The judge's experiment.
        name: The judge's name.
        alias: A simple word, e.g. ``production``.
        version: The version it moves to.
        action: What the history calls it: ``set``, ``promote``, ``rollback``, ``undo``.
        who: Who moved it (default: the process's user).

    Returns:
        The recorded change (``previous_version`` is where it pointed before, for an undo).

    Raises:
        ValidationError: alias is not a simple word (letters, digits, ``_``, ``-``).
        NotFoundError: no such version.
    """
    if not isinstance(alias, str) or not ALIAS_PATTERN.match(alias):
        raise ValidationError(
            f"Alias {alias!r} must start with a letter and use only letters, digits, _ or -."
        )
    target = _check_version(experiment_id, name, version)
    previous = get_alias(experiment_id, name, alias)
    _client().set_experiment_tag(str(experiment_id), alias_tag(name, alias), str(int(version)))
    return alias_history.record_change(
        str(experiment_id),
        "judge",
        name,
        alias,
        int(version),
        previous,
        action,
        who=who,
        run_id=target.run_id,
    )


def get_alias(experiment_id: str, name: str, alias: str) -> int | None:
    """The version ``alias`` points at, or None when the alias is not set."""
    return _aliases(_tags(experiment_id), name).get(alias)


def rollback(
    experiment_id: str, name: str, alias: str, *, who: str | None = None
) -> alias_history.AliasChange:
    """Return ``alias`` to the target it had before its current one, per its history.

    v1 -> v5 -> roll back = v1; rolling back again goes to whatever was before v1.

    Returns:
        The recorded change (``previous_version``: where it pointed, for an undo).

    Raises:
        ValidationError: the alias is unset, has no history, or nothing came before
            (:func:`core.optimization.alias_history.rollback_target` says which).
    """
    changes = alias_history.history(str(experiment_id), "judge", name, alias)
    target = alias_history.rollback_target(
        changes, get_alias(experiment_id, name, alias), f"Alias {alias!r} of judge {name!r}"
    )
    return set_alias(experiment_id, name, alias, target, action="rollback", who=who)


def list_judges(experiment_id: str) -> dict[str, int]:
    """Registered judges in the experiment: name -> latest version."""
    from mlflow.genai.scorers.registry import list_scorers

    config.configure()
    out: dict[str, int] = {}
    for scorer in list_scorers(experiment_id=str(experiment_id)):
        version = scorer.scorer_version
        if version is not None:
            out[scorer.name] = max(out.get(scorer.name, 0), int(version))
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class JudgeRegistrar:
    """The judge task's :class:`core.optimization.task.Registrar`: the aligned judge becomes
    a new version of its scorer (:func:`register_version`), and the run is tagged with it."""

    settings: Any
    """The run's :class:`core.optimization.spec.AlignmentSettings`."""

    #: Run tag: the structured output the judge's server accepted (``json_schema``,
    #: ``json_object`` or ``text``), set for judges on a base URL.
    RESPONSE_FORMAT_TAG: ClassVar[str] = "alignboard.judge_response_format"

    def register(
        self,
        outcome: Any,
        *,
        recorder: Any,
        verdict: Any,
        test_metrics: Mapping[str, float],
    ) -> int | None:
        """Register the outcome's judge (built from its instructions when the runner gave
        none) and tag the run with the new version.

        Returns:
            The new version number, or None when the run kept the seed and a version with
            its instructions is registered already (a copy would only add a version nobody
            aligned).
        """
        from core.optimization import recorder as rec

        spec = self.settings.judge
        if getattr(verdict, "same_as_seed", False) and any(
            v.instructions == spec.instructions and not v.is_memalign
            for v in list_versions(self.settings.experiment_id, spec.name)
        ):
            return None
        judge = outcome.judge
        if judge is None:
            from core.optimization.mlflow_judge import seed_judge

            judge = seed_judge(spec.with_instructions(outcome.instructions))
        version = register_version(
            judge,
            self.settings.experiment_id,
            run_id=recorder.run_id,
            test_metrics=dict(test_metrics),
            optimizer=self.settings.optimizer,
            base_url=spec.base_url,
        )
        tags: dict[str, Any] = {rec.TAG_JUDGE_VERSION: version}
        if spec.base_url:
            from core.models.structured import endpoint_mode
            from core.models.uris import parse_model

            # Which structured output the judge's server took in this run (json_schema,
            # or what it fell back to), for whoever reads the run.
            model = parse_model(spec.model, spec.base_url)
            tags[self.RESPONSE_FORMAT_TAG] = endpoint_mode(model.model, model.base_url)
        recorder.set_tags(tags)
        recorder.log_metrics({"judge_version": version}, step=outcome.iterations)
        return version
