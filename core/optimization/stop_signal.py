"""A stop signal Python may have swallowed, kept until a job's main thread sees it.

A job process turns SIGTERM into ``KeyboardInterrupt`` (:func:`core.optimization.worker.
prepare_job_process`), raised wherever the main thread happens to be. When that is inside
a weakref callback, a ``__del__`` or a ``finally`` of the garbage collector's, Python
prints "Exception ignored" and carries on, and the job ran to its end as if never asked
to stop (seen in CI: ``weakref.remove`` swallowed it). So the handler also notes the
signal here, and the recorder's frequent calls (``should_stop``, ``heartbeat``) raise it
again, once, on the main thread, where the engine records the run ``interrupted``.
"""

from __future__ import annotations

import threading

_pending: int | None = None


def note(signum: int) -> None:
    """Remember that ``signum`` asked this process to stop (from the signal handler)."""
    global _pending
    _pending = signum


def acknowledge() -> None:
    """The stop reached a handler (the engine's ``except KeyboardInterrupt``): forget it."""
    global _pending
    _pending = None


def raise_if_pending() -> None:
    """Raise ``KeyboardInterrupt`` once if a noted signal was not handled yet.

    Only on the main thread: a background thread (the recorder's writer, gepa's cancel
    reader) must not die of it; the main thread's next call raises it.
    """
    if _pending is None or threading.current_thread() is not threading.main_thread():
        return
    signum = _pending
    acknowledge()
    raise KeyboardInterrupt(f"signal {signum} (noted)")
