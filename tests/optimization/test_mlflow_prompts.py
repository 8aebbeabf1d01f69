"""MLflow's prompt optimizers (mlflow-gepa, metaprompt) as baselines through our engine.

Real parts: the demo store (``prompt_demo``: the Prompt Registry, the evaluation dataset,
the aligned judge), MLflow's own ``optimize_prompts``, the demo models. The one seam we
watch is our own: :func:`core.models.completion.complete`, counted, to see which rows and
how many application calls the optimizer really made.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from core.optimization.prompt_preflight import build_prompt_settings
from core.optimization.spec import AlignmentOutcome

PROMPT = "northwind-support"


def _settings(experiment_id: str, optimizer: str, budget: int = 40, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "prompts": [f"{PROMPT}@production"],
        "dataset": "dataset:northwind-messages",
        "task_model": "demo:/app",
        "judges": ["support_quality@production"],
        "reflection_model": "demo:/reflect",
        "workers": 4,
        "mapping": {"message": "message"},
    }
    return build_prompt_settings(
        experiment_id, optimizer=optimizer, max_metric_calls=budget, **{**args, **kw}
    )


class AppCalls:
    """Counts application calls (``demo:/app``) made through our completion helper, and
    the customer messages they carried."""

    def __init__(self) -> None:
        self.on = False
        self.calls = 0
        self.texts: list[str] = []
        self.messages: list[list[dict]] = []
        self.lock = threading.Lock()


@pytest.fixture
def app_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[AppCalls]:
    import core.models.completion as completion

    seen = AppCalls()
    real = completion.complete

    def counting(model: Any, messages: list[dict], **kw: Any) -> str:
        uri = getattr(model, "uri", model)
        if seen.on and "app" in str(uri):
            with seen.lock:
                seen.calls += 1
                seen.texts.append("\n".join(str(m.get("content")) for m in messages))
                seen.messages.append([dict(m) for m in messages])
        return real(model, messages, **kw)

    monkeypatch.setattr(completion, "complete", counting)
    yield seen


def _watching(runner: Any, seen: AppCalls) -> Any:
    """The runner, with application calls counted while it runs (not the held-out step)."""

    def run(task: Any, train: list, val: list, recorder: Any) -> AlignmentOutcome:
        seen.on = True
        try:
            return runner(task, train, val, recorder)
        finally:
            seen.on = False

    return run


def _trace_count() -> int:
    """Traces in every experiment of the store (MLflow logs to its default experiment when
    no experiment is active)."""
    from mlflow import MlflowClient
    from mlflow.tracing.client import TracingClient

    ids = [e.experiment_id for e in MlflowClient().search_experiments()]
    infos, _ = TracingClient().store.search_traces(locations=ids, max_results=5000)
    return len(infos)


def _prompt_names() -> list[str]:
    from core.store.prompts import list_prompts

    return list_prompts()


def _check_run(experiment_id: str, result: Any, optimizer: str, budget: int, seen: AppCalls):
    """What every baseline run must leave behind; returns the run view and record."""
    from mlflow import MlflowClient

    from core.io.prompt_data import load_rows, parse_source, values_for
    from core.optimization import record
    from core.store.prompts import list_prompt_versions
    from core.views.runs import load_run_view

    assert result.status == "finished"
    assert result.optimizer == optimizer
    rec = record.read_run_record(MlflowClient(), result.run_id)
    view = load_run_view(result.run_id)
    # The Run explorer reads candidates, the chart, the frontier and the outputs.
    assert view.has_candidates and view.seed_id == 0
    assert view.progress is not None and view.frontier is not None
    assert rec.iterations and rec.iterations[0].kind == "seed_eval"
    assert rec.proposals
    assert rec.test is not None and len(rec.test.outputs) == result.test_size
    assert all(o.before and o.after for o in rec.test.outputs)
    assert rec.result["metric_calls"] == result.metric_calls
    # Our own count is the run's: every application call the optimizer made.
    assert result.metric_calls == seen.calls
    assert rec.extra["overshoot"] == max(0, seen.calls - budget)
    # Never more than one minibatch (3 by default) beyond the budget.
    assert seen.calls <= budget + 3, (seen.calls, budget)
    # The test split never reached MLflow.
    rows = {r.id: r for r in load_rows(parse_source("dataset:northwind-messages"))}
    test_texts = [values_for(rows[t], {"message": "message"})["message"] for t in rec.split.test]
    assert test_texts and not any(t in sent for t in test_texts for sent in seen.texts)
    seen_ids = {tid for c in rec.candidates for tid in c.val_scores}
    assert seen_ids and not seen_ids & set(rec.split.test)
    # Only our registrar wrote a version of the real prompt; MLflow's scratch copy is gone.
    versions = [v.version for v in list_prompt_versions(PROMPT)]
    assert versions == ([1, result.prompt_version] if result.prompt_version else [1])
    assert not [n for n in _prompt_names() if "--alignboard-" in n]
    return view, rec


def test_mlflow_gepa_runs_on_the_demo_and_records_what_the_explorer_reads(
    prompt_demo: str, app_calls: AppCalls
) -> None:
    from core.optimization.engine import run_prompt_optimization
    from core.optimization.runners.mlflow_prompts import run_mlflow_gepa

    budget = 40
    traces = _trace_count()
    result = run_prompt_optimization(
        _settings(prompt_demo, "mlflow-gepa", budget), runner=_watching(run_mlflow_gepa, app_calls)
    )
    view, rec = _check_run(prompt_demo, result, "mlflow-gepa", budget, app_calls)
    # gepa validates on the validation rows, exactly as our gepa does.
    assert set(rec.candidates[0].val_scores) == set(rec.split.val)
    assert rec.extra["gepa_metric_calls"] == app_calls.calls
    # The demo judge's rationales teach MLflow's GEPA rules too, and the held-out judge agrees.
    assert result.test_score_after > result.test_score_before
    assert result.prompt_version == 2 and "Never say" in result.template
    # Lineage as gepa reports it: every candidate after the seed names its parent.
    assert len(view.candidates) >= 2 and view.candidates[1].parent_ids == (0,)
    assert all(c.parent_ids for c in view.candidates[1:])
    assert any(p["status"] == "accepted" for p in rec.proposals)
    # The live chart's series, as our gepa logs them.
    from core.views.runs import metric_series

    points = metric_series(result.run_id).points
    assert points[0].val_score is not None and points[0].pareto_aggregate is not None
    assert max(p.best_val_score or 0 for p in points) == max(c.val_score for c in rec.candidates)
    # MLflow's evaluation made no traces anywhere (tracing is off for the call).
    assert _trace_count() == traces


def test_metaprompt_runs_on_the_demo_within_its_budget(
    prompt_demo: str, app_calls: AppCalls
) -> None:
    from core.optimization.engine import run_prompt_optimization
    from core.optimization.runners.mlflow_prompts import run_metaprompt

    budget = 30
    result = run_prompt_optimization(
        _settings(prompt_demo, "metaprompt", budget), runner=_watching(run_metaprompt, app_calls)
    )
    view, rec = _check_run(prompt_demo, result, "metaprompt", budget, app_calls)
    # One pass: the seed and its proposal, each scored on the same 15 rows (budget // 2).
    assert result.metric_calls == 30 and rec.extra["overshoot"] == 0
    assert [c.id for c in rec.candidates] == [0, 1]
    assert set(rec.candidates[0].val_scores) == set(rec.candidates[1].val_scores)
    assert len(rec.candidates[0].val_scores) == 15
    assert rec.candidates[1].val_score > rec.candidates[0].val_score
    assert view.best_id == 1 and rec.proposals[0]["status"] == "accepted"
    assert result.test_score_after > result.test_score_before


class StopAfter:
    """A run recorder that asks to stop once ``n`` stop checks have passed (the cancel tag
    as the worker would see it, without a second process)."""

    def __init__(self, inner: Any, n: int) -> None:
        self.inner = inner
        self.n = n
        self.checks = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def should_stop(self) -> bool:
        self.checks += 1
        return self.checks > self.n


def test_mlflow_gepa_cancel_stops_at_once_and_keeps_the_seed(
    prompt_demo: str, app_calls: AppCalls
) -> None:
    from core.optimization.engine import run_prompt_optimization
    from core.optimization.runners.mlflow_prompts import run_mlflow_gepa
    from core.store.prompts import list_prompt_versions

    outcomes: list[AlignmentOutcome] = []

    def runner(task: Any, train: list, val: list, recorder: Any) -> AlignmentOutcome:
        # Stops in the middle of the seed's validation pass.
        out = run_mlflow_gepa(task, train, val, StopAfter(recorder, 5))
        outcomes.append(out)
        return out

    result = run_prompt_optimization(
        _settings(prompt_demo, "mlflow-gepa", 200), runner=_watching(runner, app_calls)
    )
    assert result.status == "cancelled"
    assert outcomes[0].cancelled and outcomes[0].metric_calls < 10
    assert outcomes[0].candidate[PROMPT] == list_prompt_versions(PROMPT)[0].template
    assert app_calls.calls == outcomes[0].metric_calls
    assert [v.version for v in list_prompt_versions(PROMPT)] == [1]
    assert not [n for n in _prompt_names() if "--alignboard-" in n]


def test_mlflow_gepa_cancel_mid_search_returns_the_best_candidate_so_far(
    prompt_demo: str, app_calls: AppCalls
) -> None:
    from mlflow import MlflowClient

    from core.optimization import record
    from core.optimization.engine import run_prompt_optimization
    from core.optimization.runners.mlflow_prompts import run_mlflow_gepa

    outcomes: list[AlignmentOutcome] = []

    def runner(task: Any, train: list, val: list, recorder: Any) -> AlignmentOutcome:
        out = run_mlflow_gepa(task, train, val, StopAfter(recorder, 60))
        outcomes.append(out)
        return out

    result = run_prompt_optimization(
        _settings(prompt_demo, "mlflow-gepa", 400), runner=_watching(runner, app_calls)
    )
    out = outcomes[0]
    assert result.status == "cancelled" and out.cancelled
    assert 16 <= out.metric_calls < 70 and app_calls.calls == out.metric_calls
    rec = record.read_run_record(MlflowClient(), result.run_id)
    assert len(rec.candidates) >= 2
    best = max(rec.candidates, key=lambda c: (c.val_score, -c.id))
    assert out.candidate[PROMPT] == best.instructions
    assert rec.extra["best_candidate_id"] == best.id
    assert not [n for n in _prompt_names() if "--alignboard-" in n]


def test_baseline_runners_refuse_a_judge_task() -> None:
    from core.errors import ValidationError
    from core.optimization.runners.mlflow_prompts import run_metaprompt

    class JudgeTask:
        kind = "judge"

    with pytest.raises(ValidationError, match="optimizes prompts"):
        run_metaprompt(JudgeTask(), [], [], None)  # type: ignore[arg-type]


@pytest.mark.parametrize("aggregation", ["mean", "min"])
def test_mlflow_scores_each_row_exactly_as_our_evaluator(
    prompt_demo: str, app_calls: AppCalls, aggregation: str
) -> None:
    """MLflow's per-row scores of the seed (judge, Correctness and exact match, the run's
    aggregation, rows without expectations skipped by the built-ins) equal ours."""
    from mlflow import MlflowClient

    from core.io.prompt_data import load_rows, parse_source
    from core.optimization import record
    from core.optimization.engine import run_prompt_optimization
    from core.optimization.prompt_task import PromptTask
    from core.optimization.runners.mlflow_prompts import run_metaprompt

    settings = _settings(
        prompt_demo,
        "metaprompt",
        30,
        scorers=("correctness", "exact_match"),
        aggregation=aggregation,
    )
    result = run_prompt_optimization(settings, runner=_watching(run_metaprompt, app_calls))
    rec = record.read_run_record(MlflowClient(), result.run_id)
    theirs = dict(rec.candidates[0].val_scores)
    rows = {r.id: r for r in load_rows(parse_source("dataset:northwind-messages"))}
    task = PromptTask(settings)
    evaluator = task.make_evaluator()
    try:
        [ours] = evaluator.evaluate([(task.seed_candidate(), [rows[t] for t in theirs])])
    finally:
        evaluator.close()
    assert {r.row_id: r.score for r in ours} == pytest.approx(theirs)
    # The built-ins really scored some rows and skipped others (no expectations).
    skipped = [r for r in ours if r.verdicts["correctness"].skipped]
    assert skipped and len(skipped) < len(ours)
    assert len({round(s, 6) for s in theirs.values()}) > 1


def test_a_rejected_application_key_fails_the_run_and_leaves_no_scratch_prompt(
    prompt_demo: str,
) -> None:
    """Over a real OpenAI-compatible server that rejects the key: the run stops with a
    CredentialsError (MLflow would have scored the error text), registers nothing."""
    from core.errors import CredentialsError
    from core.optimization.engine import run_prompt_optimization
    from core.store.prompts import list_prompt_versions
    from tests.support.openai_server import openai_server

    with openai_server(fault_rate=1.0, fault_kinds=("401",)) as server:
        settings = _settings(
            prompt_demo,
            "mlflow-gepa",
            100,
            task_model="openai:/app",
            task_base_url=server.base_url,
        )
        with pytest.raises(CredentialsError):
            run_prompt_optimization(settings)
        # It stopped at the first evaluation round (one call per row in flight, no more).
        assert 0 < server.served()["401"] <= 16
    assert [v.version for v in list_prompt_versions(PROMPT)] == [1]
    assert not [n for n in _prompt_names() if "--alignboard-" in n]


def test_two_prompts_of_one_app_are_optimized_together(
    prompt_demo: str, app_calls: AppCalls
) -> None:
    """Several prompts: each gets a scratch copy, predict_fn formats them all (the first as
    the system message), the candidate keeps both components."""
    from core.optimization.engine import run_prompt_optimization
    from core.optimization.runners.mlflow_prompts import run_metaprompt
    from core.store.prompts import register_prompt

    style = "Answer in the voice of Northwind Outfitters: short sentences, no jargon."
    register_prompt("northwind-style", style)
    settings = _settings(
        prompt_demo, "metaprompt", 30, prompts=["northwind-style@1", f"{PROMPT}@production"]
    )
    result = run_prompt_optimization(settings, runner=_watching(run_metaprompt, app_calls))
    assert result.status == "finished"
    assert set(result.templates) == {"northwind-style", PROMPT}
    assert app_calls.messages and all(
        [x["role"] for x in m] == ["system", "user"] for m in app_calls.messages
    )
    # The seed's round (15 rows) ran with the style prompt as it is registered.
    assert sum(1 for m in app_calls.messages if m[0]["content"] == style) >= 15
    assert not [n for n in _prompt_names() if "--alignboard-" in n]


def test_a_scratch_copy_left_by_a_killed_attempt_is_reused_and_deleted(
    prompt_demo: str,
) -> None:
    from core.optimization.engine import run_prompt_optimization
    from core.optimization.prompt_task import create_prompt_run
    from core.optimization.runners.mlflow_prompts import scratch_name
    from core.store.prompts import register_prompt

    settings = _settings(prompt_demo, "metaprompt", 30)
    run_id = create_prompt_run(settings)
    # What a kill -9 in the middle of an earlier attempt of this run leaves behind.
    register_prompt(scratch_name(PROMPT, run_id), "half-optimized {{ message }}")
    result = run_prompt_optimization(settings, run_id=run_id, resume=True)
    assert result.status == "finished" and result.prompt_version == 2
    assert "half-optimized" not in result.template
    assert not [n for n in _prompt_names() if "--alignboard-" in n]
