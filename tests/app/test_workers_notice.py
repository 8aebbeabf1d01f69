"""What the dashboard says about job workers (none alive to pick up a queued run; the
Overview line) and about a store it cannot reach (a warning, not an exception)."""

from __future__ import annotations

import socket
import time

import pytest
from streamlit.testing.v1 import AppTest

from core.optimization import workers
from core.views.job_status import NO_WORKER_ONE_OFF, NO_WORKER_QUEUED, workers_line


def _queued_page() -> None:
    from types import SimpleNamespace

    from app.components import workers_notice

    workers_notice.queued(SimpleNamespace(status="queued", worker=None))
    workers_notice.overview_line()


def _poll_page() -> None:
    import streamlit as st

    from app.components import run_progress

    now = run_progress.read_status("0123456789abcdef0123456789abcdef")
    st.text("read" if now is not None else "no status")


def _info(worker_id: str = "host-1-abc", beat: float | None = None) -> workers.WorkerInfo:
    now = time.time()
    return workers.WorkerInfo(
        worker_id=worker_id,
        host="buildhost",
        pid=4242,
        concurrency=2,
        started=now,
        beat=now if beat is None else beat,
        running=["r1"],
    )


def test_no_worker_in_worker_mode_says_the_run_waits(store_uri, monkeypatch):
    monkeypatch.setenv(workers.JOBS_MODE_ENV, "worker")
    at = AppTest.from_function(_queued_page).run(timeout=30)
    assert not at.exception
    assert [i.value for i in at.info] == [NO_WORKER_QUEUED]
    assert at.caption[0].value.startswith("No job worker alive: launched runs wait")


def test_no_worker_in_auto_mode_says_a_one_off_process_runs_it(store_uri, monkeypatch):
    monkeypatch.setenv(workers.JOBS_MODE_ENV, "auto")
    at = AppTest.from_function(_queued_page).run(timeout=30)
    assert [i.value for i in at.info] == [NO_WORKER_ONE_OFF]


def test_a_live_worker_in_the_registry_removes_the_notice(store_uri, monkeypatch):
    monkeypatch.setenv(workers.JOBS_MODE_ENV, "worker")
    workers.announce(_info())
    at = AppTest.from_function(_queued_page).run(timeout=30)
    assert not at.exception and not at.info
    assert at.caption[0].value == "1 job worker alive on buildhost · 1 of 2 slots free"


def test_a_stale_entry_does_not_count_as_alive(store_uri, monkeypatch):
    monkeypatch.setenv(workers.JOBS_MODE_ENV, "worker")
    workers.announce(_info(beat=time.time() - 3600))
    at = AppTest.from_function(_queued_page).run(timeout=30)
    assert [i.value for i in at.info] == [NO_WORKER_QUEUED]


def test_workers_line_sums_hosts_and_slots():
    a, b = _info("a"), _info("b")
    b = workers.WorkerInfo(**{**b.__dict__, "host": "other", "running": []})
    assert workers_line([a, b], "auto") == (
        "2 job workers alive on buildhost, other · 3 of 4 slots free"
    )
    assert "one-off process" in workers_line([], "auto")


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed when the with block ends: nothing listens


def test_an_unreachable_store_shows_a_warning_not_an_exception(monkeypatch, closed_port):
    uri = f"http://127.0.0.1:{closed_port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    at = AppTest.from_function(_poll_page).run(timeout=60)
    assert not at.exception
    assert [t.value for t in at.text] == ["no status"]
    (warning,) = at.warning
    assert warning.value.startswith(f"The MLflow store at {uri} is unreachable (retrying): ")


def test_a_poll_says_unreachable_at_once_with_mlflows_default_retries(monkeypatch, closed_port):
    # MLflow's REST client retries a refused request with backoff for minutes by default:
    # the panel must not sit frozen on its last figures meanwhile.
    uri = f"http://127.0.0.1:{closed_port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    started = time.monotonic()
    at = AppTest.from_function(_poll_page).run(timeout=60)
    elapsed = time.monotonic() - started
    assert not at.exception
    assert [w.value for w in at.warning] == [
        f"The MLflow store at {uri} is unreachable (retrying): connection refused"
    ]
    assert elapsed < 10, elapsed
