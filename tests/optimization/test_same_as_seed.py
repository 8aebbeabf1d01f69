"""A search that keeps the seed says "no change" and registers no copy, even when the
judge samples.

Found by B4 on a real model (llama.cpp samples at temperature 0.8): the held-out step
scored the seed and the returned judge separately, so a returned judge *identical* to the
seed came out "improved" (and was registered) or "worse" by sampling alone. Now a
candidate whose text is the seed's is scored once and its verdicts stand for both.

The judge here is a loopback server answering pass or fail at random, as a sampling model
does; the runner returns the seed, as gepa does when no proposal beats it.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from core.optimization.engine import run_alignment
from core.optimization.registry import list_versions
from core.optimization.spec import AlignmentOutcome
from core.optimization.verdict import NO_CHANGE, UNCHANGED, describe
from tests.optimization.demo_examples import CRITERION, demo_settings
from tests.support.openai_server import openai_server


@pytest.fixture
def coin_judge(demo_store, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-real-key-0000")
    rng = random.Random(7)

    def coin(body: dict) -> str:
        return json.dumps({"result": rng.choice(["pass", "fail"]), "rationale": "a coin flip"})

    with openai_server(answer=coin) as server:
        s = demo_settings(demo_store, "gepa")
        yield (
            demo_store,
            server,
            replace(s, judge=replace(s.judge, model="openai:/coin", base_url=server.base_url)),
        )


def keep_the_seed(settings, train, val, recorder):
    return AlignmentOutcome("gepa", settings.judge.instructions, None, iterations=1)


def _judge_calls(server) -> int:
    return sum(1 for r in server.requests if r.path.endswith("/chat/completions"))


def test_a_kept_seed_is_scored_once_and_says_no_change(coin_judge):
    experiment_id, server, settings = coin_judge
    first = run_alignment(settings, runner=keep_the_seed)
    assert first.test_size > 0
    # One set of held-out calls, not two: the seed's verdicts stand for both sides.
    assert _judge_calls(server) == first.test_size
    assert first.verdict == NO_CHANGE and not first.significant
    assert first.test_accuracy_after == first.test_accuracy_before
    assert first.test_kappa_after == first.test_kappa_before
    same = {k: v for k, v in first.test_before.items() if k != "predicted_name"}
    assert same == {k: v for k, v in first.test_after.items() if k != "predicted_name"}
    assert describe_of(first).startswith("No change: the search kept the seed")
    # No version of the judge existed: the seed becomes v1, as before.
    assert first.registered and first.judge_version == 1

    again = run_alignment(settings, runner=keep_the_seed)
    assert again.verdict == NO_CHANGE
    # v1 already holds these instructions: a copy would be a version nobody aligned.
    assert not again.registered and again.judge_version is None
    assert [v.version for v in list_versions(experiment_id, CRITERION)] == [1]

    from mlflow import MlflowClient

    tags = MlflowClient().get_run(again.run_id).data.tags
    assert tags["alignboard.not_registered_reason"] == UNCHANGED


def test_a_changed_judge_is_still_scored_on_its_own(coin_judge):
    _, server, settings = coin_judge

    def reword(s, train, val, recorder):
        return AlignmentOutcome("gepa", s.judge.instructions + "\nBe strict.", None, iterations=1)

    result = run_alignment(settings, runner=reword)
    assert _judge_calls(server) == 2 * result.test_size  # both judges asked
    assert not describe_of(result).startswith("No change: the search kept the seed")


def describe_of(result) -> str:
    return result.verdict_text or describe(None)
