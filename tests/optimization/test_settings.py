"""One way in: the CLI's flags and the Align page's form build the same settings."""

from __future__ import annotations

import mlflow
import pytest

from core.cli import _align_settings, build_parser
from core.errors import ModelError
from core.labeling.criteria import create_criterion, get_criterion
from core.models.uris import parse_model
from core.optimization.settings import (
    build_settings,
    check_alignment,
    starting_points,
    template_instructions,
)

ADVANCED = {
    "optimizer": "memalign",
    "model": "demo:/judge",
    "reflection_model": "openai:/distiller",
    "base_url": "http://127.0.0.1:9/v1",
    "reflection_base_url": "http://127.0.0.1:9/v1",
    "embedding_model": "openai:/embedder",
    "embedding_base_url": "http://127.0.0.1:9/v1/",
    "max_metric_calls": 90,
    "workers": 3,
    "seed": 2,
    "minibatch_size": 4,
    "retrieval_k": 7,
    "reviewers": ["maria.chen", "dev.patel"],
}


def _cli_args(experiment: str, judge: str, choices: dict) -> list[str]:
    args = ["align", "--experiment", experiment, "--judge", judge]
    for key, value in choices.items():
        flag = "--" + key.replace("_", "-")
        if key == "reviewers":
            for reviewer in value:
                args += ["--reviewer", reviewer]
        else:
            args += [flag, str(value)]
    return args


def _page_settings(experiment_id: str, criterion, choices: dict):
    """What the Align page builds: the "New judge" starting point's text, the form's values."""
    template = starting_points(experiment_id, criterion)[0]
    assert template.key == "template"
    return build_settings(experiment_id, criterion, instructions=template.instructions, **choices)


@pytest.fixture
def helpful(demo_store):
    return create_criterion(demo_store, "helpful", "pass_fail", "Is the answer helpful?")


@pytest.mark.parametrize("judge", ["support_quality", "helpful"])
@pytest.mark.parametrize(
    "choices",
    [
        {"optimizer": "gepa", "model": "demo:/judge", "reflection_model": "demo:/reflect"},
        ADVANCED,
    ],
    ids=["defaults", "advanced"],
)
def test_cli_and_align_page_build_equal_settings_for_the_same_choices(
    demo_store, helpful, judge, choices
):
    name = mlflow.get_experiment(demo_store).name
    criterion = get_criterion(demo_store, judge)
    from_cli = _align_settings(build_parser().parse_args(_cli_args(name, judge, choices)))
    from_page = _page_settings(demo_store, criterion, choices)
    assert from_cli.to_dict() == from_page.to_dict()
    assert from_cli.judge.instructions == template_instructions(criterion)
    if choices is ADVANCED:
        assert from_cli.reviewers == ("dev.patel", "maria.chen")
        assert from_cli.embedding_base_url == "http://127.0.0.1:9/v1"
        assert from_cli.judge.base_url == "http://127.0.0.1:9/v1"
        assert (from_cli.minibatch_size, from_cli.retrieval_k) == (4, 7)


def test_a_criterion_without_template_variables_gets_them_on_both_paths(demo_store, helpful):
    name = mlflow.get_experiment(demo_store).name
    choices = {"optimizer": "memalign", "model": "demo:/judge", "reflection_model": "demo:/reflect"}
    settings = _align_settings(build_parser().parse_args(_cli_args(name, "helpful", choices)))
    assert settings.judge.instructions.startswith("Is the answer helpful?")
    assert settings.judge.template_variables() == ["{{ inputs }}", "{{ outputs }}"]
    codes = {f.code for f in check_alignment(settings).findings}
    # It has no labels yet, which pre-flight says; it no longer refuses the instructions.
    assert "no_template_variables" not in codes
    assert "no_labels_for_judge" in codes


def test_instructions_given_explicitly_are_used_as_written(demo_store, helpful):
    settings = build_settings(
        demo_store, helpful, optimizer="gepa", instructions="Is this a good reply?"
    )
    assert settings.judge.instructions == "Is this a good reply?"
    codes = {f.code for f in check_alignment(settings).findings}
    assert "no_template_variables" in codes


def test_a_malformed_model_name_is_refused_by_the_builder_with_the_form_to_follow(
    demo_store, helpful
):
    with pytest.raises(ModelError, match="did you mean 'openai:/gpt-4o'"):
        build_settings(demo_store, helpful, optimizer="gepa", model="openai/gpt-4o")
    with pytest.raises(ModelError, match="http://"):
        build_settings(demo_store, helpful, optimizer="gepa", reflection_base_url="localhost:1")


def test_model_names_are_parsed_once_and_shared():
    first = parse_model("demo:/judge")
    assert parse_model("demo:/judge") is first
    assert parse_model(" demo:/judge ", "http://127.0.0.1:9/v1/").base_url == (
        "http://127.0.0.1:9/v1"
    )
    with pytest.raises(ModelError):
        parse_model("nosuchprovider:/m1")
