"""API keys: where they come from, checking them before work, and keeping them out of logs.

Keys are read from the environment first, then from ``.streamlit/secrets.toml`` (top-level
string entries such as ``OPENAI_API_KEY = "sk-..."``). The file is looked for in the current
directory, then next to the data folder (the parent of ``ALIGNBOARD_HOME``); the first one
found wins. :func:`export_secrets_to_environ` copies its entries into the environment (never
overriding a variable already set) so that MLflow judges, dspy and gepa, which all read keys
from the environment through LiteLLM, find them by their normal path.

Keys must never reach MLflow params, artifacts or logs: :func:`redact` replaces every known
secret value with ``***`` and :class:`RedactingFilter` does it for log records.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import tomllib
from pathlib import Path

from core.errors import CredentialsError
from core.models.uris import ModelSpec, parse_model

#: Relative location of the secrets file (Streamlit's convention).
SECRETS_RELATIVE_PATH = Path(".streamlit") / "secrets.toml"

_SECRET_NAME = re.compile(r"(_API_KEY|_TOKEN|_SECRET|_SECRET_KEY|_ACCESS_KEY)$", re.IGNORECASE)
# Key-shaped strings that may show up in provider error messages even when we never saw the
# value: OpenAI/Anthropic style keys and bearer tokens.
_KEY_PATTERNS = re.compile(r"\b(sk-[A-Za-z0-9_\-]{12,})|(?<=Bearer )[A-Za-z0-9._\-]{8,}")
# Shorter values are too likely to be ordinary words or flags to be replaced everywhere.
_MIN_SECRET_LEN = 6
REDACTED = "***"

# Provider -> environment variable, for providers LiteLLM's validate_environment misses.
_KEY_ENV = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "groq": "GROQ_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "xai": "XAI_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY",
    "fireworks_ai": "FIREWORKS_AI_API_KEY",
    "cohere": "COHERE_API_KEY",
    "perplexity": "PERPLEXITYAI_API_KEY",
}

_cache_lock = threading.Lock()
_cache: dict[Path, tuple[float, dict[str, str]]] = {}


def secrets_path() -> Path | None:
    """Return the ``secrets.toml`` in force, or None when there is none.

    Looked for in ``./.streamlit/`` then in ``<parent of ALIGNBOARD_HOME>/.streamlit/``.
    """
    candidates = [Path.cwd() / SECRETS_RELATIVE_PATH]
    if home := os.environ.get("ALIGNBOARD_HOME"):
        candidates.append(Path(home).resolve().parent / SECRETS_RELATIVE_PATH)
    return next((p for p in candidates if p.is_file()), None)


def load_secrets_file(path: Path | None = None) -> dict[str, str]:
    """Return the top-level string entries of ``secrets.toml`` (empty if there is none).

    Nested tables are ignored: only top-level ``NAME = "value"`` entries are keys. The parse
    is cached until the file changes.

    Raises:
        CredentialsError: The file exists but is not valid TOML.
    """
    path = path or secrets_path()
    if path is None:
        return {}
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return {}
    with _cache_lock:
        hit = _cache.get(path)
        if hit and hit[0] == mtime:
            return dict(hit[1])
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise CredentialsError(f"{path} is not valid TOML ({e}); fix or remove it.") from None
    values = {k: v for k, v in data.items() if isinstance(v, str)}
    with _cache_lock:
        _cache[path] = (mtime, values)
    return dict(values)


def get_secret(name: str) -> str | None:
    """Return the value of ``name`` from the environment, else from ``secrets.toml``."""
    return os.environ.get(name) or load_secrets_file().get(name) or None


def export_secrets_to_environ() -> list[str]:
    """Copy ``secrets.toml`` entries into the environment, never overriding one already set.

    Returns:
        The names that were exported (never the values).
    """
    exported = []
    for name, value in load_secrets_file().items():
        if name.isupper() and value and not os.environ.get(name):
            os.environ[name] = value
            exported.append(name)
    return exported


def key_env_vars(spec: ModelSpec) -> list[str]:
    """Return the environment variables a model's provider needs (empty when none)."""
    if not spec.needs_key:
        return []
    if spec.provider in _KEY_ENV:
        return [_KEY_ENV[spec.provider]]
    try:
        import litellm

        missing = litellm.validate_environment(spec.litellm_model).get("missing_keys") or []
    except Exception:
        # validate_environment raises for some providers it cannot introspect; the
        # provider itself will then report a missing key at call time.
        missing = []
    return [name for name in missing if isinstance(name, str)]


def require_credentials(spec: ModelSpec | str) -> None:
    """Check, before any work, that a model's API key is configured.

    Args:
        spec: A model spec or URI.

    Raises:
        CredentialsError: A key is missing; the message names the variable to set.
    """
    spec = parse_model(spec)
    missing = [name for name in key_env_vars(spec) if not get_secret(name)]
    if missing:
        names = " and ".join(missing)
        raise CredentialsError(
            f"{spec.uri} needs {names}; set it in the environment or in "
            f".streamlit/secrets.toml (or use the offline stand-in 'demo:/judge')."
        )


def api_key_for(spec: ModelSpec | str) -> str | None:
    """Return the API key to send for a model, or None to let the provider default apply."""
    spec = parse_model(spec)
    names = key_env_vars(spec) or ([_KEY_ENV[spec.provider]] if spec.provider in _KEY_ENV else [])
    for name in names:
        if value := get_secret(name):
            return value
    return None


def secret_values() -> set[str]:
    """Return every value that must never be shown: secret-named env vars and secrets.toml."""
    values = {v for k, v in os.environ.items() if _SECRET_NAME.search(k)}
    values |= set(load_secrets_file().values())
    return {v for v in values if v and len(v) >= _MIN_SECRET_LEN}


def redact(text: str) -> str:
    """Replace every known secret value (and key-shaped tokens) in ``text`` with ``***``."""
    if not text:
        return text
    # Longest first, so a key that contains another key is replaced whole.
    for value in sorted(secret_values(), key=len, reverse=True):
        if value in text:
            text = text.replace(value, REDACTED)
    return _KEY_PATTERNS.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts secrets from a record's message and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_installed = False
_install_lock = threading.Lock()


def install_log_redaction() -> None:
    """Redact secrets from every log record created in this process (idempotent).

    A filter on one logger misses records propagated from its children, so the filter runs
    from the log record factory instead, before any handler sees the record.
    """
    global _installed
    with _install_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()
        redactor = RedactingFilter()

        def factory(*args, **kwargs) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            redactor.filter(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True
