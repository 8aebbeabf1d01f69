"""The engine is general: a task that is not a judge runs through it with the gepa runner.

A tiny task stands in for prompt optimization (issue 10): its candidate is one named text
component, ``{"greeting": text}``, scored by a pure function (does the text ask for each
word an example needs?), and its registrar only remembers what it was given. It runs
through :func:`core.optimization.engine.run_optimization` in a real sqlite MLflow store,
with the real gepa runner and a reflection model on the loopback OpenAI-compatible server
scripted to add the words the feedback says are missing. Nothing of judge alignment is
involved, so these tests fail if the engine or the gepa runner still assumes a judge.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest
from mlflow import MlflowClient

from core.errors import ValidationError
from core.optimization import record
from core.optimization import recorder as rec
from core.optimization.engine import resolve_task_runner, run_optimization
from core.optimization.preflight import Finding
from core.optimization.task import (
    BaseTaskAdapter,
    GuardContext,
    HeldOut,
    OptimizationTask,
    RunSummary,
    TaskAdapter,
    TaskRunner,
    judge_settings,
)
from core.optimization.verdict import IMPROVED, Verdict, decide
from tests.support.openai_server import openai_server

SEED = "Greet the customer warmly by name and thank the customer for writing to support."
#: The sentence the scripted reflection model adds: it asks for the missing words.
RULE = "Also mention the refund status and the order number in every greeting."
WORDS = ("name", "refund", "order")


@dataclass(frozen=True)
class Row:
    """One example: what a good greeting must ask for."""

    id: str
    needs: str


def rows(n: int, prefix: str) -> list[Row]:
    """``n`` examples; most need a word the seed does not ask for."""
    return [Row(f"{prefix}{i}", WORDS[i % 3] if i % 4 else WORDS[1]) for i in range(n)]


def points(text: str, row: Row) -> float:
    """1.0 when the greeting text asks for the word the example needs."""
    return 1.0 if re.search(rf"\b{row.needs}\b", text.lower()) else 0.0


class GreetingAdapter(BaseTaskAdapter):
    """gepa adapter: the pure scoring function, and feedback naming the missing word."""

    def __init__(self) -> None:
        super().__init__()
        self.evaluations = 0

    def evaluate(self, batch: list[Row], candidate: dict[str, str], capture_traces=False):
        from gepa.core.adapter import EvaluationBatch

        self.evaluations += len(batch)
        scores = [points(candidate["greeting"], r) for r in batch]
        return EvaluationBatch(outputs=scores, scores=scores, trajectories=list(batch))

    def make_reflective_dataset(self, candidate, eval_batch, components_to_update):
        records = [
            {
                "Inputs": r.id,
                "Feedback": "good" if s else f"the customer expected the word {r.needs!r}",
            }
            for r, s in zip(eval_batch.trajectories, eval_batch.scores, strict=True)
        ]
        return {name: records for name in components_to_update}


@dataclass
class RecordingRegistrar:
    """Registers nothing anywhere; remembers every call."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    def register(self, outcome, *, recorder, verdict, test_metrics) -> int | None:
        self.calls.append(
            {
                "candidate": outcome.best_candidate("greeting"),
                "run_id": recorder.run_id,
                "verdict": verdict,
                "test_metrics": dict(test_metrics),
            }
        )
        return len(self.calls)


@dataclass(frozen=True)
class GreetingResult:
    """The task's result: the engine's summary plus its own fields."""

    summary: dict[str, Any]
    greeting: str
    version: int | None
    verdict: str
    before: float
    after: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GreetingTask:
    """An :class:`OptimizationTask` with no judge in it."""

    experiment_id: str
    reflection_base_url: str
    optimizer: str = "gepa"
    kind: str = "greeting"
    register_if_worse: bool = False
    reflection_model: str = "openai:/scripted-reflect"
    minibatch_size: int = 3
    seed: int = 0
    registrar: RecordingRegistrar = field(default_factory=RecordingRegistrar)
    train: list[Row] = field(default_factory=lambda: rows(9, "train"))
    val: list[Row] = field(default_factory=lambda: rows(8, "val"))
    test: list[Row] = field(default_factory=lambda: rows(8, "test"))
    adapters: list[GreetingAdapter] = field(default_factory=list)
    scored: list[tuple[str, str]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "greeting optimization"

    def create_run(self, status, *, findings, allow_concurrent) -> str:
        client = MlflowClient()
        run = client.create_run(self.experiment_id, tags={rec.TAG_KIND: "greeting"})
        rec.set_status(client, run.info.run_id, status)
        return run.info.run_id

    def load(self, findings: Sequence[Finding] | None = None):
        return list(self.train), list(self.val), list(self.test), list(findings or [])

    def example_id(self, example: Row) -> str:
        return example.id

    def budget(self, train_size: int) -> int:
        return 80

    def runner(self) -> TaskRunner:
        return resolve_task_runner(self)

    def endpoints(self):
        return contextlib.nullcontext()

    def seed_candidate(self) -> dict[str, str]:
        return {"greeting": SEED}

    def make_adapter(self, train, val, state) -> TaskAdapter:
        adapter = GreetingAdapter()
        self.adapters.append(adapter)
        return adapter

    def guard_context(self) -> GuardContext:
        return GuardContext(self.seed_candidate())

    def artifact(self, candidate: Mapping[str, str]) -> Any:
        return candidate["greeting"]

    def score_held_out(self, outcome, test, recorder) -> HeldOut:
        best = outcome.best_candidate("greeting")["greeting"]
        self.scored.append((SEED, best))
        before = sum(points(SEED, r) for r in test) / len(test)
        after = sum(points(best, r) for r in test) / len(test)
        verdict = Verdict(decide(before, after), False, before, after, None, None,
                          after - before, None, None, len(test))  # fmt: skip
        return HeldOut(verdict, len(test), metrics={"before": before, "after": after})

    def final_text(self, outcome) -> str:
        return outcome.best_candidate("greeting")["greeting"]

    def result(self, summary: RunSummary, held_out: HeldOut, version, verdict) -> GreetingResult:
        m = held_out.metrics
        return GreetingResult(
            summary.to_dict(), summary.final_text, version, verdict.verdict, m["before"], m["after"]
        )


def _reflect(body: dict) -> str:
    """The scripted reflection model: the current text plus the rule, in gepa's fences."""
    prompt = "\n".join(str(m.get("content") or "") for m in body.get("messages") or [])
    current = SEED if RULE not in prompt else f"{SEED} {RULE}"
    text = current if RULE in current else f"{SEED} {RULE}"
    return f"```\n{text}\n```"


@pytest.fixture
def served(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-real-key")
    with openai_server(answer=_reflect) as server:
        yield server


def test_a_task_that_is_not_a_judge_runs_through_the_engine_and_registers_its_best(
    experiment, served
):
    task = GreetingTask(experiment.experiment_id, served.base_url)
    assert isinstance(task.make_adapter([], [], []), TaskAdapter)
    task.adapters.clear()
    _: OptimizationTask = task  # the protocol is satisfied statically too

    result = run_optimization(task)

    # The reflection model was asked, and its proposal became the best candidate.
    assert served.served("/chat/completions", "scripted-reflect")
    best = f"{SEED} {RULE}"
    assert result.greeting == best and task.scored == [(SEED, best)]
    assert result.verdict == IMPROVED and result.after > result.before
    # The registrar was called once, with the best candidate, the gate's verdict and the
    # held-out metrics; what it returned is the run's version.
    (call,) = task.registrar.calls
    assert call["candidate"] == {"greeting": best}
    assert call["verdict"].verdict == IMPROVED and call["verdict"].registered
    assert call["test_metrics"] == {"before": result.before, "after": result.after}
    assert call["run_id"] == result.summary["run_id"] and result.version == 1

    # The engine's summary counts what the generic runner did.
    s = result.summary
    assert (s["status"], s["optimizer"]) == ("finished", "gepa")
    assert (s["train_size"], s["val_size"], s["test_size"]) == (9, 8, 8)
    assert s["metric_calls"] == sum(a.evaluations for a in task.adapters) <= 80 + 8
    assert s["iterations"] >= 1

    # The run record is the one judge alignment writes: split, candidates, proposals,
    # verdict tag, final text, result, status.
    client = MlflowClient()
    run = record.read_run_record(client, s["run_id"])
    assert run.split.train == tuple(r.id for r in task.train)
    assert run.split.test == tuple(r.id for r in task.test)
    texts = [c.instructions for c in run.candidates]
    assert texts[0] == SEED and best in texts
    assert set(run.candidates[0].val_scores) == {r.id for r in task.val}
    proposals = record.read_proposals(run.proposals)
    assert any(p.status == "accepted" and p.proposed_text == best for p in proposals)
    assert run.result["greeting"] == best and run.result["version"] == 1
    assert run.final_instructions == best
    tags = client.get_run(s["run_id"]).data.tags
    assert tags[rec.TAG_STATUS] == "finished" and tags[rec.TAG_VERDICT] == IMPROVED


def test_a_worse_best_is_not_registered_for_any_task(experiment, served):
    class Stubborn(GreetingTask):
        def score_held_out(self, outcome, test, recorder) -> HeldOut:
            held = super().score_held_out(outcome, test, recorder)
            worse = Verdict("worse", False, 1.0, 0.5, None, None, -0.5, None, None, len(test))
            return HeldOut(worse, held.n, metrics=held.metrics)

    task = Stubborn(experiment.experiment_id, served.base_url)
    result = run_optimization(task)
    assert result.verdict == "worse" and result.version is None
    assert task.registrar.calls == []


@pytest.mark.parametrize("optimizer", ["memalign", "mlflow-gepa", "simba"])
def test_judge_only_optimizers_refuse_a_task_that_is_not_a_judge(experiment, optimizer):
    task = GreetingTask(experiment.experiment_id, "http://127.0.0.1:9", optimizer=optimizer)
    with pytest.raises(
        ValidationError, match=r"aligns judges only.*greeting task.*choose one of: gepa"
    ):
        task.runner()
    with pytest.raises(ValidationError, match="aligns judges only"):
        judge_settings(task, optimizer)
    # Through the engine, the refusal fails the run it created, and spends nothing.
    with pytest.raises(ValidationError, match="judges only"):
        run_optimization(task)
    assert task.adapters == [] and task.registrar.calls == []
