"""The one sentence that says how a job ended, and whether it registered a version.

The Align and Optimize pages' banners, ``alignboard status`` and the CLI's ``align``,
``optimize`` and ``wait`` output all print :func:`outcome_line`, so a cancelled run says
the same plain thing everywhere: whether a version was registered, and why not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: What a cancelled run that registered nothing tells the user to do next.
CANCELLED_NOT_REGISTERED = (
    "Cancelled — no version registered (cancelled runs are not registered; relaunch with "
    '"Register if cancelled" to keep the best so far)'
)


def _version(now: Any, result: Mapping[str, Any] | None) -> int | None:
    """The version the run registered (judge or prompt), from its status or result."""
    result = result or {}
    for value in (
        getattr(now, "prompt_version", None) if getattr(now, "is_prompt", False) else None,
        getattr(now, "judge_version", None)
        if not getattr(now, "is_prompt", False) and not getattr(now, "is_score", False)
        else None,
        result.get("prompt_version"),
        result.get("judge_version"),
    ):
        if value is not None:
            return int(value)
    return None


def outcome_line(now: Any, result: Mapping[str, Any] | None = None) -> str:
    """How a job ended, in one sentence, for banners and the CLI.

    Args:
        now: The job's :class:`core.optimization.jobs.JobStatus` (or any object with its
            ``status``, ``judge_version`` / ``prompt_version``, ``not_registered_reason``,
            ``register_if_cancelled`` and ``error`` attributes).
        result: The run's ``result.json`` when at hand (the CLI's in-process run); it
            fills in what the status does not say.

    Returns:
        E.g. ``Cancelled — registered v6 (Register if cancelled was on)``, or
        :data:`CANCELLED_NOT_REGISTERED`; for other statuses a short line such as
        ``Finished — registered v6`` or ``Failed: <error>``.
    """
    result = result or {}
    status = str(getattr(now, "status", None) or result.get("status") or "")
    version = _version(now, result)
    reason = getattr(now, "not_registered_reason", None) or result.get("not_registered_reason")
    chose = getattr(now, "register_if_cancelled", None)
    if chose is None:
        chose = result.get("register_if_cancelled")
    if getattr(now, "is_score", False):
        return f"{status.capitalize()}." if status else ""
    if status == "cancelled":
        if version is not None:
            return f"Cancelled — registered v{version} (Register if cancelled was on)"
        if reason == "worse":
            return (
                "Cancelled — no version registered (Register if cancelled was on, but the best "
                "so far scored worse than the seed on held-out traces)"
            )
        if reason == "unchanged":
            return (
                "Cancelled — no version registered (Register if cancelled was on, but the best "
                "so far is the seed: nothing new to register)"
            )
        if chose and reason is None:
            # Cancelled before the job decided (e.g. while it was not running).
            return "Cancelled — no version registered (the run stopped before it could decide)"
        return CANCELLED_NOT_REGISTERED
    if status == "finished":
        if version is not None:
            return f"Finished — registered v{version}"
        if reason == "worse":
            return "Finished — no version registered (worse than the seed on held-out traces)"
        if reason == "unchanged":
            return "Finished — no version registered (the best candidate is the seed)"
        return "Finished — no version registered"
    error = getattr(now, "error", None) or result.get("error")
    line = f"{status.capitalize()}." if status else ""
    return f"{line} {error}".strip() if error and status in ("failed", "interrupted") else line
