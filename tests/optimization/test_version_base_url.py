"""A registered judge keeps the base URL it was aligned with, and every scoring of the
version goes there (MLflow 3.17 does not serialize a judge's base URL).

Two loopback servers: A serves the judge of the alignment, B is a decoy that must never be
called. Scoring a version sends its calls to A, through the bulk scoring job's code path,
the Agreement page's ``score_version``, MemAlign's realign, and a prompt optimization's
judge.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from mlflow import MlflowClient

from core.optimization.bulk_scoring import TraceSelection, build_score_settings, run_scoring
from core.optimization.engine import run_alignment
from core.optimization.judging import build_judge
from core.optimization.registry import (
    list_versions,
    register_version,
    storable_base_url,
    version_tag,
)
from core.optimization.scoring import score_version, version_scorer
from core.optimization.spec import JudgeSpec
from tests.optimization.demo_examples import CRITERION, demo_settings
from tests.support.openai_server import openai_server

MODEL = "served-judge"


@pytest.fixture
def two_servers(demo_store, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-real-key-0000")
    with openai_server() as a, openai_server() as b:
        # Anything that forgot the version's base URL and fell back to the environment's
        # OpenAI endpoint reaches the decoy B, not the real OpenAI.
        monkeypatch.setenv("OPENAI_BASE_URL", b.base_url)
        monkeypatch.setenv("OPENAI_API_BASE", b.base_url)
        yield demo_store, a, b


def _chat(server) -> int:
    return sum(server.served("/chat/completions", model=MODEL).values())


def test_an_aligned_version_is_scored_on_the_server_it_was_aligned_with(two_servers):
    experiment_id, a, b = two_servers
    s = demo_settings(experiment_id, "gepa", max_metric_calls=30, register_if_worse=True)
    settings = replace(s, judge=replace(s.judge, model=f"openai:/{MODEL}", base_url=a.base_url))
    result = run_alignment(settings)
    assert result.judge_version is not None
    (registered,) = [v for v in list_versions(experiment_id, CRITERION) if v.version == 1]
    assert registered.base_url == a.base_url
    aligned_calls = _chat(a)
    assert aligned_calls > 0 and _chat(b) == 0

    # The bulk scoring job's path: settings resolved from "name@version", then run.
    scoring = build_score_settings(
        experiment_id,
        f"{CRITERION}@{result.judge_version}",
        TraceSelection(mode="all", limit=12),
        workers=4,
    )
    scored = run_scoring(scoring)
    assert (scored.n_scored, scored.n_failed) == (12, 0)
    assert _chat(a) == aligned_calls + 12 and _chat(b) == 0

    # The Agreement page's scoring of a split.
    before = _chat(a)
    done = score_version(experiment_id, CRITERION, result.judge_version, "test")
    assert done.failed == 0 and _chat(a) == before + done.scored and _chat(b) == 0


def test_a_memalign_version_keeps_its_base_url_for_scoring(two_servers):
    experiment_id, a, b = two_servers
    s = demo_settings(experiment_id, "memalign", register_if_worse=True)
    settings = replace(s, judge=replace(s.judge, model=f"openai:/{MODEL}", base_url=a.base_url))
    result = run_alignment(settings)
    assert result.judge_version is not None
    spec, candidate = version_scorer(experiment_id, CRITERION, result.judge_version)
    assert spec.base_url == a.base_url and not isinstance(candidate, str)  # the judge object
    before = _chat(a)
    done = score_version(experiment_id, CRITERION, result.judge_version, "test")
    assert done.scored > 0 and done.failed == 0
    assert _chat(a) == before + done.scored and _chat(b) == 0

    # Realign (MemAlign with new labels) judges the test split on A and keeps A.
    from core.optimization.runners.memalign_versions import realign

    before = _chat(a)
    again = realign(experiment_id, CRITERION)
    assert again.judge_version == result.judge_version + 1 and again.failed_examples == 0
    assert _chat(a) > before and _chat(b) == 0
    (newest,) = [v for v in list_versions(experiment_id, CRITERION) if v.version == 2]
    assert newest.base_url == a.base_url


def test_the_stored_base_url_carries_no_credentials_and_old_versions_have_none(demo_store):
    spec = JudgeSpec(CRITERION, "Judge {{ outputs }}", "pass_fail", "demo:/judge")
    old = register_version(build_judge(spec), demo_store, run_id=None, test_metrics={})
    new = register_version(
        build_judge(spec),
        demo_store,
        run_id=None,
        test_metrics={},
        base_url="http://me:s3cret@gpu-box:8000/v1/?api_key=s3cret",
    )
    tags = MlflowClient().get_experiment(demo_store).tags
    assert "s3cret" not in tags[version_tag(CRITERION, new)]
    assert json.loads(tags[version_tag(CRITERION, new)])["base_url"] == "http://gpu-box:8000/v1"
    assert "base_url" not in json.loads(tags[version_tag(CRITERION, old)])
    by_version = {v.version: v for v in list_versions(demo_store, CRITERION)}
    assert by_version[new].base_url == "http://gpu-box:8000/v1"
    assert by_version[old].base_url is None
    assert by_version[new].to_dict()["base_url"] == "http://gpu-box:8000/v1"
    assert storable_base_url(None) is None and storable_base_url("  ") is None


def test_a_prompt_optimizations_judge_keeps_the_versions_base_url(two_servers):
    from core.optimization.prompt_eval import build_scorers
    from core.optimization.prompt_spec import JudgeChoice, PromptChoice, PromptSettings

    experiment_id, a, _decoy = two_servers
    spec = JudgeSpec(CRITERION, "Judge {{ outputs }}", "pass_fail", f"openai:/{MODEL}")
    version = register_version(
        build_judge(replace(spec, base_url=a.base_url)),
        experiment_id,
        run_id=None,
        test_metrics={},
        base_url=a.base_url,
    )
    settings = PromptSettings(
        experiment_id=experiment_id,
        prompts=(PromptChoice("northwind-support", 1, "northwind-support"),),
        dataset="dataset:northwind-messages",
        task_model="demo:/app",
        judges=(JudgeChoice(CRITERION, version, f"{CRITERION}@{version}"),),
        optimizer="gepa",
        reflection_model="demo:/reflect",
    )
    (scorer,) = build_scorers(settings)
    assert scorer.spec is not None and scorer.spec.base_url == a.base_url
