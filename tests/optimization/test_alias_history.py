"""The alias history: one experiment tag per change, rollback to the previous target, and
MLflow's own API resolving the alias after a rollback (scorer versions, prompt aliases)."""

from __future__ import annotations

import json
import threading

import mlflow
import pytest

from core.errors import ValidationError
from core.optimization import alias_history, registry
from core.optimization.alias_history import AliasChange, previous_target, replay

BASE = "Is {{ outputs }} a good answer to {{ inputs }}? Answer pass or fail."


def _judge(extra: str = ""):
    from mlflow.genai.judges import make_judge

    return make_judge(
        name="helpful", instructions=BASE + extra, model="demo:/judge", feedback_value_type=bool
    )


def _five_versions(eid: str) -> None:
    for i in range(1, 6):
        registry.register_version(_judge(f"\nVariant {i}."), eid, run_id=None, test_metrics={})


def _change(version: int, previous: int | None, action: str = "set", ms: int = 0) -> AliasChange:
    return AliasChange("judge", "helpful", "production", version, previous, action, "t", ms)


def _history_tags(eid: str) -> dict[str, str]:
    tags = mlflow.MlflowClient().get_experiment(eid).tags
    return {k: v for k, v in tags.items() if k.startswith(alias_history.HISTORY_PREFIX)}


def test_each_change_is_its_own_tag_and_history_is_newest_first(experiment):
    eid = experiment.experiment_id
    _five_versions(eid)
    registry.set_alias(eid, "helpful", "production", 1, who="ann")
    registry.set_alias(eid, "helpful", "production", 5, who="bob")
    registry.set_alias(eid, "helpful", "staging", 3, who="cy")

    tags = _history_tags(eid)
    assert len(tags) == 3  # one tag per change, never one growing blob
    assert all(len(v) < 500 for v in tags.values())
    assert all(
        k.startswith("alignboard.alias_history.judge.helpful.") and k[-5] == "-" for k in tags
    )

    prod = alias_history.history(eid, "judge", "helpful", "production")
    assert [(c.version, c.previous_version, c.action, c.who) for c in prod] == [
        (5, 1, "set", "bob"),
        (1, None, "set", "ann"),
    ]
    assert prod[0].when_ms > prod[1].when_ms  # strictly ordered, even within one ms
    assert prod[0].when.endswith("+00:00") and "T" in prod[0].when
    d = prod[0].to_dict()
    assert {"version", "previous_version", "action", "who", "when", "when_ms"} <= set(d)
    everything = alias_history.history(eid, "judge", "helpful")
    assert [c.alias for c in everything] == ["staging", "production", "production"]
    # Another judge's or another kind's history is not this one's.
    assert alias_history.history(eid, "prompt", "helpful", "production") == []


def test_concurrent_writers_never_overwrite_each_other(experiment):
    eid = experiment.experiment_id
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for j in range(5):
                alias_history.record_change(
                    eid, "judge", "helpful", "production", i * 10 + j, None, "set", who=f"w{i}"
                )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    found = alias_history.history(eid, "judge", "helpful", "production")
    assert sorted(c.version for c in found) == sorted(
        i * 10 + j for i in range(4) for j in range(5)
    )
    assert len({c.key for c in found}) == 20


def test_keys_are_unique_within_one_millisecond_and_fit_mlflow():
    keys = {
        alias_history.history_key("judge", "helpful", "production", 1, f"{n:04x}")
        for n in range(50)
    }
    assert len(keys) == 50
    long = alias_history.history_key("prompt", "p" * 300, "production", 1_700_000_000_000, "ab12")
    assert len(long) <= alias_history.MAX_KEY_CHARS


def test_v1_then_v5_then_rollback_is_v1_and_mlflow_loads_v1(experiment):
    from mlflow.genai.scorers import get_scorer

    eid = experiment.experiment_id
    _five_versions(eid)
    registry.set_alias(eid, "helpful", "production", 1)
    registry.set_alias(eid, "helpful", "production", 5)
    change = registry.rollback(eid, "helpful", "production", who="ann")

    # The previous target (v1), not merely the version below v5 (v4).
    assert (change.version, change.previous_version, change.action) == (1, 5, "rollback")
    assert registry.get_alias(eid, "helpful", "production") == 1
    loaded = get_scorer(name="helpful", experiment_id=eid, version=1)
    assert loaded.instructions == BASE + "\nVariant 1."
    prod = alias_history.history(eid, "judge", "helpful", "production")
    assert [c.action for c in prod] == ["rollback", "set", "set"]

    # Nothing came before v1: a second roll back is refused, and nothing moves.
    with pytest.raises(ValidationError, match="no previous target"):
        registry.rollback(eid, "helpful", "production")
    assert registry.get_alias(eid, "helpful", "production") == 1
    assert len(alias_history.history(eid, "judge", "helpful", "production")) == 3


def test_second_rollback_goes_to_what_came_before(experiment):
    eid = experiment.experiment_id
    _five_versions(eid)
    for v in (2, 1, 5):
        registry.set_alias(eid, "helpful", "production", v)
    assert registry.rollback(eid, "helpful", "production").version == 1
    assert registry.rollback(eid, "helpful", "production").version == 2
    with pytest.raises(ValidationError, match="no previous target"):
        registry.rollback(eid, "helpful", "production")


def test_an_alias_without_history_is_refused_not_guessed(experiment):
    eid = experiment.experiment_id
    _five_versions(eid)
    # As an alias set before the history existed: only the alias tag.
    mlflow.MlflowClient().set_experiment_tag(eid, registry.alias_tag("helpful", "production"), "5")
    with pytest.raises(ValidationError, match="no recorded history"):
        registry.rollback(eid, "helpful", "production")
    assert registry.get_alias(eid, "helpful", "production") == 5
    with pytest.raises(ValidationError, match="not set"):
        registry.rollback(eid, "helpful", "staging")
    # Once moved here, the first entry knows its predecessor: roll back returns to v5.
    registry.set_alias(eid, "helpful", "production", 2)
    assert registry.rollback(eid, "helpful", "production").version == 5


def test_an_alias_moved_outside_alignboard_is_refused(experiment):
    eid = experiment.experiment_id
    _five_versions(eid)
    registry.set_alias(eid, "helpful", "production", 1)
    registry.set_alias(eid, "helpful", "production", 2)
    mlflow.MlflowClient().set_experiment_tag(eid, registry.alias_tag("helpful", "production"), "4")
    with pytest.raises(ValidationError, match="moved outside alignboard"):
        registry.rollback(eid, "helpful", "production")


def test_replay_rules():
    # set 1, set 5, roll back (to 1), undo (back to 5): the stack is [1, 5] again.
    h = [
        _change(5, 1, "undo", 4),
        _change(1, 5, "rollback", 3),
        _change(5, 1, ms=2),
        _change(1, None, ms=1),
    ]
    assert replay(h) == [1, 5] and previous_target(h) == 1
    # set 1, set 5, undo (back to 1): 5 is gone.
    h = [_change(1, 5, "undo", 3), _change(5, 1, ms=2), _change(1, None, ms=1)]
    assert replay(h) == [1] and previous_target(h) is None
    # Setting the current target again changes nothing; a set over a pre-history alias
    # keeps the old target below it.
    h = [_change(3, 3, ms=2), _change(3, 7, ms=1)]
    assert replay(h) == [7, 3] and previous_target(h) == 7
    assert previous_target([]) is None


def test_prompt_rollback_is_what_mlflow_loads_at_production(experiment):
    from core.store.prompts import register_prompt

    eid = experiment.experiment_id
    for i in range(1, 6):
        register_prompt("support", f"Answer {{{{ question }}}} politely, take {i}.")
    alias_history.set_prompt_alias(eid, "support", "production", 1, who="ann")
    alias_history.set_prompt_alias(eid, "support", "production", 5, action="promote", who="bob")
    assert mlflow.genai.load_prompt("prompts:/support@production").version == 5

    from core.views.versions import rollback

    change = rollback(eid, "prompt", "support", "production", who="cy")
    assert (change.version, change.previous_version) == (1, 5)
    loaded = mlflow.genai.load_prompt("prompts:/support@production")
    assert loaded.version == 1 and "take 1." in loaded.template
    hist = alias_history.history(eid, "prompt", "support", "production")
    assert [(c.action, c.version, c.who) for c in hist] == [
        ("rollback", 1, "cy"),
        ("promote", 5, "bob"),
        ("set", 1, "ann"),
    ]
    # The history lives in the experiment worked in; its values are plain JSON.
    assert all(json.loads(v)["kind"] == "prompt" for v in _history_tags(eid).values())
    with pytest.raises(ValidationError, match="no previous target"):
        rollback(eid, "prompt", "support", "production")


def test_a_prompt_optimization_records_the_alias_it_sets_at_registration(prompt_demo):
    from core.optimization.engine import run_prompt_optimization
    from core.optimization.prompt_preflight import build_prompt_settings

    s = build_prompt_settings(
        prompt_demo,
        prompts=["northwind-support"],
        dataset="dataset:northwind-messages",
        task_model="demo:/app",
        judges=["support_quality@production"],
        reflection_model="demo:/reflect",
        max_metric_calls=150,
    )
    result = run_prompt_optimization(s)
    assert result.prompt_version == 2 and result.alias == "candidate"
    assert mlflow.genai.load_prompt("prompts:/northwind-support@candidate").version == 2
    (entry,) = alias_history.history(prompt_demo, "prompt", "northwind-support", "candidate")
    assert (entry.action, entry.version, entry.previous_version) == ("set", 2, None)
    assert entry.who == f"alignboard (run {result.run_id})" and entry.run_id == result.run_id
