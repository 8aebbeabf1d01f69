"""A detached CLI launch handed to a warm local worker (core.optimization.handoff)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from core.optimization import handoff, jobs, workers
from core.store import config
from tests.optimization.worker_support import ROOT, start_worker, stop
from tests.support.waiting import wait_for

ALIGN = [
    "align", "--experiment", "alignboard-demo", "--judge", "support_quality",
    "--optimizer", "memalign", "--model", "demo:/judge", "--reflection-model", "demo:/reflect",
    "--detach", "--json",
]  # fmt: skip


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "core.cli", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _imported(stderr: str) -> set[str]:
    """Top-level modules a ``-X importtime`` run imported."""
    return {
        line.split("|")[-1].strip().split(".")[0]
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def _ended(run_id: str) -> jobs.JobStatus | None:
    st = jobs.status(run_id)
    return None if st.active else st


def _desk(timeout: float = 120) -> Path:
    folder = handoff.desks_dir(config.data_dir())
    found = wait_for(lambda: next(iter(folder.glob("*.json")), None), timeout, "the desk")
    assert found is not None
    return found


def test_align_detach_is_taken_by_the_local_worker_without_importing_mlflow(demo_store, tmp_path):
    worker = start_worker(tmp_path / "w.log", "--id", "desk")
    try:
        desk = _desk()
        assert oct(desk.stat().st_mode & 0o777) == "0o600"  # the token is the user's only
        res = _cli(*ALIGN)
        assert res.returncode == 0, res.stderr[-3000:]
        run_id = json.loads(res.stdout.strip().splitlines()[-1])["run_id"]
        assert "mlflow" not in _imported(res.stderr)  # the worker wrote the run
        final = wait_for(lambda: _ended(run_id), 240, "the job's end")
        assert final is not None and final.status == "finished" and final.worker == "desk"
        # A refused pre-flight comes back as the command's own error and exit status.
        bad = _cli(*[("nosuch" if a == "support_quality" else a) for a in ALIGN])
        assert bad.returncode == 2 and "No criterion named 'nosuch'" in bad.stdout + bad.stderr
        assert "took a detached launch" in (tmp_path / "w.log").read_text()
    finally:
        assert stop(worker) == 0
    assert not desk.exists()  # a stopped worker takes its desk down


def test_a_dead_or_foreign_desk_is_passed_over(demo_store, tmp_path):
    folder = handoff.desks_dir(config.data_dir())
    folder.mkdir(parents=True, exist_ok=True)
    # A desk of a dead process, and one for another store: the CLI launches by itself.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    for name, pid, uri in (("dead", int(dead), config.tracking_uri()),
                           ("other", os.getpid(), "sqlite:////elsewhere.db")):  # fmt: skip
        (folder / f"{name}.json").write_text(
            json.dumps({"pid": pid, "port": 9, "token": "x", "tracking_uri": uri})
        )
    assert handoff.try_handoff(ALIGN, config.data_dir(), config.tracking_uri()) is None


def test_a_desk_refuses_a_wrong_token_and_anything_but_a_detached_launch(tmp_path):
    desk = handoff.LaunchDesk(tmp_path, "sqlite:///x.db", "w1")
    ran: list[list[str]] = []

    def record(argv: list[str]) -> int:
        ran.append(argv)
        return 0

    try:
        import socket
        import threading

        entry = json.loads(desk.path.read_text())

        def ask(payload: dict) -> dict:
            with socket.create_connection(("127.0.0.1", entry["port"]), timeout=5) as conn:
                conn.sendall(json.dumps(payload).encode() + b"\n")
                return json.loads(conn.makefile().readline())

        for payload in (
            {"token": "wrong", "argv": ALIGN},
            {"token": entry["token"], "argv": ["seed-demo"]},
            {"token": entry["token"], "argv": [a for a in ALIGN if a != "--detach"]},
        ):
            box: dict = {}
            t = threading.Thread(target=lambda p=payload, b=box: b.update(ask(p)))
            t.start()
            deadline = time.monotonic() + 10
            while t.is_alive() and time.monotonic() < deadline:
                desk.wait(0.2, record)
            t.join(5)
            assert box == {"refused": True}, payload
        assert ran == []
    finally:
        desk.close()
    assert not desk.path.exists()
    assert workers.jobs_mode() in workers.JOBS_MODES


def test_a_desk_answers_when_the_process_holds_more_than_1024_descriptors(tmp_path):
    # select() refuses descriptors past FD_SETSIZE; a long-lived worker can hold that many.
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    desk = handoff.LaunchDesk(tmp_path, "sqlite:///x.db", "w1")
    try:
        assert desk.sock.fileno() > 1024
        import socket
        import threading

        entry = json.loads(desk.path.read_text())
        box: dict = {}

        def ask() -> None:
            with socket.create_connection(("127.0.0.1", entry["port"]), timeout=5) as conn:
                conn.sendall(json.dumps({"token": "wrong", "argv": ALIGN}).encode() + b"\n")
                box.update(json.loads(conn.makefile().readline()))

        t = threading.Thread(target=ask)
        t.start()
        deadline = time.monotonic() + 10
        while t.is_alive() and time.monotonic() < deadline:
            desk.wait(0.2, lambda argv: 0)
        t.join(5)
        assert box == {"refused": True}
    finally:
        desk.close()
        for fd in held:
            os.close(fd)
