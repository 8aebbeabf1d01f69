"""What a prompt optimization run needs, minus the data: :class:`PromptSettings`.

Prompt optimization is the engine's second task (:mod:`core.optimization.prompt_task`):
GEPA (or an MLflow baseline) evolves the application's registered prompt(s), and the
application's outputs are scored by registered judge versions and optional built-in
scorers. The settings name everything by reference and hold the versions the launch
resolved, so a run that starts after an alias moved still optimizes what the user saw.

Like :class:`core.optimization.spec.AlignmentSettings`, the settings are serialisable
(the run's ``settings.json``; the job process reads them back) and never hold secrets.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from core.optimization.stopping import DEFAULT_PATIENCE, policy_of

#: Task kind of prompt optimization (see :data:`core.optimization.task.JUDGE`).
PROMPT = "prompt"
#: Optimizers that optimize prompts: ours, and MLflow's two as baselines.
PROMPT_OPTIMIZERS: tuple[str, ...] = ("gepa", "mlflow-gepa", "metaprompt")
#: Not an optimizer: scores two existing versions of a prompt on the held-out rows (the
#: Versions page's on-demand comparison), through the same engine and record.
COMPARE = "compare"
#: Scorers that need no registered judge: MLflow's built-in Correctness (uses the row's
#: ``expected_facts`` or ``expected_response``) and an exact-match code scorer.
BUILTIN_SCORERS: tuple[str, ...] = ("correctness", "exact_match")
#: How several scorers combine into the one score gepa maximises.
AGGREGATIONS: tuple[str, ...] = ("mean", "min")
#: The alias a new prompt version gets unless the user names another.
DEFAULT_ALIAS = "candidate"

PromptOptimizerName = Literal["gepa", "mlflow-gepa", "metaprompt", "compare"]


@dataclass(frozen=True)
class PromptChoice:
    """One registered prompt, as the user named it and as the launch resolved it."""

    name: str
    """The prompt's name in the Prompt Registry."""
    version: int
    """The version the run optimizes (resolved from ``ref`` at launch)."""
    ref: str
    """What the user typed: ``name``, ``name@3`` or ``name@production``."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class JudgeChoice:
    """One registered judge version used as a scorer."""

    name: str
    """The judge's (criterion's) name."""
    version: int
    """The scorer version (resolved from ``ref`` at launch)."""
    ref: str
    """What the user typed: ``name``, ``name@2`` or ``name@production``."""

    @property
    def label(self) -> str:
        """``name v2``: how pages and feedback name it."""
        return f"{self.name} v{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class PromptSettings:
    """Everything a prompt optimization run needs, minus the data. Never holds secrets."""

    experiment_id: str
    """Experiment holding the run (and the judges)."""
    prompts: tuple[PromptChoice, ...]
    """The prompt(s) optimized together; each is one component of a candidate."""
    dataset: str
    """Where the application inputs come from: ``dataset:NAME``, ``experiment:NAME`` or a
    JSONL/CSV path (:func:`core.io.prompt_data.parse_source`)."""
    task_model: str
    """The application's model, ``provider:/model`` (e.g. ``demo:/app``)."""
    judges: tuple[JudgeChoice, ...]
    """Registered judge versions that score the outputs."""
    optimizer: PromptOptimizerName
    """gepa (ours), mlflow-gepa or metaprompt (MLflow's, as baselines), or ``compare``."""
    reflection_model: str
    """The model that proposes new prompts."""
    scorers: tuple[str, ...] = ()
    """Built-in scorers beside the judges (:data:`BUILTIN_SCORERS`)."""
    mapping: tuple[tuple[str, str], ...] = ()
    """Template variable -> input field path, where it is not the same-named field."""
    dataset_queue: str | None = None
    """``experiment:`` sources: only traces in this review queue."""
    dataset_tags: tuple[tuple[str, str], ...] = ()
    """``experiment:`` sources: only traces with all these tags."""
    task_base_url: str | None = None
    """Base URL of an OpenAI-compatible server serving ``task_model``."""
    task_temperature: float | None = None
    """Sampling temperature of the application's calls (None: the model's default, which
    is 0.8 on llama.cpp's server: the seed's held-out score then varies run to run)."""
    task_max_tokens: int | None = None
    """Most tokens an application reply may have (None: the model's default)."""
    reflection_base_url: str | None = None
    """Base URL of an OpenAI-compatible server serving ``reflection_model``."""
    max_metric_calls: int | None = None
    """Budget in row evaluations (one app call plus its scorer calls); None: about 10x the
    training set."""
    workers: int = 8
    """Model calls in flight at once."""
    seed: int = 0
    """Random seed for the optimizer."""
    minibatch_size: int = 3
    """Rows shown to the reflection model per GEPA iteration."""
    alias: str = DEFAULT_ALIAS
    """Alias the new prompt version gets (promotion to ``production`` is separate)."""
    aggregation: str = "mean"
    """How the scorers' [0, 1] scores combine (:data:`AGGREGATIONS`)."""
    value_maps: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()
    """Per judge name: category -> score in [0, 1] (categorical judges), or ``min``/``max``
    of the scale (numeric judges)."""
    register_if_worse: bool = False
    """Register the best prompt even when its held-out score is below the seed's."""
    register_if_cancelled: bool = False
    """Register the best prompt found so far when the run is cancelled (default: a
    cancelled run registers nothing)."""
    scorer_model: str | None = None
    """Model of the built-in Correctness scorer (default: the first judge's model)."""
    stop_at_score: float | None = 1.0
    """Stop the search once a candidate scores this on the whole validation set (default:
    a perfect 1.0, after which nothing is left to gain there); None searches until the
    budget is spent."""
    stop_patience: int | None = DEFAULT_PATIENCE
    """gepa: stop after this many proposals without improvement of the best validation
    score (:class:`core.optimization.stopping.StopPolicy`); None: no such stop."""
    stop_max_seconds: float | None = None
    """gepa: stop once the search has run this many seconds."""
    stop_max_cost_usd: float | None = None
    """gepa: stop once the run's priced model calls cost this much (USD)."""
    compare_version: int | None = None
    """With optimizer ``compare``: the other version of the prompt, scored against
    ``prompts[0]`` on the held-out rows (nothing is optimized or registered)."""
    kind: str = field(default=PROMPT, init=False)
    """Always ``prompt``."""

    # --- derived ------------------------------------------------------------------------

    @property
    def prompt(self) -> PromptChoice:
        """The first (for one-prompt apps: the only) prompt."""
        return self.prompts[0]

    @property
    def mapping_dict(self) -> dict[str, str]:
        """The explicit variable mapping as a dict."""
        return dict(self.mapping)

    @property
    def tags_dict(self) -> dict[str, str]:
        """The ``experiment:`` source's tag filter as a dict."""
        return dict(self.dataset_tags)

    def value_map(self, judge: str) -> dict[str, float]:
        """The category/scale mapping given for ``judge`` (empty when none)."""
        for name, pairs in self.value_maps:
            if name == judge:
                return dict(pairs)
        return {}

    def scorer_names(self) -> list[str]:
        """Every scorer's display name, in scoring order: judges first, then built-ins."""
        return [j.label for j in self.judges] + list(self.scorers)

    def budget(self, train_size: int) -> int:
        """The metric-call budget in force for a training set of ``train_size``."""
        return self.max_metric_calls or max(10 * train_size, 50)

    @property
    def task_params(self) -> dict[str, Any]:
        """What every application call adds to its request (``temperature``,
        ``max_tokens``), only the ones set."""
        params: dict[str, Any] = {}
        if self.task_temperature is not None:
            params["temperature"] = float(self.task_temperature)
        if self.task_max_tokens is not None:
            params["max_tokens"] = int(self.task_max_tokens)
        return params

    # --- serialisation -----------------------------------------------------------------

    def to_params(self) -> dict[str, str]:
        """Flat MLflow run params (strings; no secrets, no prompt text)."""
        return {
            "task": PROMPT,
            "optimizer": self.optimizer,
            "prompt": ",".join(f"{p.name}@{p.version}" for p in self.prompts),
            "dataset": self.dataset[:250],
            "task_model": self.task_model,
            "judges": ",".join(f"{j.name}@{j.version}" for j in self.judges) or "none",
            "scorers": ",".join(self.scorers) or "none",
            "reflection_model": self.reflection_model,
            "max_metric_calls": str(self.max_metric_calls or "auto"),
            "workers": str(self.workers),
            "seed": str(self.seed),
            "minibatch_size": str(self.minibatch_size),
            "alias": self.alias,
            "aggregation": self.aggregation,
            "register_if_worse": str(self.register_if_worse).lower(),
            "register_if_cancelled": str(self.register_if_cancelled).lower(),
            **policy_of(self).to_params(),
            **({"compare_version": str(self.compare_version)} if self.compare_version else {}),
            # Only when set, so the params of every other run stay as they were.
            **{f"task_{k}": str(v) for k, v in self.task_params.items()},
        }

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the run's settings artifact)."""
        d = asdict(self)
        d["prompts"] = [p.to_dict() for p in self.prompts]
        d["judges"] = [j.to_dict() for j in self.judges]
        return d

    def to_json(self) -> str:
        """Serialise for a job process."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PromptSettings:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d.pop("kind", None)
        pairs = lambda v: tuple((str(a), str(b)) for a, b in v or ())  # noqa: E731
        return cls(
            **{
                **d,
                "prompts": tuple(PromptChoice(**p) for p in d.get("prompts") or ()),
                "judges": tuple(JudgeChoice(**j) for j in d.get("judges") or ()),
                "scorers": tuple(d.get("scorers") or ()),
                "mapping": pairs(d.get("mapping")),
                "dataset_tags": pairs(d.get("dataset_tags")),
                "value_maps": tuple(
                    (str(name), tuple((str(k), float(v)) for k, v in m))
                    for name, m in d.get("value_maps") or ()
                ),
            }
        )


def is_prompt_settings(d: Mapping[str, Any]) -> bool:
    """Whether a settings dict (a run's ``settings.json``) is a prompt optimization's."""
    return d.get("kind") == PROMPT or "prompts" in d
