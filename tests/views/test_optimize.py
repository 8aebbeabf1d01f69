"""The Optimize page's choices, read from a real demo store and Prompt Registry."""

from __future__ import annotations

import json

import pytest

from core.errors import ValidationError
from core.optimization.registry import set_alias
from core.store.prompts import register_prompt, set_prompt_alias
from core.views import optimize as ov


def test_prompt_refs_offer_production_first_then_other_aliases_then_versions(prompt_demo):
    register_prompt("northwind-support", "Be brief.\n\n{{ message }}")
    set_prompt_alias("northwind-support", "candidate", 2)
    refs = ov.prompt_refs("northwind-support")
    assert [(r.ref, r.label, r.version) for r in refs] == [
        ("northwind-support@production", "production -> v1", 1),
        ("northwind-support@candidate", "candidate -> v2", 2),
        ("northwind-support@2", "v2", 2),
        ("northwind-support@1", "v1", 1),
    ]
    assert ov.prompt_names() == ["northwind-support"]
    chosen = ov.prompt_choice("northwind-support@candidate")
    assert (chosen.version, chosen.variables, chosen.is_chat) == (2, ("message",), False)


def test_judge_refs_and_the_default_is_each_judges_production_alias(prompt_demo):
    refs = ov.judge_refs(prompt_demo)
    assert [r.ref for r in refs] == ["support_quality@production", "support_quality@1"]
    assert refs[0].label == "support_quality: production -> v1"
    assert ov.default_judges(refs) == ["support_quality@production"]
    set_alias(prompt_demo, "support_quality", "staging", 1)
    assert [r.ref for r in ov.judge_refs(prompt_demo)][:2] == [
        "support_quality@production",
        "support_quality@staging",
    ]


def test_dataset_fields_of_the_demo_dataset_and_of_a_broken_file(prompt_demo, tmp_path):
    assert ov.eval_datasets(prompt_demo) == ["northwind-messages"]
    fields = ov.dataset_fields(ov.source_text("dataset", dataset="northwind-messages"))
    assert fields.error is None and fields.rows == 60 and fields.paths == ("message",)
    assert 0 < fields.with_expectations < fields.rows
    bad = tmp_path / "rows.jsonl"
    bad.write_text(json.dumps({"inputs": {"text": "hi"}}) + "\nnot json\n", encoding="utf-8")
    broken = ov.dataset_fields(str(bad))
    assert broken.rows == 0 and broken.error and "2" in broken.error
    assert ov.dataset_fields("").error == "Choose a dataset source."
    assert ov.default_field("message", fields.paths) == "message"
    assert ov.default_field("order", fields.paths) is None


def test_tag_filters_and_source_texts():
    assert ov.parse_tag_filter(" topic=returns, channel = email ,") == {
        "topic": "returns",
        "channel": "email",
    }
    assert ov.parse_tag_filter("") == {}
    with pytest.raises(ValidationError, match="not key=value"):
        ov.parse_tag_filter("topic")
    assert ov.source_text("experiment", experiment="demo") == "experiment:demo"
    assert ov.source_text("file", path=" /x.jsonl ") == "/x.jsonl"
    assert ov.source_text("dataset") == ""
    assert ov.uses_demo(["openai:/gpt-4.1", " demo:/app"]) and not ov.uses_demo(["openai:/x"])
