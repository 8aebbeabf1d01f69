"""Registration of alignboard's LiteLLM custom providers (the demo model).

MLflow judges (``make_judge(model="demo:/judge")``) turn ``provider:/model`` into LiteLLM's
``provider/model`` and call ``litellm.completion``; dspy (``dspy.LM("demo/judge")``,
``dspy.Embedder("demo/embed")``), MLflow's GEPA/MemAlign optimizers and gepa all go through
LiteLLM too. LiteLLM looks custom providers up in ``litellm.custom_provider_map`` on every
call, so adding the ``demo`` entry there is the only glue needed: no MLflow internals are
patched.
"""

from __future__ import annotations

import threading

from core.models.uris import DEMO_PROVIDER

_lock = threading.Lock()
_registered = False


def register_providers() -> None:
    """Register the demo provider with LiteLLM and prepare credentials (idempotent, cheap).

    Also copies ``.streamlit/secrets.toml`` keys into the environment (never overriding a set
    variable) so every library finds them, and installs log redaction of secrets.
    """
    global _registered
    # Importing config sets the quiet environment (no price-table or catalog downloads).
    import core.store.config  # noqa: F401
    from core.models.secrets import export_secrets_to_environ, install_log_redaction

    export_secrets_to_environ()
    with _lock:
        if _registered and _demo_entry_present():
            return
        import litellm

        from core.models.demo import demo_handler

        entries = [
            e for e in (litellm.custom_provider_map or []) if e.get("provider") != DEMO_PROVIDER
        ]
        entries.append({"provider": DEMO_PROVIDER, "custom_handler": demo_handler()})
        litellm.custom_provider_map = entries
        # LiteLLM prints a "Give Feedback / Get Help" banner to stdout on every failed call,
        # retried ones included; our callers report errors themselves.
        litellm.suppress_debug_info = True
        # completion() re-runs this on every call, but embedding() and the provider lookup
        # used by get_llm_provider() may run before any completion in a fresh process.
        from litellm.utils import custom_llm_setup

        custom_llm_setup()
        _registered = True
    install_log_redaction()


def _demo_entry_present() -> bool:
    import sys

    litellm = sys.modules.get("litellm")
    if litellm is None:
        return False
    return any(e.get("provider") == DEMO_PROVIDER for e in (litellm.custom_provider_map or []))
