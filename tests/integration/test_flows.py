"""Flex flows on the real embedded model: a function, an async class with aggregate, a failing row, the cache,
a notebook-like running event loop, and bad input caught before any call."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pandas as pd
import pytest

import llmcorr

from .conftest import run_cli

pytestmark = pytest.mark.model

FLOWS = """
import llmcorr

def define(word: str, style: str = "plainly") -> dict:
    text = llmcorr.chat(f"Define {word} {style}, in one sentence.", max_tokens=8)
    return {"definition": text, "chars": len(text)}

class Judge:
    def __init__(self, threshold: int = 10):
        self.threshold = threshold

    async def __call__(self, word: str) -> dict:
        text = await llmcorr.achat(f"Is {word} a chemical? Answer yes or no.", max_tokens=4)
        return {"long": len(word) > self.threshold, "answer": text}

    def aggregate(self, rows):
        return {"n": len(rows), "long": sum(bool(r.get("long")) for r in rows)}

def picky(word: str) -> str:
    if word == "base":
        raise ValueError("no bases here")
    return word.upper()
"""


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    path = tmp_path / "myflows.py"
    path.write_text(FLOWS)
    return path


@pytest.fixture
def words(tmp_path: Path) -> Path:
    path = tmp_path / "words.csv"
    pd.DataFrame({"word": ["acid", "base", "salt"]}).to_csv(path, index=False)
    return path


def runs() -> dict[str, dict]:
    return {r["name"]: r for r in json.loads(run_cli("runs", "list", "--json").stdout)}


def test_function_flow_calls_the_llm_per_row_then_reruns_from_the_cache(
    flows: Path, words: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    r = run_cli("run", f"{flows}:define", "--data", words, "-o", out, "--name", "define", "-q")
    assert r.returncode == 0, r.stderr
    table = pd.read_json(out, lines=True)
    assert list(table["word"]) == ["acid", "base", "salt"]
    assert (table["chars"] == table["definition"].str.len()).all() and table["error"].isna().all()
    assert run_cli("run", f"{flows}:define", "--data", words, "--name", "again", "-q").returncode == 0
    listed = runs()
    assert listed["define"]["input_tokens"] > 0 and listed["again"]["input_tokens"] == 0
    assert listed["define"]["rows_done"] == 3 and listed["define"]["kind"] == "flow"


def test_async_class_flow_with_init_and_aggregate(flows: Path, words: Path) -> None:
    r = run_cli("run", f"{flows}:Judge", "--init", '{"threshold": 3}', "--data", words, "--name", "judge", "-q")
    assert r.returncode == 0, r.stderr
    judged = runs()["judge"]
    assert judged["metrics"] == {"n": 3, "long": 3} and judged["input_tokens"] > 0


def test_a_failing_row_is_recorded_and_the_run_goes_on(flows: Path, words: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    r = run_cli("run", f"{flows}:picky", "--data", words, "-o", out, "--name", "picky", "-q")
    assert r.returncode == 1, r.stderr  # the run goes on; its exit code says a row failed
    table = pd.read_csv(out)
    assert list(table["output"].fillna("")) == ["ACID", "", "SALT"]
    raised_at = flows.read_text().splitlines().index('        raise ValueError("no bases here")') + 1
    assert table["error"][1].startswith("ValueError: no bases here (")  # type, message and where, in the user's file
    assert table["error"][1].endswith(f"{flows.name}:{raised_at})")
    assert runs()["picky"]["rows_failed"] == 1


def test_python_api_inside_a_running_event_loop() -> None:
    """As in a Jupyter cell: llmcorr.run is called while an event loop is running."""

    def shout(word: str) -> str:
        return llmcorr.chat(f"Say {word} loudly.", max_tokens=4).upper()

    async def cell() -> llmcorr.RunResult:
        return llmcorr.run(shout, pd.DataFrame({"word": ["hi", "yo"]}), name="cell")

    result = asyncio.run(cell())
    assert list(result.table["word"]) == ["hi", "yo"] and result.table["output"].str.len().gt(0).all()
    assert result.input_tokens > 0


def test_bad_flows_and_inputs_fail_before_any_call(flows: Path, words: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    pd.DataFrame({"term": ["acid"]}).to_csv(other, index=False)
    r = run_cli("run", f"{flows}:define", "--data", other, "-q")
    assert r.returncode == 2 and "row 1 (line 2): no value for flow argument 'word'" in r.stderr
    assert run_cli("run", f"{flows}:define", "--data", other, "--map", "word=${data.term}", "-q").returncode == 0
    for args, needle in (
        ((f"{flows}:nope",), "has no 'nope'"),
        (("no_such_module:f",), "not found"),
        ((f"{flows}:Judge", "--init", '{"colour": 1}'), "cannot build it from --init"),
        ((f"{flows}:Judge", "--init", "{bad"), "--init: not valid JSON"),
    ):
        bad = run_cli("run", *args, "--data", words, "-q")
        assert bad.returncode == 2 and needle in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    recorded = json.loads(run_cli("runs", "list", "--json").stdout)
    assert len(recorded) == 1  # only the mapped run: the bad ones stopped before a run was recorded
