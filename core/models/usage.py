"""Counting every LLM call this process makes: calls, failures, tokens, cost, concurrency.

MLflow judges, dspy, gepa and :func:`core.models.completion.complete` mostly reach models
through LiteLLM, so one LiteLLM ``CustomLogger`` registered in ``litellm.callbacks`` sees
them, the demo provider included (checked: LiteLLM fires ``log_success_event`` and
``log_failure_event`` for custom providers, though not ``log_pre_api_call``).

The gaps, and how they are covered:

* MLflow sends a judge whose provider its gateway knows (openai, anthropic...) through
  its own HTTP client, bypassing LiteLLM; :class:`core.optimization.judging.JudgeEvaluator`
  counts those calls itself through :func:`record_call` (it evaluates judges on an
  OpenAI-compatible ``base_url`` through LiteLLM, so those are counted here).
* dspy 3.4 (inside MLflow's optimizers) calls some providers' models (openai...) with its
  own client, unseen, unless their endpoint is set in the environment, as
  :mod:`core.models.endpoints` does for MemAlign on an OpenAI-compatible server; then it
  goes through LiteLLM. The OpenAI client under LiteLLM also retries embedding calls by
  itself (up to twice), and those retries are not seen either.
* LiteLLM logs a synchronous call's success from a background thread, a few milliseconds
  after the call returned; :func:`usage_snapshot` waits (briefly) for the count to settle.

"Max calls in flight" is computed from the start and end times LiteLLM reports, so it
needs no pre-call hook.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

# Intervals kept for the in-flight computation; older calls are forgotten.
_MAX_INTERVALS = 100_000
_MAX_SEEN_IDS = 50_000


@dataclass(frozen=True)
class UsageSnapshot:
    """LLM usage counters, since process start or over a window (see :func:`track_usage`)."""

    calls: int = 0
    """LLM requests that completed or failed (each retry attempt counts)."""
    failures: int = 0
    """Requests that failed."""
    prompt_tokens: int = 0
    """Prompt tokens reported by the providers."""
    completion_tokens: int = 0
    """Completion tokens reported by the providers."""
    cost_usd: float = 0.0
    """Cost of the calls LiteLLM could price (see ``priced_calls``)."""
    priced_calls: int = 0
    """Successful calls with a known cost; when 0 the cost is unknown, not zero."""
    max_in_flight: int = 0
    """Most requests that ever ran at the same time."""
    call_seconds: float = 0.0
    """Seconds the successful requests took, summed (their latency, for the estimates)."""

    @property
    def cost_known(self) -> bool:
        """Whether any call had a price (demo and self-hosted models have none)."""
        return self.priced_calls > 0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


class _Ledger:
    """Thread-safe counters fed by the LiteLLM callback and by :func:`record_call`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = self.failures = self.prompt_tokens = self.completion_tokens = 0
        self.priced_calls = 0
        self.cost = 0.0
        self.call_seconds = 0.0
        self.intervals: deque[tuple[float, float]] = deque(maxlen=_MAX_INTERVALS)
        # LiteLLM may report one call through both its sync and async hooks.
        self.seen: OrderedDict[str, None] = OrderedDict()

    def add(
        self,
        *,
        ok: bool,
        start: float,
        end: float,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost: float | None = None,
        call_id: str | None = None,
    ) -> None:
        with self.lock:
            if call_id:
                if call_id in self.seen:
                    return
                self.seen[call_id] = None
                while len(self.seen) > _MAX_SEEN_IDS:
                    self.seen.popitem(last=False)
            self.calls += 1
            self.failures += 0 if ok else 1
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            if ok and cost is not None:
                self.cost += cost
                self.priced_calls += 1
            if ok:
                self.call_seconds += max(end - start, 0.0)
            self.intervals.append((start, max(start, end)))

    def snapshot(self, since: float | None = None) -> UsageSnapshot:
        with self.lock:
            intervals = list(self.intervals)
            snap = UsageSnapshot(
                self.calls,
                self.failures,
                self.prompt_tokens,
                self.completion_tokens,
                self.cost,
                self.priced_calls,
                call_seconds=self.call_seconds,
            )
        if since is not None:
            intervals = [iv for iv in intervals if iv[0] >= since]
        return _with_in_flight(snap, intervals)


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals]
    # Ends sort before starts at the same instant: back-to-back calls do not overlap.
    events.sort(key=lambda x: (x[0], x[1]))
    best = current = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best


def _with_in_flight(snap: UsageSnapshot, intervals: list[tuple[float, float]]) -> UsageSnapshot:
    return UsageSnapshot(**{**snap.to_dict(), "max_in_flight": _max_overlap(intervals)})


_LEDGER = _Ledger()
_install_lock = threading.Lock()
_installed = False


def _seconds(t: Any) -> float:
    if isinstance(t, datetime):
        return t.timestamp()
    if isinstance(t, int | float):
        return float(t)
    return time.time()


def _tokens(response: Any) -> tuple[int, int]:
    usage = getattr(response, "usage", None)
    if usage is None and isinstance(response, dict):
        usage = response.get("usage")
    if usage is None:
        return 0, 0
    get = usage.get if isinstance(usage, dict) else lambda k: getattr(usage, k, None)
    return int(get("prompt_tokens") or 0), int(get("completion_tokens") or 0)


def _make_logger() -> Any:
    from litellm.integrations.custom_logger import CustomLogger

    class UsageLogger(CustomLogger):
        """Feeds every LiteLLM call into the process ledger."""

        def _record(self, ok: bool, kwargs: dict, response: Any, start: Any, end: Any) -> None:
            prompt, completion = _tokens(response) if ok else (0, 0)
            cost = kwargs.get("response_cost") if ok else None
            _LEDGER.add(
                ok=ok,
                start=_seconds(start),
                end=_seconds(end),
                prompt_tokens=prompt,
                completion_tokens=completion,
                cost=float(cost) if isinstance(cost, int | float) else None,
                call_id=kwargs.get("litellm_call_id"),
            )

        def log_success_event(self, kwargs, response_obj, start_time, end_time):
            self._record(True, kwargs, response_obj, start_time, end_time)

        def log_failure_event(self, kwargs, response_obj, start_time, end_time):
            self._record(False, kwargs, response_obj, start_time, end_time)

        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            self._record(True, kwargs, response_obj, start_time, end_time)

        async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
            self._record(False, kwargs, response_obj, start_time, end_time)

    return UsageLogger()


def install_usage_tracking() -> None:
    """Register the usage callback with LiteLLM (idempotent, thread-safe)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        import litellm

        litellm.callbacks = [*(litellm.callbacks or []), _make_logger()]
        _installed = True


def record_call(
    *,
    ok: bool,
    start: float,
    end: float,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    cost: float | None = None,
) -> None:
    """Count a call that did not go through LiteLLM (e.g. an MLflow gateway judge).

    Args:
        ok: Whether the call succeeded.
        start: When it started (``time.time()``).
        end: When it ended.
        prompt_tokens: Prompt tokens, when known.
        completion_tokens: Completion tokens, when known.
        cost: Cost in USD, when known.
    """
    _LEDGER.add(
        ok=ok,
        start=start,
        end=end,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost=cost,
    )


def _settle(timeout: float = 0.5, quiet: float = 0.02) -> None:
    # LiteLLM logs sync successes from a thread pool, so a call that just returned may
    # not be counted yet; wait until the count stops moving (bounded).
    deadline = time.monotonic() + timeout
    last = _LEDGER.calls
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = _LEDGER.calls
        if now == last:
            return
        last = now


def usage_snapshot(settle: bool = True) -> UsageSnapshot:
    """Return the process's LLM usage so far.

    Args:
        settle: Wait (at most 0.5 s) for calls that just returned to be counted.
    """
    install_usage_tracking()
    if settle:
        _settle()
    return _LEDGER.snapshot()


class UsageWindow:
    """Usage over a window; live while the ``with`` block runs, frozen after it."""

    def __init__(self) -> None:
        self._start_time = time.time()
        self._start = usage_snapshot()
        self._final: UsageSnapshot | None = None

    def current(self, settle: bool = True) -> UsageSnapshot:
        """Usage since the window opened (frozen once it closed)."""
        if self._final is not None:
            return self._final
        if settle:
            _settle()
        now = _LEDGER.snapshot(since=self._start_time)
        s = self._start
        return UsageSnapshot(
            calls=now.calls - s.calls,
            failures=now.failures - s.failures,
            prompt_tokens=now.prompt_tokens - s.prompt_tokens,
            completion_tokens=now.completion_tokens - s.completion_tokens,
            cost_usd=now.cost_usd - s.cost_usd,
            priced_calls=now.priced_calls - s.priced_calls,
            max_in_flight=now.max_in_flight,
            call_seconds=now.call_seconds - s.call_seconds,
        )

    def close(self) -> UsageSnapshot:
        """Freeze and return the window's usage."""
        if self._final is None:
            self._final = self.current()
        return self._final


@contextlib.contextmanager
def track_usage() -> Iterator[UsageWindow]:
    """Measure the LLM usage of a block of code.

    Example::

        with track_usage() as usage:
            run_judges()
        print(usage.current().calls)

    Counts every call of the process in that time, from any thread.
    """
    window = UsageWindow()
    try:
        yield window
    finally:
        window.close()
