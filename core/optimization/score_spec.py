"""What a bulk scoring job is asked to do: which judge version, on which traces.

Standard library only: :mod:`core.optimization.jobs` reads these names on its status path,
which must not load MLflow (see the comments there about ``KIND_PROMPT``).

- :class:`TraceSelection`: which traces (unlabeled, all, a queue, labeled in a split), narrowed
  by request time, tags and a limit;
- :class:`ScoreSettings`: the experiment, the judge reference as typed and the version it
  resolved to, the selection, parallelism. Serialisable (the run's ``settings.json``), never
  secrets. Built by :func:`core.optimization.bulk_scoring.build_score_settings`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

#: Value of the run tag ``alignboard.kind`` on bulk scoring runs.
KIND_SCORE = "bulk_scoring"
#: ``ScoreSettings.kind`` in ``settings.json`` (how a run's settings are told apart).
SCORE = "score"
#: Run tag with the judge version a scoring run writes verdicts for (not
#: ``alignboard.judge_version``: that one means "this run registered version N").
TAG_SCORE_VERSION = "alignboard.score_version"
#: Metadata keys on every verdict a bulk scoring run writes (strings).
META_RUN_ID = "alignboard.run_id"
META_JUDGE_VERSION = "alignboard.judge_version"
#: Per-batch metrics of a scoring run (cumulative; step = batch index).
METRIC_KEYS = ("n_scored", "n_skipped", "n_failed", "n_done", "n_total")

SelectionMode = Literal["unlabeled", "all", "queue", "labeled"]
MODES: tuple[str, ...] = ("unlabeled", "all", "queue", "labeled")
SPLITS: tuple[str, ...] = ("all", "train", "val", "test")


def _day(ms: int) -> str:
    stamp = datetime.fromtimestamp(ms / 1000, tz=UTC)
    if stamp.hour == stamp.minute == stamp.second == 0 and not stamp.microsecond:
        return stamp.strftime("%Y-%m-%d")
    return stamp.strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class TraceSelection:
    """Which traces a scoring job judges."""

    mode: SelectionMode = "unlabeled"
    """unlabeled (no HUMAN label for the judge's criterion), all, queue, or labeled."""
    queue: str | None = None
    """The review queue's name (mode ``queue``)."""
    since_ms: int | None = None
    """Only traces requested at or after this time (epoch ms, inclusive)."""
    until_ms: int | None = None
    """Only traces requested before this time (epoch ms, exclusive)."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Only traces carrying every one of these tags with these values."""
    split: str = "all"
    """Mode ``labeled``: all, train, val or test (the deterministic split of each trace)."""
    limit: int | None = None
    """At most this many traces (the oldest selected)."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        d = asdict(self)
        d["tags"] = dict(self.tags)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> TraceSelection:
        """Inverse of :meth:`to_dict` (missing fields take their defaults)."""
        d = dict(d or {})
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        known["tags"] = {str(k): str(v) for k, v in (known.get("tags") or {}).items()}
        return cls(**known)

    def describe(self) -> str:
        """One line for pages and logs, e.g. ``unlabeled traces since 2026-01-01, tag env=prod``."""
        if self.mode == "queue":
            text = f"traces in queue {self.queue!r}"
        elif self.mode == "labeled":
            text = "labeled traces" + ("" if self.split == "all" else f" ({self.split} split)")
        else:
            text = f"{self.mode} traces"
        if self.since_ms is not None:
            text += f" since {_day(self.since_ms)}"
        if self.until_ms is not None:
            text += f" until {_day(self.until_ms)}"
        if self.tags:
            text += ", tag " + ", ".join(f"{k}={v}" for k, v in sorted(self.tags.items()))
        if self.limit is not None:
            text += f", at most {self.limit}"
        return text


@dataclass(frozen=True)
class ScoreSettings:
    """Everything a bulk scoring run needs, minus the data. Never holds secrets."""

    experiment_id: str
    """Experiment holding the traces (and the run)."""
    judge_name: str
    """The judge (= criterion) name; its verdicts are feedback of this name."""
    judge_ref: str
    """The reference as typed: ``support_quality``, ``support_quality@3`` or
    ``support_quality@production``."""
    judge_version: int
    """The registered version ``judge_ref`` resolved to when the settings were built."""
    selection: TraceSelection = field(default_factory=TraceSelection)
    """Which traces."""
    workers: int = 8
    """Judge calls in flight at once."""
    batch_size: int = 50
    """Traces per batch: metrics, heartbeat and the cancel check come once per batch."""
    kind: str = SCORE
    """Always ``score``: tells these settings from an alignment's or a prompt run's."""

    def to_params(self) -> dict[str, str]:
        """Flat MLflow run params (strings; no secrets)."""
        return {
            "judge_name": self.judge_name,
            "judge_ref": self.judge_ref,
            "judge_version": str(self.judge_version),
            "selection": self.selection.describe()[:500],
            "selection_mode": self.selection.mode,
            "workers": str(self.workers),
            "batch_size": str(self.batch_size),
        }

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the run's settings artifact)."""
        d = asdict(self)
        d["selection"] = self.selection.to_dict()
        return d

    def to_json(self) -> str:
        """Serialise for a job process."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ScoreSettings:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        known["selection"] = TraceSelection.from_dict(d.get("selection"))
        known["judge_version"] = int(known["judge_version"])
        known["experiment_id"] = str(known["experiment_id"])
        return cls(**known)

    @property
    def label(self) -> str:
        """``support_quality v3``: how pages name the version scored."""
        return f"{self.judge_name} v{self.judge_version}"


def is_score_settings(d: Mapping[str, Any]) -> bool:
    """Whether a settings dict (a run's ``settings.json``) is a bulk scoring run's."""
    return d.get("kind") == SCORE


def run_name(settings: ScoreSettings) -> str:
    """The scoring run's name: ``score <judge> v<N>``."""
    return f"score {settings.judge_name} v{settings.judge_version}"
