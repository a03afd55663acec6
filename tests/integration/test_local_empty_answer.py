"""An empty answer from the embedded model (issue 13, item 5) is no answer, met through the real `llmcorr run` on the
real SmolLM2 model: a stop sequence equal to the answer's first word makes llama.cpp return '' at once.

With deterministic sampling (temperature 0) asking again gets the same nothing, so the row fails at once (1 attempt)
saying what came back, exit 1; nothing is cached, so a later run with other parameters is not answered by it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from llmcorr.errors import RequestRejected
from llmcorr.providers.base import GenParams, Message
from llmcorr.providers.local import LocalProvider

from .conftest import run_cli, store_path

QUESTION = "Say hello."
PROMPTY = """---
name: Hello
model:
  api: chat
  parameters:
    max_tokens: 8
    temperature: 0
    stop: {stop}
inputs:
  word:
    type: string
---
user:
{question}
"""


def first_word() -> str:
    """What the model starts its answer to QUESTION with (temperature 0: always the same)."""
    params = GenParams(max_tokens=4, temperature=0.0, seed=0)
    text = asyncio.run(LocalProvider().complete([Message("user", QUESTION)], params)).text
    word = text.split()[0] if text.split() else ""
    assert word, f"the model answered {text!r}: no first word to stop at"
    return word


def test_an_empty_local_answer_fails_its_row_at_once_and_is_not_cached(tmp_path: Path, llmcorr_home: Path) -> None:
    word = first_word()
    params = GenParams(max_tokens=8, temperature=0.0, seed=0, stop=(word,))
    with pytest.raises(RequestRejected, match=r"empty answer \(content '', finish_reason 'stop'\)"):
        asyncio.run(LocalProvider().complete([Message("user", QUESTION)], params))

    (tmp_path / "hello.prompty").write_text(PROMPTY.format(stop=json.dumps([word]), question=QUESTION))
    pd.DataFrame({"word": ["a", "b"]}).to_csv(tmp_path / "words.csv", index=False)
    out = tmp_path / "out.csv"
    result = run_cli("run", tmp_path / "hello.prompty", "--data", tmp_path / "words.csv", "-o", out, "-q")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr

    with sqlite3.connect(store_path(llmcorr_home)) as conn:
        rows = conn.execute("SELECT status, error, attempts, response FROM rows ORDER BY row_index").fetchall()
        cached = conn.execute("SELECT COUNT(*) FROM cache").fetchone()[0]
    assert len(rows) == 2
    for status, error, attempts, response in rows:
        assert status == "error" and attempts == 1 and response is None
        assert "empty answer (content '', finish_reason 'stop')" in error, error
    assert cached == 0
    errors = pd.read_csv(out, keep_default_na=False)["error"].tolist()
    assert all("empty answer" in e for e in errors), errors
