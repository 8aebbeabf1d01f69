"""R2 faults: GEPA and MemAlign alignments against a flaky OpenAI-compatible server.

Every model of the run (judge, GEPA's reflection model; MemAlign's reflection and
embedding models) is ``openai:/r2-...`` on a real HTTP server on 127.0.0.1
(``tests/support/openai_server.py``, answering with the demo model's logic) that turns
20% of requests into a fault drawn uniformly from 429, 500, a hang past the client's
timeout, and a 200 whose body is not JSON. The alignment runs as the dashboard runs it:
``jobs.launch`` starts the job subprocess, the test waits for it through MLflow.

Asserted for each run: it finishes; the server really served faults of every kind, at
about 20% of requests; the run's metrics count the failures, checked against what the
server served (see the accounting below); a judge version is registered and loads with
``mlflow.genai.scorers.get_scorer`` as the ``openai:/...`` judge; the held-out test
metrics exist. Faster tests at the end check the pieces: the server's fault mode, one
judge call through every fault kind, MemAlign's base-URL rules and routing.

Accounting. The job's usage log counts every LLM attempt LiteLLM makes (``llm_calls_total``)
and every failed one (``llm_failures``); the judge evaluator counts its failed attempts as
retries plus examples that failed after the last retry. With a 2 s client timeout (LiteLLM's
``REQUEST_TIMEOUT``, which alignboard's own calls honour too) and a 4 s hang, every fault
the server serves on a chat request is a failed attempt the client sees. So:

* GEPA (all calls are chat requests made by alignboard through LiteLLM, without hidden
  retries): ``llm_calls_total`` = requests served and ``llm_failures`` = faults served,
  exactly, except for failures that never show as a served fault: a connection dropped
  before the server recorded the request, or an answer slower than the timeout on a
  loaded machine. Those ``extra`` failures are bounded by :data:`MAX_EXTRA_FAILURES`.
  Per model: the judge's served faults = failed judge attempts (optimizer + test
  scoring), the reflection model's = the rest of ``llm_failures``.
* MemAlign: the same for chat requests (the judge on the test split, and distillation,
  which dspy sends through LiteLLM with its own counted retries). MLflow's embedder takes
  no client settings, so the OpenAI client under LiteLLM retries 429/500 on embeddings
  by itself, up to twice, unseen, and waits up to 600 s (a hang is just a slow answer).
  Embedding requests are therefore bounded, not exact: a malformed body is always a
  counted failure; a 429/500 is one only when all three tries failed; each counted
  embedding call is one to three requests. At judging time dspy's retriever batches the
  query embeddings of concurrent judge calls into one request, so one failed embedding
  call fails up to ``workers`` judge attempts.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from mlflow import MlflowClient

from core.optimization import jobs
from core.optimization import recorder as rec
from core.optimization.registry import list_versions
from tests.optimization.demo_examples import CRITERION, demo_settings
from tests.support.openai_server import TRANSIENT_FAULTS, LoopbackServer, openai_server

FAULT_RATE = 0.2
#: Seconds before a client gives up on one attempt (LiteLLM's REQUEST_TIMEOUT, in the job).
CLIENT_TIMEOUT_S = 2
#: How long a "timeout" fault hangs before answering: well past the client's timeout.
HANG_S = 4.0
#: Counted failures allowed beyond the faults served (see the module docstring).
MAX_EXTRA_FAILURES = 2
JUDGE, REFLECT, EMBED = "r2-judge", "r2-reflect", "r2-embed"
#: Seeds whose first 25 draws hold every fault kind, so each kind is served in every run.
#: MemAlign's draws start malformed, ok, 500: its first request, the embedding of the
#: episodic memory, gets a malformed body (which fails MLflow's whole ``align``, so the
#: chunk is aligned again), and the distillation request after it a 500.
GEPA_SEED, MEMALIGN_SEED = 11, 831


@pytest.fixture
def job_env(demo_store, tmp_path, monkeypatch):
    """What the job subprocess inherits: a key the server ignores, a short timeout, and
    a dspy cache of its own (a shared one would answer repeated prompts from disk)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-r2-loopback-not-a-real-key-000")
    monkeypatch.setenv("REQUEST_TIMEOUT", str(CLIENT_TIMEOUT_S))
    monkeypatch.setenv("DSPY_CACHEDIR", str(tmp_path / "dspy-cache"))
    return demo_store


def _on_server(experiment_id: str, optimizer: str, url: str, **kw):
    s = demo_settings(experiment_id, optimizer, **kw)
    s = replace(
        s,
        judge=replace(s.judge, model=f"openai:/{JUDGE}", base_url=url),
        reflection_model=f"openai:/{REFLECT}",
        reflection_base_url=url,
    )
    if optimizer == "memalign":
        s = replace(s, embedding_model=f"openai:/{EMBED}", embedding_base_url=url)
    return s


def _run_job(settings) -> tuple[str, dict[str, float], dict]:
    """Launch the job process, wait for it, return (run id, metrics, result.json)."""
    started = time.monotonic()
    run_id = jobs.launch(settings)
    final = jobs.wait(run_id, timeout_s=300)
    log = jobs.log_path(run_id).read_text(encoding="utf-8", errors="replace")[-3000:]
    assert final.status == "finished", (final, log)
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and not run.data.tags.get(rec.TAG_ERROR), log
    result = json.loads(rec.read_artifact_text(client, run_id, "result.json") or "{}")
    print(f"\n{settings.optimizer}: job took {time.monotonic() - started:.1f} s")
    return run_id, run.data.metrics, result


def _faults(c: Counter) -> int:
    return sum(n for kind, n in c.items() if kind != "ok")


def _check_faults_served(server: LoopbackServer) -> tuple[int, int]:
    """Every kind was served; about 20% of requests (within 3 standard deviations)."""
    served = server.served()
    n, f = sum(served.values()), _faults(served)
    assert set(served) <= {"ok", *TRANSIENT_FAULTS}
    assert all(served[kind] > 0 for kind in TRANSIENT_FAULTS), served
    spread = 3 * math.sqrt(FAULT_RATE * (1 - FAULT_RATE) / n)
    assert abs(f / n - FAULT_RATE) <= spread, (served, f / n)
    return n, f


def _check_registered(experiment_id: str, run_id: str, result: dict):
    from mlflow.genai.scorers import get_scorer

    version = result["judge_version"]
    assert isinstance(version, int) and version >= 1
    [registered] = [v for v in list_versions(experiment_id, CRITERION) if v.version == version]
    assert registered.run_id == run_id
    assert {"test_accuracy_after", "test_accuracy_before"} <= set(registered.test_metrics)
    loaded = get_scorer(name=CRITERION, experiment_id=experiment_id, version=version)
    assert loaded.name == CRITERION
    # The registered judge is the user's model (the evaluation copies' LiteLLM routing never
    # leaks into it). MLflow 3.17 does not serialize a judge's base_url, so the loaded
    # judge no longer names the server.
    base = getattr(loaded, "_base_judge", loaded)
    assert base.model == f"openai:/{JUDGE}"
    return loaded


def _check_test_metrics(metrics: dict[str, float], result: dict) -> None:
    for key in ("test_accuracy_before", "test_accuracy_after", "test_kappa_before"):
        assert key in metrics, key
    assert result["test_accuracy_after"] == metrics["test_accuracy_after"]
    assert result["test_size"] > 0
    failed = metrics["optimizer_failed_examples"] + metrics["test_failed_before"]
    assert metrics["failed_examples"] == failed + metrics["test_failed_after"]
    assert result["failed_examples"] == metrics["failed_examples"]


@pytest.mark.slow  # about 25 s (the job process and its 160 requests)
def test_gepa_finishes_and_counts_the_faults_it_met(job_env):
    experiment_id = job_env
    with openai_server(fault_rate=FAULT_RATE, seed=GEPA_SEED, hang_seconds=HANG_S) as server:
        settings = _on_server(experiment_id, "gepa", server.base_url, max_metric_calls=80)
        run_id, m, result = _run_job(settings)
        n, f = _check_faults_served(server)
        judge, reflect = server.served(model=JUDGE), server.served(model=REFLECT)
        loaded = _check_registered(experiment_id, run_id, result)

    # Only alignboard's models were asked, over HTTP: the judge and the reflection model.
    assert sum(judge.values()) + sum(reflect.values()) == n
    assert reflect["ok"] > 0 and result["iterations"] > 0
    # Usage log vs server: exact up to failures no served fault explains.
    extra = m["llm_failures"] - f
    assert 0 <= extra <= MAX_EXTRA_FAILURES, (m, f)
    assert 0 <= m["llm_calls_total"] - n <= extra, (m, n)
    # The judge's served faults are its failed attempts: retried, or the example's last.
    judge_failed_attempts = (
        m["judge_retries"]
        + m["judge_failures"]
        + m["test_judge_retries"]
        + m["test_failed_before"]
        + m["test_failed_after"]
    )
    assert _faults(judge) <= judge_failed_attempts <= _faults(judge) + extra
    assert judge_failed_attempts > 0
    # What is left of llm_failures are the reflection model's failed attempts.
    reflection_failures = m["llm_failures"] - judge_failed_attempts
    assert _faults(reflect) - extra <= reflection_failures <= _faults(reflect) + extra
    # Counted while the run went, not only at the end.
    history = MlflowClient().get_metric_history(run_id, "judge_retries")
    values = [h.value for h in sorted(history, key=lambda h: (h.step, h.timestamp))]
    assert len(values) > 1 and values == sorted(values)
    print(
        f"gepa: served {dict(server.served())} over {n} requests "
        f"(judge {dict(judge)}, reflect {dict(reflect)}); metrics llm_calls_total="
        f"{m['llm_calls_total']:.0f} llm_failures={m['llm_failures']:.0f} "
        f"judge_retries={m['judge_retries']:.0f} judge_failures={m['judge_failures']:.0f} "
        f"test_judge_retries={m['test_judge_retries']:.0f} "
        f"test_failed={m['test_failed_before']:.0f}+{m['test_failed_after']:.0f}"
    )
    _check_test_metrics(m, result)
    # The budget is spent up to what one more iteration could overshoot (two minibatches
    # and the validation set), and never passed by more than one minibatch.
    spare = 2 * 3 + result["val_size"]
    assert result["status"] == "finished" and 80 - spare <= result["metric_calls"] <= 80 + 3
    assert loaded.instructions == result["instructions"]


@pytest.mark.slow  # about 15 s
def test_memalign_finishes_and_counts_the_faults_it_met(job_env):
    experiment_id = job_env
    with openai_server(fault_rate=FAULT_RATE, seed=MEMALIGN_SEED, hang_seconds=HANG_S) as server:
        settings = _on_server(experiment_id, "memalign", server.base_url)
        run_id, m, result = _run_job(settings)
        n, _ = _check_faults_served(server)
        judge = server.served("/chat/completions", model=JUDGE)
        reflect = server.served("/chat/completions", model=REFLECT)
        embed = server.served("/embeddings", model=EMBED)
        loaded = _check_registered(experiment_id, run_id, result)

    # Every request was for one of the three models, each on its own route.
    assert sum(judge.values()) + sum(reflect.values()) + sum(embed.values()) == n
    assert judge["ok"] > 0 and reflect["ok"] > 0 and embed["ok"] > 0
    chat_requests = sum(judge.values()) + sum(reflect.values())
    chat_faults = _faults(judge) + _faults(reflect)
    # Failures: every chat fault, every malformed embedding; a 429/500 on an embedding
    # only if the OpenAI client's own two retries failed too.
    lower = chat_faults + embed["malformed"]
    upper = lower + embed["429"] + embed["500"]
    assert lower <= m["llm_failures"] <= upper + MAX_EXTRA_FAILURES, (m, judge, reflect, embed)
    extra = max(0.0, m["llm_failures"] - upper)
    # Calls: chat requests exactly; each counted embedding call is one to three requests.
    embed_requests = sum(embed.values())
    assert chat_requests + math.ceil(embed_requests / 3) <= m["llm_calls_total"]
    assert m["llm_calls_total"] <= n + extra
    # The judge's served faults are failed judge attempts on the test split. A MemAlign
    # judge call also fails when its query embedding does, and dspy's retriever batches
    # the queries of concurrent calls into one request: one failed embedding call fails
    # up to `workers` judge calls at once.
    judge_failed_attempts = (
        m["test_judge_retries"] + m["test_failed_before"] + m["test_failed_after"]
    )
    embed_counted_failures = m["llm_failures"] - chat_faults
    assert _faults(judge) <= judge_failed_attempts
    assert judge_failed_attempts <= (
        _faults(judge) + settings.workers * embed_counted_failures + extra
    )
    # The malformed embedding that failed MLflow's align was survived by aligning again.
    first = server.requests[0]
    assert first.path.endswith("/embeddings") and first.fault == "malformed"
    assert m["align_retries"] >= 1 and m["memalign_episodes"] > 0
    assert reflect["500"] >= 1  # distillation met a fault and dspy retried it
    print(
        f"memalign: served {dict(server.served())} over {n} requests (judge {dict(judge)}, "
        f"reflect {dict(reflect)}, embed {dict(embed)}); metrics llm_calls_total="
        f"{m['llm_calls_total']:.0f} llm_failures={m['llm_failures']:.0f} "
        f"test_judge_retries={m['test_judge_retries']:.0f} "
        f"test_failed={m['test_failed_before']:.0f}+{m['test_failed_after']:.0f} "
        f"align_retries={m['align_retries']:.0f}"
    )
    _check_test_metrics(m, result)
    assert result["status"] == "finished" and result["optimizer"] == "memalign"
    assert loaded.name == CRITERION


# --- the pieces, fast -------------------------------------------------------------------


def _post(url: str, body: dict, timeout: float = 5.0) -> int:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_fault_mode_serves_the_script_then_seeded_random_faults():
    def run() -> list[str | None]:
        with openai_server(["401"], fault_rate=0.5, seed=3, hang_seconds=0.01) as server:
            for _ in range(30):
                _post(f"{server.base_url}/embeddings", {"model": "m", "input": "x"})
            assert sum(server.served().values()) == 30
            assert server.served(model="m") == server.served("/embeddings")
            assert server.served("/chat/completions") == Counter()
            return [r.fault for r in server.requests]

    first = run()
    assert first[0] == "401"  # the script comes first
    assert set(first[1:]) <= {None, *TRANSIENT_FAULTS} and len(set(first[1:])) == 5
    assert run() == first  # the seed fixes the sequence
    with pytest.raises(ValueError, match="fault_rate"), openai_server(fault_rate=1.5):
        pass


def test_judge_on_a_server_retries_every_fault_kind_and_counts_each(store_uri, monkeypatch):
    """A judge with a base URL is evaluated through LiteLLM: our retries, our timeout, our
    count. (MLflow's own client would retry the 429 and 500 unseen after 1 + 2 s, wait
    300 s on the hang, and not retry the malformed body.)"""
    from core.models.usage import track_usage
    from core.optimization.judging import JudgeEvaluator
    from core.optimization.spec import Example, JudgeSpec

    monkeypatch.setenv("OPENAI_API_KEY", "sk-r2-loopback-not-a-real-key-000")
    kinds = ["429", "500", "timeout", "malformed"]
    with openai_server(kinds, hang_seconds=2.0) as server:
        spec = JudgeSpec(
            name="quality",
            instructions="Judge {{ outputs }}.",
            value_type="pass_fail",
            model=f"openai:/{JUDGE}",
            base_url=server.base_url,
        )
        ev = JudgeEvaluator(spec, retries=4, backoff=0.01, timeout=0.5)
        example = Example("t1", {"q": "hi"}, {"r": "Sure."}, {}, True, None, "a", "val", "v1")
        with track_usage() as usage:
            [verdict] = ev.evaluate(spec.instructions, [example])
        assert verdict.ok and verdict.value is True
        assert [r.fault for r in server.requests] == [*kinds, None]
        assert {r.body["model"] for r in server.requests} == {JUDGE}
    assert ev.stats.retries == 4 and ev.stats.failed == 0
    # Every attempt went through LiteLLM (MLflow's client would show LiteLLM nothing).
    counted = usage.current()
    assert (counted.calls, counted.failures) == (5, 4)


def test_base_urls_an_optimizer_cannot_honour_are_refused():
    from core.optimization.preflight import preflight
    from core.optimization.spec import AlignmentSettings, JudgeSpec

    seed = JudgeSpec("quality", "Judge {{ outputs }}.", "pass_fail", "demo:/judge")
    base = AlignmentSettings("0", seed, "memalign", "demo:/reflect")

    def codes(**kw) -> set[str]:
        return {f.code for f in preflight(replace(base, **kw), [], labels=[], label_names=[])}

    url, other = "http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"
    on_server = {
        "reflection_model": "openai:/r",
        "reflection_base_url": url,
        "embedding_model": "openai:/e",
        "embedding_base_url": url,
    }
    assert not codes(**on_server) & {"memalign_base_urls", "base_url_conflict"}
    assert "memalign_base_urls" in codes(**{**on_server, "embedding_base_url": other})
    # An openai:/ model without a base URL would be sent to the server too.
    assert "base_url_conflict" in codes(**{**on_server, "embedding_base_url": None})
    judge = replace(seed, model="openai:/gpt-4.1-mini")
    assert "base_url_conflict" in codes(**on_server, judge=judge)
    assert "base_url_needs_openai" in codes(
        **{**on_server, "reflection_model": "anthropic:/claude-x"}
    )
    # No base URL anywhere: nothing to check.
    assert not codes() & {"memalign_base_urls", "base_url_conflict", "base_url_needs_openai"}
    # MLflow's own GEPA and SIMBA take a bare reflection model name only.
    assert "base_url_unsupported" in codes(optimizer="simba", reflection_base_url=url)
    assert "base_url_unsupported" not in codes(optimizer="gepa", reflection_base_url=url)


def test_openai_base_url_is_set_for_the_block_and_restored(monkeypatch):
    import os

    from core.models.endpoints import openai_base_url

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_BASE", "http://elsewhere/v1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(Path(__file__).parent)  # no .streamlit/secrets.toml here
    with openai_base_url("http://127.0.0.1:9/v1/"):
        assert os.environ["OPENAI_BASE_URL"] == "http://127.0.0.1:9/v1"
        assert os.environ["OPENAI_API_BASE"] == "http://127.0.0.1:9/v1"
        assert os.environ["OPENAI_API_KEY"]  # a placeholder for a keyless server
    assert "OPENAI_BASE_URL" not in os.environ and "OPENAI_API_KEY" not in os.environ
    assert os.environ["OPENAI_API_BASE"] == "http://elsewhere/v1"
    with openai_base_url(None):
        assert "OPENAI_BASE_URL" not in os.environ
