"""The worker registry (core.optimization.workers) in a real MLflow store."""

from __future__ import annotations

import threading
import time

import pytest

from core.optimization import workers
from core.store.experiments import get_or_create_experiment, list_experiments


def _info(worker_id: str, *, beat: float | None = None, running: list[str] | None = None):
    now = time.time()
    return workers.WorkerInfo(
        worker_id=worker_id,
        host="host-a",
        pid=123,
        concurrency=2,
        started=now - 10,
        beat=now if beat is None else beat,
        data_dir="/tmp/a",
        running=running or [],
    )


def test_no_registry_means_no_worker(store_uri):
    assert workers.alive_workers() == []
    assert workers.all_workers() == []
    workers.withdraw("nobody")  # nothing to remove: no error, nothing created
    assert workers.registry_experiment_id() is None


def test_announce_beat_and_withdraw(store_uri):
    workers.announce(_info("w1", running=["r1"]))
    workers.announce(_info("w2"))
    alive = {w.worker_id: w for w in workers.alive_workers()}
    assert set(alive) == {"w1", "w2"}
    assert alive["w1"].running == ["r1"] and alive["w1"].free_slots == 1
    workers.withdraw("w1")
    assert [w.worker_id for w in workers.alive_workers()] == ["w2"]


def test_a_silent_worker_is_not_alive_and_is_pruned(store_uri, monkeypatch):
    monkeypatch.setenv(workers.ALIVE_ENV, "5")
    workers.announce(_info("old", beat=time.time() - 60))
    workers.announce(_info("new"))
    assert [w.worker_id for w in workers.alive_workers()] == ["new"]
    assert {w.worker_id for w in workers.all_workers()} == {"old", "new"}
    assert workers.prune(older_than_s=30) == 1
    assert [w.worker_id for w in workers.all_workers()] == ["new"]


def test_concurrent_announcements_all_kept(store_uri):
    errors: list[BaseException] = []

    def announce(i: int) -> None:
        try:
            for _ in range(3):
                workers.announce(_info(f"w{i}"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=announce, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert {w.worker_id for w in workers.alive_workers()} == {f"w{i}" for i in range(4)}


def test_the_registry_is_not_an_experiment_to_open(store_uri):
    get_or_create_experiment("visible")
    workers.announce(_info("w1"))
    names = [e.name for e in list_experiments()]
    assert "visible" in names and workers.REGISTRY_EXPERIMENT not in names


@pytest.mark.parametrize(
    ("value", "mode"), [("", "auto"), ("worker", "worker"), ("SPAWN", "spawn"), ("x", "auto")]
)
def test_jobs_mode(monkeypatch, value, mode):
    monkeypatch.setenv(workers.JOBS_MODE_ENV, value)
    assert workers.jobs_mode() == mode


def test_a_malformed_entry_is_ignored():
    assert workers.WorkerInfo.from_json("not json") is None
    assert workers.WorkerInfo.from_json('{"host": "h"}') is None
