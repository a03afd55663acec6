"""Keys never leave the request header. Runs made with known fake keys, from the environment and from the secrets file,
against a real local server that repeats the key it was sent wherever a careless server might — in its 401, in a
429 and a 500, in an answer — with tracing on, INFO logging on the console and DEBUG logging in process, an output
file and a failing row: the store (database and WAL bytes), the spans, the run's spec, the output file, the console,
the logs and the exceptions hold neither key. And prompt files render in a sandbox that refuses Python's insides."""

from __future__ import annotations

import json
import logging
import os
import threading
import traceback
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import llmcorr
from llmcorr.config import Config
from llmcorr.errors import FatalProviderError, TemplateError
from llmcorr.prompts.prompty import load_prompty
from llmcorr.store import Store

from .conftest import run_cli, store_path

ENV_KEY = "sk-test-ZZQ7xJ-envkey-0f3a9c41d2b8e7"  # shaped like an OpenAI key
FILE_KEY = "5e1f0a9c3b7d2e8f4a6c1b9d0e2f7a3c"  # shaped like an Azure key: only its exact value can be scrubbed
WRONG_KEYS = {"env": "sk-test-ZZQ7xJ-wrongkey-77aa0b9e", "file": "9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a"}
TOML = """
default = "echo"

[[endpoints]]
name = "echo"
kind = "openai"
base_url = "{url}"
model = "m"
api_key = "${{env:ECHO_KEY}}"
"""
PROMPTY = """---
name: Say
model:
  parameters:
    max_tokens: 8
inputs:
  word:
    type: string
---
user:
Say {{ word }}.
"""
WORDS = ["alpha", "ECHO beta", "FLAKY gamma", "LIMITED delta"]


class EchoServer:
    """An OpenAI-compatible server that accepts one key and repeats the key it was sent: in its 401 (as OpenAI's
    "Incorrect API key provided: sk-…" does), in a 429 for LIMITED rows (always: the row fails), in a plain-text 500
    the first time it sees a FLAKY row (retried), and in the answer to an ECHO row."""

    def __init__(self, accepted: str) -> None:
        self.accepted = accepted
        self.seen: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                sent = self.headers.get("authorization", "").removeprefix("Bearer ")
                text = body["messages"][-1]["content"]
                if sent != server.accepted:
                    message = f"Incorrect API key provided: {sent}. You can find your API key in your account."
                    self.reply(401, {"error": {"message": message, "code": "invalid_api_key"}})
                elif "LIMITED" in text:
                    message = f"Rate limit reached for key {sent} on requests per min"
                    self.reply(429, {"error": {"message": message}}, {"retry-after-ms": "5"})
                elif "FLAKY" in text and text not in server.seen:
                    server.seen.add(text)
                    self.reply(500, f"upstream failure while serving {sent}")
                else:
                    content = f"your key is {sent}" if "ECHO" in text else "fine"
                    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                    usage = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
                    self.reply(200, {"model": "m", "choices": [choice], "usage": usage})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> EchoServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def project(root: Path, url: str) -> tuple[Path, Path, Path]:
    """llmcorr.toml naming the echo server, the prompt file and its data: (toml, prompty, data)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "llmcorr.toml").write_text(TOML.format(url=url))
    (root / "say.prompty").write_text(PROMPTY)
    (root / "words.jsonl").write_text("".join(json.dumps({"word": w}) + "\n" for w in WORDS))
    return root / "llmcorr.toml", root / "say.prompty", root / "words.jsonl"


def write_secrets(home: Path, key: str, mode: int = 0o600) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "secrets.env"
    path.write_text(f"# the echo server's key\nECHO_KEY={key}\n")
    path.chmod(mode)
    return path


def everything_recorded(home: Path, names: list[str]) -> str:
    """What the store holds about these runs, decoded: spec, error, rows (prompts, answers, errors), spans."""
    with Store(store_path(home)) as store:
        parts = []
        for name in names:
            record = store.get_run(name)
            parts.append(json.dumps([record.spec, record.error, record.usage, record.output_path], default=str))
            parts.append(json.dumps([asdict(r) for r in store.rows(record.id)], default=str))
            parts.append(json.dumps(store.spans(record.id), default=str))
    return "\n".join(parts)


def assert_nowhere(key: str, home: Path, texts: list[str], files: list[Path]) -> None:
    """`key` is in no text and in no file under home (the store and its WAL included) or in `files`."""
    stored = [p for p in home.rglob("*") if p.is_file() and p.name != "secrets.env"]
    assert any(p.name.startswith("llmcorr.db") for p in stored)
    for path in [*stored, *files]:
        assert key.encode() not in path.read_bytes(), path
    for i, text in enumerate(texts):
        assert key not in text, (i, text)


@pytest.mark.parametrize("source", ["env", "file"])
def test_a_run_leaves_its_key_nowhere(source: str, tmp_path: Path, llmcorr_home: Path) -> None:
    key = ENV_KEY if source == "env" else FILE_KEY
    wrong = WRONG_KEYS[source]

    def key_env(value: str) -> dict[str, str]:
        if source == "env":
            return {"ECHO_KEY": value}
        write_secrets(llmcorr_home, value)
        return {}

    with EchoServer(accepted=key) as server:
        toml, prompty, data = project(tmp_path / "project", server.base_url)
        out, out_denied = tmp_path / "said.jsonl", tmp_path / "denied.jsonl"
        args = ("run", prompty, "-d", data, "--config", toml)
        ran = run_cli(*args, "-o", out, "--name", "accepted", env=key_env(key))
        denied = run_cli(*args, "-o", out_denied, "--name", "denied", "--no-cache", env=key_env(wrong))
    shown = []  # how the runs are shown later (once: it does not depend on where the key came from)
    if source == "env":
        shown = [run_cli("runs", "show", "denied"), run_cli("runs", "logs", "accepted", "--row", "2")]

    with Store(store_path(llmcorr_home)) as store:
        accepted = store.get_run("accepted")
        rows = store.rows(accepted.id)
        spans = store.spans(accepted.id)
    statuses = [r.status for r in rows]
    assert statuses == ["ok", "ok", "ok", "error"], ran.stderr  # LIMITED failed; FLAKY was retried
    assert rows[1].response == "your key is [REDACTED]" and "[REDACTED]" in rows[3].error
    assert rows[3].error.startswith(f"{server.base_url}/chat/completions: HTTP 429: Rate limit reached for key")
    assert any(s["kind"] == "llm" for s in spans) and "[REDACTED]" in json.dumps(spans)  # traced, answer included
    assert denied.returncode == 1 and "HTTP 401: Incorrect API key provided: [REDACTED]" in denied.stderr
    assert "llmcorr:" in ran.stderr  # INFO logging was on
    if shown:
        assert all(r.returncode == 0 for r in shown), [r.stderr for r in shown]
        assert "Incorrect API key provided: [REDACTED]" in shown[0].stdout  # the failed run's error, as shown
        assert "your key is [REDACTED]" in shown[1].stdout  # the row's answer, as `runs logs --row` prints it

    texts = [r.stdout + r.stderr for r in (ran, denied, *shown)]
    texts.append(everything_recorded(llmcorr_home, ["accepted", "denied"]))
    for secret in (key, wrong):
        assert_nowhere(secret, llmcorr_home, texts, [p for p in (out, out_denied) if p.exists()])
    if source == "file":
        assert "ECHO_KEY" not in os.environ


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_in_process_logs_and_exceptions_leave_the_key_out(tmp_path: Path, llmcorr_home: Path) -> None:
    """The Python API at DEBUG level (the scheduler logs each retry with the server's words), and the exception a
    refused key raises, traceback and causes included."""
    handler = Collect()
    logger = logging.getLogger("llmcorr")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        with EchoServer(accepted=FILE_KEY) as server:
            toml, prompty, data = project(tmp_path / "project", server.base_url)
            config = Config.load(toml)
            write_secrets(llmcorr_home, FILE_KEY)
            result = llmcorr.run(str(prompty), data=str(data), output=str(tmp_path / "a.csv"), config=config, name="a")
            write_secrets(llmcorr_home, WRONG_KEYS["file"])
            with pytest.raises(FatalProviderError) as info:
                llmcorr.run(str(prompty), data=str(data), config=config, cache=False, name="b")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    logged = "\n".join(logging.Formatter().format(r) for r in handler.records)
    assert "retrying after" in logged and "HTTP 500: upstream failure while serving [REDACTED]" in logged
    raised = "".join(traceback.format_exception(info.value))
    assert "Incorrect API key provided: [REDACTED]" in raised
    assert len(result.table) == len(WORDS)
    texts = [logged, raised, repr(info.value), everything_recorded(llmcorr_home, ["a", "b"])]
    for secret in (FILE_KEY, WRONG_KEYS["file"]):
        assert_nowhere(secret, llmcorr_home, texts, [tmp_path / "a.csv"])
    assert "ECHO_KEY" not in os.environ


def test_a_secrets_file_others_may_read_stops_the_run_with_the_fix(tmp_path: Path, llmcorr_home: Path) -> None:
    path = write_secrets(llmcorr_home, FILE_KEY, mode=0o644)
    toml, prompty, data = project(tmp_path, "http://127.0.0.1:9/v1")  # never reached
    r = run_cli("run", prompty, "-d", data, "--config", toml)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: {path}: the secrets file may be read by others (mode 0644); make it private: chmod 600 {path}"
    ]
    assert FILE_KEY not in r.stdout + r.stderr


# -- the prompt sandbox ----------------------------------------------------------------------------------------------

ATTACKS = {
    "str-class-mro": "{{ ''.__class__.__mro__ }}",
    "self-globals": "{{ self.__init__.__globals__ }}",
    "cycler-os": "{{ cycler.__init__.__globals__.os }}",
    "lipsum-globals": "{{ lipsum.__globals__ }}",
    "namespace-init": "{% set x = namespace.__init__ %}quiet",
    "subclasses": "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "attr-filter": "{{ ''|attr('__class__') }}",
    "subscript": "{{ ''['__class__'] }}",
    "format": "{{ '{0.__class__.__mro__}'.format('') }}",
    "type-mro": "{{ dict.mro() }}",
    "mutation": "{% set l = [1] %}{{ l.append(2) }}",
    "include-outside": "{% include '../canary.txt' %}",
}
INSIDES = ("<class", "<function", "<module", "<built-in", "__builtins__", "canary-content", "object at 0x")


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_prompt_file_cannot_reach_python_internals(attack: str, tmp_path: Path) -> None:
    (tmp_path / "canary.txt").write_text("canary-content")
    path = tmp_path / "prompts" / f"{attack}.prompty"
    path.parent.mkdir()
    path.write_text(f"---\nname: attack\n---\nsystem:\nBe brief.\nuser:\n{ATTACKS[attack]}\n")
    prompty = load_prompty(path)
    with pytest.raises(TemplateError) as info:
        prompty.render({})
    message = str(info.value)
    assert message.startswith(f"{path}:7: ") and "\n" not in message
    expected = "not found" if attack == "include-outside" else "is unsafe"
    assert expected in message or "../canary.txt" in message, message
    assert not any(inside in message for inside in INSIDES), message


def test_a_sandbox_escape_is_one_line_and_exit_2_from_the_command(tmp_path: Path) -> None:
    path = tmp_path / "escape.prompty"
    path.write_text("---\nname: escape\n---\nuser:\n{{ cycler.__init__.__globals__.os.popen('id').read() }}\n")
    r = run_cli("prompt", "preview", path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines() == [f"error: {path}:5: access to attribute '__init__' of 'type' object is unsafe"]
    assert "uid=" not in r.stdout + r.stderr
