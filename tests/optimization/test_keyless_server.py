"""A judge on a keyless OpenAI-compatible server (llama.cpp, vLLM on loopback) needs no
``OPENAI_API_KEY``: Align's pre-flight lets it through as bulk scoring and Optimize do,
and the run reaches the server with a placeholder key, never a secret.

Before, Align refused it ("The judge model cannot be used: openai:/... needs
OPENAI_API_KEY") although its base URL was set, and the B4 browser smoke had to put a
made-up key into the dashboard's environment.
"""

from __future__ import annotations

import os
from dataclasses import replace

from core.optimization.engine import run_alignment
from core.optimization.preflight import load_and_preflight
from tests.optimization.demo_examples import demo_settings
from tests.support.openai_server import openai_server

MODEL = "keyless-judge"


def test_a_judge_on_a_keyless_server_aligns_without_any_key(demo_store, monkeypatch, tmp_path):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .streamlit/secrets.toml here
    with openai_server() as server:
        s = demo_settings(demo_store, "gepa", max_metric_calls=20, register_if_worse=True)
        settings = replace(
            s, judge=replace(s.judge, model=f"openai:/{MODEL}", base_url=server.base_url)
        )
        _, findings = load_and_preflight(settings)
        assert "missing_credentials" not in {f.code for f in findings}

        result = run_alignment(settings)

        judged = [r for r in server.requests if r.path.endswith("/chat/completions")]
        assert result.status == "finished" and result.failed_examples == 0
        assert judged, "the judge's calls went to the keyless server"
        # The OpenAI client needs some key; what it sent is the placeholder, not a secret.
        assert {r.headers.get("authorization") for r in judged} == {"Bearer no-key-needed"}
        assert "OPENAI_API_KEY" not in os.environ  # nothing was left behind


def test_a_judge_without_a_base_url_still_needs_its_key(demo_store, monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    s = demo_settings(demo_store, "gepa")
    settings = replace(s, judge=replace(s.judge, model="openai:/gpt-4.1-mini"))
    _, findings = load_and_preflight(settings)
    (f,) = [f for f in findings if f.code == "missing_credentials"]
    assert f.level == "error" and "OPENAI_API_KEY" in f.message and "judge model" in f.message
