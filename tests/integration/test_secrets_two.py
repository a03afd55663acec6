"""Secrets, round two (issue 13, items 10–12 and 14's config part), over real processes and servers: the dashboard's
preview reads no environment variable; a prompt file's `${env:VAR}` outside Prompty's model settings is read only
with `--allow-env VAR` (never a key's variable) and recorded nowhere; a password in `base_url` is sent, never
recorded; a key with a line break is one line, exit 2."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import httpx
import pytest

from llmcorr.config import Config
from llmcorr.ui import create_app
from tests.servers import ScriptedServer, ok

from .conftest import run_cli, store_path
from .test_dashboard import serve

CANARY = "canary-7d1e0b-from-the-environment"
PROMPTY = """---
name: Greet
model:
  parameters:
    max_tokens: 8
inputs:
  word:
    type: string
  who:
    type: string
    default: ${env:GREETER}
sample:
  word: ${env:GREETER}
---
user:
{{ who }} says {{ word }}.
"""
TOML = """
default = "s"

[[endpoints]]
name = "s"
base_url = "{url}"
model = "m"
{extra}
"""


def project(root: Path, url: str, extra: str = "") -> tuple[Path, Path, Path]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "llmcorr.toml").write_text(TOML.format(url=url, extra=extra))
    (root / "greet.prompty").write_text(PROMPTY)
    (root / "words.jsonl").write_text("".join(json.dumps({"word": w}) + "\n" for w in ("hi", "bye")))
    return root / "llmcorr.toml", root / "greet.prompty", root / "words.jsonl"


def stored_bytes(home: Path) -> bytes:
    """The store as it lies on disk: the database, its WAL and anything beside it."""
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name == store_path(home).name for p in files)
    return b"".join(p.read_bytes() for p in files)


def one_line(stderr: str) -> str:
    """The one error line (the prompt file's notes on ${env:} left as written may come before it)."""
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_the_dashboard_preview_reads_no_environment(
    tmp_path: Path, llmcorr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREETER", CANARY)  # the server process's environment
    _, prompt, _ = project(tmp_path / "p", "http://127.0.0.1:9/v1")
    with (
        serve(create_app(Config.load(path=tmp_path / "p" / "llmcorr.toml"))) as base,
        httpx.Client(base_url=base) as client,
    ):
        for body in ({"path": str(prompt)}, {"template": PROMPTY}, {"path": str(prompt), "inputs": '{"word": "x"}'}):
            shown = client.post("/api/preview", json=body)
            assert shown.status_code == 200 and shown.json()["ok"] is True, shown.text
            assert CANARY not in shown.text, body
            assert "${env:GREETER}" in json.dumps(shown.json()["messages"])  # left as written
        page = client.get("/preview", params={"path": str(prompt)})
        assert page.status_code == 200 and CANARY not in page.text


def test_a_prompt_reads_the_environment_only_when_allowed_and_records_it_nowhere(
    tmp_path: Path, llmcorr_home: Path
) -> None:
    env = {"GREETER": CANARY}
    with ScriptedServer(default=ok("fine")) as server:
        toml, prompt, data = project(tmp_path / "p", server.base_url)
        common = (prompt, "--data", data, "--config", toml)  # traced: spans are recorded
        plain = run_cli("run", *common, "--name", "plain", env=env)
        assert plain.returncode == 0, plain.stderr
        sent = json.dumps([r["body"]["messages"] for r in server.requests])
        assert CANARY not in sent and "${env:GREETER} says hi." in sent
        assert "--allow-env GREETER" in plain.stderr  # says how to read it

        server.requests.clear()
        allowed = run_cli("run", *common, "--name", "allowed", "--allow-env", "GREETER", env=env)
        assert allowed.returncode == 0, allowed.stderr
        assert f"{CANARY} says hi." in json.dumps([r["body"]["messages"] for r in server.requests])
        assert CANARY.encode() not in stored_bytes(llmcorr_home)  # rows' prompts and spans redacted
        shown = run_cli("runs", "show", "allowed")
        assert shown.returncode == 0 and CANARY not in shown.stdout

        preview = run_cli("prompt", "preview", prompt, "--config", toml, "--allow-env", "GREETER", env=env)
        assert preview.returncode == 0 and f"{CANARY} says {CANARY}." in preview.stdout, preview.stderr
        for name in ("SERVICE_TOKEN", "MY_PASSWORD"):  # a key's variable is never read into a prompt
            refused = run_cli("run", *common, "--allow-env", name, env={name: CANARY})
            assert refused.returncode == 2 and name in one_line(refused.stderr) and CANARY not in refused.stderr
    keyed = tmp_path / "keyed.toml"
    keyed.write_text(TOML.format(url="http://127.0.0.1:9/v1", extra='api_key = "${env:GREETER}"'))
    refused = run_cli("prompt", "preview", prompt, "--config", keyed, "--allow-env", "GREETER", env=env)
    assert refused.returncode == 2 and "GREETER" in one_line(refused.stderr) and CANARY not in refused.stdout


def test_a_password_in_base_url_is_sent_never_recorded(tmp_path: Path, llmcorr_home: Path) -> None:
    password = "pw-canary-3b9f"
    with ScriptedServer(default=ok("fine")) as server:
        url = server.base_url.replace("http://", f"http://ann:{password}@")
        toml, prompt, data = project(tmp_path / "p", url)
        done = run_cli("run", prompt, "--data", data, "--config", toml, "--name", "basic")
        assert done.returncode == 0, done.stderr
        sent = {r["headers"].get("Authorization") for r in server.requests}
        assert sent == {"Basic " + base64.b64encode(f"ann:{password}".encode()).decode()}
        assert password not in done.stdout + done.stderr
        assert password.encode() not in stored_bytes(llmcorr_home)  # run spec, endpoint records, rows, spans
        shown = run_cli("runs", "show", "basic")
        assert shown.returncode == 0 and password not in shown.stdout

        # a rerun authenticates as the run did: the credentials come from llmcorr.toml, never from the record
        server.requests.clear()
        with sqlite3.connect(llmcorr_home / "llmcorr.db") as db:
            db.execute("DELETE FROM cache")  # so the rerun asks the server again
        again = run_cli("runs", "rerun", "basic", "--config", toml, "--name", "again")
        assert again.returncode == 0, again.stderr
        assert {r["headers"].get("Authorization") for r in server.requests} == sent
        assert password.encode() not in stored_bytes(llmcorr_home)

        server.requests.clear()
        toml.write_text(TOML.format(url=url, extra='api_key = "${env:S_KEY}"'))
        both = run_cli("run", prompt, "--data", data, "--config", toml, env={"S_KEY": "sk-some-key-0123456789"})
        line = one_line(both.stderr)
        assert both.returncode == 2 and "one credential per endpoint" in line and password not in line
        assert server.requests == []


@pytest.mark.parametrize("key", ["sk-line-0123456789\r\nX-Evil: 1", "sk-line-0123456789\n"])
def test_a_key_with_a_line_break_is_one_line_and_exit_2(key: str, tmp_path: Path, llmcorr_home: Path) -> None:
    with ScriptedServer(default=ok("fine")) as server:
        toml, prompt, data = project(tmp_path / "p", server.base_url, 'api_key = "${env:S_KEY}"')
        done = run_cli("run", prompt, "--data", data, "--config", toml, env={"S_KEY": key})
        line = one_line(done.stderr)
        assert done.returncode == 2 and "S_KEY" in line and "line break" in line, done.stderr
        assert "sk-line-0123456789" not in done.stdout + done.stderr
        assert server.requests == []
