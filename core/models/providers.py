"""Registration of alignboard's LiteLLM custom providers (the demo model).

MLflow judges (``make_judge(model="demo:/judge")``) turn ``provider:/model`` into LiteLLM's
``provider/model`` and call ``litellm.completion``; dspy (``dspy.LM("demo/judge")``,
``dspy.Embedder("demo/embed")``), MLflow's GEPA/MemAlign optimizers and gepa all go through
LiteLLM too. LiteLLM looks custom providers up in ``litellm.custom_provider_map`` on every
call, so adding the ``demo`` entry there is the only glue needed: no MLflow internals are
patched.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import sys
import threading
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

from core.models.uris import DEMO_PROVIDER

log = logging.getLogger(__name__)
_lock = threading.Lock()
_registered = False
_hook: _RegisterOnImport | None = None


def register_providers() -> None:
    """Register the demo provider with LiteLLM and prepare credentials (idempotent, cheap).

    Also copies ``.streamlit/secrets.toml`` keys into the environment (never overriding a set
    variable) so every library finds them, and installs log redaction of secrets.

    When LiteLLM is not imported yet, the registration waits for its import (whoever does
    it: MLflow's judges, dspy, gepa or :mod:`core.models.completion`), so a process that
    never calls a model, such as ``alignboard status``, does not pay ~2-3 s for LiteLLM.
    """
    # Importing config sets the quiet environment (no price-table or catalog downloads).
    import core.store.config  # noqa: F401
    from core.models.secrets import export_secrets_to_environ, install_log_redaction

    export_secrets_to_environ()
    if "litellm" in sys.modules:
        _register_now()
    else:
        _register_on_import()
    install_log_redaction()


def _register_now() -> None:
    global _registered
    # Imported before taking the lock: a thread importing litellm registers from inside that
    # import (holding litellm's module lock), so none may wait for that lock under ours.
    import litellm
    from litellm.utils import custom_llm_setup

    from core.models.demo import demo_handler

    with _lock:
        if _registered and _demo_entry_present():
            return
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
        custom_llm_setup()
        _registered = True


class _RegisterOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: runs :func:`_register_now` right after litellm is executed."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != "litellm":
            return None
        _remove_hook()
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_then_register(module: ModuleType) -> None:
            exec_module(module)
            try:
                _register_now()
            except Exception:
                # Never break the import that triggered us; demo:/ calls will say why.
                log.exception("could not register the demo LiteLLM provider")

        # Only this module's loader instance: litellm's own submodules load as usual.
        loader.exec_module = exec_then_register  # type: ignore[method-assign]
        return spec


def _register_on_import() -> None:
    global _hook
    with _lock:
        if _hook is None:
            _hook = _RegisterOnImport()
            sys.meta_path.insert(0, _hook)
    if "litellm" in sys.modules:
        # Imported by another thread meanwhile, before the hook was in place.
        _remove_hook()
        _register_now()


def _remove_hook() -> None:
    global _hook
    with _lock:
        if _hook is not None:
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(_hook)
            _hook = None


def _demo_entry_present() -> bool:
    import sys

    litellm = sys.modules.get("litellm")
    if litellm is None:
        return False
    return any(e.get("provider") == DEMO_PROVIDER for e in (litellm.custom_provider_map or []))
