"""How the pages write numbers, percentages, timestamps, intervals, durations and previews.

One function per idea, so every page shows the same value the same way. Pure: no
Streamlit, so the exact strings are unit-tested without a browser.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Protocol

MISSING = "n/a"
"""What a missing number (None or NaN) reads as, unless a caller asks for another mark."""


class Interval(Protocol):
    """Anything with a ``low`` and a ``high`` bound (e.g. ``ConfidenceInterval``)."""

    @property
    def low(self) -> float | None: ...

    @property
    def high(self) -> float | None: ...


def number(value: float | None, digits: int = 2, missing: str = MISSING) -> str:
    """A number with a fixed count of decimals: ``0.8`` -> ``"0.80"``.

    Args:
        value: The number; None or NaN is missing.
        digits: Decimals shown.
        missing: What a missing number reads as (``"n/a"``; charts use ``""``).

    Returns:
        The formatted number, or ``missing``.
    """
    if value is None or math.isnan(value):
        return missing
    return f"{value:.{digits}f}"


def percent(value: float | None, digits: int = 0, missing: str = MISSING) -> str:
    """A fraction as a percentage: ``0.834`` -> ``"83%"``.

    Args:
        value: The fraction (1.0 is 100%); None or NaN is missing.
        digits: Decimals of the percentage.
        missing: What a missing value reads as.

    Returns:
        The percentage, or ``missing``.
    """
    if value is None or math.isnan(value):
        return missing
    return f"{value:.{digits}%}"


def when(ts: float | None, *, seconds: bool = False, utc: bool = False) -> str:
    """A point in time given in seconds since the epoch: ``"2026-12-01 08:15"``.

    Args:
        ts: Seconds since the epoch; None is unknown.
        seconds: Show the seconds too (``"08:15:42"``), for things that change quickly.
        utc: Show UTC instead of the server's local time.

    Returns:
        ``"YYYY-MM-DD HH:MM[:SS]"``, or ``""`` when unknown.
    """
    if ts is None:
        return ""
    moment = datetime.fromtimestamp(ts, UTC) if utc else datetime.fromtimestamp(ts)
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def when_ms(ms: int | None, *, seconds: bool = False, utc: bool = False) -> str:
    """``when`` for MLflow's millisecond timestamps; 0 (MLflow's "not set") is unknown.

    Args:
        ms: Milliseconds since the epoch; None or 0 is unknown.
        seconds: Show the seconds too.
        utc: Show UTC instead of the server's local time.

    Returns:
        ``"YYYY-MM-DD HH:MM[:SS]"``, or ``""`` when unknown.
    """
    if not ms:
        return ""
    return when(ms / 1000, seconds=seconds, utc=utc)


def interval(
    ci: Interval | tuple[float | None, float | None] | None, digits: int = 2, *, label: bool = True
) -> str:
    """A confidence interval: ``"95% CI 0.61 to 0.83"``.

    Args:
        ci: The interval, as an object with ``low``/``high`` or a ``(low, high)`` pair;
            None (or a missing bound) when there is none.
        digits: Decimals of each bound.
        label: Prefix ``"95% CI "``; off where a column header already says so.

    Returns:
        The interval, or ``""`` when there is none.
    """
    if ci is None:
        return ""
    low, high = ci if isinstance(ci, tuple) else (ci.low, ci.high)
    if low is None or high is None:
        return ""
    text = f"{number(low, digits)} to {number(high, digits)}"
    return f"95% CI {text}" if label else text


def duration(seconds: float, digits: int = 1, *, approx: bool = False) -> str:
    """A duration in seconds: ``"12.3 s"``; an estimate reads ``"~1,234 s"`` or ``"< 1 s"``.

    Args:
        seconds: The duration.
        digits: Decimals of a measured duration (estimates are whole seconds).
        approx: The duration is an estimate: rounded, with ``~``, and ``"< 1 s"`` below one.

    Returns:
        The duration with its unit.
    """
    if approx:
        return f"~{seconds:,.0f} s" if seconds >= 1 else "< 1 s"
    return f"{seconds:.{digits}f} s"


def tokens_and_cost(
    tokens: float | None, cost_usd: float | None, calls: float | None = None
) -> str:
    """A run's usage as one line: ``"84 calls · 12,345 tokens · $0.0123"``.

    A cost of None means no model of the run has a known price (the demo stand-ins, a local
    server): it reads ``"price unknown"``, never ``$0``. Tokens None (nothing recorded yet)
    read as the missing mark.

    Args:
        tokens: Prompt plus completion tokens.
        cost_usd: Dollars, or None when unpriced.
        calls: Model calls, shown first when given.
    """
    parts = []
    if calls is not None:
        parts.append(f"{int(calls):,} calls")
    parts.append(MISSING if tokens is None else f"{int(tokens):,} tokens")
    if cost_usd is None:
        parts.append("price unknown")
    else:
        parts.append(f"${cost_usd:,.4f}" if cost_usd < 1 else f"${cost_usd:,.2f}")
    return " · ".join(parts)


def preview_text(preview: str | None) -> str:
    """A trace's request or response preview as the words a person reads.

    MLflow previews a root span's dict inputs or outputs as JSON (``{"response": "Yes,
    ..."}``), truncated at its preview length; a dict with one text field reads as that
    text. Anything else is returned as it is.

    Args:
        preview: MLflow's ``request_preview`` or ``response_preview``; None is empty.

    Returns:
        The text of a one-field JSON object (or of a JSON string), else ``preview``.
    """
    text = (preview or "").strip()
    if not text.startswith(("{", '"')):
        return preview or ""
    try:
        value = json.loads(text)
    except ValueError:
        # Truncated by MLflow: unwrap the first string field as far as it goes.
        match = _ONE_FIELD.match(text)
        if match is None:
            return preview or ""
        body = match.group(1)
        try:
            return str(json.loads(f'"{body}"'))
        except ValueError:
            return body.replace('\\"', '"').replace("\\n", "\n")
    if isinstance(value, dict) and len(value) == 1:
        value = next(iter(value.values()))
    return value if isinstance(value, str) else preview or ""


_ONE_FIELD = re.compile(r'^\{\s*"[^"\\]*"\s*:\s*"((?:[^"\\]|\\.)*)', re.DOTALL)
