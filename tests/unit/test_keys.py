"""API keys from the secrets file (permissions, parsing, precedence over the environment) and their scrubbing from
what servers send back."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from llmcorr.config import EndpointConfig
from llmcorr.errors import ConfigError, FatalProviderError, ProviderError, RequestRejected, TransientError
from llmcorr.keys import key_value, parse_secrets, read_secrets, redact, secrets_path
from llmcorr.providers import GenParams, Message, OpenAIProvider
from tests.servers import Reply, ScriptedServer, ok

HEX_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"  # an Azure-style key: nothing but its exact value gives it away


def write_secrets(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def test_lines_are_names_and_values(tmp_path: Path) -> None:
    text = (
        "# keys for the east endpoint\n"
        "\n"
        "EAST_KEY=sk-east-1\n"
        "export WEST_KEY = 'west two'\n"
        'QUOTED="a # not a comment"\n'
        "BARE=abc   # a comment\n"
        "EMPTY=\n"
    )
    assert parse_secrets(text.encode()) == {
        "EAST_KEY": "sk-east-1",
        "WEST_KEY": "west two",
        "QUOTED": "a # not a comment",
        "BARE": "abc",
        "EMPTY": "",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A=1\nsk-pasted-without-its-name-42\n", "secrets.env:2: expected NAME=value"),
        ("A=1\n2BAD=sk-pasted-without-its-name-42\n", "secrets.env:2: expected NAME=value"),
        ("A=sk-pasted-without-its-name-42\nA=2\n", "secrets.env:2: A is set twice"),
    ],
)
def test_a_bad_line_is_one_line_that_never_shows_the_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_secrets(text.encode(), "secrets.env")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    assert "pasted-without" not in str(info.value)
    with pytest.raises(ConfigError, match="not UTF-8"):
        parse_secrets(b"A=\xff\xfe")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_a_file_others_may_read_is_refused_with_the_fix(llmcorr_home: Path, mode: int) -> None:
    path = write_secrets(llmcorr_home / "secrets.env", f"K={HEX_KEY}\n", mode)
    with pytest.raises(ConfigError) as info:
        key_value("K")
    message = str(info.value)
    assert message == (
        f"{path}: the secrets file may be read by others (mode {mode:04o}); make it private: chmod 600 {path}"
    )
    assert HEX_KEY not in message


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_a_private_file_is_read(llmcorr_home: Path, mode: int) -> None:
    write_secrets(llmcorr_home / "secrets.env", f"K={HEX_KEY}\n", mode)
    assert secrets_path() == llmcorr_home / "secrets.env"
    assert key_value("K") == HEX_KEY


def test_a_file_of_another_user_is_refused(llmcorr_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_secrets(llmcorr_home / "secrets.env", f"K={HEX_KEY}\n")
    monkeypatch.setattr(os, "getuid", lambda: path.stat().st_uid + 1)
    with pytest.raises(ConfigError, match="the secrets file belongs to another user"):
        key_value("K")


def test_the_environment_wins_and_the_file_stays_out_of_it(llmcorr_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_secrets(llmcorr_home / "secrets.env", "A_KEY=from-file-a\nB_KEY=from-file-b\n")
    monkeypatch.setenv("A_KEY", "from-env-a")
    monkeypatch.setenv("C_KEY", "")  # empty counts as unset
    assert key_value("A_KEY") == "from-env-a"
    assert key_value("B_KEY") == "from-file-b"
    assert key_value("C_KEY") is None and key_value("D_KEY") is None
    assert "B_KEY" not in os.environ  # never copied into the environment (child processes read the file themselves)


def test_LLMCORR_SECRETS_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_secrets(tmp_path / "elsewhere" / "keys.env", "K=elsewhere\n")
    monkeypatch.setenv("LLMCORR_SECRETS", str(path))
    assert key_value("K") == "elsewhere"
    monkeypatch.setenv("LLMCORR_SECRETS", str(tmp_path / "missing.env"))
    with pytest.raises(ConfigError, match=r"missing.env: no such secrets file \(LLMCORR_SECRETS names it\)"):
        key_value("K")


def test_a_changed_file_is_read_again(llmcorr_home: Path) -> None:
    path = write_secrets(llmcorr_home / "secrets.env", "K=first\n")
    assert read_secrets() == {"K": "first"}
    path.write_text("K=second-value\n")
    os.utime(path, ns=(1, 2))  # a different stamp, even within the file system's time resolution
    assert key_value("K") == "second-value"


def test_a_key_only_in_the_file_satisfies_the_endpoint(llmcorr_home: Path) -> None:
    endpoint = EndpointConfig(name="east", kind="openai", model="m", base_url="http://h/v1", api_key="${env:EAST_KEY}")
    with pytest.raises(ConfigError) as info:
        endpoint.check_key()
    assert str(info.value) == (
        "endpoint east: environment variable EAST_KEY is not set (the API key); set it, or add EAST_KEY=… to "
        f"{llmcorr_home / 'secrets.env'} (chmod 600)"
    )
    write_secrets(llmcorr_home / "secrets.env", "EAST_KEY=sk-from-the-file\n")
    endpoint.check_key()


def test_redact_takes_out_keys_and_key_shaped_tokens() -> None:
    text = f"bad key {HEX_KEY}; also sk-proj-abc123********************wxyz and sk-learn, task-force"
    assert redact(text, HEX_KEY, None) == "bad key [REDACTED]; also [REDACTED] and sk-learn, task-force"
    assert redact("a b c", "b") == "a b c"  # too short to scrub without mangling the text


def complete(provider: OpenAIProvider) -> object:
    async def go() -> object:
        try:
            return await provider.complete([Message("user", "hi")], GenParams(max_tokens=5))
        finally:
            await provider.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(401, {"error": {"message": f"Incorrect API key provided: {HEX_KEY}."}}), FatalProviderError),
        (Reply(500, "x" * 190 + HEX_KEY + " went wrong"), TransientError),  # across the 200-character cut
        (Reply(400, {"detail": f"key {HEX_KEY} sk-live-0123456789abcdefghij"}), RequestRejected),
        # an answer of the wrong shape is a failed try whose error says what came back: without the key
        (Reply(200, {"choices": [{"message": {"content": {"echo": HEX_KEY}}}]}), TransientError),
    ],
)
def test_the_provider_scrubs_the_key_from_what_the_server_says(
    llmcorr_home: Path, reply: Reply, error: type[ProviderError]
) -> None:
    write_secrets(llmcorr_home / "secrets.env", f"SERVER_KEY={HEX_KEY}\n")
    with ScriptedServer() as server:
        server.script.append(reply)
        with pytest.raises(error) as info:
            complete(OpenAIProvider(model="m", base_url=server.base_url, api_key_env="SERVER_KEY"))
        assert server.requests[0]["headers"]["authorization"] == f"Bearer {HEX_KEY}"  # the key reached the server
    message = str(info.value)
    assert "[REDACTED]" in message and HEX_KEY[:6] not in message and "sk-live" not in message


def test_an_answer_that_repeats_the_key_is_scrubbed(llmcorr_home: Path) -> None:
    write_secrets(llmcorr_home / "secrets.env", f"SERVER_KEY={HEX_KEY}\n")
    with ScriptedServer() as server:
        server.script.append(ok(f"your key is {HEX_KEY}"))
        completion = complete(OpenAIProvider(model="m", base_url=server.base_url, api_key_env="SERVER_KEY"))
    assert completion.text == "your key is [REDACTED]"  # type: ignore[attr-defined]
