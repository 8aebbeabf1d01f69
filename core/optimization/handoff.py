"""Hand a detached launch from the CLI to a warm local worker.

``alignboard align|optimize|score --detach`` would otherwise spend seconds importing MLflow
and setting up its store before it could write the run. A running ``alignboard worker``
already has all of that loaded, so it keeps a *launch desk*: a loopback TCP socket whose
address and a random token it writes, readable only by its user, to
``<data dir>/workers/<worker id>.json``. The CLI, which imports only the standard library
before it parses its arguments, looks for a desk of a live worker on the same store and the
same data folder, sends its arguments, and prints what the worker's run of the very same
command printed. Any doubt (no desk, a dead pid, another store, a refused connection)
means the CLI launches itself, as before; nothing is ever launched twice, because the CLI
falls back only when it could not send its request.

The worker runs the command in its main loop (one at a time, between polls), with its
own environment: pre-flight checks the credentials of the process that will run the job.
Only ``--detach`` launches are accepted, and only with the token.

Only the standard library is imported at module level (the CLI's fast path).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import selectors
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: Commands a desk accepts (with ``--detach`` only).
COMMANDS = ("align", "optimize", "score")
#: Set to 1 to never hand a launch off (the CLI then always launches itself).
OFF_ENV = "ALIGNBOARD_NO_HANDOFF"
#: How long the CLI waits to connect to a desk.
CONNECT_TIMEOUT_S = 0.5
#: How long the CLI waits for the worker's answer (pre-flight reads the data).
ANSWER_TIMEOUT_S = 300.0
_MAX_REQUEST = 1 << 20


def desks_dir(data_dir: Path) -> Path:
    """Where workers on this data folder keep their desk files."""
    return data_dir / "workers"


def wants_handoff(argv: Sequence[str]) -> bool:
    """True for a command line a desk would take: a detached align/optimize/score."""
    args = list(argv)
    return (
        bool(args)
        and args[0] in COMMANDS
        and "--detach" in args
        and os.environ.get(OFF_ENV, "") not in ("1", "true", "yes")
    )


class LaunchDesk:
    """The worker's side: a loopback socket taking detached launches from the CLI."""

    def __init__(self, data_dir: Path, tracking_uri: str, worker_id: str) -> None:
        """Open the socket and write the desk file (0600)."""
        self.token = secrets.token_hex(16)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.setblocking(False)
        folder = desks_dir(data_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{worker_id}.json"
        entry = {
            "pid": os.getpid(),
            "port": self.sock.getsockname()[1],
            "token": self.token,
            "tracking_uri": tracking_uri,
            "data_dir": str(data_dir),
        }
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(entry, f)
        os.replace(tmp, self.path)

    def wait(self, timeout_s: float, run: Callable[[list[str]], int]) -> bool:
        """Wait up to ``timeout_s`` for a request and answer it with ``run(argv)``; True
        when one was answered."""
        # A selector, not select(): a long-lived worker (or a test process) may hold more
        # than FD_SETSIZE (1024) descriptors, and select() refuses any beyond it.
        with selectors.DefaultSelector() as sel:
            sel.register(self.sock, selectors.EVENT_READ)
            ready = sel.select(max(timeout_s, 0.0))
        if not ready:
            return False
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, OSError):
            return False
        with conn:
            conn.settimeout(5.0)
            try:
                request = json.loads(_read_line(conn))
            except (OSError, ValueError):
                return False
            argv = [str(a) for a in request.get("argv") or []]
            if request.get("token") != self.token or not wants_handoff(argv):
                _send(conn, {"refused": True})
                return True
            _send(conn, _capture(run, argv, str(request.get("cwd") or "")))
        return True

    def close(self) -> None:
        """Remove the desk file and close the socket."""
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            self.sock.close()


def _capture(run: Callable[[list[str]], int], argv: list[str], cwd: str) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    # Relative paths on the command line (``--instructions-file``) are the CLI's.
    here = os.getcwd()
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)
    code = 1
    # The command runs here: it must not hand itself off again (to this very desk).
    before = os.environ.get(OFF_ENV)
    os.environ[OFF_ENV] = "1"
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = run(argv)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 2
        except Exception as exc:
            print(f"error: {type(exc).__name__}: {exc}", file=err)
            code = 1
        finally:
            os.chdir(here)
            if before is None:
                os.environ.pop(OFF_ENV, None)
            else:
                os.environ[OFF_ENV] = before
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def _send(conn: socket.socket, obj: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps(obj).encode() + b"\n")


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n") and len(data) < _MAX_REQUEST:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def try_handoff(argv: Sequence[str], data_dir: Path, tracking_uri: str) -> dict[str, Any] | None:
    """Send a detached launch to a live local worker's desk.

    Returns:
        The worker's answer (``code``, ``stdout``, ``stderr``), or None when no desk took
        the request (the caller then launches itself: nothing was sent).

    Raises:
        OSError: the request was sent but no answer came (the launch may have happened).
    """
    folder = desks_dir(data_dir)
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.json")):
        try:
            entry = json.loads(path.read_text())
            pid, port = int(entry["pid"]), int(entry["port"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if entry.get("tracking_uri") != tracking_uri or not _alive(pid):
            continue
        try:
            conn = socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT_S)
        except OSError:
            continue
        with conn:
            request = {"token": entry.get("token"), "argv": list(argv), "cwd": os.getcwd()}
            conn.sendall(json.dumps(request).encode() + b"\n")
            conn.settimeout(ANSWER_TIMEOUT_S)
            answer = json.loads(_read_line(conn) or b"{}")
        if answer.get("refused"):
            continue
        if "code" in answer:
            return dict(answer)
        raise OSError("the worker closed the connection without an answer")
    return None
