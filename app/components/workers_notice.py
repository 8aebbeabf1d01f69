"""What the dashboard says about job workers and the store: no worker alive to pick up a
queued run, the Overview page's worker line, and the warning a polling panel shows
instead of an exception when the MLflow store cannot be reached."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from core.store import config
from core.views.job_status import (
    is_store_unreachable,
    queued_notice,
    unreachable_message,
    workers_line,
)

T = TypeVar("T")


@st.cache_data(ttl=2, show_spinner=False)
def _alive(uri: str) -> list[Any] | None:
    """The alive workers (cached ~2 s per store, so polls stay cheap); None when the
    registry cannot be read."""
    from core.optimization import workers

    try:
        return workers.alive_workers()
    except Exception:
        return None


def alive_workers() -> list[Any] | None:
    """The alive workers on this store, read at most every ~2 s; None when unreadable."""
    return _alive(config.tracking_uri())


def queued(now: Any) -> None:
    """Under a queued run: say when no worker is alive to pick it up (and what happens)."""
    if getattr(now, "status", None) != "queued" or getattr(now, "worker", None):
        return
    from core.optimization.workers import jobs_mode

    alive = alive_workers()
    if alive is None:
        return  # the registry is unreadable: the store warning says it
    text = queued_notice(jobs_mode(), len(alive))
    if text:
        st.info(text, icon=":material/engineering:")


def overview_line() -> None:
    """One caption: N workers alive, their hosts, slots free (or none, and what then)."""
    from core.optimization.workers import jobs_mode

    alive = alive_workers()
    if alive is not None:
        st.caption(workers_line(alive, jobs_mode()))


def guarded(read: Callable[[], T]) -> T | None:
    """Run a polling panel's store read; when the store is unreachable, show a warning
    (the next poll retries) and return None instead of raising."""
    from core.errors import StoreUnavailableError

    try:
        # A TCP probe first (a millisecond; local stores are not probed): against a server
        # that is down, MLflow's REST client retries with backoff for minutes, and the
        # panel would sit frozen on its last figures instead of saying so.
        config.check_store(timeout=1.0)
    except StoreUnavailableError as exc:
        st.warning(unreachable_message(config.tracking_uri(), exc), icon=":material/cloud_off:")
        return None
    try:
        return read()
    except Exception as exc:
        if not is_store_unreachable(exc):
            raise
        st.warning(unreachable_message(config.tracking_uri(), exc), icon=":material/cloud_off:")
        return None
