"""An OpenAI-compatible server over real HTTP (loopback), with faults, via our helpers and MLflow."""

from __future__ import annotations

import asyncio
import logging

import litellm
import pytest

from core.errors import CredentialsError, ModelError
from core.models import acomplete, complete, parse_model, register_providers
from core.models.demo_embedding import embed_text
from tests.support.openai_server import openai_server

KEY = "sk-loopback-test-key-0123456789"
ASK = [{"role": "user", "content": "Answer only pass or fail.\nResponse: I am sorry."}]


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    register_providers()


@pytest.fixture
def loopback_server():
    with openai_server() as server:
        yield server


def call(server, **kw):
    kw.setdefault("timeout", 2.0)
    kw.setdefault("backoff", 0.01)
    return complete("openai:/loopback-model", ASK, base_url=server.base_url, **kw)


def test_success_sends_the_key_but_never_logs_it(loopback_server, caplog, capsys):
    with caplog.at_level(logging.DEBUG):
        assert call(loopback_server) == "fail"
    [request] = loopback_server.requests
    assert request.path == "/v1/chat/completions"
    assert request.body["model"] == "loopback-model"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    captured = capsys.readouterr()
    assert KEY not in caplog.text + captured.out + captured.err


@pytest.mark.parametrize("fault", ["429", "500", "malformed"])
def test_transient_fault_then_success_is_retried(loopback_server, fault):
    loopback_server.faults.append(fault)
    assert call(loopback_server) == "fail"
    assert [r.fault for r in loopback_server.requests] == [fault, None]


def test_timeout_then_success_is_retried(loopback_server):
    loopback_server.hang_seconds = 1.0
    loopback_server.faults.append("timeout")
    assert call(loopback_server, timeout=0.3) == "fail"
    assert [r.fault for r in loopback_server.requests] == ["timeout", None]


def test_retries_are_bounded(loopback_server):
    loopback_server.faults.extend(["500"] * 5)
    with pytest.raises(ModelError, match="failed after 3 attempt"):
        call(loopback_server, retries=2)
    assert len(loopback_server.requests) == 3


def test_persistent_malformed_body_is_a_clear_error(loopback_server):
    loopback_server.faults.extend(["malformed"] * 2)
    with pytest.raises(ModelError, match="openai:/loopback-model failed after 2 attempt"):
        call(loopback_server, retries=1)


def test_unauthorized_raises_credentials_error_without_retry(loopback_server):
    loopback_server.faults.append("401")
    with pytest.raises(CredentialsError) as info:
        call(loopback_server)
    assert "rejected the API key" in str(info.value)
    assert KEY not in str(info.value)
    assert len(loopback_server.requests) == 1


def test_async_completion_retries_too(loopback_server):
    loopback_server.faults.append("429")
    text = asyncio.run(
        acomplete("openai:/loopback-model", ASK, base_url=loopback_server.base_url, backoff=0.01)
    )
    assert text == "fail"
    assert len(loopback_server.requests) == 2


def test_embeddings_over_http_match_the_demo_embedding(loopback_server):
    response = litellm.embedding(
        model="openai/loopback-embed", input=["hello world"], api_base=loopback_server.base_url
    )
    assert response.data[0]["embedding"] == pytest.approx(embed_text("hello world"))


def test_mlflow_judge_reaches_the_server_by_base_url(loopback_server):
    from mlflow.genai.judges import make_judge

    spec = parse_model("openai:/loopback-model", base_url=loopback_server.base_url)
    judge = make_judge(
        name="helpful",
        instructions='Judge {{ outputs }}.\n- If the response contains "refund", the verdict is fail.',
        feedback_value_type=bool,
        **spec.judge_kwargs(),
    )
    assert judge(outputs="Sure, here you go.").value is True
    assert judge(outputs="Your refund is on its way.").value is False
    assert judge(outputs="Sorry about that.").value is False
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in loopback_server.requests)
    assert len(loopback_server.requests) == 3
