"""Model names in MLflow's ``provider:/model`` form, and what LiteLLM calls them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NotRequired, TypedDict

from core.errors import ModelError

#: The offline demo model's provider (a LiteLLM custom provider registered by alignboard).
DEMO_PROVIDER = "demo"

#: A model name shown in error messages as the form to follow.
EXAMPLE_URI = "openai:/gpt-4.1-mini"

# Providers that run on the user's machine (or behind a URL they gave us) need no API key.
_LOCAL_PROVIDERS = frozenset({DEMO_PROVIDER, "ollama", "ollama_chat", "lm_studio", "llamafile"})

#: Providers nearly every launch names, all LiteLLM provider names (a test checks they
#: stay in :func:`known_providers`): a URI naming one is accepted without importing
#: LiteLLM, which costs seconds, so ``alignboard align --detach`` and the dashboard's
#: launch stay fast. Any other provider is checked against LiteLLM's full list.
COMMON_PROVIDERS = _LOCAL_PROVIDERS | frozenset(
    {
        "openai",
        "anthropic",
        "azure",
        "bedrock",
        "gemini",
        "vertex_ai",
        "mistral",
        "groq",
        "together_ai",
        "deepseek",
        "openrouter",
        "hosted_vllm",
        "fireworks_ai",
        "databricks",
        "xai",
    }
)


@lru_cache(maxsize=1)
def known_providers() -> frozenset[str]:
    """Return every provider name a model URI may use: LiteLLM's providers plus ``demo``."""
    import litellm

    names = {getattr(p, "value", str(p)) for p in litellm.provider_list}
    return frozenset(names | {DEMO_PROVIDER})


class JudgeKwargs(TypedDict):
    """What ``mlflow.genai.judges.make_judge`` needs to reach a model."""

    model: str
    base_url: NotRequired[str]


@dataclass(frozen=True)
class ModelSpec:
    """A model to call: provider, model name, and optionally an OpenAI-compatible server."""

    provider: str
    """LiteLLM provider name, e.g. ``openai``, ``anthropic``, ``ollama``, ``demo``."""
    model: str
    """The provider's model name, e.g. ``gpt-4.1-mini``."""
    base_url: str | None = None
    """Base URL of an OpenAI-compatible server (vLLM, llama.cpp), or None for the provider's own."""

    @property
    def uri(self) -> str:
        """The MLflow form, ``provider:/model`` (what MLflow judges take as ``model=``)."""
        return f"{self.provider}:/{self.model}"

    @property
    def litellm_model(self) -> str:
        """The LiteLLM form, ``provider/model`` (what ``litellm.completion`` and dspy take)."""
        return f"{self.provider}/{self.model}"

    @property
    def is_demo(self) -> bool:
        """Whether this is the offline demo stand-in (not an LLM)."""
        return self.provider == DEMO_PROVIDER

    @property
    def needs_key(self) -> bool:
        """Whether calling this model requires an API key.

        Local providers and self-hosted servers (a ``base_url``) need none; such a server may
        still accept an optional key.
        """
        return not (self.provider in _LOCAL_PROVIDERS or self.base_url)

    def judge_kwargs(self) -> JudgeKwargs:
        """Keyword arguments for ``mlflow.genai.judges.make_judge`` to reach this model.

        MLflow 3.17 sends a judge with a ``base_url`` to that URL as is (its gateway adapter
        posts to ``base_url`` directly), so it must be the full chat-completions endpoint,
        not the ``/v1`` base LiteLLM and the OpenAI SDK take.
        """
        kwargs: JudgeKwargs = {"model": self.uri}
        if self.base_url:
            endpoint = self.base_url
            if not endpoint.endswith("/chat/completions"):
                endpoint += "/chat/completions"
            kwargs["base_url"] = endpoint
        return kwargs

    def __str__(self) -> str:
        return self.uri


def _fail(uri: object, why: str) -> ModelError:
    shown = ", ".join(sorted(p for p in ("openai", "anthropic", "ollama", "gemini", "demo")))
    return ModelError(
        f"Cannot use model {uri!r}: {why}. Write it as provider:/model, e.g. {EXAMPLE_URI!r} "
        f"or 'demo:/judge' (the offline stand-in). Supported providers: {shown}, and any "
        f"other LiteLLM provider ({len(known_providers())} in all); for an OpenAI-compatible "
        f"server use 'openai:/<model>' with a base URL."
    )


def parse_model(uri: str | ModelSpec, base_url: str | None = None) -> ModelSpec:
    """Parse ``provider:/model`` into a :class:`ModelSpec`.

    Args:
        uri: A model URI such as ``openai:/gpt-4.1-mini`` or ``demo:/judge``, or a spec
            (returned as is, with ``base_url`` applied if given).
        base_url: Base URL of an OpenAI-compatible server, e.g. ``http://localhost:8000/v1``.

    Returns:
        The parsed spec.

    Raises:
        ModelError: The URI is malformed or names an unknown provider; the message lists the
            supported providers and an example.
    """
    if isinstance(uri, ModelSpec):
        return ModelSpec(uri.provider, uri.model, base_url or uri.base_url)
    if not isinstance(uri, str) or not uri.strip():
        raise _fail(uri, "the model name is empty")
    return _parse(uri, base_url)


# One launch names the same few models over and over (settings, pre-flight per role, the
# runner, the evaluator): parse each once. Bounded; specs are frozen, so sharing is safe.
# Errors are not cached (lru_cache stores results only), so a fixed name is seen at once.
@lru_cache(maxsize=256)
def _parse(uri: str, base_url: str | None) -> ModelSpec:
    text = uri.strip()
    provider, sep, model = text.partition(":/")
    model = model.lstrip("/").strip()
    if not sep:
        head, slash, tail = text.partition("/")
        hint = f" (did you mean '{head}:/{tail}'?)" if slash and head and tail else ""
        raise _fail(uri, f"it has no ':/' between provider and model{hint}")
    if not provider or not model:
        raise _fail(uri, "the provider or the model name is missing")
    provider = provider.strip().lower()
    if provider not in COMMON_PROVIDERS and provider not in known_providers():
        raise _fail(uri, f"unknown provider {provider!r}")
    if base_url is not None:
        base_url = base_url.strip().rstrip("/") or None
        if base_url and not base_url.startswith(("http://", "https://")):
            raise ModelError(
                f"Base URL {base_url!r} for {text!r} must start with http:// or https://, "
                "e.g. 'http://localhost:8000/v1'."
            )
    return ModelSpec(provider=provider, model=model, base_url=base_url)
