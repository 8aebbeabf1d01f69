"""MemAlign on the demo data: guidelines with source traces, episodes, realign, unalign,
registration, and loading in a plain MLflow process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from core.models import demo_stats
from core.optimization import registry
from core.optimization.mlflow_judge import seed_judge
from core.optimization.runners import memalign as memalign_runner
from tests.optimization.demo_examples import ListRecorder, accuracy, demo_examples, demo_settings

ROOT = Path(__file__).resolve().parents[2]

# A process that knows only MLflow (plus the demo model's LiteLLM provider).
_LOADER = """
import json, sys
from core.store import config
config.configure()
from mlflow.genai.scorers import get_scorer
req = json.load(sys.stdin)
out = {}
for v in req["versions"]:
    judge = get_scorer(name=req["name"], experiment_id=req["experiment_id"], version=v)
    out[str(v)] = {
        "kind": str(judge.kind),
        "verdicts": [judge(inputs=e[0], outputs=e[1]).value for e in req["examples"]],
    }
print(json.dumps(out))
"""


def _align(demo_store, tmp_path, train=None):
    ex = demo_examples(demo_store)
    settings = demo_settings(demo_store, "memalign")
    recorder = ListRecorder(tmp_path)
    outcome = memalign_runner.run(settings, train or ex["train"], ex["val"], recorder)
    return ex, settings, recorder, outcome


def test_memalign_distils_guidelines_from_train_traces_and_beats_the_seed(demo_store, tmp_path):
    ex, settings, recorder, outcome = _align(demo_store, tmp_path)
    train_ids = {e.trace_id for e in ex["train"]}
    held_out = {e.trace_id for e in ex["val"] + ex["test"]}

    guidelines = recorder.artifacts["guidelines.json"]
    assert len(guidelines) >= 5
    for g in guidelines:
        assert g["text"].startswith("If the response contains")
        assert g["source_trace_ids"] and set(g["source_trace_ids"]) <= train_ids

    episodes = recorder.artifacts["episodes.json"]
    assert {e["trace_id"] for e in episodes} == train_ids
    assert not {e["trace_id"] for e in episodes} & held_out
    first = episodes[0]
    assert first["label"] in ("true", "false") and first["rationale"] and first["outputs"]

    assert outcome.optimizer == "memalign" and not outcome.cancelled
    assert outcome.extra["episodes"] == len(train_ids)
    assert outcome.extra["guidelines"] == guidelines
    assert settings.judge.instructions in outcome.instructions
    assert guidelines[0]["text"] in outcome.instructions
    assert recorder.metric("memalign_guidelines") == len(guidelines)
    # dspy caches LM and embedding answers on disk, so a rerun may spend no calls at all.
    assert recorder.metric("llm_calls") >= 0 and recorder.metric("demo_embedding_calls") >= 0
    assert recorder.heartbeats >= 2

    seed_acc = accuracy(seed_judge(settings.judge), ex["test"])
    aligned_acc = accuracy(outcome.judge, ex["test"])
    print(f"test accuracy: seed {seed_acc:.3f} -> memalign {aligned_acc:.3f}")
    assert aligned_acc > seed_acc


def test_chunked_alignment_matches_one_call_and_reports_each_chunk(
    demo_store, tmp_path, monkeypatch
):
    ex, _, _, whole = _align(demo_store, tmp_path)
    monkeypatch.setattr(memalign_runner, "MIN_CHUNK", 10)
    _, _, recorder, chunked = _align(demo_store, tmp_path)
    assert [step for step, _ in recorder.metrics] == [1, 2, 3, 4]
    texts = {g["text"] for g in chunked.extra["guidelines"]}
    assert texts == {g["text"] for g in whole.extra["guidelines"]}
    assert chunked.iterations == 4 and chunked.extra["episodes"] == len(ex["train"])


def test_cancel_before_the_first_chunk_returns_the_seed_judge(demo_store, tmp_path):
    ex = demo_examples(demo_store)
    settings = demo_settings(demo_store, "memalign")
    recorder = ListRecorder(tmp_path, stop_after_heartbeats=1)
    outcome = memalign_runner.run(settings, ex["train"], ex["val"], recorder)
    assert outcome.cancelled and outcome.iterations == 0
    assert outcome.instructions == settings.judge.instructions
    assert recorder.artifacts["guidelines.json"] == []


def test_realign_adds_only_new_traces_and_unalign_removes_them(demo_store, tmp_path):
    ex = demo_examples(demo_store)
    first, later = ex["train"][:18], ex["train"][18:]
    _, _, _, outcome = _align(demo_store, tmp_path, train=first)
    v1 = outcome.judge
    before = demo_stats()
    v2 = memalign_runner.realign(v1, ex["train"])  # old and new labels together
    # At most one distillation prompt, for the new traces only (none if dspy's cache has it).
    assert demo_stats().calls - before.calls <= 1
    ids_v2 = [e["trace_id"] for e in memalign_runner.episodes(v2)]
    assert sorted(ids_v2) == sorted(e.trace_id for e in ex["train"])
    old = {g["text"]: g for g in memalign_runner.guidelines(v1)}
    new_ids = {e.trace_id for e in later}
    for g in memalign_runner.guidelines(v2):
        if g["text"] in old:
            assert g == {**old[g["text"]], "index": g["index"]}
        else:
            assert set(g["source_trace_ids"]) <= new_ids
    assert memalign_runner.realign(v2, ex["train"]) is v2  # nothing new: same judge

    # Unalign: a trace's episodes go; a guideline goes only with all its sources.
    target = next(g for g in memalign_runner.guidelines(v2) if len(g["source_trace_ids"]) == 1)
    gone = target["source_trace_ids"][0]
    v3 = memalign_runner.unalign(v2, [gone])
    assert gone not in {e["trace_id"] for e in memalign_runner.episodes(v3)}
    assert len(memalign_runner.episodes(v3)) == len(ids_v2) - ids_v2.count(gone)
    texts_v3 = {g["text"] for g in memalign_runner.guidelines(v3)}
    assert target["text"] not in texts_v3
    assert texts_v3 == {g["text"] for g in memalign_runner.guidelines(v2)} - {target["text"]}

    versions = [
        registry.register_version(j, demo_store, run_id=None, test_metrics={"accuracy": 0.5})
        for j in (v1, v2, v3)
    ]
    assert versions == [1, 2, 3]
    listed = registry.list_versions(demo_store, "support_quality")
    assert all(v.is_memalign and v.optimizer == "memalign" for v in listed)


def test_registered_gepa_style_and_memalign_judges_load_in_plain_mlflow(demo_store, tmp_path):
    ex, settings, _, outcome = _align(demo_store, tmp_path)
    rule = '\n- If the response contains "full card number", the verdict is fail.'
    gepa_style = seed_judge(settings.judge.with_instructions(settings.judge.instructions + rule))
    v_gepa = registry.register_version(gepa_style, demo_store, run_id=None, test_metrics={})
    v_mem = registry.register_version(outcome.judge, demo_store, run_id=None, test_metrics={})

    examples = [[e.inputs, e.outputs] for e in ex["test"]]
    request = {
        "name": "support_quality",
        "experiment_id": demo_store,
        "versions": [v_gepa, v_mem],
        "examples": examples,
    }
    proc = subprocess.run(
        [sys.executable, "-c", _LOADER],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])

    expected_gepa = [gepa_style(inputs=i, outputs=o).value for i, o in examples]
    expected_mem = [outcome.judge(inputs=i, outputs=o).value for i, o in examples]
    assert loaded[str(v_gepa)]["verdicts"] == expected_gepa
    assert loaded[str(v_mem)]["verdicts"] == expected_mem
    assert "MEMORY_AUGMENTED" in loaded[str(v_mem)]["kind"].upper()
    assert expected_mem != expected_gepa  # the two versions really differ
