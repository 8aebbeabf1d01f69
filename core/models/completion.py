"""One way to call a chat model: :func:`complete` (and :func:`acomplete`).

Calls go through LiteLLM with a timeout and a bounded retry with exponential backoff on
rate limits (429), server errors (5xx), timeouts, dropped connections and malformed
responses. Authentication failures (401/403) raise :class:`CredentialsError` at once, with
no retry: retrying a bad key only burns time. Credentials are checked before the first call.

A request with a ``response_format`` to a server (a ``base_url``) that refuses it is sent
again at once with ``json_object``, then without ``response_format``, and the endpoint's
mode is remembered for the process (:mod:`core.models.structured`, shared with the judge
evaluator); the caller parses the text it gets back.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from core.errors import CredentialsError, ModelError
from core.models.secrets import api_key_for, redact, require_credentials
from core.models.structured import (
    MODES,
    Mode,
    endpoint_mode,
    fall_back,
    is_response_format_rejection,
    response_format_for,
)
from core.models.uris import ModelSpec, parse_model

_logger = logging.getLogger(__name__)

#: Seconds before one call is abandoned (and retried), unless LiteLLM's own request
#: timeout is configured (see :func:`default_timeout`).
DEFAULT_TIMEOUT = 60.0
#: Retries after the first attempt.
DEFAULT_RETRIES = 3
#: First backoff in seconds; doubled on each retry, capped at :data:`MAX_BACKOFF`.
DEFAULT_BACKOFF = 0.5
MAX_BACKOFF = 20.0

# A self-hosted OpenAI-compatible server often needs no key, but the OpenAI client refuses
# to send a request without one.
_NO_KEY = "no-key-needed"


def default_timeout() -> float:
    """Seconds before one LLM call is abandoned when the caller names no timeout.

    LiteLLM's own setting when one is configured (the ``REQUEST_TIMEOUT`` environment
    variable, or ``litellm.request_timeout`` set in code), else :data:`DEFAULT_TIMEOUT`.
    One knob for every call of a process: ours, MLflow's judges, and the dspy calls inside
    MLflow's optimizers, which name no timeout and so get LiteLLM's.
    """
    try:
        from litellm.litellm_core_utils.request_timeout_resolver import (
            get_configured_request_timeout,
        )
    except ImportError:  # an older LiteLLM
        return DEFAULT_TIMEOUT
    return get_configured_request_timeout() or DEFAULT_TIMEOUT


class _Malformed(Exception):
    """The provider answered 200 but the body has no usable message."""


def _classify(exc: BaseException) -> str:
    """``auth``, ``retry`` or ``fatal`` for an exception raised by one attempt."""
    import litellm

    if isinstance(exc, litellm.AuthenticationError | litellm.PermissionDeniedError):
        return "auth"
    status = getattr(exc, "status_code", None)
    if status in (401, 403):
        return "auth"
    retryable = (
        litellm.RateLimitError,
        litellm.InternalServerError,
        litellm.ServiceUnavailableError,
        litellm.Timeout,
        litellm.APIConnectionError,
        _Malformed,
    )
    if isinstance(exc, retryable) or status in (408, 409, 429) or (status or 0) >= 500:
        return "retry"
    if isinstance(exc, litellm.APIError) and _looks_malformed(str(exc)):
        return "retry"
    return "fatal"


def _looks_malformed(message: str) -> bool:
    m = message.lower()
    return any(s in m for s in ("json", "expecting value", "decode", "invalid response"))


def _request(spec: ModelSpec, messages: list[dict], timeout: float, kw: dict) -> dict:
    require_credentials(spec)
    request: dict[str, Any] = {
        "model": spec.litellm_model,
        "messages": messages,
        "timeout": timeout,
        # We retry ourselves; LiteLLM's and the OpenAI SDK's own retries would multiply ours.
        "num_retries": 0,
        "max_retries": 0,
        **kw,
    }
    key = api_key_for(spec)
    if spec.base_url:
        request["api_base"] = spec.base_url
        request["api_key"] = key or _NO_KEY
    elif key:
        request["api_key"] = key
    return request


def _mode_of(response_format: Any) -> Mode:
    if isinstance(response_format, dict) and response_format.get("type") in MODES:
        return response_format["type"]
    return "json_schema"  # a schema dict or a pydantic model


def _in_mode(request: dict, mode: Mode) -> dict:
    """``request`` with its ``response_format`` lowered to ``mode`` (never raised)."""
    if "response_format" not in request or MODES.index(mode) <= MODES.index(
        _mode_of(request["response_format"])
    ):
        return request
    lowered = {k: v for k, v in request.items() if k != "response_format"}
    if (fmt := response_format_for(mode)) is not None:
        lowered["response_format"] = fmt
    return lowered


def _structured(spec: ModelSpec, request: dict) -> dict:
    """``request`` in the structured-output mode its endpoint is known to accept."""
    if not spec.base_url or "response_format" not in request:
        return request
    return _in_mode(request, endpoint_mode(spec.model, spec.base_url))


def _lowered(spec: ModelSpec, request: dict, exc: BaseException) -> dict | None:
    """The request to send instead when the server refused its ``response_format``."""
    if not spec.base_url or "response_format" not in request:
        return None
    if not is_response_format_rejection(exc):
        return None
    following = fall_back(spec.model, spec.base_url, _mode_of(request["response_format"]))
    return None if following is None else _in_mode(request, following)


def _text(response: Any) -> str:
    try:
        content = response.choices[0].message.content
    except (AttributeError, IndexError, KeyError, TypeError) as e:
        raise _Malformed(f"no message in the response ({e})") from None
    if content is None:
        raise _Malformed("the response message has no content")
    return content


def _delay(attempt: int, backoff: float) -> float:
    # Jitter spreads retries of many parallel calls that failed together.
    return min(MAX_BACKOFF, backoff * 2**attempt) * (1 + random.random() * 0.1)


def _give_up(spec: ModelSpec, exc: BaseException, attempts: int) -> Exception:
    kind = _classify(exc)
    message = redact(str(exc))
    if kind == "auth":
        return CredentialsError(
            f"{spec.uri} rejected the API key ({message}). Check the key in the environment "
            "or in .streamlit/secrets.toml."
        )
    if kind == "retry":
        return ModelError(f"{spec.uri} failed after {attempts} attempt(s): {message}")
    return ModelError(f"{spec.uri} failed: {message}")


def complete(
    model: ModelSpec | str,
    messages: list[dict],
    *,
    base_url: str | None = None,
    timeout: float | None = None,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF,
    **kw: Any,
) -> str:
    """Send a chat request and return the reply's text.

    Args:
        model: A spec or a ``provider:/model`` URI (e.g. ``openai:/gpt-4.1-mini``,
            ``demo:/judge``).
        messages: OpenAI-style chat messages.
        base_url: Base URL of an OpenAI-compatible server (overrides the spec's).
        timeout: Seconds before one attempt is abandoned (default: :func:`default_timeout`).
        retries: Retries after the first attempt on 429/5xx/timeout/malformed replies.
        backoff: First backoff in seconds, doubled per retry.
        **kw: Passed to ``litellm.completion`` (e.g. ``temperature``, ``response_format``).

    Returns:
        The text of the first choice.

    Raises:
        CredentialsError: The key is missing (before any call) or rejected (401/403).
        ModelError: The model name is invalid, or the call failed after all retries.
    """
    import litellm

    spec = parse_model(model, base_url)
    request = _structured(spec, _request(spec, messages, timeout or default_timeout(), kw))
    attempt = 0
    while True:
        try:
            return _text(litellm.completion(**request))
        except Exception as exc:
            if (lowered := _lowered(spec, request, exc)) is not None:
                request = lowered  # the same call in a mode the server takes, at once
                continue
            if _classify(exc) != "retry" or attempt == retries:
                raise _give_up(spec, exc, attempt + 1) from None
            _logger.info(
                "%s: attempt %d failed (%s); retrying", spec.uri, attempt + 1, type(exc).__name__
            )
            time.sleep(_delay(attempt, backoff))
            attempt += 1


async def acomplete(
    model: ModelSpec | str,
    messages: list[dict],
    *,
    base_url: str | None = None,
    timeout: float | None = None,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF,
    **kw: Any,
) -> str:
    """Async :func:`complete` (same arguments, errors and retry policy)."""
    import litellm

    spec = parse_model(model, base_url)
    request = _structured(spec, _request(spec, messages, timeout or default_timeout(), kw))
    attempt = 0
    while True:
        try:
            return _text(await litellm.acompletion(**request))
        except Exception as exc:
            if (lowered := _lowered(spec, request, exc)) is not None:
                request = lowered  # the same call in a mode the server takes, at once
                continue
            if _classify(exc) != "retry" or attempt == retries:
                raise _give_up(spec, exc, attempt + 1) from None
            _logger.info(
                "%s: attempt %d failed (%s); retrying", spec.uri, attempt + 1, type(exc).__name__
            )
            await asyncio.sleep(_delay(attempt, backoff))
            attempt += 1
