"""A prompt file's `${env:VAR}` (issue 13, item 11) and the files it may pull in (item 13): what is read, from
where, and what is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmcorr.config import Config, EndpointConfig
from llmcorr.errors import ConfigError, TemplateError, UserError
from llmcorr.keys import REDACTED, scrub
from llmcorr.prompts.env import NO_ENV, allowing_env, env_policy
from llmcorr.prompts.prompty import load_prompty

PROMPTY = """---
model:
  configuration:
    azure_endpoint: ${env:T_ENDPOINT}
    azure_ad_token: ${env:T_TOKEN}
  parameters:
    max_tokens: ${env:T_MAX}
inputs:
  who:
    default: ${env:T_WHO}
sample:
  word: ${env:T_WORD}
---
user:
{{ who }} says {{ word }}.
"""
SECRET = "secret-text-outside-the-folder"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "T_ENDPOINT": "https://e.invalid",
        "T_TOKEN": "tok-0123456789",
        "T_MAX": "7",
        "T_WHO": "who-value-1234",
        "T_WORD": "word-value-5678",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def test_inputs_and_sample_read_only_allowed_variables(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "p.prompty"
    path.write_text(PROMPTY)
    p = load_prompty(path)
    assert p.model["configuration"]["azure_endpoint"] == "https://e.invalid"  # Prompty's own places are read
    assert p.model["configuration"]["azure_ad_token"] == "${env:T_TOKEN}"  # but never a token
    assert p.gen_params().max_tokens == 7
    assert p.inputs["who"]["default"] == "${env:T_WHO}" and p.sample == {"word": "${env:T_WORD}"}
    with allowing_env(env_policy(["T_WHO"])):
        allowed = load_prompty(path)
    assert allowed.inputs["who"]["default"] == "who-value-1234" and allowed.sample == {"word": "${env:T_WORD}"}
    assert scrub('"who-value-1234 says"') == f'"{REDACTED} says"'  # a value read is scrubbed from records
    unread = r"max_tokens: .*got '\$\{env:T_MAX\}' \(an \$\{env:\} reference left unread"
    with pytest.raises(TemplateError, match=unread):
        load_prompty(path, env=NO_ENV)  # the dashboard's preview reads no variable, not even Prompty's
    path.write_text(PROMPTY.replace("${env:T_MAX}", "7"))
    nothing = load_prompty(path, env=NO_ENV)
    assert nothing.model["configuration"]["azure_endpoint"] == "${env:T_ENDPOINT}"
    assert nothing.inputs["who"]["default"] == "${env:T_WHO}"


def test_a_variable_that_may_hold_a_key_is_never_allowed() -> None:
    for name in ("OPENAI_API_KEY", "GH_TOKEN", "DB_PASSWORD", "APP_SECRET"):
        with pytest.raises(UserError, match=f"--allow-env {name}: this variable may hold a credential"):
            env_policy([name])
    with pytest.raises(UserError, match="--allow-env EAST"):
        env_policy(["EAST"], key_names={"EAST"})  # an endpoint's api_key = "${env:EAST}"
    config = Config(endpoints=[EndpointConfig(name="e", base_url="http://h.invalid/v1", model="m", api_key="${env:E}")])
    assert {e.key_env for e in config.endpoints} == {"E"}


def test_an_include_through_a_link_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    (outside / "sample.json").write_text(json.dumps({"word": SECRET}))
    folder = tmp_path / "prompts"
    (folder / "parts").mkdir(parents=True)
    (folder / "parts" / "own.txt").write_text("own part")
    (folder / "inner.txt").symlink_to(folder / "parts" / "own.txt")  # a link that stays inside: fine
    (folder / "leak.txt").symlink_to(outside / "secret.txt")
    (folder / "parts" / "up").symlink_to(outside)  # a linked folder pointing out
    (folder / "sample.json").symlink_to(outside / "sample.json")

    def prompt(include: str) -> Path:
        path = folder / "p.prompty"
        path.write_text(f'---\nname: p\n---\nuser:\n{{% include "{include}" %}}\n')
        return path

    assert load_prompty(prompt("inner.txt")).render({})[0].content == "own part"
    for include in ("leak.txt", "parts/up/secret.txt"):
        with pytest.raises(TemplateError) as info:
            load_prompty(prompt(include)).render({})
        message = str(info.value)
        assert "outside the prompt's folder" in message and include in message and SECRET not in message
        assert message.startswith(f"{folder / 'p.prompty'}:5:")
    sampled = folder / "s.prompty"
    sampled.write_text("---\nsample: sample.json\n---\nuser:\n{{ word }}\n")
    with pytest.raises(TemplateError, match=r"sample: sample file 'sample\.json' resolves to .*outside") as info:
        load_prompty(sampled)
    assert SECRET not in str(info.value)


def test_a_key_with_a_control_character_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = EndpointConfig(name="e", base_url="http://h.invalid/v1", model="m", api_key="${env:E_KEY}")
    for key in ("sk-abc0123456789\r\n", "sk-abc\n0123456789", "sk-abc\t0123456789"):
        monkeypatch.setenv("E_KEY", key)
        with pytest.raises(ConfigError) as info:
            endpoint.check_key()
        assert str(info.value).startswith("endpoint e: the API key in E_KEY holds a line break")
        assert "sk-abc" not in str(info.value) and "\n" not in str(info.value)


def test_a_password_in_base_url_is_kept_out_of_records(tmp_path: Path) -> None:
    endpoint = EndpointConfig(name="e", base_url="http://ann:pw-x9@h.invalid:8/v1", model="m")
    assert endpoint.base_url == "http://ann:pw-x9@h.invalid:8/v1"  # requests use it (HTTP Basic auth)
    assert endpoint.model_dump(mode="json")["base_url"] == "http://h.invalid:8/v1"
    assert endpoint.model_dump()["base_url"] == "http://h.invalid:8/v1"
    toml = tmp_path / "llmcorr.toml"
    toml.write_text(
        '[[endpoints]]\nname = "e"\nbase_url = "http://ann:pw-x9@h.invalid/v1"\nmodel = "m"\napi_key = "${env:K}"\n'
    )
    with pytest.raises(ConfigError) as info:
        Config.load(path=toml)
    assert "one credential per endpoint" in str(info.value) and "pw-x9" not in str(info.value)
