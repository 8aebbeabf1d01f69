"""Structured-output fallback: the rejection, the tolerant parser, the per-endpoint memory,
and the judge evaluator falling back against a server that refuses ``json_schema``."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import urllib.error
import urllib.request

import pytest

from core.models.structured import (
    EndpointModes,
    UnparseableReply,
    endpoint_mode,
    endpoint_modes,
    is_response_format_rejection,
    parse_judge_reply,
    reset_endpoint_modes,
)
from core.optimization.judging import JudgeEvaluator
from core.optimization.spec import Example, JudgeSpec
from tests.support.openai_server import llama_cpp_rejection, openai_server

RULES = (
    "Judge the reply.\n\nConversation:\n{{ inputs }}\n\nReply:\n{{ outputs }}\n\n"
    '- If the response contains "refund today", the verdict is fail.\n'
)


@pytest.fixture(autouse=True)
def _fresh_modes():
    reset_endpoint_modes()
    yield
    reset_endpoint_modes()


def _examples(n: int) -> list[Example]:
    replies = ["Sorry, we cannot help.", "We will refund today!", "Your order ships Monday."]
    return [
        Example(
            trace_id=f"tr-{i}",
            inputs={"question": f"question {i}"},
            outputs={"response": replies[i % 3]},
            expectations={},
            label=i % 3 == 2,
            rationale=None,
            reviewer="ann",
            split="train",
            label_version=f"a-{i}",
        )
        for i in range(n)
    ]


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# --- the loopback server answers like llama-cpp-python ---------------------------------


def test_rejection_body_is_fastapis_validation_text_for_llama_cpps_request_model():
    """The message is what FastAPI's RequestValidationError prints for pydantic's error on
    llama-cpp-python's ``response_format`` type (rebuilt here from the same types)."""
    from typing import Literal, NotRequired

    from fastapi.exceptions import RequestValidationError
    from pydantic import BaseModel, Field, ValidationError
    from typing_extensions import TypedDict

    from tests.support import openai_server as srv

    class ChatCompletionRequestResponseFormat(TypedDict):  # llama_cpp/llama_types.py
        type: Literal["text", "json_object"]
        schema: NotRequired[object]

    class Request(BaseModel):  # llama_cpp/server/types.py (the field that fails)
        response_format: ChatCompletionRequestResponseFormat | None = Field(default=None)

    with pytest.raises(ValidationError) as caught:
        Request(response_format={"type": "json_schema", "json_schema": {"name": "x"}})  # type: ignore[typeddict-item]
    errors = [{**e, "loc": ("body", *e["loc"])} for e in caught.value.errors(include_url=False)]
    context = {
        "file": srv.LLAMA_CPP_ROUTE_FILE,
        "line": srv.LLAMA_CPP_ROUTE_LINE,
        "function": "create_chat_completion",
        "path": "POST /v1/chat/completions",
    }
    expected = str(RequestValidationError(errors, endpoint_ctx=context))  # type: ignore[arg-type]
    status, body = llama_cpp_rejection("json_schema")
    assert status == 500
    assert body == {
        "error": {
            "message": expected,
            "type": "internal_server_error",
            "param": None,
            "code": None,
        }
    }
    assert "Input should be 'text' or 'json_object'" in expected


def test_server_refuses_json_schema_only_and_counts_it():
    with openai_server(reject_json_schema=True) as server:
        url = server.base_url + "/chat/completions"
        messages = [{"role": "user", "content": "Is this good? Answer pass or fail."}]
        schema = {"type": "json_schema", "json_schema": {"name": "r", "schema": {}}}
        status, body = _post(url, {"model": "m", "messages": messages, "response_format": schema})
        assert (status, body) == llama_cpp_rejection("json_schema")
        for fmt in ({"type": "json_object"}, None):
            status, _ = _post(url, {"model": "m", "messages": messages, "response_format": fmt})
            assert status == 200
        assert server.rejected() == server.rejected("json_schema") == 1


# --- recognising a rejection -------------------------------------------------------------


class _Status(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_Status(500, llama_cpp_rejection()[1]["error"]["message"]), True),
        (_Status(400, "response_format is not supported"), True),
        (_Status(422, "Unknown field json_schema"), True),
        (_Status(500, "The server had an error."), False),  # transient: retried, no fallback
        (_Status(429, "response_format: slow down"), False),  # not a rejection status
        (TimeoutError("timed out"), False),
        ("litellm.InternalServerError: Error code: 500 - ... 'response_format', 'type'", True),
        ("Failed to parse response from judge model. Response: pass", False),
    ],
)
def test_only_a_refused_response_format_counts_as_a_rejection(error, expected):
    assert is_response_format_rejection(error) is expected


def test_a_rejection_wrapped_by_mlflow_is_recognised_through_the_chain():
    try:
        try:
            raise _Status(500, llama_cpp_rejection()[1]["error"]["message"])
        except _Status as inner:
            raise RuntimeError("Failed to invoke the judge via litellm") from inner
    except RuntimeError as outer:
        assert is_response_format_rejection(outer)


# --- the tolerant parser ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "value", "rationale"),
    [
        ('{"result": true, "rationale": "polite"}', True, "polite"),
        ('Sure! Here it is: {"result": "fail", "rationale": "rude"} Anything else?', False, "rude"),
        ('```json\n{"rationale": "ok", "result": "yes"}\n```', True, "ok"),
        ('{"note": {"x": 1}} then {"result": false, "rationale": "r"}', False, "r"),
        ("Result: pass\nRationale: it answers the question.", True, "it answers the question."),
        ("**Verdict:** Fail - the reply promises a refund", False, None),
        ("pass\n\nThe reply is polite.", True, "The reply is polite."),
        ("No. The reply apologises without helping.", False, None),
    ],
)
def test_pass_fail_replies_are_read_from_json_prose_or_a_leading_word(reply, value, rationale):
    got, why = parse_judge_reply(reply, "pass_fail")
    assert got is value
    if rationale is not None:
        assert why == rationale
    else:
        assert why


def test_numbers_and_categories_must_be_of_the_judges_type():
    assert parse_judge_reply("score: 4 out of 5", "numeric")[0] == 4.0
    assert parse_judge_reply('{"result": 2.5}', "numeric")[0] == 2.5
    assert parse_judge_reply("Partial - half the facts", "categorical", ("Full", "Partial"))[0] == (
        "Partial"
    )
    with pytest.raises(UnparseableReply):
        parse_judge_reply("Maybe, it depends.", "categorical", ("Full", "Partial"))


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "I cannot decide whether this reply is good.",
        '{"result": "unclear", "rationale": "?"}',
        "Result: it depends",
    ],
)
def test_an_unreadable_reply_is_a_failure_never_a_guess(reply):
    with pytest.raises(UnparseableReply):
        parse_judge_reply(reply, "pass_fail")


# --- the per-endpoint memory -------------------------------------------------------------


def test_fallback_order_is_schema_object_text_and_each_endpoint_has_its_own(caplog):
    modes = EndpointModes()
    a, b = ("m", "http://127.0.0.1:1/v1"), ("m", "http://127.0.0.1:2/v1")
    assert modes.get(*a) == "json_schema"
    with caplog.at_level(logging.WARNING, logger="core.models.structured"):
        assert modes.fall_back(*a, "json_schema") == "json_object"
        assert modes.fall_back(*a, "json_schema") == "json_object"  # late refusal: no-op
        assert modes.fall_back(*a, "json_object") == "text"
        assert modes.fall_back(*a, "text") is None
    assert modes.get(*a) == "text" and modes.get(*b) == "json_schema"
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and "m @ http://127.0.0.1:1/v1" in warnings[0]


def test_concurrent_refusals_fall_back_once_and_log_once(caplog):
    modes = EndpointModes()
    barrier = threading.Barrier(8)

    def refuse() -> None:
        barrier.wait()
        modes.fall_back("m", "http://h/v1", "json_schema")

    with caplog.at_level(logging.WARNING, logger="core.models.structured"):
        threads = [threading.Thread(target=refuse) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert modes.get("m", "http://h/v1") == "json_object"
    assert len(caplog.records) == 1


def test_until_an_endpoint_answered_its_calls_go_one_at_a_time():
    modes = EndpointModes()
    first = modes.gate("m", "http://h/v1")
    assert first.probe
    entered: list[bool] = []

    def second() -> None:
        gate = modes.gate("m", "http://h/v1")
        entered.append(gate.probe)
        gate.release()

    waiter = threading.Thread(target=second)
    waiter.start()
    waiter.join(timeout=0.3)
    assert waiter.is_alive() and not entered  # waits while the first call finds out
    first.settle()
    waiter.join(timeout=5)
    assert entered == [False]  # settled: nobody probes any more
    first.release()
    other = modes.gate("m", "http://other/v1")  # another endpoint has its own probe
    assert other.probe
    other.release()
    again = modes.gate("m", "http://other/v1")  # released unsettled: the next one probes
    assert again.probe
    again.release()


def test_the_logged_endpoint_never_shows_credentials_in_the_url(caplog):
    modes = EndpointModes()
    with caplog.at_level(logging.WARNING, logger="core.models.structured"):
        modes.fall_back("m", "http://user:s3cret@host:8000/v1?api_key=s3cret", "json_schema")
    assert "s3cret" not in caplog.text and "m @ http://host:8000/v1" in caplog.text


# --- the judge evaluator against refusing servers ----------------------------------------


def _spec(base_url: str, model: str = "openai:/local-qwen") -> JudgeSpec:
    return JudgeSpec("quality", RULES, "pass_fail", model, base_url=base_url)


def test_evaluator_falls_back_to_json_object_once_per_endpoint(store_uri, monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-real-key")
    with openai_server(reject_json_schema=True) as server:
        # Six calls in flight at once: the first finds out, the others wait for it.
        ev = JudgeEvaluator(_spec(server.base_url), workers=6)
        with caplog.at_level(logging.WARNING, logger="core.models.structured"):
            verdicts = ev.evaluate(RULES, _examples(6))
        # A second evaluator (another candidate, another scoring) starts in the mode found.
        again = JudgeEvaluator(_spec(server.base_url), workers=4).evaluate(
            RULES + "\nBe strict.", _examples(6)
        )
        formats = [r.body.get("response_format", {}).get("type") for r in server.requests]
    assert [v.value for v in verdicts] == [False, False, True, False, False, True]
    assert all(v.ok for v in verdicts + again) and ev.stats.failed == 0
    assert server.rejected("json_schema") == 1
    assert formats == ["json_schema"] + ["json_object"] * 12
    assert ev.response_format == "json_object"
    assert endpoint_mode("local-qwen", server.base_url) == "json_object"
    assert list(endpoint_modes().values()) == ["json_object"]
    assert sum("refuses json_schema" in r.getMessage() for r in caplog.records) == 1


def test_evaluator_falls_back_to_text_and_reads_prose(store_uri, monkeypatch):
    """A server that refuses every response_format with a 500 (MLflow does not fall back on
    a 500): json_schema, then json_object are refused, then plain text is read."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-real-key")
    with openai_server(reject_response_format=500, prose=True) as server:
        ev = JudgeEvaluator(_spec(server.base_url), workers=4)
        verdicts = ev.evaluate(RULES, _examples(6))
    assert [v.value for v in verdicts] == [False, False, True, False, False, True]
    assert all(v.ok and v.rationale for v in verdicts) and ev.stats.failed == 0
    assert server.rejected("json_schema") == server.rejected("json_object") == 1
    plain = [r for r in server.requests if r.fault is None]
    assert len(plain) == 6 and all(not r.body.get("response_format") for r in plain)
    assert ev.response_format == "text"


def test_a_400_refusal_is_handled_by_mlflow_and_its_prose_reply_still_read(store_uri, monkeypatch):
    """On a 400 MLflow drops the response_format itself (within the same judge call, and
    for later calls to that model): the prose reply is read all the same."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-real-key")
    with openai_server(reject_response_format=True, prose=True) as server:
        # Another model name: MLflow remembers a 400 per model name, process-wide.
        ev = JudgeEvaluator(_spec(server.base_url, "openai:/local-phi"), workers=2)
        verdicts = ev.evaluate(RULES, _examples(6))
    assert [v.value for v in verdicts] == [False, False, True, False, False, True]
    assert all(v.ok for v in verdicts) and ev.stats.failed == 0
    assert server.rejected() == 1  # the first call found out; the others waited for it


def test_an_unreadable_text_reply_is_a_failed_verdict(store_uri, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-real-key")

    def ramble(body: dict) -> str | None:
        return None if body.get("response_format") else "Hard to say; it depends on context."

    with openai_server(reject_response_format=True, answer=ramble) as server:
        ev = JudgeEvaluator(
            _spec(server.base_url, "openai:/local-ramble"), workers=1, retries=1, backoff=0.01
        )
        (verdict,) = ev.evaluate(RULES, _examples(1))
    assert not verdict.ok and verdict.value is None
    assert "UnparseableReply" in (verdict.error or "")
    assert ev.stats.failed == 1


def test_a_server_error_that_is_not_a_rejection_does_not_change_the_mode(store_uri, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-real-key")
    with openai_server(faults=["500"]) as server:
        ev = JudgeEvaluator(_spec(server.base_url, "openai:/local-flaky"), workers=1, backoff=0.01)
        (verdict,) = ev.evaluate(RULES, _examples(1))
    assert verdict.ok and ev.response_format == "json_schema"
    assert [r.body["response_format"]["type"] for r in server.requests] == ["json_schema"] * 2


# --- our own completion helper -----------------------------------------------------------


def test_complete_lowers_a_refused_response_format_and_remembers_it(monkeypatch):
    from core.models.completion import acomplete, complete

    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-real-key")
    schema = {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}}
    messages = [{"role": "user", "content": "Is the reply polite? Answer pass or fail."}]
    with openai_server(reject_response_format=500) as server:
        text = complete(
            "openai:/helper-model", messages, base_url=server.base_url, response_format=schema
        )
        assert text

        again = asyncio.run(
            acomplete(
                "openai:/helper-model", messages, base_url=server.base_url, response_format=schema
            )
        )
        assert again
        formats = [(r.body.get("response_format") or {}).get("type") for r in server.requests]
    # Refused twice (schema, then object), answered as text; the next call goes as text.
    assert formats == ["json_schema", "json_object", None, None]
    assert endpoint_mode("helper-model", server.base_url) == "text"


def test_complete_without_a_base_url_never_changes_the_request(monkeypatch):
    from core.models import completion

    spec = completion.parse_model("openai:/gpt-x")
    request = {"model": "openai/gpt-x", "response_format": {"type": "json_schema"}}
    assert completion._structured(spec, request) is request
    err = _Status(500, llama_cpp_rejection()[1]["error"]["message"])
    assert completion._lowered(spec, request, err) is None


def test_judge_answers_on_a_server_are_bounded_in_length(store_uri, monkeypatch):
    """A judge on a self-hosted server asks for at most SERVER_JUDGE_MAX_TOKENS tokens in
    every mode: llama-cpp-python otherwise generates until its context is full when the
    model keeps emitting whitespace after the JSON object."""
    from core.models.structured import SERVER_JUDGE_MAX_TOKENS

    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-real-key")
    with openai_server(reject_json_schema=True) as server:
        JudgeEvaluator(_spec(server.base_url), workers=2).evaluate(RULES, _examples(3))
        bodies = [r.body for r in server.requests]
    assert {b.get("response_format", {}).get("type") for b in bodies} == {
        "json_schema",
        "json_object",
    }
    assert all(b.get("max_tokens") == SERVER_JUDGE_MAX_TOKENS for b in bodies)
    # Servers sample by default (llama.cpp 0.8): a judge asks for greedy answers.
    assert all(b.get("temperature") == 0.0 for b in bodies), [b.get("temperature") for b in bodies]


def test_a_server_judge_can_start_in_plain_text(store_uri, monkeypatch, caplog):
    """ALIGNBOARD_JUDGE_OUTPUT=text: no response_format is ever sent (llama.cpp samples
    about twice as fast without its JSON grammar), and every reply is still read."""
    from core.models.structured import FIRST_MODE_ENV, first_mode

    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-real-key")
    monkeypatch.setenv(FIRST_MODE_ENV, "text")
    with openai_server(reject_json_schema=True, prose=True) as server:
        verdicts = JudgeEvaluator(_spec(server.base_url), workers=2).evaluate(RULES, _examples(4))
        bodies = [r.body for r in server.requests]
    assert len(bodies) == 4 and all("response_format" not in b for b in bodies), bodies
    assert all(v.ok for v in verdicts), [v.error for v in verdicts]
    # A value it does not know is named and ignored (auto: json_schema first).
    monkeypatch.setenv(FIRST_MODE_ENV, "yaml")
    with caplog.at_level(logging.WARNING):
        assert first_mode() == "json_schema"
    assert "ALIGNBOARD_JUDGE_OUTPUT='yaml'" in caplog.text
