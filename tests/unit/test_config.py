from __future__ import annotations

from pathlib import Path

import pytest

from llmcorr.config import Config
from llmcorr.errors import ConfigError

TOML = """
[[endpoints]]
name = "east"
kind = "openai"
base_url = "http://127.0.0.1:8101/v1"
model = "gpt-4o-mini"
api_key = "${env:EAST_KEY}"
rpm = 600
tpm = 60000
price_in = 0.15
price_out = 0.6

[[endpoints]]
name = "west"
kind = "azure"
base_url = "http://127.0.0.1:8102/openai/deployments/gpt4o"
model = "gpt-4o"
quota_group = "shared"
window_s = 10
"""


def test_defaults_follow_llmcorr_home(llmcorr_home: Path) -> None:
    config = Config.load()
    assert config.store_path == llmcorr_home / "llmcorr.db"
    assert config.provider.kind == "local" and config.endpoints == []


def test_toml_endpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "llmcorr.toml"
    path.write_text(TOML)
    config = Config.load(path)
    east, west = config.endpoints
    assert (east.name, east.rpm, east.tpm, east.api_key_env, east.group) == ("east", 600, 60000, "EAST_KEY", "east")
    assert (west.kind, west.group, west.window_s, west.key_env) == ("azure", "shared", 10, None)
    assert east.cost(1_000_000, 1_000_000) == pytest.approx(0.75)
    with pytest.raises(ConfigError, match="endpoint east: environment variable EAST_KEY is not set"):
        config.select(["east"])
    monkeypatch.setenv("EAST_KEY", "sk-test")
    assert [e.name for e in config.select(["east", "west"])] == ["east", "west"]
    with pytest.raises(ConfigError, match="--endpoint north: no such endpoint; configured: east, west"):
        config.select(["north"])
    monkeypatch.chdir(tmp_path)  # found in the working directory without --config
    assert [e.name for e in Config.load().endpoints] == ["east", "west"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("rpm = 600", 'rpm = "lots"'), "endpoints[0] (east).rpm: Input should be a valid number"),
        (
            ("tpm = 60000", "tpm = 60000\ncolour = 'red'"),
            "endpoints[0] (east): colour is not an endpoint setting, nor an option of kind openai (it has none)",
        ),
        (('"${env:EAST_KEY}"', '"sk-live-123"'), 'endpoints[0] (east): api_key must be "${env:VAR}"'),
        (('name = "west"', 'name = "east"'), "endpoints: Value error, two endpoints are named 'east'"),
        (('[[endpoints]]\nname = "east"', '[[endpoints]\nname = "east"'), "not valid TOML"),
        (('model = "gpt-4o"', ""), "endpoints[1] (west): the azure endpoint needs a model name"),
    ],
)
def test_bad_toml_is_one_clear_line(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    path = tmp_path / "llmcorr.toml"
    path.write_text(TOML.replace(*edit, 1))
    with pytest.raises(ConfigError) as info:
        Config.load(path)
    text = str(info.value)
    assert text.startswith(f"bad config: {path}: ") or text.startswith(f"{path}: "), text
    assert message.removeprefix("endpoints: Value error, ") in text.replace("Value error, ", ""), text
    assert "\n" not in text and "sk-live-123" not in text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"provider": {"kind": "openai"}}, "bad config: provider: the openai endpoint needs a model name"),
        (
            {"provider": {"kind": "cloud"}},
            "bad config: provider: kind 'cloud': no such provider; kinds: local, openai, azure, vllm, ollama, llamacpp",
        ),
        ({"provider": {"max_concurrency": 0}}, "bad config: provider.max_concurrency"),
        ({"provider": {"api_key": "sk-x"}}, 'bad config: provider: api_key must be "${env:VAR}"'),
    ],
)
def test_bad_overrides_are_one_clear_line(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.load(**overrides)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value) and "sk-x" not in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        Config.load(tmp_path / "nope.toml")


def test_default_endpoints_from_toml(tmp_path: Path) -> None:
    endpoint = '[[endpoints]]\nname = "q"\nkind = "openai"\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n'
    path = tmp_path / "llmcorr.toml"
    path.write_text('default = "q"\n\n' + endpoint)
    config = Config.load(path)
    assert [e.name for e in config.select(None)] == ["q"]
    assert [e.kind for e in Config.load(path, default=[]).select(None)] == ["local"]  # provider flags win
    path.write_text('default = ["nope"]\n\n' + endpoint)
    with pytest.raises(ConfigError, match="no endpoint is named 'nope'"):
        Config.load(path)


@pytest.mark.parametrize(
    ("kind", "url", "provider_class"),
    [
        ("vllm", "http://127.0.0.1:8000/v1", "VLLMProvider"),
        ("ollama", "http://127.0.0.1:11434/v1", "OllamaProvider"),
        ("llamacpp", "http://127.0.0.1:8080/v1", "LlamaCppServerProvider"),
    ],
)
def test_a_local_server_kind_means_its_localhost_url_and_no_key(
    tmp_path: Path, kind: str, url: str, provider_class: str
) -> None:
    from llmcorr.providers import make_provider

    path = tmp_path / "llmcorr.toml"
    path.write_text(f'[[endpoints]]\nname = "here"\nkind = "{kind}"\nmodel = "m"\nmax_concurrency = 2\n')
    endpoint = Config.load(path).endpoint("here")
    assert (endpoint.kind, endpoint.base_url, endpoint.key_env) == (kind, url, None)
    assert endpoint.model_dump()["base_url"] == url  # what the run record keeps
    provider = make_provider(endpoint)
    assert type(provider).__name__ == provider_class and provider.kind == kind
    assert provider.describe()["base_url"] == url and provider.max_concurrency == 2

    path.write_text(
        f'[[endpoints]]\nname = "gpu"\nkind = "{kind}"\nmodel = "m"\nbase_url = "http://10.0.0.7:9000/v1"\n'
        'api_key = "${env:GPU_KEY}"\n'
    )
    moved = Config.load(path).endpoint("gpu")
    assert (moved.base_url, moved.key_env) == ("http://10.0.0.7:9000/v1", "GPU_KEY")  # both can be given


def test_a_local_server_needs_a_model_name() -> None:
    with pytest.raises(ConfigError, match="bad config: provider: the ollama endpoint needs a model name"):
        Config.load(provider={"kind": "ollama"})


def test_the_store_url_comes_from_the_environment_or_the_toml_and_prints_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMCORR_STORE", "postgresql://ann:s3cret@db.example:5433/team?sslmode=require")
    config = Config.load()
    assert str(config.store_path) == "postgresql://ann@db.example:5433/team"
    assert "s3cret" not in repr(config) + repr(config.store_path) + f"{config.store_path}"
    path = tmp_path / "llmcorr.toml"
    path.write_text('store_url = "postgres://bob@10.0.0.2/runs"\n')
    assert str(Config.load(path).store_path) == "postgres://bob@10.0.0.2/runs"  # the file's setting wins
    monkeypatch.delenv("LLMCORR_STORE")
    assert Config.load().store_path == Config.load().home / "llmcorr.db"
    monkeypatch.setenv("LLMCORR_STORE", "/tmp/other.db")
    with pytest.raises(ConfigError, match=r"^bad config: store_url: expected a PostgreSQL URL"):
        Config.load()


def test_a_base_url_without_a_kind_is_an_openai_compatible_server(tmp_path: Path) -> None:
    path = tmp_path / "llmcorr.toml"
    path.write_text('[[endpoints]]\nname = "east"\nbase_url = "http://127.0.0.1:8101/v1"\nmodel = "gpt-4o-mini"\n')
    east = Config.load(path).endpoint("east")
    assert (east.kind, east.base_url, east.model) == ("openai", "http://127.0.0.1:8101/v1", "gpt-4o-mini")
    assert Config.load(provider={"base_url": "http://127.0.0.1:9/v1", "model": "m"}).provider.kind == "openai"
    assert Config.load().provider.kind == "local"  # nothing said: the embedded model


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        (
            'kind = "local"\nbase_url = "http://127.0.0.1:8101/v1"',
            'endpoints[0] (e): kind = "local" runs the embedded llama.cpp model and takes no base_url',
        ),
        ('model = "gpt-4o-mini"', "endpoints[0] (e): a model without kind or base_url"),
    ],
)
def test_an_endpoint_that_would_silently_run_the_embedded_model_is_a_config_error(
    tmp_path: Path, endpoint: str, message: str
) -> None:
    path = tmp_path / "llmcorr.toml"
    path.write_text(f'[[endpoints]]\nname = "e"\n{endpoint}\n')
    with pytest.raises(ConfigError) as info:
        Config.load(path)
    assert str(info.value).startswith(f"bad config: {path}: ") and message in str(info.value)
    assert "\n" not in str(info.value)


def test_base_url_flag_means_an_openai_server_and_model_alone_is_refused(tmp_path: Path) -> None:
    from llmcorr.cli._common import load_config
    from llmcorr.errors import UserError

    path = tmp_path / "llmcorr.toml"  # a default endpoint the flags must win over
    path.write_text(
        'default = "q"\n[[endpoints]]\nname = "q"\nkind = "openai"\nbase_url = "http://h:1/v1"\nmodel = "m"\n'
    )
    config = load_config(base_url="http://127.0.0.1:9/v1", model="served", path=path)
    (chosen,) = config.select(None)
    assert (chosen.kind, chosen.base_url, chosen.model) == ("openai", "http://127.0.0.1:9/v1", "served")
    with pytest.raises(UserError, match=r"^--model names a model on a server: add --base-url"):
        load_config(model="gpt-4o-mini", path=path)
