"""Local model servers (vLLM, Ollama, llama.cpp's llama-server) as endpoints, configured as the README's "Local model
servers" section shows: with no quota, `max_concurrency` alone decides how many requests a server sees at once; the
llama.cpp block, as written there, runs a batch against a real OpenAI-compatible llama.cpp server."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pytest

from llmcorr.config import Config
from llmcorr.providers import make_provider
from llmcorr.providers.kinds import LLAMACPP, OLLAMA, VLLM
from tests.servers import ScriptedServer

from .conftest import run_cli
from .test_openai_server import llama_cpp_server

SERVER_URLS = {k.name: k.default_base_url for k in (VLLM, OLLAMA, LLAMACPP)}
README = Path(__file__).resolve().parents[2] / "README.md"

PROMPTY = """---
name: Define
model:
  api: chat
  parameters:
    max_tokens: 8
inputs:
  word:
    type: string
---
user:
Define {{ word }} in three words.
"""

# kind = "vllm" with its base_url moved to the test server, no rpm/tpm: a quota-less local server
SERVER_TOML = """
default = "gpu"

[[endpoints]]
name = "gpu"
kind = "vllm"
base_url = "{url}"
model = "served-name"
max_concurrency = {limit}
"""


def readme_block(kind: str) -> str:
    """The README's llmcorr.toml block for a local server kind (exactly one)."""
    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(), flags=re.DOTALL)
    found = [b for b in blocks if f'kind = "{kind}"' in b]
    assert len(found) == 1, f"the README should show one block with kind = {kind!r}, found {len(found)}"
    return found[0]


def workdir(path: Path, toml: str, words: int, monkeypatch: pytest.MonkeyPatch) -> None:
    (path / "llmcorr.toml").write_text(toml)
    (path / "ask.prompty").write_text(PROMPTY)
    rows = pd.DataFrame({"word": [f"word{i}" for i in range(words)]})
    rows.to_json(path / "words.jsonl", orient="records", lines=True)
    monkeypatch.chdir(path)  # llmcorr.toml is found in the working directory, as a user keeps it


@pytest.mark.parametrize("kind", sorted(SERVER_URLS))
def test_the_readme_blocks_parse_to_quota_less_keyless_endpoints(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "llmcorr.toml"
    path.write_text(readme_block(kind))
    (endpoint,) = Config.load(path).endpoints
    assert endpoint.kind == kind and endpoint.base_url == SERVER_URLS[kind]
    assert endpoint.rpm is None and endpoint.tpm is None and endpoint.max_concurrency
    assert endpoint.key_env is None
    endpoint.check_key()  # no key variable to set
    provider = make_provider(endpoint)
    described = {"kind": kind, "model": endpoint.model, "base_url": SERVER_URLS[kind], "api_key_env": None}
    assert provider.describe() == described


@pytest.mark.parametrize("limit", [3, 1])
def test_max_concurrency_is_the_throttle_without_a_quota(
    limit: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ScriptedServer(delay_s=0.06) as server:  # each answer takes 60 ms, so requests overlap
        workdir(tmp_path, SERVER_TOML.format(url=server.base_url, limit=limit), 40, monkeypatch)
        r = run_cli("run", "ask.prompty", "-d", "words.jsonl", "-o", "out.jsonl", "-q")
        assert r.returncode == 0, r.stderr
    assert server.peak_in_flight == limit  # never above the limit, and the limit was reached
    assert len(server.requests) == 40
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [o["word"] for o in out] == [f"word{i}" for i in range(40)]
    assert all(o["output"] == "Prediction: True; Explanation: scripted" for o in out)
    for request in server.requests:
        assert request["path"] == "/v1/chat/completions" and request["body"]["model"] == "served-name"
        assert not any(h.lower() == "authorization" for h in request["headers"])  # no key configured, none sent


@pytest.fixture(scope="module")
def keyless_llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with llama_cpp_server(tmp_path_factory.mktemp("llamacpp") / "server.log") as base:
        yield base


@pytest.mark.model
def test_the_documented_llamacpp_block_runs_a_batch(
    keyless_llama_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    block = readme_block("llamacpp")
    documented = 'base_url = "http://127.0.0.1:8080/v1"'
    assert documented in block
    port = urlsplit(keyless_llama_server).port
    workdir(tmp_path, block.replace("127.0.0.1:8080", f"127.0.0.1:{port}"), 4, monkeypatch)
    r = run_cli("run", "ask.prompty", "-d", "words.jsonl", "-o", "out.jsonl", "--endpoint", "llamacpp", "--name", "lc")
    assert r.returncode == 0, r.stderr
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [o["word"] for o in out] == [f"word{i}" for i in range(4)]
    assert all(isinstance(o["output"], str) and o["output"].strip() and o["tokens"] > 0 for o in out), out
    shown = run_cli("runs", "show", "lc", "--json")
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["status"] == "completed" and record["rows_done"] == 4
    (endpoint,) = record["spec"]["endpoints"]  # the run records the kind and the server it used
    assert endpoint["kind"] == "llamacpp" and endpoint["base_url"] == f"http://127.0.0.1:{port}/v1"
