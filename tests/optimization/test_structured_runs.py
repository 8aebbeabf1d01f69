"""GEPA and MemAlign alignments whose judge is served by a server that refuses
``json_schema`` structured output exactly as llama-cpp-python's does (HTTP 500).

The judge is ``openai:/<model>`` on the loopback server (``reject_json_schema=True``); the
reflection and embedding models stay the offline demo ones. Each run must finish with no
failed example, and the server must have refused ``json_schema`` once per endpoint (the
first judge call finds out, every later call of the run, held-out scoring included, asks
for ``json_object``), not once per call.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from mlflow import MlflowClient

from core.models.structured import endpoint_mode, reset_endpoint_modes
from core.optimization.engine import run_alignment
from tests.optimization.demo_examples import demo_settings
from tests.support.openai_server import openai_server


@pytest.fixture
def refusing_server(demo_store, monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-real-key-0000")
    # dspy caches answers on disk: a shared cache would answer MemAlign from an older run.
    monkeypatch.setenv("DSPY_CACHEDIR", str(tmp_path / "dspy-cache"))
    reset_endpoint_modes()
    with openai_server(reject_json_schema=True) as server:
        yield demo_store, server
    reset_endpoint_modes()


def _settings(experiment_id: str, optimizer: str, url: str, model: str, **kw):
    s = demo_settings(experiment_id, optimizer, **kw)
    return replace(s, judge=replace(s.judge, model=f"openai:/{model}", base_url=url))


def _judge_requests(server, model: str) -> list[str | None]:
    return [
        (r.body.get("response_format") or {}).get("type")
        for r in server.requests
        if r.path.endswith("/chat/completions") and r.body.get("model") == model
    ]


@pytest.mark.parametrize(
    ("optimizer", "model", "kw"),
    [
        ("gepa", "llama-qwen-gepa", {"max_metric_calls": 120, "seed": 0}),
        ("memalign", "llama-qwen-memalign", {}),
    ],
)
def test_alignment_finishes_against_a_server_refusing_json_schema(
    refusing_server, optimizer, model, kw
):
    experiment_id, server = refusing_server
    settings = _settings(experiment_id, optimizer, server.base_url, model, **kw)

    result = run_alignment(settings)

    assert result.status == "finished" and result.failed_examples == 0
    formats = _judge_requests(server, model)
    print(f"\n{optimizer}: {len(formats)} judge requests, {server.rejected()} refused")
    # One refusal for the endpoint; every other judge request asked for json_object.
    assert server.rejected("json_schema") == 1 and formats[0] == "json_schema"
    assert formats[1:] == ["json_object"] * (len(formats) - 1) and len(formats) > 10
    assert endpoint_mode(model, server.base_url) == "json_object"
    metrics = MlflowClient().get_run(result.run_id).data.metrics
    assert metrics["failed_examples"] == 0
    assert result.test_accuracy_after is not None and result.test_accuracy_before is not None
    tags = MlflowClient().get_run(result.run_id).data.tags
    assert tags.get("alignboard.judge_response_format") == "json_object"
