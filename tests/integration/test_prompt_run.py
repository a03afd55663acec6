"""A .prompty file as a batch flow on the real embedded model: preview, run, data mapping, errors, cache."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pandas as pd
import pytest

from .conftest import run_cli

pytestmark = pytest.mark.model

PROMPTY = """---
name: Define
description: Define a word in one sentence
model:
    api: chat
    configuration:
        type: azure_openai
        azure_deployment: gpt-4o-mini
        api_key: ${env:AZURE_OPENAI_API_KEY}
    parameters:
        max_tokens: 12
        temperature: 0
inputs:
  word:
    type: string
  style:
    type: string
    default: plainly
sample:
  word: molecule
---
system:
You define words {{ style }}, in one sentence.

user:
Define: {{ word }}
"""


@pytest.fixture
def prompt_file(tmp_path: Path) -> Path:
    path = tmp_path / "define.prompty"
    path.write_text(PROMPTY)
    return path


def test_preview_shows_messages_and_tokens_without_a_call(prompt_file: Path, tmp_path: Path) -> None:
    r = run_cli("prompt", "preview", prompt_file, "--inputs", '{"word": "enzyme", "style": "briefly"}')
    assert r.returncode == 0, r.stderr
    for text in ("system", "You define words briefly", "Define: enzyme", "prompt tokens", "nothing was sent"):
        assert text in r.stdout
    assert run_cli("prompt", "preview", prompt_file).stdout.count("Define: molecule") == 1  # the file's sample
    bad = run_cli("prompt", "preview", prompt_file, "--inputs", "{not json")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --inputs: not valid JSON")


def promptflow_prompty(name: str) -> Path:
    """A .prompty file shipped in Prompt flow's own package (promptflow-evals, installed by `make test`), unchanged."""
    files = importlib.metadata.files("promptflow-evals") or []
    (path,) = [f for f in files if f.name == name]
    return Path(str(path.locate()))


def test_prompt_flows_own_prompty_files_load_and_preview_unchanged(tmp_path: Path) -> None:
    coherence = promptflow_prompty("coherence.prompty")
    assert "azure_deployment: ${env:AZURE_DEPLOYMENT}" in coherence.read_text()  # Prompt flow's file, as shipped
    inputs = {"question": "What does aspirin do?", "answer": "It relieves pain."}
    r = run_cli("prompt", "preview", coherence, "--inputs", json.dumps(inputs))
    assert r.returncode == 0, r.stderr
    assert "You are an AI assistant" in r.stdout and "It relieves pain." in r.stdout
    assert "2 messages" in r.stdout and "up to 1 completion tokens" in r.stdout  # its max_tokens: 1
    retrieval = promptflow_prompty("retrieval.prompty")
    data = tmp_path / "chats.jsonl"
    data.write_text(json.dumps({"q": "Which drug?", "history": "none", "documents": '[{"id": 1}]'}) + "\n")
    r = run_cli("prompt", "preview", retrieval, "--data", data, "--map", "query=${data.q}")
    assert r.returncode == 0, r.stderr
    assert "# Question" in r.stdout and "Which drug?" in r.stdout
    r = run_cli("prompt", "preview", retrieval)  # it has no sample: the missing input is named, exit 2
    assert r.returncode == 2 and "input 'query' is missing" in r.stderr


def test_run_over_a_data_file_then_again_from_the_cache(prompt_file: Path, tmp_path: Path) -> None:
    data = tmp_path / "words.csv"
    pd.DataFrame({"term": ["acid", "base", "salt"]}).to_csv(data, index=False)
    out = tmp_path / "out.parquet"
    args = ("run", prompt_file, "--data", data, "--map", "word=${data.term}", "-q")
    r = run_cli(*args, "--output", out, "--name", "words")
    assert r.returncode == 0, r.stderr
    table = pd.read_parquet(out)
    assert list(table["term"]) == ["acid", "base", "salt"]
    assert table["output"].str.len().gt(0).all() and (table["tokens"] > 0).all()

    again = run_cli(*args, "--name", "words-again")
    assert again.returncode == 0, again.stderr
    runs = {r["name"]: r for r in json.loads(run_cli("runs", "list", "--json").stdout)}
    assert runs["words"]["status"] == "completed" and runs["words"]["rows_done"] == 3
    assert runs["words-again"]["input_tokens"] == 0  # every answer came from the cache


def test_missing_inputs_fail_before_any_call(prompt_file: Path, tmp_path: Path) -> None:
    data = tmp_path / "words.jsonl"
    data.write_text('{"word": "acid"}\n{"term": "base"}\n')
    r = run_cli("run", prompt_file, "--data", data, "-q")
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: {prompt_file}: {data}: line 2: input 'word' is missing (declared: word, style)"
    assert json.loads(run_cli("runs", "list", "--json").stdout) == []
    r = run_cli("run", prompt_file, "--data", data, "--map", "word=${data.nope}", "-q")
    assert r.returncode == 2 and "the data has no column 'nope'" in r.stderr
