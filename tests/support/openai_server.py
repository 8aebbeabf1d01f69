"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests, with a scriptable fault plan.

It answers ``POST /v1/chat/completions`` and ``POST /v1/embeddings`` with the demo model's
logic (so answers match ``demo:/...``), and records every request it got. Faults are taken
from the front of ``server.faults``, one per request:

* ``"429"``, ``"500"``, ``"401"``: that HTTP status with an OpenAI-style error body;
* ``"timeout"``: sleep ``server.hang_seconds`` before answering (past the client's timeout);
* ``"malformed"``: status 200 with a body that is not JSON.

Usage::

    with openai_server(faults=["429"]) as server:
        complete("openai:/my-model", messages, base_url=server.base_url)
        assert len(server.requests) == 2
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from core.models.demo import demo_answer
from core.models.demo_embedding import DEFAULT_DIMENSIONS, embed_text

FAULTS = ("429", "500", "401", "timeout", "malformed")


@dataclass
class Recorded:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    """Request headers, names lowercased (HTTP header names are case-insensitive)."""
    body: dict
    fault: str | None
    """The fault served for it, or None when it was answered normally."""


@dataclass
class LoopbackServer:
    """Handle on a running server: where it is, what it got, and what it will do next."""

    base_url: str
    faults: deque[str] = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)
    hang_seconds: float = 2.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_fault(self) -> str | None:
        with self.lock:
            return self.faults.popleft() if self.faults else None

    def record(self, item: Recorded) -> None:
        with self.lock:
            self.requests.append(item)


def _handler(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args) -> None:
            # The default logs to stderr; a test server must stay quiet (and never echo
            # request headers, which carry the API key).
            return

        def _send(self, status: int, payload: bytes, content_type: str = "application/json"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(payload)

        def _error(self, status: int, kind: str, message: str) -> None:
            body = {"error": {"message": message, "type": kind, "code": str(status)}}
            self._send(status, json.dumps(body).encode())

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            fault = server.next_fault()
            headers = {k.lower(): v for k, v in self.headers.items()}
            server.record(Recorded(self.path, headers, body, fault))
            if fault == "429":
                return self._error(429, "rate_limit_exceeded", "Rate limit reached; slow down.")
            if fault == "500":
                return self._error(500, "server_error", "The server had an error.")
            if fault == "401":
                return self._error(401, "invalid_request_error", "Incorrect API key provided.")
            if fault == "timeout":
                time.sleep(server.hang_seconds)
            if fault == "malformed":
                return self._send(200, b'{"id": "x", "choices": [ this is not json')
            if self.path.rstrip("/").endswith("/chat/completions"):
                return self._send(200, json.dumps(_chat(body)).encode())
            if self.path.rstrip("/").endswith("/embeddings"):
                return self._send(200, json.dumps(_embeddings(body)).encode())
            return self._error(404, "not_found", f"No route {self.path}")

    return Handler


def _chat(body: dict) -> dict:
    text = demo_answer(body.get("messages") or [], body.get("response_format"))
    return {
        "id": "chatcmpl-loopback",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "loopback"),
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": text},
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _embeddings(body: dict) -> dict:
    inputs = body.get("input") or []
    inputs = [inputs] if isinstance(inputs, str) else inputs
    dims = int(body.get("dimensions") or DEFAULT_DIMENSIONS)
    return {
        "object": "list",
        "model": body.get("model", "loopback"),
        "data": [
            {"object": "embedding", "index": i, "embedding": embed_text(str(t), dims)}
            for i, t in enumerate(inputs)
        ],
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }


@contextlib.contextmanager
def openai_server(faults: list[str] | None = None) -> Iterator[LoopbackServer]:
    """Run a loopback OpenAI-compatible server for the duration of the ``with`` block."""
    unknown = [f for f in faults or [] if f not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault(s) {unknown}; use {FAULTS}")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    httpd.daemon_threads = True
    handle = LoopbackServer(
        base_url=f"http://127.0.0.1:{httpd.server_address[1]}/v1", faults=deque(faults or [])
    )
    httpd.RequestHandlerClass = _handler(handle)
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="loopback-openai",
        daemon=True,
    )
    thread.start()
    try:
        yield handle
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
