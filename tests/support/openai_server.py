"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests, with a scriptable fault plan.

It answers ``POST /v1/chat/completions`` and ``POST /v1/embeddings`` with the demo model's
logic (so answers match ``demo:/...``), and records every request it got. Faults are taken
from the front of ``server.faults``, one per request:

* ``"429"``, ``"500"``, ``"401"``: that HTTP status with an OpenAI-style error body;
* ``"timeout"``: sleep ``server.hang_seconds`` before answering (past the client's timeout);
* ``"malformed"``: status 200 with a body that is not JSON.

Once the script is used up, ``fault_rate`` (0 by default) makes each further request a
fault with that probability, the kind drawn uniformly from ``fault_kinds``; the draws come
from a ``random.Random(seed)``, so the sequence of faults handed out is reproducible (which
request gets which depends on thread timing). ``server.served()`` counts what was served.

Answers can be scripted too: ``answer`` (a function of the request body) returns the text
to answer a chat request with, or None to answer as the demo model does.

Structured output, as servers that lack it answer (see :func:`llama_cpp_rejection`):

* ``reject_json_schema=True``: a chat request whose ``response_format`` is ``json_schema``
  gets exactly what llama-cpp-python's server answers it (HTTP 500, OpenAI-style error
  body carrying FastAPI's validation message); ``json_object`` and text are answered;
* ``reject_response_format=True``: any ``response_format`` (``json_object`` too) gets a
  400 naming ``response_format``, as servers without structured output at all answer
  (a number instead of True: that status);
* ``prose=True``: a request without ``response_format`` is answered the way a small local
  model often does, the JSON verdict inside a sentence.

``server.rejected()`` counts the structured-output rejections served.

Usage::

    with openai_server(faults=["429"]) as server:
        complete("openai:/my-model", messages, base_url=server.base_url)
        assert len(server.requests) == 2

    with openai_server(fault_rate=0.2, seed=7) as server:
        ...
        server.served()  # Counter({'ok': 812, '429': 51, 'timeout': 50, ...})
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from core.models.demo import demo_answer, demo_tool_calls
from core.models.demo_embedding import DEFAULT_DIMENSIONS, embed_text

FAULTS = ("429", "500", "401", "timeout", "malformed")
#: The transient faults a flaky provider shows (what ``fault_rate`` draws from by default).
TRANSIENT_FAULTS = ("429", "500", "timeout", "malformed")


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
    fault_rate: float = 0.0
    """Probability that a request past the scripted faults gets a random fault."""
    fault_kinds: tuple[str, ...] = TRANSIENT_FAULTS
    """The kinds ``fault_rate`` draws from, uniformly."""
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    lock: threading.Lock = field(default_factory=threading.Lock)
    answer: Callable[[dict], str | None] | None = None
    """Scripted answers: request body -> text, or None for the demo model's answer."""
    reject_json_schema: bool = False
    """Refuse ``response_format`` ``json_schema`` as llama-cpp-python's server does."""
    reject_response_format: bool | int = False
    """Refuse any ``response_format`` (True: with a 400; a number: with that status), as a
    server without structured output does."""
    prose: bool = False
    """Put answers to requests without ``response_format`` inside a sentence."""

    def next_fault(self) -> str | None:
        with self.lock:
            if self.faults:
                return self.faults.popleft()
            if self.fault_rate and self.rng.random() < self.fault_rate:
                return self.rng.choice(self.fault_kinds)
            return None

    def record(self, item: Recorded) -> None:
        with self.lock:
            self.requests.append(item)

    def rejected(self, kind: str | None = None) -> int:
        """Structured-output rejections served so far (``kind``: the ``response_format``
        type refused, e.g. ``"json_schema"``; None: all)."""
        with self.lock:
            items = list(self.requests)
        return sum(
            1
            for r in items
            if r.fault == "response_format" and (kind is None or _format_type(r.body) == kind)
        )

    def served(self, path_suffix: str = "", model: str | None = None) -> Counter[str]:
        """Requests answered so far by fault kind (``"ok"``: answered normally), optionally
        only those whose path ends with ``path_suffix`` (e.g. ``"/embeddings"``) and those
        asking for ``model`` (the request body's ``model``)."""
        with self.lock:
            items = list(self.requests)
        return Counter(
            r.fault or "ok"
            for r in items
            if r.path.rstrip("/").endswith(path_suffix)
            and (model is None or r.body.get("model") == model)
        )


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
            rejection = _rejection(server, self.path, body) if fault is None else None
            if rejection is not None:
                fault = "response_format"
            headers = {k.lower(): v for k, v in self.headers.items()}
            server.record(Recorded(self.path, headers, body, fault))
            if rejection is not None:
                return self._send(rejection[0], json.dumps(rejection[1]).encode())
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
                reply = _chat(body, server.answer)
                if server.prose and not body.get("response_format"):
                    _wrap_in_prose(reply)
                return self._send(200, json.dumps(reply).encode())
            if self.path.rstrip("/").endswith("/embeddings"):
                return self._send(200, json.dumps(_embeddings(body)).encode())
            return self._error(404, "not_found", f"No route {self.path}")

    return Handler


#: Where llama-cpp-python's chat route is defined: FastAPI names it in validation errors
#: (``llama_cpp/server/app.py`` of llama-cpp-python 0.3.x; the path is the install's).
LLAMA_CPP_ROUTE_FILE = "/usr/local/lib/python3.11/site-packages/llama_cpp/server/app.py"
LLAMA_CPP_ROUTE_LINE = 376


def llama_cpp_rejection(format_type: str = "json_schema") -> tuple[int, dict]:
    """Status and body llama-cpp-python's OpenAI-compatible server answers a chat request
    whose ``response_format.type`` is ``format_type`` (anything but ``text``/``json_object``).

    Why it looks like this (llama-cpp-python 0.3.x, FastAPI >= 0.116): the request model
    types ``response_format`` as ``ChatCompletionRequestResponseFormat``, a TypedDict with
    ``type: Literal["text", "json_object"]`` (``llama_cpp/llama_types.py``), so FastAPI's
    validation raises ``RequestValidationError`` inside the route. The server's
    ``RouteErrorHandler`` (``llama_cpp/server/errors.py``) catches every exception of the
    route, not only its own, and answers ``500`` with
    ``{"error": {"message": str(exc), "type": "internal_server_error", "param": null,
    "code": null}}``; ``str(exc)`` is FastAPI's "N validation error(s)" text with pydantic's
    error dict and the route's file, line and path.
    """
    error = {
        "type": "literal_error",
        "loc": ("body", "response_format", "type"),
        "msg": "Input should be 'text' or 'json_object'",
        "input": format_type,
        "ctx": {"expected": "'text' or 'json_object'"},
    }
    message = (
        f"1 validation error:\n  {error}\n\n"
        f'  File "{LLAMA_CPP_ROUTE_FILE}", line {LLAMA_CPP_ROUTE_LINE}, in create_chat_completion\n'
        "    POST /v1/chat/completions"
    )
    body = {
        "error": {
            "message": message,
            "type": "internal_server_error",
            "param": None,
            "code": None,
        }
    }
    return 500, body


def _format_type(body: dict) -> str | None:
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        return str(fmt.get("type"))
    return None if fmt is None else str(fmt)


def _rejection(server: LoopbackServer, path: str, body: dict) -> tuple[int, dict] | None:
    """The structured-output rejection this request gets, or None."""
    if not path.rstrip("/").endswith("/chat/completions") or not body.get("response_format"):
        return None
    kind = _format_type(body)
    if server.reject_response_format:
        message = f"response_format is not supported by this server (got type {kind!r})"
        status = 400 if server.reject_response_format is True else server.reject_response_format
        return int(status), {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": "response_format",
                "code": None,
            }
        }
    if server.reject_json_schema and kind not in ("text", "json_object"):
        return llama_cpp_rejection(str(kind))
    return None


def _wrap_in_prose(reply: dict) -> None:
    # No code fence: MLflow strips fences itself, prose around bare JSON it cannot parse.
    message = reply["choices"][0]["message"]
    if message.get("content"):
        message["content"] = (
            "Sure! Having read the conversation, here is my verdict: "
            f"{message['content']} Let me know if you need anything else."
        )


def _chat(body: dict, answer: Callable[[dict], str | None] | None = None) -> dict:
    text = answer(body) if answer is not None else None
    # A request with tools (a {{ trace }} judge) gets the demo model's tool calls first.
    calls = demo_tool_calls(body.get("messages") or [], body.get("tools")) if text is None else None
    if text is None and not calls:
        text = demo_answer(body.get("messages") or [], body.get("response_format"))
    message: dict = {"role": "assistant", "content": text}
    if calls:
        message = {"role": "assistant", "content": None, "tool_calls": calls}
    return {
        "id": "chatcmpl-loopback",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "loopback"),
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls" if calls else "stop",
                "message": message,
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
def openai_server(
    faults: list[str] | None = None,
    *,
    fault_rate: float = 0.0,
    fault_kinds: tuple[str, ...] = TRANSIENT_FAULTS,
    seed: int = 0,
    hang_seconds: float = 2.0,
    answer: Callable[[dict], str | None] | None = None,
    reject_json_schema: bool = False,
    reject_response_format: bool | int = False,
    prose: bool = False,
) -> Iterator[LoopbackServer]:
    """Run a loopback OpenAI-compatible server for the duration of the ``with`` block.

    Args:
        faults: Scripted faults, one per request, served first.
        fault_rate: Then, the probability of a random fault per request.
        fault_kinds: The kinds the random faults are drawn from (uniformly).
        seed: Seed of the random draws.
        hang_seconds: How long a ``"timeout"`` fault sleeps before answering.
        answer: Scripted answers (request body -> text; None: the demo model's answer).
        reject_json_schema: Refuse ``json_schema`` structured output exactly as
            llama-cpp-python's server does (:func:`llama_cpp_rejection`).
        reject_response_format: Refuse any ``response_format`` (True: with a 400; a
            number: with that HTTP status).
        prose: Wrap answers to requests without ``response_format`` in prose.
    """
    unknown = [f for f in [*(faults or []), *fault_kinds] if f not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault(s) {unknown}; use {FAULTS}")
    if not 0.0 <= fault_rate <= 1.0:
        raise ValueError(f"fault_rate must be within [0, 1], not {fault_rate}")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    httpd.daemon_threads = True
    handle = LoopbackServer(
        base_url=f"http://127.0.0.1:{httpd.server_address[1]}/v1",
        faults=deque(faults or []),
        hang_seconds=hang_seconds,
        fault_rate=fault_rate,
        fault_kinds=tuple(fault_kinds),
        rng=random.Random(seed),
        answer=answer,
        reject_json_schema=reject_json_schema,
        reject_response_format=reject_response_format,
        prose=prose,
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
