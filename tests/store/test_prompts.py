"""The Prompt Registry through core.store.prompts, on a real sqlite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlflow
import pytest

from core.errors import NotFoundError, ValidationError
from core.store.prompts import (
    VARIABLE_PATTERN,
    PromptRef,
    list_prompt_versions,
    list_prompts,
    load_prompt,
    parse_prompt_ref,
    register_prompt,
    render,
    set_prompt_alias,
    template_variables,
    to_messages,
)

TEXT = "You are Northwind's assistant.\nCustomer ({{ tier }}): {{message}}\nAgain: {{ message }}"
CHAT = [
    {"role": "system", "content": "You help {{ company }} customers. Be {{style}}."},
    {"role": "user", "content": "{{ message }}"},
]


@pytest.mark.parametrize(
    ("text", "ref", "uri"),
    [
        ("support", PromptRef("support"), "prompts:/support@latest"),
        ("support@3", PromptRef("support", version=3), "prompts:/support/3"),
        (
            "support@production",
            PromptRef("support", alias="production"),
            "prompts:/support@production",
        ),
        (" support@latest ", PromptRef("support"), "prompts:/support@latest"),
        ("prompts:/support/2", PromptRef("support", version=2), "prompts:/support/2"),
        ("prompts:/support@candidate", PromptRef("support", alias="candidate"), None),
    ],
)
def test_parse_prompt_ref_reads_name_version_and_alias(text, ref, uri):
    parsed = parse_prompt_ref(text)
    assert parsed == ref
    if uri:
        assert parsed.uri() == uri
    assert parse_prompt_ref(str(parsed)) == parsed


@pytest.mark.parametrize("text", ["", "  ", "bad name", "support@", "support@0", "s@a b", "a/b"])
def test_parse_prompt_ref_refuses_malformed_references(text):
    with pytest.raises(ValidationError):
        parse_prompt_ref(text)


def test_str_of_a_reference_is_the_short_form():
    assert str(PromptRef("p")) == "p"
    assert str(PromptRef("p", version=3)) == "p@3"
    assert str(PromptRef("p", alias="prod")) == "p@prod"
    with pytest.raises(ValidationError):
        PromptRef("p", version=1, alias="prod")


def test_template_variables_follow_mlflows_rule_in_order_of_appearance():
    from mlflow.entities.model_registry.prompt_version import PromptVersion
    from mlflow.prompt.constants import PROMPT_TEMPLATE_VARIABLE_PATTERN

    assert VARIABLE_PATTERN.pattern == PROMPT_TEMPLATE_VARIABLE_PATTERN.pattern
    assert template_variables(TEXT) == ("tier", "message")
    assert template_variables(CHAT) == ("company", "style", "message")
    odd = "{{a.b}} {{ 1x }} {x} {{ _y }} {{ z }}}"
    assert template_variables(odd) == ("a.b", "_y", "z")
    for template in (TEXT, CHAT, odd):
        assert set(template_variables(template)) == PromptVersion("p", 1, template).variables


def test_register_then_load_by_version_alias_and_latest(store_uri):
    v1 = register_prompt("support", TEXT, commit_message="first", tags={"team": "cx"})
    assert (v1.name, v1.version, v1.is_chat) == ("support", 1, False)
    assert v1.variables == ("tier", "message")
    v2 = register_prompt("support", CHAT, commit_message="chat")
    assert v2.version == 2 and v2.is_chat
    set_prompt_alias("support", "production", 1)

    by_version = load_prompt("support@1")
    assert by_version.template == TEXT
    assert by_version.commit_message == "first"
    assert by_version.tags == {"team": "cx"}
    assert by_version.aliases == ("production",)
    assert load_prompt(PromptRef("support", alias="production")).version == 1
    latest = load_prompt("support")
    assert latest.version == 2 and latest.template == CHAT
    # Moving the alias is seen at once (MLflow's own load_prompt caches aliases).
    set_prompt_alias("support", "production", 2)
    assert load_prompt("support@production").version == 2

    versions = list_prompt_versions("support")
    assert [v.version for v in versions] == [1, 2]
    assert versions[1].aliases == ("production",) and versions[0].aliases == ()
    assert list_prompts() == ["support"]
    assert json.loads(json.dumps(latest.to_dict()))["template"] == CHAT
    assert (
        latest.text()
        == "system: You help {{ company }} customers. Be {{style}}.\n\nuser: {{ message }}"
    )
    assert latest.uri == "prompts:/support/2"


def test_load_errors_name_what_exists(store_uri):
    register_prompt("support", TEXT)
    register_prompt("support", TEXT + " v2")
    register_prompt("other", "Hi {{ x }}")
    set_prompt_alias("support", "production", 1)

    with pytest.raises(NotFoundError) as err:
        load_prompt("nope")
    assert "other, support" in str(err.value)
    with pytest.raises(NotFoundError) as err:
        load_prompt("support@7")
    assert "no version 7" in str(err.value) and "1, 2" in str(err.value)
    with pytest.raises(NotFoundError) as err:
        load_prompt("support@staging")
    assert "no alias 'staging'" in str(err.value) and "production (v1)" in str(err.value)
    with pytest.raises(NotFoundError) as err:
        set_prompt_alias("support", "candidate", 9)
    assert "1, 2" in str(err.value)
    with pytest.raises(ValidationError):
        set_prompt_alias("support", "latest", 1)
    with pytest.raises(NotFoundError):
        list_prompt_versions("nope")


def test_register_refuses_bad_templates_and_names(store_uri):
    for template in ("", "   ", [], [{"role": "user"}], [{"content": "x"}], 3):
        with pytest.raises(ValidationError):
            register_prompt("p", template)
    with pytest.raises(ValidationError):
        register_prompt("bad name", "x")
    with pytest.raises(ValidationError):
        register_prompt("p", "x", tags={"n": 1})  # type: ignore[dict-item]
    assert list_prompts() == []


@pytest.mark.parametrize(
    "template", [TEXT, CHAT, "{{ message }} and {{ message}} \\u00e9 {{ tier }}"]
)
def test_render_gives_the_text_mlflow_formats_on_a_registered_prompt(store_uri, template):
    info = register_prompt("render-check", template)
    values = {
        "message": "Where is order #12? Path C:\\new\\table {{ tier }}",
        "tier": "gold",
        "company": "Northwind",
        "style": "brief",
    }
    values = {k: v for k, v in values.items() if k in info.variables}
    pv = mlflow.MlflowClient().get_prompt_version("render-check", info.version)
    assert render(info.template, values) == pv.format(**values)


def test_render_refuses_missing_values_and_renders_jinja_like_mlflow():
    from mlflow.entities.model_registry.prompt_version import PromptVersion

    with pytest.raises(ValidationError) as err:
        render(TEXT, {"message": "hi"})
    assert "tier" in str(err.value)
    jinja = "Hello {% if name %}{{ name }}{% else %}guest{% endif %}!"
    assert render(jinja, {"name": "Ana"}) == PromptVersion("j", 1, jinja).format(name="Ana")
    assert render(jinja, {}) == "Hello guest!"


def test_to_messages_wraps_text_as_one_user_message():
    assert to_messages("hi") == [{"role": "user", "content": "hi"}]
    rendered = render(CHAT, {"company": "N", "style": "kind", "message": "hello"})
    assert to_messages(rendered) == [
        {"role": "system", "content": "You help N customers. Be kind."},
        {"role": "user", "content": "hello"},
    ]


def test_a_registered_version_loads_with_mlflows_own_load_prompt_in_a_plain_process(store_uri):
    text = register_prompt("plain", TEXT, commit_message="text")
    chat = register_prompt("plain", CHAT, commit_message="chat")
    set_prompt_alias("plain", "production", text.version)
    code = (
        "import json, mlflow\n"
        "a = mlflow.genai.load_prompt('prompts:/plain/2')\n"
        "b = mlflow.genai.load_prompt('prompts:/plain@production')\n"
        "print(json.dumps({'chat': a.template, 'text': b.template, 'version': b.version,"
        " 'vars': sorted(a.variables)}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(MLFLOW_TRACKING_URI=store_uri, MLFLOW_ENABLE_TELEMETRY="false", DO_NOT_TRACK="true")
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd="/"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {
        "chat": chat.template,
        "text": text.template,
        "version": 1,
        "vars": sorted(chat.variables),
    }
