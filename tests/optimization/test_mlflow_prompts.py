"""MLflow's prompt optimizers (mlflow-gepa, metaprompt) as baselines through our engine."""

from __future__ import annotations

import pytest

from core.optimization.prompt_preflight import build_prompt_settings


def _settings(experiment_id: str, optimizer: str, budget: int = 40, **kw):
    return build_prompt_settings(
        experiment_id,
        prompts=["northwind-support@production"],
        dataset="dataset:northwind-messages",
        task_model="demo:/app",
        judges=["support_quality@production"],
        optimizer=optimizer,
        reflection_model="demo:/reflect",
        max_metric_calls=budget,
        workers=4,
        mapping={"message": "message"},
        **kw,
    )


@pytest.mark.parametrize("optimizer", ["mlflow-gepa", "metaprompt"])
def test_smoke(prompt_demo: str, optimizer: str) -> None:
    from core.optimization.engine import run_prompt_optimization

    result = run_prompt_optimization(_settings(prompt_demo, optimizer))
    print(result.to_dict())
