"""JudgeEvaluator: MLflow's judge path, cache, parallelism, retries, auth failures."""

from __future__ import annotations

import time

import pytest

from core.errors import CredentialsError
from core.models import demo_stats, reset_demo_stats
from core.optimization.judging import JudgeEvaluator, Verdict, build_judge, score
from core.optimization.spec import Example, JudgeSpec

RULES = (
    "Judge the reply.\n\nConversation:\n{{ inputs }}\n\nReply:\n{{ outputs }}\n\n"
    '- If the response contains "refund today", the verdict is fail.\n'
)


def _spec(**kw) -> JudgeSpec:
    return JudgeSpec(
        **{
            "name": "quality",
            "instructions": RULES,
            "value_type": "pass_fail",
            "model": "demo:/judge",
            **kw,
        }
    )


def _examples(n: int, tag: str = "") -> list[Example]:
    replies = ["Sorry, we cannot help.", "We will refund today!", "Your order ships Monday."]
    return [
        Example(
            trace_id=f"tr-{tag}{i}",
            inputs={"question": f"question {tag}{i}"},
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


def test_demo_judge_through_mlflow_gives_rule_and_heuristic_verdicts(store_uri):
    ev = JudgeEvaluator(_spec(), workers=4)
    verdicts = ev.evaluate(RULES, _examples(3))
    # Apology -> base heuristic fail; quoted rule -> fail; otherwise pass.
    assert [v.value for v in verdicts] == [False, False, True]
    assert all(v.ok and v.rationale for v in verdicts)
    assert "refund today" in verdicts[1].rationale


def test_cache_prevents_paying_twice_for_a_pair(store_uri):
    reset_demo_stats()
    ev = JudgeEvaluator(_spec(), workers=4)
    examples = _examples(6)
    first = ev.evaluate(RULES, examples)
    assert demo_stats().calls == 6
    second = ev.evaluate(RULES, examples)
    assert demo_stats().calls == 6  # every pair answered from the cache
    assert second == first
    assert ev.cache.stats()["hits"] == 6
    # Other instructions, or a relabel (new label version), are new pairs.
    ev.evaluate(RULES + "\nBe strict.", examples[:2])
    assert demo_stats().calls == 8


def test_one_round_asks_once_for_the_same_instructions_on_the_same_example(store_uri):
    """The held-out round scores seed and aligned judge together; when the aligned judge
    kept the seed's instructions, each test example is one call, not two."""
    reset_demo_stats()
    ev = JudgeEvaluator(_spec(), workers=4)
    examples = _examples(5)
    seed, aligned, other = ev.evaluate_many(
        [(RULES, examples), (RULES, examples), (RULES + "\nBe strict.", examples[:2])]
    )
    assert demo_stats().calls == 5 + 2
    assert aligned == seed and len(seed) == 5 and all(v.ok for v in seed)
    assert len(other) == 2


def test_judge_calls_run_in_parallel(store_uri, monkeypatch):
    monkeypatch.setenv("ALIGNBOARD_DEMO_LATENCY_MS", "100")
    ev = JudgeEvaluator(_spec(), workers=8)
    ev.evaluate(RULES, _examples(1, "warm"))  # first MLflow judge call pays set-up costs
    reset_demo_stats()
    started = time.monotonic()
    ev.evaluate(RULES, _examples(16))
    elapsed = time.monotonic() - started
    serial = 16 * 0.100
    assert elapsed < serial * 0.5, f"{elapsed:.2f}s for 16 calls of 100 ms with 8 workers"
    assert demo_stats().max_in_flight >= 4


def test_transient_failures_are_retried_then_recorded(store_uri, monkeypatch):
    monkeypatch.setenv("ALIGNBOARD_DEMO_FAILURE_RATE", "0.5")
    ev = JudgeEvaluator(_spec(), workers=8, retries=4, backoff=0.01)
    verdicts = ev.evaluate(RULES, _examples(12))
    assert ev.stats.retries > 0
    assert sum(v.ok for v in verdicts) >= 10  # 5 attempts at 50% each: nearly all succeed

    monkeypatch.setenv("ALIGNBOARD_DEMO_FAILURE_RATE", "1")
    ev = JudgeEvaluator(_spec(), workers=8, retries=2, backoff=0.01)
    examples = _examples(4, "x")
    verdicts = ev.evaluate(RULES, examples)  # the run goes on: no exception
    assert all(not v.ok and v.error for v in verdicts)
    assert ev.stats.calls == 4 * 3 and ev.stats.failed == 4
    assert all(score(v, ex, "pass_fail") == 0.0 for v, ex in zip(verdicts, examples, strict=True))
    assert len(ev.cache) == 0  # failures are not cached: a later evaluation retries them


def test_rejected_api_key_stops_everything(store_uri, monkeypatch):
    from tests.support.openai_server import openai_server

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-0000")
    with openai_server(faults=["401"] * 50) as server:
        spec = _spec(model="openai:/x", base_url=server.base_url)
        with pytest.raises(CredentialsError, match="rejected the API key"):
            JudgeEvaluator(spec, workers=2).evaluate(RULES, _examples(4))
        assert len(server.requests) <= 4


def test_missing_api_key_fails_before_any_call(store_uri, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(store_uri.removeprefix("sqlite:///").rsplit("/", 1)[0])
    with pytest.raises(CredentialsError, match="OPENAI_API_KEY"):
        JudgeEvaluator(_spec(model="openai:/gpt-4.1-mini")).evaluate(RULES, _examples(2))


def test_any_mlflow_judge_object_can_be_evaluated_uncached(store_uri):
    reset_demo_stats()
    ev = JudgeEvaluator(_spec())
    judge = build_judge(_spec())
    verdicts = ev.evaluate(judge, _examples(3))
    ev.evaluate(judge, _examples(3))
    assert [v.value for v in verdicts] == [False, False, True]
    assert demo_stats().calls == 6 and len(ev.cache) == 0


def test_scores():
    ex = _examples(3)[2]  # label True
    assert score(Verdict(True, "r"), ex, "pass_fail") == 1.0
    assert score(Verdict(False, "r"), ex, "pass_fail") == 0.0
    assert score(Verdict(None, None, error="boom"), ex, "pass_fail") == 0.0
    num = Example("t", {}, {}, {}, 4.0, None, "ann", "val", "v")
    assert score(Verdict(3.0, ""), num, "numeric") == pytest.approx(0.75)  # 1-5 scale
    assert score(Verdict(2.0, ""), num, "numeric", value_range=2.0) == 0.0
    cat = Example("t", {}, {}, {}, "Good", None, "ann", "val", "v")
    assert score(Verdict("good", ""), cat, "categorical") == 1.0
    assert score(Verdict("bad", ""), cat, "categorical") == 0.0


def test_usage_tracking_counts_litellm_calls_of_custom_providers(store_uri, monkeypatch):
    from core.models.usage import track_usage

    ev = JudgeEvaluator(_spec(), workers=4)
    with track_usage() as usage:
        ev.evaluate(RULES, _examples(5, "u"))
    counted = usage.current()
    assert counted.calls == 5 and counted.failures == 0
    assert counted.prompt_tokens > 0 and counted.max_in_flight >= 1
    assert not counted.cost_known  # the demo stand-in has no price

    monkeypatch.setenv("ALIGNBOARD_DEMO_FAILURE_RATE", "1")
    with track_usage() as usage:
        JudgeEvaluator(_spec(), retries=1, backoff=0.01).evaluate(RULES, _examples(2, "f"))
    assert usage.current().failures == 4
