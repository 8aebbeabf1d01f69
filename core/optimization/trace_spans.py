"""What a ``{{ trace }}`` judge needs from the store, and what reflection shows of a trace.

MLflow's agent-as-judge: a judge whose instructions use ``{{ trace }}`` is called with
``trace=<mlflow Trace>`` and reads the trace through MLflow's judge tools (``list_spans``,
``get_span``, ``search_trace_regex``...) in a tool-calling loop; the placeholder itself is
never replaced in the prompt. This module holds the three things alignboard adds around it:

* :func:`uses_trace`: whether a judge (or instructions text) is such a judge;
* :class:`TraceCache`: traces loaded once per trace id, in batches
  (``TracingClient.batch_get_traces``), bounded (an LRU), and stored as the judge may see
  them (:func:`judge_view`: without any ``Feedback``, so the human labels and earlier
  judge verdicts on a trace cannot reach the judge through ``get_trace_info`` or
  ``search_trace_regex``; expectations stay, as MLflow would pass them);
* :func:`spans_text`: a compact, bounded text of a trace's non-root spans (TOOL and
  RETRIEVER spans first) for GEPA's reflection records ("Trace spans").

Optimization may not import ``core.views`` (the Label page's span tree lives there), so
the text here is its own small function.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

#: The template variable of MLflow's agent-as-judge.
TRACE_VARIABLE = "{{ trace }}"
#: Traces kept by a :class:`TraceCache` by default (a few KB each for agent traces).
DEFAULT_TRACE_ENTRIES = 2048
#: Traces asked of the store per call.
FETCH_BATCH = 100
#: Longest "Trace spans" text shown to the reflection model per example.
SPANS_TEXT_CHARS = 1500
#: Longest inputs or outputs text per span in that text.
SPAN_VALUE_CHARS = 240
#: Span types shown first: where an agent's evidence usually is.
EVIDENCE_TYPES = ("TOOL", "RETRIEVER")

_TRACE = re.compile(r"\{\{\s*trace\s*\}\}")


def uses_trace(judge_or_text: Any) -> bool:
    """Whether a judge (its instructions, or a MemAlign judge's base judge's) or a text
    uses ``{{ trace }}`` (spacing inside the braces does not matter)."""
    if isinstance(judge_or_text, str):
        return bool(_TRACE.search(judge_or_text))
    text = getattr(judge_or_text, "instructions", None)
    if isinstance(text, str) and _TRACE.search(text):
        return True
    base = getattr(judge_or_text, "_base_judge", None)  # MemAlign's MemoryAugmentedJudge
    return base is not None and uses_trace(base)


def judge_view(trace: Any) -> Any:
    """A copy of ``trace`` as a judge may see it: no ``Feedback`` (labels, verdicts).

    The spans are shared with ``trace`` (nothing reads them for writing); the info is a
    shallow copy, so the stored trace and its assessments are untouched.
    """
    from mlflow.entities import Feedback, Trace

    info = copy.copy(trace.info)
    info.assessments = [a for a in (trace.info.assessments or []) if not isinstance(a, Feedback)]
    return Trace(info=info, data=trace.data)


class TraceCache:
    """Thread-safe LRU of traces by id, as a judge sees them (:func:`judge_view`)."""

    def __init__(self, max_entries: int = DEFAULT_TRACE_ENTRIES, client: Any = None) -> None:
        """Create an empty cache.

        Args:
            max_entries: Traces kept at most (least recently used go first).
            client: A ``TracingClient`` (default: one on the configured store, made on
                first load).
        """
        self.max_entries = max(1, int(max_entries))
        self._client = client
        self._lock = threading.Lock()
        self._data: OrderedDict[str, Any] = OrderedDict()
        self.loads = 0
        """Store calls made (one per batch)."""
        self.loaded = 0
        """Traces loaded from the store."""

    def _tracing_client(self) -> Any:
        if self._client is None:
            from mlflow.tracing.client import TracingClient

            from core.store import config

            config.configure()
            self._client = TracingClient()
        return self._client

    def _put(self, trace_id: str, trace: Any) -> None:
        self._data[trace_id] = trace
        self._data.move_to_end(trace_id)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def put(self, trace: Any) -> None:
        """Add a trace the caller already holds (stored as its :func:`judge_view`)."""
        with self._lock:
            self._put(trace.info.trace_id, judge_view(trace))

    def get_many(self, trace_ids: Iterable[str]) -> dict[str, Any]:
        """The traces of ``trace_ids`` (those in the store), loading the missing ones in
        batches of :data:`FETCH_BATCH`.

        Returns:
            trace id -> trace (a judge view); ids not in the store are absent.
        """
        ids = list(dict.fromkeys(trace_ids))
        out: dict[str, Any] = {}
        with self._lock:
            for tid in ids:
                if tid in self._data:
                    self._data.move_to_end(tid)
                    out[tid] = self._data[tid]
        missing = [tid for tid in ids if tid not in out]
        for i in range(0, len(missing), FETCH_BATCH):
            batch = self._tracing_client().batch_get_traces(missing[i : i + FETCH_BATCH])
            with self._lock:
                self.loads += 1
                for trace in batch:
                    view = judge_view(trace)
                    tid = trace.info.trace_id
                    self.loaded += 1
                    self._put(tid, view)
                    out[tid] = view
        return out

    def get(self, trace_id: str) -> Any | None:
        """One trace (loaded if needed), or None when it is not in the store."""
        return self.get_many([trace_id]).get(trace_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def stats(self) -> dict[str, int]:
        """Store calls, traces loaded and traces held."""
        with self._lock:
            return {"loads": self.loads, "loaded": self.loaded, "entries": len(self._data)}


def _value_text(value: Any, limit: int) -> str:
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def span_type(span: Any) -> str:
    """A span's type as text (``TOOL``, ``LLM``...; ``UNKNOWN`` when it has none)."""
    kind = getattr(span, "span_type", None)
    return str(kind or "UNKNOWN")


def spans_text(
    trace: Any, max_chars: int = SPANS_TEXT_CHARS, value_chars: int = SPAN_VALUE_CHARS
) -> str:
    """A compact text of a trace's non-root spans for a reflection model.

    One line per span, ``name (TYPE): inputs ... -> outputs ...``, TOOL and RETRIEVER
    spans first (then the others in trace order), each value cut to ``value_chars`` and
    the whole to ``max_chars`` (a last line says how many spans were left out).

    Returns:
        The text, or ``(no spans besides the root)`` for a single-span trace.
    """
    spans = list(getattr(getattr(trace, "data", None), "spans", None) or [])
    inner = [s for s in spans if getattr(s, "parent_id", None) is not None]
    if not inner:
        return "(no spans besides the root)"
    ordered = [s for s in inner if span_type(s) in EVIDENCE_TYPES] + [
        s for s in inner if span_type(s) not in EVIDENCE_TYPES
    ]
    lines: list[str] = []
    used = 0
    for i, span in enumerate(ordered):
        line = (
            f"- {span.name} ({span_type(span)}): inputs {_value_text(span.inputs, value_chars)}"
            f" -> outputs {_value_text(span.outputs, value_chars)}"
        )
        left = len(ordered) - i
        if lines and used + len(line) + 1 > max_chars:
            lines.append(f"- ... {left} more span(s) not shown")
            break
        if len(line) > max_chars:
            line = line[: max_chars - 1] + "…"
        lines.append(line)
        used += len(line) + 1
    return "\n".join(lines)
