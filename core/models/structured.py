"""Structured output on servers that do not support it: fall back, remember, parse tolerantly.

MLflow judges ask for ``response_format`` ``json_schema`` (the judge's result and rationale
as a strict JSON schema). Many OpenAI-compatible local servers refuse it. llama-cpp-python's
server, for one, types ``response_format.type`` as ``Literal["text", "json_object"]``, so
FastAPI's request validation fails inside its route, and its error handler turns that into
an HTTP **500** whose OpenAI-style body carries the validation text (``"1 validation
error: ... 'msg': "Input should be 'text' or 'json_object'" ..."``). A 500 looks transient,
so without a fallback every judge call is retried, then fails.

What this module gives :class:`core.optimization.judging.JudgeEvaluator`:

* :func:`is_response_format_rejection`: whether a failure is a server refusing the
  requested ``response_format`` (status 400, 422 or 500 and a message naming
  ``response_format`` or ``json_schema``), as opposed to a transient error;
* a per-endpoint memory (model and base URL) of the mode that works, in the order
  :data:`MODES` (``json_schema``, then ``json_object``, then plain ``text``), shared by
  the whole process and thread-safe; until an endpoint has answered once, its calls go one
  at a time (:meth:`EndpointModes.gate`), so only the first call pays for the refusals;
  one warning line per endpoint and fallback;
* :func:`parse_judge_reply`: a tolerant parser for a judge's plain-text reply (a JSON
  object anywhere in prose or a code fence; ``result: pass``; a leading value word).
  What it cannot read raises :class:`UnparseableReply`: a failed call, never a guess.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

_log = logging.getLogger(__name__)

Mode = Literal["json_schema", "json_object", "text"]
#: Structured-output modes, most structured first: the order an endpoint falls back in.
MODES: tuple[Mode, ...] = ("json_schema", "json_object", "text")
#: Where a judge on a self-hosted server starts in :data:`MODES` (``auto``: ``json_schema``,
#: falling back as refused; ``json_object``; ``text``). Plain text is the fast choice on
#: llama.cpp, whose grammar-constrained sampling took 0.22-0.25 s a token against
#: 0.12-0.13 s unconstrained (Qwen2.5-1.5B, 2 threads, 2026-12-02); the tolerant parser
#: reads the reply, and a reply it cannot read is a failed call, never a guess.
FIRST_MODE_ENV = "ALIGNBOARD_JUDGE_OUTPUT"
#: HTTP statuses a server answers an unsupported ``response_format`` with: 400/422 (a
#: validation error reported as such), 500 (llama-cpp-python: validation inside the route).
REJECTION_STATUSES = frozenset({400, 422, 500})
_MENTIONS = re.compile(r"response_format|json_schema", re.IGNORECASE)
_STATUS_IN_TEXT = re.compile(
    r"\b(?:Error code|status(?: code)?)[:= ]+(400|422|500)\b|"
    r"\b(BadRequestError|UnprocessableEntityError|InternalServerError)\b",
    re.IGNORECASE,
)
_TRUE_WORDS = {"pass", "passed", "yes", "true", "correct", "good"}
_FALSE_WORDS = {"fail", "failed", "no", "false", "incorrect", "bad"}
_RESULT_LINE = re.compile(
    r"^[\s*_#>-]*(?:result|verdict|answer|rating|score|value)[\s*_]*[:=-]\s*[\s*_\"'`]*"
    r"(?P<value>[^\s*_\"'`,.;][^\n]*?)[\s*_\"'`.]*$",
    re.IGNORECASE | re.MULTILINE,
)
_RATIONALE_LINE = re.compile(
    r"^[\s*_#>-]*(?:rationale|reason(?:ing)?|explanation|justification)[\s*_]*[:=-]\s*(?P<text>.+)",
    re.IGNORECASE | re.MULTILINE | re.DOTALL,
)


#: Most tokens a judge's answer may take on a self-hosted server (a ``base_url``). A
#: verdict with its rationale takes 50-200; without a cap, llama-cpp-python (0.2.60)
#: generates until its context is full when a sampled model keeps emitting the whitespace
#: its JSON grammar allows after the object, and a request it is still working on cannot
#: be cancelled: each timed-out retry queues behind it (seen on B4: every judge call of a
#: run timed out).
SERVER_JUDGE_MAX_TOKENS = 512
#: Sampling temperature of a judge on a self-hosted server. Such servers sample by default
#: (llama-cpp-python: 0.8), so the same judge gave another verdict on the same trace on
#: a second ask (B4: an unchanged judge came out "improved" on held-out traces); a judge
#: must be a function of its instructions and the trace for any comparison to hold.
SERVER_JUDGE_TEMPERATURE = 0.0


class UnparseableReply(ValueError):
    """A judge's plain-text reply holds no value of the judge's type (a failed call)."""


def response_format_for(mode: Mode) -> dict[str, Any] | None:
    """The ``response_format`` request field that overrides the judge's in ``mode``.

    ``json_object`` asks for any JSON object; ``text`` sends none (None). ``json_schema``
    is the judge's own schema, which the caller leaves as it is.
    """
    if mode == "json_object":
        return {"type": "json_object"}
    return None


# --- recognising a rejection ---------------------------------------------------------


def exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes/contexts, outermost first (at most 10, no cycles)."""
    seen: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in seen and len(seen) < 10:
        seen.append(link)
        link = link.__cause__ or link.__context__
    return seen


def is_response_format_rejection(error: BaseException | str) -> bool:
    """Whether ``error`` is a server refusing the requested ``response_format``.

    Precise on purpose: the status must be 400, 422 or 500 (an HTTP status on an exception
    of the chain, else one named in the message, e.g. LiteLLM's ``Error code: 500`` or
    ``InternalServerError``) **and** a message must name ``response_format`` or
    ``json_schema``. A plain 500, a 429 or a timeout is not a rejection.
    """
    links: list[BaseException | str] = (
        [error] if isinstance(error, str) else [*exception_chain(error)]
    )
    texts = [str(e) for e in links]
    if not any(_MENTIONS.search(t) for t in texts):
        return False
    statuses = [getattr(e, "status_code", None) for e in links if not isinstance(e, str)]
    statuses = [s for s in statuses if isinstance(s, int)]
    if statuses:
        return any(s in REJECTION_STATUSES for s in statuses)
    return any(_STATUS_IN_TEXT.search(t) for t in texts)


# --- the per-endpoint memory ---------------------------------------------------------


def endpoint_label(model: str, base_url: str | None) -> str:
    """``model @ base_url`` for logs: the URL without user info, query or fragment (a
    base URL is not a secret, but one may carry credentials)."""
    if not base_url:
        return str(model)
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{model} @ {urlunsplit((parts.scheme, host, parts.path, '', ''))}"


class Gate:
    """A caller's pass to an endpoint (see :meth:`EndpointModes.gate`)."""

    def __init__(self, modes: EndpointModes, key: tuple[str, str], probe: bool) -> None:
        self._modes = modes
        self._key = key
        self.probe = probe
        """Whether this caller is the one finding out what the endpoint accepts."""

    def settle(self) -> None:
        """The endpoint answered in the current mode (with a reply or an error that is not
        a refusal of the format): the mode is settled and waiting callers may go."""
        if self.probe:
            self._modes._settle(self._key)
            self.probe = False

    def release(self) -> None:
        """Done (idempotent); a probe that settled nothing lets the next caller probe."""
        if self.probe:
            self._modes._release(self._key)
            self.probe = False


def first_mode() -> Mode:
    """The mode judges on a base URL are asked in first (:data:`FIRST_MODE_ENV`)."""
    import os

    raw = (os.environ.get(FIRST_MODE_ENV) or "auto").strip().lower()
    if raw in ("", "auto"):
        return MODES[0]
    if raw in MODES:
        return raw
    _log.warning("%s=%r is not auto, %s; using auto.", FIRST_MODE_ENV, raw, ", ".join(MODES))
    return MODES[0]


class EndpointModes:
    """Thread-safe memory of the structured-output mode each endpoint accepts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._modes: dict[tuple[str, str], Mode] = {}
        self._settled: set[tuple[str, str]] = set()
        self._probing: set[tuple[str, str]] = set()

    def gate(self, model: str, base_url: str | None) -> Gate:
        """Wait for a pass to call the endpoint.

        Until an endpoint answered once in some mode, one caller at a time goes (the
        probe) and the others wait: so many parallel first calls do not all pay for the
        same refusal (one refusal per endpoint, not one per call in flight). Once settled,
        every caller goes at once. The caller must :meth:`Gate.release` the pass.
        """
        key = (str(model), base_url or "")
        with self._cond:
            while key not in self._settled and key in self._probing:
                self._cond.wait(timeout=1.0)
            probe = key not in self._settled
            if probe:
                self._probing.add(key)
        return Gate(self, key, probe)

    def _settle(self, key: tuple[str, str]) -> None:
        with self._cond:
            self._settled.add(key)
            self._probing.discard(key)
            self._cond.notify_all()

    def _release(self, key: tuple[str, str]) -> None:
        with self._cond:
            self._probing.discard(key)
            self._cond.notify_all()

    def get(self, model: str, base_url: str | None) -> Mode:
        """The mode to ask ``model`` at ``base_url`` for (:func:`first_mode` until refused)."""
        with self._lock:
            return self._modes.get((str(model), base_url or ""), first_mode())

    def fall_back(self, model: str, base_url: str | None, refused: Mode) -> Mode | None:
        """Record that the endpoint refused ``refused``; return the mode to use now.

        Idempotent across threads: calls that were in flight with the refused mode all
        get the same next mode, and only the first one logs. Returns None when ``refused``
        is plain text already (nothing left to fall back to).
        """
        key = (str(model), base_url or "")
        with self._lock:
            current = self._modes.get(key, first_mode())
            if MODES.index(current) > MODES.index(refused):
                return current  # another call fell back already
            if refused == MODES[-1]:
                return None
            new = MODES[MODES.index(refused) + 1]
            self._modes[key] = new
        _log.warning(
            "%s refuses %s structured output; using %s for it from now on in this process.",
            endpoint_label(model, base_url),
            refused,
            "json_object" if new == "json_object" else "plain text with a tolerant parser",
        )
        return new

    def snapshot(self) -> dict[str, Mode]:
        """``model @ base_url`` -> mode, for every endpoint that fell back."""
        with self._lock:
            return {endpoint_label(m, u or None): mode for (m, u), mode in self._modes.items()}

    def reset(self) -> None:
        """Forget every endpoint (tests)."""
        with self._lock:
            self._modes.clear()
            self._settled.clear()
            self._probing.clear()


_MODES = EndpointModes()


def endpoint_mode(model: str, base_url: str | None) -> Mode:
    """The structured-output mode this process uses for ``model`` at ``base_url``."""
    return _MODES.get(model, base_url)


def fall_back(model: str, base_url: str | None, refused: Mode) -> Mode | None:
    """Record a refusal of ``refused`` by the endpoint; the mode to use now (see
    :meth:`EndpointModes.fall_back`)."""
    return _MODES.fall_back(model, base_url, refused)


def endpoint_gate(model: str, base_url: str | None) -> Gate:
    """A pass to call the endpoint (see :meth:`EndpointModes.gate`)."""
    return _MODES.gate(model, base_url)


def endpoint_modes() -> dict[str, Mode]:
    """Endpoints that fell back, and to what (``model @ base_url`` -> mode)."""
    return _MODES.snapshot()


def reset_endpoint_modes() -> None:
    """Forget what every endpoint accepts (tests)."""
    _MODES.reset()


# --- the tolerant parser ---------------------------------------------------------------


def _json_objects(text: str) -> list[dict[str, Any]]:
    """Every JSON object that starts somewhere in ``text`` (outermost first)."""
    decoder = json.JSONDecoder(strict=False)
    found: list[dict[str, Any]] = []
    i = text.find("{")
    while i >= 0:
        try:
            obj, end = decoder.raw_decode(text, i)
        except ValueError:
            i = text.find("{", i + 1)
            continue
        if isinstance(obj, dict):
            found.append(obj)
        i = text.find("{", end)
    return found


def _typed(raw: Any, value_type: str, options: tuple[str, ...]) -> Any:
    """``raw`` as a value of the judge's type, or None when it is not one."""
    if value_type == "pass_fail":
        if isinstance(raw, bool):
            return raw
        word = str(raw).strip().strip(".!\"'`*").lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        return None
    if value_type == "numeric":
        if isinstance(raw, bool):
            return None
        if isinstance(raw, int | float):
            return float(raw)
        m = re.match(r"^\s*(-?\d+(?:\.\d+)?)\b", str(raw))
        return float(m.group(1)) if m else None
    word = str(raw).strip().strip(".!\"'`*")
    if options:
        return next((o for o in options if o.lower() == word.lower()), None)
    return word or None


def parse_judge_reply(
    text: str | None, value_type: str = "pass_fail", options: tuple[str, ...] = ()
) -> tuple[Any, str]:
    """Read a judge's value and rationale from a plain-text reply.

    Tried in order: a JSON object with a ``result`` key anywhere in the text (prose or code
    fences around it); a ``result: <value>`` line (also ``verdict``, ``answer``,
    ``score``...); the reply's first word. The value must be one of the judge's type
    (pass/fail words, a number, one of ``options``), else nothing is guessed.

    Args:
        text: The model's reply.
        value_type: ``pass_fail``, ``categorical`` or ``numeric``.
        options: The categories of a categorical judge.

    Returns:
        ``(value, rationale)``; the value is a bool, float or category string.

    Raises:
        UnparseableReply: no value of the judge's type in the reply.
    """
    body = (text or "").strip()
    if not body:
        raise UnparseableReply("the judge answered with an empty reply")
    for obj in _json_objects(body):
        if "result" in obj:
            value = _typed(obj["result"], value_type, options)
            if value is not None:
                return value, str(obj.get("rationale") or obj.get("reasoning") or "")
    rationale_match = _RATIONALE_LINE.search(body)
    rationale = rationale_match.group("text").strip() if rationale_match else ""
    line = _RESULT_LINE.search(body)
    if line:
        value = _typed(line.group("value"), value_type, options)
        if value is None:  # e.g. "Result: Pass - the reply is polite": its first word
            value = _typed(re.split(r"[\s,;:()-]+", line.group("value"))[0], value_type, options)
        if value is not None:
            return value, rationale or body
    first = re.split(r"[\s,;:()]+", body.lstrip("*_#>\"'` "), maxsplit=1)[0]
    # A free-text category has no word to check against: its first word would be a guess.
    free_text = value_type == "categorical" and not options
    value = None if free_text else _typed(first, value_type, options)
    if value is not None:
        return value, rationale or body[len(first) :].lstrip(" \n.:-").rstrip() or body
    raise UnparseableReply(f"no {value_type} value in the judge's reply: {body[:200]!r}")
