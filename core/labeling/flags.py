"""Flags: a reviewer marks a trace "unsure" or "broken trace" with a comment, instead of a label.

A flag is a trace tag, one per reviewer and criterion, so it never counts as a label
(labels are HUMAN Feedback; consolidation, agreement and alignment read only those):

    alignboard.flag.<criterion>.<sha1(reviewer)[:12]> = {"reviewer", "criterion", "kind",
                                                          "comment", "time_ms"}

The reviewer's name is hashed in the key because tag keys allow few characters; the
name itself is in the value. Clearing a flag deletes the tag. A flagged trace is skipped
by "next unlabeled" for that reviewer and shown to the lead (the Adjudicate page).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from core.errors import ValidationError

FlagKind = Literal["unsure", "broken"]
FLAG_KINDS: tuple[str, ...] = get_args(FlagKind)
FLAG_TEXT = {"unsure": "unsure", "broken": "broken trace"}
TAG_PREFIX = "alignboard.flag."
MAX_COMMENT_CHARS = 5000


@dataclass(frozen=True)
class Flag:
    """One reviewer's flag on one trace for one criterion."""

    trace_id: str
    """The flagged trace."""
    criterion: str
    """The criterion the reviewer was labeling."""
    reviewer: str
    """Who flagged it."""
    kind: FlagKind
    """``unsure`` or ``broken`` (a broken trace: empty, truncated, wrong data)."""
    comment: str
    """Why, in the reviewer's words (may be empty for ``unsure``)."""
    time_ms: int
    """When, epoch milliseconds."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def flag_key(criterion: str, reviewer: str) -> str:
    """The trace tag key of ``reviewer``'s flag for ``criterion``."""
    digest = hashlib.sha1(reviewer.encode("utf-8")).hexdigest()[:12]
    return f"{TAG_PREFIX}{criterion}.{digest}"


def parse_flag(trace_id: str, key: str, raw: str) -> Flag | None:
    """The flag stored under tag ``key`` (None for another tag or an unreadable value)."""
    if not key.startswith(TAG_PREFIX):
        return None
    try:
        d = json.loads(raw)
        kind = d["kind"]
        if kind not in FLAG_KINDS:
            return None
        return Flag(
            trace_id=trace_id,
            criterion=str(d["criterion"]),
            reviewer=str(d["reviewer"]),
            kind=kind,
            comment=str(d.get("comment") or ""),
            time_ms=int(d.get("time_ms") or 0),
        )
    except (ValueError, KeyError, TypeError):
        return None


def flags_of(trace_id: str, tags: dict[str, str]) -> list[Flag]:
    """Every flag among a trace's tags (from a ``TraceInfo.tags``), oldest first."""
    out = [f for k, v in tags.items() if (f := parse_flag(trace_id, k, v)) is not None]
    return sorted(out, key=lambda f: (f.time_ms, f.reviewer))


def _client() -> Any:
    from mlflow.tracking import MlflowClient

    from core.store import config

    config.configure()
    return MlflowClient()


def set_flag(
    trace_id: str, criterion: str, reviewer: str, kind: str, comment: str | None = None
) -> Flag:
    """Flag ``trace_id`` for ``criterion`` as ``reviewer`` (replaces their earlier flag).

    Raises:
        ValidationError: an unknown kind, no reviewer, a ``broken`` flag without a comment
            or a comment over the limit; nothing is written.
    """
    if kind not in FLAG_KINDS:
        raise ValidationError(f"Unknown flag {kind!r}; use one of {', '.join(FLAG_KINDS)}.")
    reviewer = (reviewer or "").strip()
    if not reviewer:
        raise ValidationError("Say who you are before flagging a trace.")
    text = (comment or "").strip()
    if kind == "broken" and not text:
        raise ValidationError("Say what is broken about this trace (a short comment).")
    if len(text) > MAX_COMMENT_CHARS:
        raise ValidationError(f"A flag comment is at most {MAX_COMMENT_CHARS} characters.")
    flag = Flag(trace_id, criterion, reviewer, kind, text, int(time.time() * 1000))  # type: ignore[arg-type]
    payload = {k: v for k, v in flag.to_dict().items() if k != "trace_id"}
    _client().set_trace_tag(trace_id, flag_key(criterion, reviewer), json.dumps(payload))
    return flag


def clear_flag(trace_id: str, criterion: str, reviewer: str) -> bool:
    """Remove ``reviewer``'s flag for ``criterion`` from the trace; False if there was none."""
    from mlflow.tracing.client import TracingClient

    client = _client()
    key = flag_key(criterion, reviewer)
    info = TracingClient().get_trace_info(trace_id)
    if key not in (info.tags or {}):
        return False
    client.delete_trace_tag(trace_id, key)
    return True


def list_flags(
    experiment_id: str,
    criterion: str | None = None,
    trace_ids: Iterable[str] | None = None,
) -> list[Flag]:
    """Every flag in the experiment (optionally of one criterion or among ``trace_ids``).

    Newest first, as the lead reads them.
    """
    from core.labeling.labels import iter_trace_infos

    _client()
    out: list[Flag] = []
    for info in iter_trace_infos(experiment_id, trace_ids=trace_ids):
        for f in flags_of(info.trace_id, dict(info.tags or {})):
            if criterion is None or f.criterion == criterion:
                out.append(f)
    return sorted(out, key=lambda f: (-f.time_ms, f.trace_id, f.reviewer))
