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


#: What a queued run says when no worker is alive and only a worker would run it.
NO_WORKER_QUEUED = (
    "No job worker is alive on this store: this run waits in the queue until one starts "
    "(`alignboard worker`, or `make run` starts one)."
)
#: ... and in ``auto`` mode, where the launch started a one-off process instead.
NO_WORKER_ONE_OFF = (
    "No job worker is alive on this store: this run starts in a one-off process (a slower "
    "start). Start a worker with `alignboard worker` (or `make run`) for fast launches."
)

# Words in the messages of the errors a store that cannot be reached raises (requests'
# ConnectionError wrapped in MlflowException by MLflow's REST client; psycopg2 /
# SQLAlchemy's OperationalError for a database that is down).
_UNREACHABLE_WORDS = (
    "max retries exceeded",
    "connection refused",
    "failed to establish a new connection",
    "could not connect to server",
    "connection to server",
    "name or service not known",
    "timed out",
    "remote end closed connection",
    "connection reset",
)


def queued_notice(mode: str, n_alive: int) -> str | None:
    """What a queued run's panel says about who will run it, or None when a worker is alive.

    Args:
        mode: :func:`core.optimization.workers.jobs_mode` (``auto``, ``worker``, ``spawn``).
        n_alive: How many workers are alive on this store.

    Returns:
        :data:`NO_WORKER_QUEUED` (``worker`` mode), :data:`NO_WORKER_ONE_OFF` (``auto``),
        or None (a worker is alive, or ``spawn`` mode, where every job has its own process).
    """
    if n_alive > 0 or mode == "spawn":
        return None
    return NO_WORKER_QUEUED if mode == "worker" else NO_WORKER_ONE_OFF


def workers_line(workers: Any, mode: str) -> str:
    """One line about the job workers: how many are alive, on which hosts, slots free.

    Args:
        workers: The alive :class:`core.optimization.workers.WorkerInfo` entries.
        mode: The jobs mode, said when no worker is alive (what launches then do).
    """
    workers = list(workers)
    if not workers:
        then = {
            "worker": "launched runs wait in the queue",
            "spawn": "each launch starts its own process",
        }.get(mode, "each launch starts a one-off process (slower)")
        return f"No job worker alive: {then}. Start one with `alignboard worker`."
    hosts = sorted({w.host for w in workers})
    free = sum(w.free_slots for w in workers)
    total = sum(w.concurrency for w in workers)
    n = len(workers)
    return (
        f"{n} job worker{'s' if n != 1 else ''} alive on {', '.join(hosts)} · "
        f"{free} of {total} slot{'s' if total != 1 else ''} free"
    )


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the errors it was raised from (a store read wraps the transport's)."""
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out and len(out) < 8:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def is_store_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) says the MLflow store could not be
    reached (server or database down), as opposed to a bad request or a missing run."""
    for err in _chain(exc):
        if isinstance(err, ConnectionError | TimeoutError):
            return True
        if type(err).__name__ in ("MaxRetryError", "NewConnectionError", "OperationalError"):
            return True
        text = str(err).lower()
        if any(word in text for word in _UNREACHABLE_WORDS):
            return True
    return False


def unreachable_message(uri: str, exc: BaseException, limit: int = 160) -> str:
    """``The MLflow store at <uri> is unreachable (retrying): <short reason>``: the reason
    is the innermost error's text, shortened."""
    exc = _chain(exc)[-1]
    reason = " ".join(str(exc).split()) or type(exc).__name__
    # check_store's own sentence names the store too: keep only its reason in brackets.
    if reason.startswith("Cannot reach the MLflow store") and "(" in reason and ")" in reason:
        reason = reason[reason.index("(") + 1 : reason.index(")")]
    for marker in ("Caused by ", "caused by "):
        if marker in reason:
            reason = reason.split(marker, 1)[1]
    if len(reason) > limit:
        reason = reason[: limit - 1] + "…"
    return f"The MLflow store at {uri} is unreachable (retrying): {reason}"
