"""The larger synthetic demo set (assets/demo_large) and its seed.

File checks (pure, no MLflow): it is the generator's output, large enough for a test split
of 60+, labeled like the demo (rationales quoting the reply), with honest reviewer
disagreement; rules learned from training rationales carry over to held-out traces. Then
the seed into a real sqlite store (``seed-demo --large``): every trace and label, a test
split of 60+ labeled traces, idempotent.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sys
from collections import Counter
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest

from core.io.formats import parse_import_file
from core.io.importer import trace_id_for
from core.labeling.consolidation import consolidate_values
from core.labeling.criteria import Criterion
from core.labeling.splits import assign_split

ROOT = Path(__file__).resolve().parents[2]
LARGE = ROOT / "assets" / "demo_large"
TRACES = LARGE / "support_traces.jsonl"
CRITERION = "support_quality"
TOPICS = {"returns", "shipping", "billing", "product", "safety", "account"}
REVIEWERS = {"maria.chen", "dev.patel", "lena.ortiz"}
APOLOGY_WORDS = ("sorry", "apologize", "apologise", "apologies", "unfortunately")
QUOTE = re.compile(r'"([^"]+)"')


@cache
def _traces() -> tuple[dict, ...]:
    lines = TRACES.read_text(encoding="utf-8").splitlines()
    return tuple(json.loads(line) for line in lines if line.strip())


def _labeled() -> list[dict]:
    return [t for t in _traces() if t.get("labels")]


@cache
def _values() -> dict[str, str]:
    rows = [(t["id"], lab["reviewer"], lab["value"]) for t in _labeled() for lab in t["labels"]]
    return consolidate_values(rows)


def _response(trace: dict) -> str:
    return trace["outputs"]["response"]


def _heuristic(response: str) -> str:
    """The offline demo judge's verdict when no rule in its instructions applies."""
    return "fail" if any(w in response.lower() for w in APOLOGY_WORDS) else "pass"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_demo_large", ROOT / "scripts" / "build_demo_large.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is created.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_the_committed_file_is_the_generators_output() -> None:
    gen = _generator()
    assert TRACES.read_text(encoding="utf-8") == gen.render_jsonl(gen.build())
    demo_criteria = (ROOT / "assets" / "demo" / "criteria.json").read_text(encoding="utf-8")
    assert (LARGE / "criteria.json").read_text(encoding="utf-8") == demo_criteria
    assert "synthetic" in (LARGE / "README.md").read_text(encoding="utf-8").lower()


def test_hundreds_of_short_labeled_traces_across_the_six_topics() -> None:
    traces = _traces()
    ids = [t["id"] for t in traces]
    assert len(set(ids)) == len(ids)
    labeled = _labeled()
    assert len(labeled) >= 300
    assert len(traces) - len(labeled) >= 30  # some left in the queue
    assert {t["tags"]["topic"] for t in labeled} == TOPICS
    assert min(Counter(t["tags"]["topic"] for t in labeled).values()) >= 30
    for t in traces:
        messages = t["inputs"]["messages"]
        assert len(messages) in (1, 3), t["id"]
        assert messages[-1]["role"] == "user" and all(m["content"] for m in messages)
        # Short on purpose: a small local model judging them reads every word.
        assert len(_response(t).split()) < 80, t["id"]
    assert len({_response(t) for t in traces}) == len(traces)
    fail_share = sum(_values()[t["id"]] == "fail" for t in labeled) / len(labeled)
    assert 0.35 <= fail_share <= 0.50


def test_every_label_has_a_rationale_quoting_its_reply() -> None:
    bad = []
    for t in _labeled():
        response = _response(t).lower()
        for lab in t["labels"]:
            assert lab["criterion"] == CRITERION and lab["value"] in {"pass", "fail"}
            assert lab["reviewer"] in REVIEWERS
            quotes = QUOTE.findall(lab.get("rationale") or "")
            if not quotes or not all(q.lower() in response for q in quotes):
                bad.append((t["id"], lab["reviewer"]))
    assert not bad


def test_some_traces_have_two_or_three_reviewers_who_sometimes_disagree() -> None:
    multi = [t for t in _labeled() if len(t["labels"]) > 1]
    assert len(multi) >= 60
    assert any(len(t["labels"]) == 3 for t in multi)
    assert all(t["labels"][0]["reviewer"] == "maria.chen" for t in _labeled())
    split = [t for t in multi if len({lab["value"] for lab in t["labels"]}) > 1]
    assert 0.10 <= len(split) / len(multi) <= 0.20
    for t in split:
        # Both sides argue their verdict in their own words.
        sides = {lab["value"]: lab["rationale"] for lab in t["labels"]}
        assert set(sides) == {"pass", "fail"}
        assert len(set(sides.values())) == 2


def test_the_heuristic_is_wrong_on_part_of_it_in_both_directions() -> None:
    labeled = _labeled()
    wrong = [t for t in labeled if _heuristic(_response(t)) != _values()[t["id"]]]
    assert 0.30 <= len(wrong) / len(labeled) <= 0.50
    assert sum(_values()[t["id"]] == "pass" for t in wrong) >= 40
    assert sum(_values()[t["id"]] == "fail" for t in wrong) >= 40


def test_the_file_validates_through_the_importer() -> None:
    spec = json.loads((LARGE / "criteria.json").read_text(encoding="utf-8"))[0]
    criterion = Criterion(
        name=spec["name"],
        kind=spec["kind"],
        instructions=spec["instructions"],
        positive_label=spec["positive_label"],
        negative_label=spec["negative_label"],
        experiment_id="0",
    )
    parsed = parse_import_file(TRACES, criteria=[criterion])
    assert not parsed.errors, parsed.errors[:3]
    assert len(parsed.records) == len(_traces())


def _test_count(experiment_id: str) -> int:
    return sum(assign_split(trace_id_for(experiment_id, t["id"])) == "test" for t in _labeled())


def test_the_test_split_holds_60_or_more_in_any_experiment() -> None:
    # The split hashes the trace id, which the importer derives from the experiment id:
    # sqlite stores number experiments 1, 2, 3, ..., so check the first 200 (the README's
    # figure, over the first 1,000, comes from ``build_demo_large.py --stats``).
    counts = [_test_count(str(i)) for i in range(1, 201)]
    assert min(counts) >= 60
    assert 80 <= sum(counts) / len(counts) <= 100


def _bucket(salt: str, trace_id: str) -> int:
    return int(hashlib.sha256(f"{salt}:{trace_id}".encode()).hexdigest(), 16) % 100


@pytest.mark.parametrize("salt", [f"salt-{i}" for i in range(5)])
def test_rules_from_training_rationales_improve_held_out_accuracy(salt: str) -> None:
    """The demo alignment's mechanism, simulated: phrase rules from the rationales of the
    training traces the heuristic gets wrong, then rules-then-heuristic on held-out ones."""
    labeled = _labeled()
    values = _values()
    train = [t for t in labeled if _bucket(salt, t["id"]) < 60]
    test = [t for t in labeled if _bucket(salt, t["id"]) >= 80]
    rules: dict[str, str] = {}
    for t in train:
        if _heuristic(_response(t)) == values[t["id"]]:
            continue
        chosen = next(lab for lab in t["labels"] if lab["value"] == values[t["id"]])
        for quote in QUOTE.findall(chosen["rationale"]):
            rules.setdefault(quote.lower(), values[t["id"]])

    def with_rules(response: str) -> str:
        text = response.lower()
        return next((v for p, v in rules.items() if p in text), None) or _heuristic(response)

    before = sum(_heuristic(_response(t)) == values[t["id"]] for t in test) / len(test)
    after = sum(with_rules(_response(t)) == values[t["id"]] for t in test) / len(test)
    assert after >= before + 0.2


def test_seed_demo_large_writes_every_trace_and_label_then_nothing(store_uri, capsys) -> None:
    from core.cli import main
    from core.io.demo_seed import DEMO_QUEUE, LARGE_EXPERIMENT, seed_demo
    from core.labeling.labels import current_labels
    from core.labeling.queues import get_queue, queue_items
    from core.labeling.traces import count_traces

    assert main(["seed-demo", "--large", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["traces_written"] == len(_traces())
    assert out["labels_written"] == sum(len(t.get("labels", [])) for t in _traces())
    assert out["prompt_name"] is None and out["agent_experiment_id"] is None
    exp_id = out["experiment_id"]
    import mlflow

    assert mlflow.get_experiment(exp_id).name == LARGE_EXPERIMENT
    assert count_traces(exp_id) == len(_traces())
    labels = current_labels(exp_id, CRITERION)
    by_split = Counter(assign_split(t) for t in {lab.trace_id for lab in labels})
    assert by_split["test"] >= 60
    assert by_split["test"] == _test_count(exp_id)
    assert len(queue_items(get_queue(exp_id, DEMO_QUEUE))) == len(_traces())
    # Idempotent, and the small demo's experiment is untouched.
    again = seed_demo(large=True)
    assert again.already_seeded and again.traces_written == 0
    assert mlflow.get_experiment_by_name("alignboard-demo") is None


def test_the_benchmark_loader_keeps_every_test_label_and_n_train_val_others(store_uri) -> None:
    from benchmarks.common import fmt_ci, large_demo_store
    from core.labeling.labels import current_labels
    from core.labeling.traces import count_traces

    d = large_demo_store("bench-large", n_train_val=40)
    assert d.counts["train"] + d.counts["val"] == 40
    assert d.counts["test"] == _test_count(d.experiment_id) >= 60
    assert d.unlabeled == len(_traces()) - sum(d.counts.values())
    assert d.criterion.name == CRITERION
    assert count_traces(d.experiment_id) == len(_traces())
    labeled = {lab.trace_id for lab in current_labels(d.experiment_id, CRITERION)}
    assert len(labeled) == sum(d.counts.values())
    assert fmt_ci(0.5454, 0.4444, 0.6465, 99) == "0.55 [0.44, 0.65] width 0.20 (n=99)"
    assert fmt_ci(None, None, None) == "- [-, -] width -"
