"""Models: ``provider:/model`` names, credentials, one completion helper, the demo model.

The demo model (``demo:/...``) is a deterministic offline stand-in, not an LLM; see
:mod:`core.models.demo`. The names are imported on first use (:mod:`core._lazy`).
"""

from typing import TYPE_CHECKING

from core._lazy import lazy_exports

if TYPE_CHECKING:
    from core.models.completion import acomplete, complete
    from core.models.demo import DemoStats, demo_answer, demo_stats, reset_demo_stats
    from core.models.demo_embedding import embed_text
    from core.models.providers import register_providers
    from core.models.secrets import (
        RedactingFilter,
        api_key_for,
        export_secrets_to_environ,
        get_secret,
        install_log_redaction,
        redact,
        require_credentials,
        secrets_path,
    )
    from core.models.uris import DEMO_PROVIDER, ModelSpec, known_providers, parse_model

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "core.models.completion": ["acomplete", "complete"],
        "core.models.demo": ["DemoStats", "demo_answer", "demo_stats", "reset_demo_stats"],
        "core.models.demo_embedding": ["embed_text"],
        "core.models.providers": ["register_providers"],
        "core.models.secrets": [
            "RedactingFilter",
            "api_key_for",
            "export_secrets_to_environ",
            "get_secret",
            "install_log_redaction",
            "redact",
            "require_credentials",
            "secrets_path",
        ],
        "core.models.uris": ["DEMO_PROVIDER", "ModelSpec", "known_providers", "parse_model"],
    },
)

__all__ = [
    "DEMO_PROVIDER",
    "DemoStats",
    "ModelSpec",
    "RedactingFilter",
    "acomplete",
    "api_key_for",
    "complete",
    "demo_answer",
    "demo_stats",
    "embed_text",
    "export_secrets_to_environ",
    "get_secret",
    "install_log_redaction",
    "known_providers",
    "parse_model",
    "redact",
    "register_providers",
    "require_credentials",
    "reset_demo_stats",
    "secrets_path",
]
