"""Model URIs, credentials, secrets.toml, redaction."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from core.errors import CredentialsError, ModelError
from core.models import (
    ModelSpec,
    RedactingFilter,
    complete,
    demo_stats,
    get_secret,
    parse_model,
    redact,
    register_providers,
    require_credentials,
)
from core.models.secrets import export_secrets_to_environ, install_log_redaction


@pytest.fixture
def clean_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No provider keys in the environment and a cwd without secrets.toml."""
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("ALIGNBOARD_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("uri", "provider", "model", "litellm_model"),
    [
        ("openai:/gpt-4.1-mini", "openai", "gpt-4.1-mini", "openai/gpt-4.1-mini"),
        (
            "anthropic:/claude-sonnet-4-5",
            "anthropic",
            "claude-sonnet-4-5",
            "anthropic/claude-sonnet-4-5",
        ),
        ("ollama:/llama3.1", "ollama", "llama3.1", "ollama/llama3.1"),
        ("demo:/judge", "demo", "judge", "demo/judge"),
        (" OpenAI:/gpt-4o ", "openai", "gpt-4o", "openai/gpt-4o"),
    ],
)
def test_parse_model_accepts_provider_uris(uri, provider, model, litellm_model):
    spec = parse_model(uri)
    assert (spec.provider, spec.model, spec.litellm_model) == (provider, model, litellm_model)
    assert spec.uri == f"{provider}:/{model}"
    assert spec.is_demo == (provider == "demo")


def test_parse_model_with_base_url_is_a_keyless_openai_compatible_server():
    spec = parse_model("openai:/my-model", base_url="http://127.0.0.1:8000/v1/")
    assert spec == ModelSpec("openai", "my-model", "http://127.0.0.1:8000/v1")
    assert not spec.needs_key
    assert spec.judge_kwargs() == {
        "model": "openai:/my-model",
        "base_url": "http://127.0.0.1:8000/v1/chat/completions",
    }


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("gpt-4", "no ':/'"),
        ("openai/gpt-4", "did you mean 'openai:/gpt-4'"),
        ("openai:/", "missing"),
        (":/gpt-4", "missing"),
        ("", "empty"),
        ("nosuchprovider:/x", "unknown provider 'nosuchprovider'"),
    ],
)
def test_parse_model_rejects_bad_uris_with_providers_and_an_example(uri, fragment):
    with pytest.raises(ModelError) as info:
        parse_model(uri)
    message = str(info.value)
    assert fragment in message
    assert "openai:/gpt-4.1-mini" in message
    assert "Supported providers" in message and "anthropic" in message and "demo" in message


def test_parse_model_rejects_a_base_url_without_scheme():
    with pytest.raises(ModelError, match="http://"):
        parse_model("openai:/m", base_url="localhost:8000")


def test_missing_key_is_reported_before_any_call(clean_keys):
    register_providers()
    with pytest.raises(CredentialsError) as info:
        complete("openai:/gpt-4.1-mini", [{"role": "user", "content": "hi"}])
    assert str(info.value).startswith("openai:/gpt-4.1-mini needs OPENAI_API_KEY")
    assert ".streamlit/secrets.toml" in str(info.value)
    with pytest.raises(CredentialsError, match="ANTHROPIC_API_KEY"):
        require_credentials("anthropic:/claude-sonnet-4-5")


def test_local_models_need_no_key(clean_keys):
    for uri in ("demo:/judge", "ollama:/llama3.1"):
        require_credentials(uri)
    require_credentials(parse_model("openai:/m", base_url="http://127.0.0.1:1/v1"))


def test_key_in_environment_satisfies_the_check(clean_keys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-0000000000")
    require_credentials("openai:/gpt-4.1-mini")


def test_secrets_toml_in_cwd_provides_keys(clean_keys, monkeypatch):
    folder = clean_keys / ".streamlit"
    folder.mkdir()
    (folder / "secrets.toml").write_text(
        'OPENAI_API_KEY = "sk-from-toml-1111111111"\n[section]\nNESTED = "ignored"\n'
    )
    assert get_secret("OPENAI_API_KEY") == "sk-from-toml-1111111111"
    assert get_secret("NESTED") is None
    require_credentials("openai:/gpt-4.1-mini")
    # Libraries read keys from the environment; exporting never overrides a set variable.
    monkeypatch.setenv("OPENAI_API_KEY", "")
    assert export_secrets_to_environ() == ["OPENAI_API_KEY"]
    import os

    assert os.environ["OPENAI_API_KEY"] == "sk-from-toml-1111111111"
    assert export_secrets_to_environ() == []


def test_secrets_toml_next_to_the_data_folder_is_found(clean_keys, monkeypatch, tmp_path):
    project = tmp_path / "project"
    (project / ".streamlit").mkdir(parents=True)
    (project / ".streamlit" / "secrets.toml").write_text(
        'ANTHROPIC_API_KEY = "sk-ant-2222222222"\n'
    )
    monkeypatch.setenv("ALIGNBOARD_HOME", str(project / ".alignboard"))
    require_credentials("anthropic:/claude-sonnet-4-5")


def test_broken_secrets_toml_is_a_clear_error(clean_keys):
    (clean_keys / ".streamlit").mkdir()
    (clean_keys / ".streamlit" / "secrets.toml").write_text("OPENAI_API_KEY = sk-unquoted\n")
    with pytest.raises(CredentialsError, match="not valid TOML"):
        get_secret("OPENAI_API_KEY")


def test_redact_hides_env_and_toml_secrets_and_key_shapes(clean_keys, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-abcdef123456")
    monkeypatch.setenv("OPENAI_API_KEY", "plain-secret-value-42")
    (clean_keys / ".streamlit").mkdir()
    (clean_keys / ".streamlit" / "secrets.toml").write_text('OTHER = "toml-only-secret-99"\n')
    text = (
        "tok-abcdef123456 plain-secret-value-42 toml-only-secret-99 "
        "sk-proj-ABCDEFGHIJKLMNOP Authorization: Bearer abc.def-ghi123"
    )
    cleaned = redact(text)
    for secret in ("tok-abcdef123456", "plain-secret-value-42", "toml-only-secret-99"):
        assert secret not in cleaned
    assert "sk-proj-ABCDEFGHIJKLMNOP" not in cleaned and "abc.def-ghi123" not in cleaned
    assert cleaned.count("***") == 5
    assert redact("nothing secret here") == "nothing secret here"


def test_logging_filter_redacts_message_args_and_traceback(clean_keys, monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", "key-in-a-log-line-777")
    logger = logging.getLogger("alignboard.test.redaction")
    logger.addFilter(RedactingFilter())
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            logger.info("calling with %s", "key-in-a-log-line-777")
            try:
                raise RuntimeError("bad key key-in-a-log-line-777")
            except RuntimeError:
                logger.exception("failed")
    finally:
        logger.filters.clear()
    assert "key-in-a-log-line-777" not in caplog.text
    assert "calling with ***" in caplog.text and "bad key ***" in caplog.text


def test_installed_redaction_covers_every_logger(clean_keys, monkeypatch, caplog):
    install_log_redaction()
    monkeypatch.setenv("SOME_VENDOR_SECRET", "vendor-secret-31337")
    with caplog.at_level(logging.WARNING):
        logging.getLogger("some.third.party").warning("token=%s", "vendor-secret-31337")
    assert "vendor-secret-31337" not in caplog.text
    assert "token=***" in caplog.text


def test_register_providers_is_idempotent():
    import litellm

    register_providers()
    register_providers()
    demo_entries = [e for e in litellm.custom_provider_map if e["provider"] == "demo"]
    assert len(demo_entries) == 1
    before = demo_stats().calls
    complete("demo:/judge", [{"role": "user", "content": "Response: fine"}])
    assert demo_stats().calls == before + 1
