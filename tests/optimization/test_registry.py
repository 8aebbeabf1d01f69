"""The judge registry: versions of an MLflow scorer, metadata in experiment tags, aliases."""

from __future__ import annotations

import json

import mlflow
import pytest

from core.errors import NotFoundError, ValidationError
from core.optimization import registry

BASE = "Is {{ outputs }} a good answer to {{ inputs }}? Answer pass or fail."


def _judge(extra: str = ""):
    from mlflow.genai.judges import make_judge

    return make_judge(
        name="helpful", instructions=BASE + extra, model="demo:/judge", feedback_value_type=bool
    )


def test_versions_increment_and_metadata_round_trips(experiment):
    eid = experiment.experiment_id
    with mlflow.start_run(experiment_id=eid) as run:
        mlflow.log_param("optimizer", "gepa")
    v1 = registry.register_version(_judge(), eid, run_id=None, test_metrics={}, optimizer="seed")
    v2 = registry.register_version(
        _judge('\n- If the response contains "refund", the verdict is fail.'),
        eid,
        run_id=run.info.run_id,
        test_metrics={"accuracy": 0.8571428571, "kappa": 0.7, "confusion": [[1, 2], [3, 4]]},
    )
    assert (v1, v2) == (1, 2)

    versions = registry.list_versions(eid, "helpful")
    assert [v.version for v in versions] == [1, 2]
    second = versions[1]
    assert second.run_id == run.info.run_id
    assert second.optimizer == "gepa"  # read from the run's params
    assert second.test_metrics == {"accuracy": 0.857143, "kappa": 0.7}  # scalars only
    assert second.created_ms and second.created_ms >= versions[0].created_ms
    assert '"refund"' in second.instructions and not second.is_memalign
    assert versions[0].optimizer == "seed" and versions[0].run_id is None

    # Stored where MLflow's UI shows it, compact JSON; the run knows its version.
    tags = mlflow.get_experiment(eid).tags
    meta = json.loads(tags["alignboard.judge.helpful.v2"])
    assert meta["test"]["kappa"] == 0.7 and len(tags["alignboard.judge.helpful.v2"]) < 500
    run_tags = mlflow.get_run(run.info.run_id).data.tags
    assert run_tags["alignboard.judge_version"] == "2"
    assert run_tags["alignboard.judge_name"] == "helpful"

    loaded = registry.load_version(eid, "helpful", 1)
    assert loaded.instructions == BASE
    assert '"refund"' in registry.load_version(eid, "helpful").instructions  # latest


def test_aliases_point_move_and_roll_back(experiment):
    eid = experiment.experiment_id
    for i in range(3):
        registry.register_version(_judge(f"\nVariant {i}."), eid, run_id=None, test_metrics={})
    assert registry.get_alias(eid, "helpful", "production") is None
    registry.set_alias(eid, "helpful", "production", 3)
    registry.set_alias(eid, "helpful", "staging", 3)
    assert registry.get_alias(eid, "helpful", "production") == 3
    assert registry.list_versions(eid, "helpful")[2].aliases == ("production", "staging")

    registry.set_alias(eid, "helpful", "production", 1)
    registry.set_alias(eid, "helpful", "production", 2)
    back = registry.rollback(eid, "helpful", "production")  # to its previous target
    assert (back.version, back.previous_version) == (1, 2)
    assert registry.get_alias(eid, "helpful", "production") == 1
    by_version = {v.version: v.aliases for v in registry.list_versions(eid, "helpful")}
    assert by_version == {1: ("production",), 2: (), 3: ("staging",)}

    with pytest.raises(NotFoundError, match="no version 7"):
        registry.set_alias(eid, "helpful", "production", 7)
    with pytest.raises(ValidationError):
        registry.set_alias(eid, "helpful", "prod.v1", 1)
    assert registry.get_alias(eid, "helpful", "production") == 1


def test_list_judges_reports_latest_versions_and_unknown_names(experiment):
    from mlflow.genai.judges import make_judge

    eid = experiment.experiment_id
    assert registry.list_judges(eid) == {}
    assert registry.list_versions(eid, "helpful") == []
    registry.register_version(_judge(), eid, run_id=None, test_metrics={})
    registry.register_version(_judge("\nv2"), eid, run_id=None, test_metrics={})
    other = make_judge(name="tone", instructions="Is {{ outputs }} polite?", model="demo:/judge")
    registry.register_version(other, eid, run_id=None, test_metrics={})
    assert registry.list_judges(eid) == {"helpful": 2, "tone": 1}
    with pytest.raises(NotFoundError):
        registry.load_version(eid, "nope")
