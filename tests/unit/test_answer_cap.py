"""An answer's size is capped where it is read, and stored once (issue 13, item 9): providers/openai_answer.py
`read_answer` cuts an answer at `max_answer_chars()` (LLMCORR_MAX_ANSWER_CHARS) and says how long it was; a row whose
output is just its response keeps the answer in one column, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from llmcorr.errors import ConfigError
from llmcorr.providers.openai_answer import MAX_ANSWER_CHARS, max_answer_chars, read_answer
from llmcorr.store import RowRecord, Store


def body(content: str) -> dict[str, Any]:
    return {"choices": [{"message": {"content": content}, "finish_reason": "stop"}], "usage": {}}


def test_an_answer_past_the_cap_is_cut_there_and_says_how_long_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    assert max_answer_chars() == MAX_ANSWER_CHARS == 1_000_000
    answer = read_answer(body("ab" * 600_000))
    assert answer.text == ("ab" * 600_000)[:1_000_000] and answer.truncated_from == 1_200_000
    short = read_answer(body("x" * MAX_ANSWER_CHARS))  # at the cap: whole, not cut
    assert len(short.text) == MAX_ANSWER_CHARS and short.truncated_from is None
    monkeypatch.setenv("LLMCORR_MAX_ANSWER_CHARS", "5")
    cut = read_answer(body("abcdefgh"))
    assert (cut.text, cut.truncated_from) == ("abcde", 8)


@pytest.mark.parametrize("value", ["0", "-3", "lots", "1e6"])
def test_a_bad_cap_is_a_config_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("LLMCORR_MAX_ANSWER_CHARS", value)
    with pytest.raises(ConfigError, match="LLMCORR_MAX_ANSWER_CHARS: expected a whole number"):
        max_answer_chars()


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    return tmp_path / "llmcorr.db" if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


def test_an_output_that_is_the_response_is_stored_once_and_read_back_whole(where: Path | str) -> None:
    answer = "a long answer " * 1000
    rows = [
        RowRecord(0, None, {"w": 0}, "ok", response=answer, output={"output": answer}),
        RowRecord(1, None, {"w": 1}, "ok", response=answer, output={"output": answer, "extra": 1}),
        RowRecord(2, None, {"w": 2}, "ok", response="=response", output={"output": "=response"}),
        RowRecord(3, None, {"w": 3}, "ok", response="x", output={"output": "y"}),
    ]
    with Store(where) as store:
        run_id = store.create_run("prompt", {}, len(rows))
        store.add_rows(run_id, rows)
        raw = [r["output_json"] for r in store.conn.execute("SELECT output_json FROM rows ORDER BY row_index")]
        full = store.rows(run_id)
        outputs_only = list(store.iter_rows(run_id, "output_json"))
    assert len(raw[0]) < 20 and answer not in raw[0]  # the answer is the response column's alone
    assert answer in raw[1]  # an output that is more than the response is stored as it is
    assert full == rows  # the rows come back as they went in
    assert [r.output for r in outputs_only] == [r.output for r in rows]
    assert outputs_only[0].response is None  # the response read along for it is not handed out
    if isinstance(where, Path):
        with sqlite3.connect(where) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
