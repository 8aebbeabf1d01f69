"""The offline demo model: a deterministic stand-in for an LLM, reachable through LiteLLM.

It is **not an LLM**. It exists so that the dashboard works on a machine without API keys
and so that tests are deterministic. Every human-readable text it writes starts with
``[demo stand-in]``. Registered as LiteLLM custom provider ``demo`` (see
:mod:`core.models.providers`), so ``litellm.completion(model="demo/x")``, ``dspy.LM("demo/x")``
and MLflow judges with ``model="demo:/x"`` all reach it by their normal path.

What it answers (see :func:`demo_answer`):

* requests to the model ``app`` (``demo/app``, MLflow ``demo:/app``): the stand-in
  application, the Northwind support assistant (:mod:`core.models.demo_app`);
* judging requests: rules in the instructions, else the base heuristic
  (:mod:`core.models.demo_rules`), in the format asked (:mod:`core.models.demo_judge`),
  including MLflow's built-in ``Correctness`` scorer;
* ``{{ trace }}`` judges (MLflow's agent-as-judge, whose requests carry ``tools``): as a
  trace judge it reads the spans through MLflow's tools, then applies its rules to all
  span text (:mod:`core.models.demo_tools`): it answers with tool calls (``list_spans``,
  then ``get_span`` for every span; ``finish_reason`` ``tool_calls``) until the results
  are in, then judges, in three model calls per trace;
* GEPA reflection on judge instructions and on application prompts, MLflow's MetaPrompt
  optimizer, and MemAlign distillation (:mod:`core.models.demo_reflection`);
* embeddings (:mod:`core.models.demo_embedding`).

Knobs, from the environment or per call as keyword arguments of ``litellm.completion``:

* ``ALIGNBOARD_DEMO_LATENCY_MS`` / ``demo_latency_ms``: sleep per call (default 0).
* ``ALIGNBOARD_DEMO_FAILURE_RATE`` / ``demo_failure_rate``: share of calls that fail with a
  retryable 500 or 429 (default 0). Which calls fail is deterministic given
  ``ALIGNBOARD_DEMO_SEED``, the prompt, and how many times that prompt was sent before, so
  a retry of a failed call can succeed.

:func:`demo_stats` counts calls and the most calls ever in flight at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

from core.models.demo_app import answer_app
from core.models.demo_embedding import DEFAULT_DIMENSIONS, embed_text
from core.models.demo_judge import answer_judge, answer_trace_judge
from core.models.demo_prompts import OutputField, Prompt, render
from core.models.demo_reflection import (
    answer_distillation,
    answer_metaprompt,
    answer_prompt_reflection,
    answer_reflection,
    is_distillation,
    is_metaprompt,
    is_prompt_reflection,
    is_reflection,
)
from core.models.demo_tools import has_tool_results, plan_tool_calls

LATENCY_ENV = "ALIGNBOARD_DEMO_LATENCY_MS"
FAILURE_RATE_ENV = "ALIGNBOARD_DEMO_FAILURE_RATE"
SEED_ENV = "ALIGNBOARD_DEMO_SEED"


def demo_tool_calls(messages: list[Any], tools: Any) -> list[dict[str, Any]] | None:
    """The tool calls the demo model answers a request carrying ``tools`` with, or None
    when it answers with text (see :func:`core.models.demo_tools.plan_tool_calls`)."""
    if not tools:
        return None
    return plan_tool_calls(messages, tools)


def demo_answer(messages: list[Any], response_format: Any = None, model: str = "") -> str:
    """Answer a chat request the way the demo model does (pure: no knobs, no counting).

    Args:
        messages: OpenAI-style chat messages.
        response_format: The request's ``response_format`` (a JSON schema dict or pydantic
            class), used to pick the answer's fields and types.
        model: The model name after ``demo/`` (LiteLLM passes ``app`` for ``demo/app``).
            ``app`` (or a name starting with it) is the application stand-in; any other
            name reads the request to decide what it is.
    """
    prompt = Prompt.from_messages(messages, response_format)
    if model.rsplit("/", 1)[-1].lower().startswith("app"):
        return answer_app(prompt)
    if has_tool_results(messages):
        # A trace judge after its tool calls: the tool results are trace content, never
        # a request of another kind (a span could quote a reflection prompt).
        return answer_trace_judge(prompt, messages)
    if is_distillation(prompt):
        return answer_distillation(prompt)
    # Prompt reflection first: its records carry "Judge verdict" lines that the judge
    # reflection would otherwise read as judge-alignment feedback.
    if is_prompt_reflection(prompt):
        return answer_prompt_reflection(prompt)
    if is_metaprompt(prompt):
        return answer_metaprompt(prompt)
    if is_reflection(prompt):
        return answer_reflection(prompt)
    if "shortened_instruction" in prompt.system:
        # dspy's compress step: the demo model cannot shorten text honestly, so it returns
        # the instruction as is and lets the caller's length check decide.
        instruction = prompt.sections().get("instruction", "")
        fields = [OutputField("shortened_instruction")]
        return render(fields, {"shortened_instruction": instruction}, prompt.style)
    return answer_judge(prompt)


# --- knobs and counting -----------------------------------------------------------------


@dataclass(frozen=True)
class DemoStats:
    """Counters of the demo model since the last :func:`reset_demo_stats`."""

    calls: int
    """Completion calls received (including ones that failed on purpose)."""
    embedding_calls: int
    """Embedding calls received."""
    failures: int
    """Calls failed on purpose by the failure-rate knob."""
    in_flight: int
    """Calls running right now."""
    max_in_flight: int
    """The most calls that ever ran at once."""

    def to_dict(self) -> dict[str, int]:
        """Plain dict of the counters."""
        return asdict(self)


class _Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.calls = self.embedding_calls = self.failures = 0
        self.in_flight = self.max_in_flight = 0
        # How many times each prompt was seen, so failures are deterministic per attempt;
        # bounded so a long benchmark cannot grow it without limit.
        self.attempts: OrderedDict[str, int] = OrderedDict()

    def enter(self, embedding: bool) -> None:
        with self.lock:
            if embedding:
                self.embedding_calls += 1
            else:
                self.calls += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def attempt(self, key: str) -> int:
        with self.lock:
            n = self.attempts.pop(key, 0)
            self.attempts[key] = n + 1
            while len(self.attempts) > 50_000:
                self.attempts.popitem(last=False)
            return n

    def failed(self) -> None:
        with self.lock:
            self.failures += 1


_COUNTER = _Counter()


def demo_stats() -> DemoStats:
    """Return the demo model's call counters (thread-safe snapshot)."""
    c = _COUNTER
    with c.lock:
        return DemoStats(c.calls, c.embedding_calls, c.failures, c.in_flight, c.max_in_flight)


def reset_demo_stats() -> None:
    """Zero the counters (and forget which prompts were seen, for failure determinism)."""
    with _COUNTER.lock:
        _COUNTER.reset()


def _knob(params: dict, name: str, env: str) -> float:
    value = params.get(name)
    if value is None:
        value = os.environ.get(env) or 0
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return 0.0


def _should_fail(key: str, rate: float) -> str | None:
    """``"500"``/``"429"`` when this attempt of this prompt fails on purpose, else None."""
    if rate <= 0:
        return None
    attempt = _COUNTER.attempt(key)
    seed = os.environ.get(SEED_ENV, "0")
    digest = hashlib.blake2b(f"{seed}|{attempt}|{key}".encode(), digest_size=8).digest()
    draw = int.from_bytes(digest[:7], "little") / 2**56
    if draw >= rate:
        return None
    return "429" if digest[7] & 1 else "500"


def _raise_failure(kind: str, model: str) -> None:
    import litellm

    message = f"{kind} from the demo stand-in (failure rate knob); retry."
    if kind == "429":
        raise litellm.RateLimitError(message=message, llm_provider="demo", model=model)
    raise litellm.InternalServerError(message=message, llm_provider="demo", model=model)


def _prompt_key(messages: list[Any]) -> str:
    text = Prompt.from_messages(messages).everything
    return hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=16).hexdigest()


def _params(optional_params: dict | None, litellm_params: dict | None) -> dict:
    merged: dict = {}
    for source in (litellm_params or {}, optional_params or {}):
        merged.update(source)
        merged.update(source.get("extra_body") or {})
    return merged


def _build_response(
    model: str, text: str, prompt_chars: int, tool_calls: list[dict[str, Any]] | None = None
) -> Any:
    import litellm

    if tool_calls:
        message = litellm.Message(role="assistant", content=None, tool_calls=tool_calls)
        text = json.dumps(tool_calls)  # for the token count only
    else:
        message = litellm.Message(role="assistant", content=text)
    # Rough token counts (4 characters a token) so callers that read usage see numbers.
    return litellm.ModelResponse(
        model=f"demo/{model}",
        choices=[
            litellm.Choices(
                index=0,
                finish_reason="tool_calls" if tool_calls else "stop",
                message=message,
            )
        ],
        usage=litellm.Usage(
            prompt_tokens=prompt_chars // 4 + 1,
            completion_tokens=len(text) // 4 + 1,
            total_tokens=prompt_chars // 4 + len(text) // 4 + 2,
        ),
    )


def _embedding_response(model: str, inputs: Any, params: dict, model_response: Any) -> Any:
    texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
    dims = int(params.get("dimensions") or DEFAULT_DIMENSIONS)
    model_response.object = "list"
    model_response.model = f"demo/{model}"
    model_response.data = [
        {"object": "embedding", "index": i, "embedding": embed_text(str(t), dims)}
        for i, t in enumerate(texts)
    ]
    import litellm

    chars = sum(len(str(t)) for t in texts)
    model_response.usage = litellm.Usage(prompt_tokens=chars // 4 + 1, total_tokens=chars // 4 + 1)
    return model_response


def _make_handler_class():
    from litellm import CustomLLM

    class DemoLLM(CustomLLM):
        """LiteLLM custom provider ``demo``: the offline stand-in (not an LLM)."""

        def _prepare(self, model, messages, optional_params, litellm_params):
            params = _params(optional_params, litellm_params)
            _COUNTER.enter(embedding=False)
            try:
                failure = _should_fail(
                    _prompt_key(messages), _knob(params, "demo_failure_rate", FAILURE_RATE_ENV)
                )
                if failure:
                    _COUNTER.failed()
                    _raise_failure(failure, model)
                chars = sum(len(Prompt.from_messages([m]).everything) for m in messages or [])
                calls = demo_tool_calls(messages, params.get("tools"))
                if calls:
                    response = _build_response(model, "", chars, tool_calls=calls)
                else:
                    text = demo_answer(messages, params.get("response_format"), str(model or ""))
                    response = _build_response(model, text, chars)
                return response, _knob(params, "demo_latency_ms", LATENCY_ENV)
            except BaseException:
                _COUNTER.leave()
                raise

        def completion(
            self, model, messages, *args, optional_params=None, litellm_params=None, **kwargs
        ):
            response, latency = self._prepare(model, messages, optional_params, litellm_params)
            try:
                if latency:
                    time.sleep(latency / 1000)
                return response
            finally:
                _COUNTER.leave()

        async def acompletion(
            self, model, messages, *args, optional_params=None, litellm_params=None, **kwargs
        ):
            response, latency = self._prepare(model, messages, optional_params, litellm_params)
            try:
                if latency:
                    await asyncio.sleep(latency / 1000)
                return response
            finally:
                _COUNTER.leave()

        def embedding(self, model, input, model_response, *args, optional_params=None, **kwargs):
            params = _params(optional_params, kwargs.get("litellm_params"))
            _COUNTER.enter(embedding=True)
            try:
                latency = _knob(params, "demo_latency_ms", LATENCY_ENV)
                if latency:
                    time.sleep(latency / 1000)
                return _embedding_response(model, input, params, model_response)
            finally:
                _COUNTER.leave()

        async def aembedding(
            self, model, input, model_response, *args, optional_params=None, **kwargs
        ):
            params = _params(optional_params, kwargs.get("litellm_params"))
            _COUNTER.enter(embedding=True)
            try:
                latency = _knob(params, "demo_latency_ms", LATENCY_ENV)
                if latency:
                    await asyncio.sleep(latency / 1000)
                return _embedding_response(model, input, params, model_response)
            finally:
                _COUNTER.leave()

    return DemoLLM


_handler = None
_handler_lock = threading.Lock()


def demo_handler() -> Any:
    """Return the process's single ``DemoLLM`` instance (created on first use)."""
    global _handler
    with _handler_lock:
        if _handler is None:
            _handler = _make_handler_class()()
        return _handler
