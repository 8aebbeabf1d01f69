"""Pointing libraries that take no base URL at an OpenAI-compatible server.

MLflow's ``MemAlignOptimizer`` builds its reflection model (``dspy.LM``) and its embedder
(``dspy.Embedder``) from bare ``provider:/model`` names, and its judges rebuild them the
same way; none of them takes a base URL. LiteLLM resolves an ``openai/...`` call that
names no ``api_base`` from ``OPENAI_BASE_URL`` (then ``OPENAI_API_BASE``), so setting
those for the duration of the work is the one supported way in (nothing is patched).

It is process-wide: every ``openai:/`` model that names no base URL of its own goes there
too while the block runs, which :mod:`core.optimization.preflight` checks for. An alignment
runs in its own process (or alone in the CLI), so the block is the whole run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from core.models.secrets import api_key_for
from core.models.uris import parse_model

#: The environment variables LiteLLM (and MLflow's OpenAI gateway client) read for the
#: OpenAI provider's endpoint.
BASE_URL_ENV = ("OPENAI_BASE_URL", "OPENAI_API_BASE")
_KEY_ENV = "OPENAI_API_KEY"
# A self-hosted server often needs no key, but the OpenAI client refuses to send a request
# without one (the same placeholder as core.models.completion).
_NO_KEY = "no-key-needed"


@contextlib.contextmanager
def openai_base_url(base_url: str | None) -> Iterator[None]:
    """Send ``openai/...`` LiteLLM calls that name no ``api_base`` to ``base_url``.

    Args:
        base_url: An OpenAI-compatible server, e.g. ``http://localhost:8000/v1``; None
            changes nothing.

    Sets ``OPENAI_BASE_URL`` and ``OPENAI_API_BASE`` (and a placeholder ``OPENAI_API_KEY``
    when no key is configured) for the ``with`` block, and restores them afterwards.
    """
    if not base_url:
        yield
        return
    url = parse_model("openai:/any", base_url).base_url
    assert url is not None  # parse_model keeps a base URL it was given
    saved = {name: os.environ.get(name) for name in (*BASE_URL_ENV, _KEY_ENV)}
    try:
        for name in BASE_URL_ENV:
            os.environ[name] = url
        if not api_key_for("openai:/any"):
            os.environ[_KEY_ENV] = _NO_KEY
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
