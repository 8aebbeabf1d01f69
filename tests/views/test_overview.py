"""The overview: counts per criterion and reviewer, judges, latest runs, demo-model use."""

from __future__ import annotations

import mlflow

from core.labeling.labels import current_labels
from core.views.overview import experiment_overview, latest_runs
from tests.support.judges import log_judge_verdict


def test_counts_per_criterion_and_reviewer(demo_store):
    ov = experiment_overview(demo_store)
    assert ov.traces == 84
    (c,) = ov.criteria
    labels = current_labels(demo_store, criterion="support_quality")
    assert c.criterion == "support_quality" and c.kind == "pass_fail"
    assert c.labeled_traces == len({lab.trace_id for lab in labels}) == 63
    assert c.per_reviewer == {"dev.patel": 23, "maria.chen": 63}
    assert c.multi_labeled == 23 and c.judged_traces == 0
    assert ov.reviewers == ["dev.patel", "maria.chen"]
    assert ov.judges == () and ov.runs == () and ov.demo_uses == ()


def test_judged_traces_count_non_human_feedback(demo_store):
    tid = current_labels(demo_store, criterion="support_quality")[0].trace_id
    log_judge_verdict(tid, True)
    (c,) = experiment_overview(demo_store).criteria
    assert c.judged_traces == 1 and c.labeled_traces == 63


def test_latest_runs_carry_status_and_flag_the_demo_model(demo_store):
    client = mlflow.MlflowClient()
    run = client.create_run(demo_store, run_name="align-1", tags={"alignboard.status": "running"})
    client.log_param(run.info.run_id, "optimizer", "gepa")
    client.log_param(run.info.run_id, "judge_name", "support_quality")
    client.log_param(run.info.run_id, "judge_model", "demo:/judge")
    client.log_param(run.info.run_id, "reflection_model", "openai:/gpt-4.1-mini")
    other = client.create_run(demo_store, run_name="plain")
    client.set_terminated(other.info.run_id, "FINISHED")
    runs = latest_runs(demo_store)
    by_name = {r.name: r for r in runs}
    assert by_name["align-1"].status == "running" and by_name["align-1"].optimizer == "gepa"
    assert by_name["align-1"].uses_demo and by_name["align-1"].judge == "support_quality"
    assert by_name["plain"].status == "finished" and not by_name["plain"].uses_demo
    ov = experiment_overview(demo_store)
    assert any("align-1" in u and "demo:/judge" in u for u in ov.demo_uses)


def test_only_memalign_counts_its_embedding_model_and_a_prompt_run_counts_its_app_model(
    demo_store,
):
    # Every alignment logs the embedding field (default demo:/embed); a GEPA run on a real
    # model used none, so the "Demo model in use" notice must not count it (B4 smoke).
    client = mlflow.MlflowClient()

    def run(name: str, **params: str) -> None:
        rid = client.create_run(demo_store, run_name=name).info.run_id
        for key, value in params.items():
            client.log_param(rid, key, value)

    real = {"judge_model": "openai:/qwen", "reflection_model": "openai:/qwen"}
    run("gepa-real", optimizer="gepa", embedding_model="demo:/embed", **real)
    run("memalign-real", optimizer="memalign", embedding_model="demo:/embed", **real)
    run("prompt-demo-app", optimizer="gepa", task_model="demo:/app", **real)
    by_name = {r.name: r for r in latest_runs(demo_store)}
    assert not by_name["gepa-real"].uses_demo
    assert by_name["memalign-real"].uses_demo
    assert "demo:/embed" in by_name["memalign-real"].models
    assert by_name["prompt-demo-app"].uses_demo
    uses = experiment_overview(demo_store).demo_uses
    assert not any("gepa-real" in u for u in uses)
    assert any("memalign-real" in u and "demo:/embed" in u for u in uses)
    assert any("prompt-demo-app" in u and "demo:/app" in u for u in uses)
