"""Answers that are valid JSON of an unexpected shape (issue 13, items 2, 5 and 14), met by real `llmcorr run`s against
the quota server (bench/quota_server.py, its answer-shape faults in bench/quota_shapes.py), and a store commit that
meets a value it cannot take.

What they show: content as a list of parts is the answer; numeric, empty, null or length-cut empty content fails the
try (retried, never cached) and, on every try, that row only, with an error saying what came back; usage past 64 bits
or negative is clamped; no traceback, no run left `running`, every row stored once. A batch commit holding a row the
store refuses keeps the other rows and makes that one an error row.

The four row-fault runs wait out the scheduler's whole backoff (about 16-19 s), so they start together when the
module starts and run in the background while the other tests go.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.quota_server import QuotaServer, QuotaServerConfig
from llmcorr.store import RowRecord, Store
from tests.conftest import LLMCORR

from .conftest import store_path
from .test_faults import KEY, TRIES, assert_clean, cli, recorded, run_args, workdir

TEXT = QuotaServerConfig().response_text
MAX_TOKENS = 100_000_000  # providers/openai_answer.py MAX_USAGE_TOKENS
ROWS = 2
FAILING = {  # fault on every try → what the row's error says came back
    "numeric_content": r"malformed response: content is a number \(42\), not text",
    "empty_content": r"malformed response: empty answer \(content '', finish_reason 'stop'\)",
    "null_content": r"malformed response: empty answer \(content null, finish_reason 'stop'\)",
    "length_empty": r"empty answer \(content '', finish_reason 'length'\): max_tokens \(4\) ran out before any text",
}


def cached_answers(path: Path) -> list[str]:
    with sqlite3.connect(store_path(path / "home")) as conn:
        return [r[0] for r in conn.execute("SELECT response FROM cache")]


@pytest.fixture(scope="module")
def failing_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[Path, QuotaServer, subprocess.Popen]]]:
    runs: dict[str, tuple[Path, QuotaServer, subprocess.Popen]] = {}
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLMCORR_"))}
    try:
        for fault in FAILING:
            srv = QuotaServer(QuotaServerConfig(api_key=KEY, **{f"{fault}_rate": 1.0})).start()
            path = workdir(tmp_path_factory.mktemp(fault), srv, ROWS)
            env = {**clean, "FAULT_KEY": KEY, "LLMCORR_HOME": str(path / "home"), "COLUMNS": "160"}
            proc = subprocess.Popen(
                [LLMCORR, *map(str, run_args(path, fault))],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            runs[fault] = (path, srv, proc)
        yield runs
    finally:
        for _, srv, proc in runs.values():
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
            srv.stop()


@pytest.mark.parametrize("fault", list(FAILING))
def test_content_that_is_no_answer_fails_that_row_after_its_tries_and_is_never_cached(
    fault: str, failing_runs: dict[str, tuple[Path, QuotaServer, subprocess.Popen]]
) -> None:
    path, srv, proc = failing_runs[fault]
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err  # rows failed, the run went on and ended
    assert f"{ROWS} of {ROWS} rows failed" in err
    assert_clean(path, out, err)  # no traceback, no key
    assert srv.stats()["faults"][fault] == ROWS * TRIES  # each try was a failure, retried within the budget
    record, rows = recorded(path, fault)
    assert record.status == "completed" and record.rows_done == ROWS and record.rows_failed == ROWS
    assert [r.row_index for r in rows] == list(range(ROWS))
    for row in rows:
        assert row.status == "error" and row.attempts == TRIES and row.response is None
        assert re.search(FAILING[fault], row.error) and "\n" not in row.error, row.error
    assert cached_answers(path) == []  # what came back was never taken for an answer
    # a non-answer is billed all the same: the run's usage holds the tokens the server reported for every try
    billed = sum(e["prompt_tokens"] for e in srv.request_log() if e["status"] == 200)
    assert record.usage is not None and billed > 0
    assert sum(u["input_tokens"] for u in record.usage.values()) == billed, (record.usage, billed)


def test_list_content_and_absurd_usage_are_answers_with_sane_counts(tmp_path: Path) -> None:
    rows = 24
    config = QuotaServerConfig(
        api_key=KEY, parts_content_rate=0.3, huge_usage_rate=0.25, negative_usage_rate=0.25, empty_content_rate=0.1
    )
    with QuotaServer(config) as srv:
        path = workdir(tmp_path, srv, rows)
        r = cli(path, *run_args(path, "shapes"))
        faults = srv.stats()["faults"]
    assert r.returncode == 0, r.stderr
    assert_clean(path, r.stdout, r.stderr)
    assert min(faults["parts_content"], faults["huge_usage"], faults["negative_usage"]) > 0  # each shape was met
    record, stored = recorded(path, "shapes")
    assert record.status == "completed" and record.rows_done == rows and record.rows_failed == 0
    assert [r.row_index for r in stored] == list(range(rows))
    truncated = TEXT[:8]  # max_tokens 4 cuts the reply; every answer is a prefix of it, parts joined
    assert all(r.status == "ok" and TEXT.startswith(r.response) and r.response[:8] == truncated for r in stored)
    assert all(0 <= r.input_tokens <= MAX_TOKENS and 0 <= r.output_tokens <= MAX_TOKENS for r in stored)
    assert 0 < record.input_tokens <= rows * MAX_TOKENS
    assert cached_answers(path) and all(a.strip() for a in cached_answers(path))  # no empty answer cached


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """A blank store: a SQLite file, or a database of its own on a real PostgreSQL server (tests/pg.py)."""
    return tmp_path / "llmcorr.db" if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


def test_a_row_the_store_cannot_take_fails_alone_and_the_batch_is_kept(where: Path | str) -> None:
    def row(i: int, **fields: object) -> RowRecord:
        values = {"status": "ok", "response": f"answer {i}", "input_tokens": 3, "output_tokens": 2, **fields}
        return RowRecord(i, None, {"x": i}, **values)  # type: ignore[arg-type]

    batch = [
        row(0),
        row(1, input_tokens=2**70),  # "Python int too large to convert to SQLite INTEGER"
        row(2, response="a\ud800b"),  # a lone surrogate: no UTF-8 text can hold it
        row(3, output={"labels": {1, 2}}),  # not JSON
        row(4),
    ]
    with Store(where) as store:
        run_id = store.create_run("prompt", {}, len(batch))
        store.cache_put("k-good", "m", "answer 0", 3, 2)
        store.cache_put("k-bad", "m", "x", 2**70, 1)
        store.add_rows(run_id, batch)
        rows = store.rows(run_id)
        record = store.get_run(run_id)
        assert store.cached_response(["k-good"]) == ("k-good", "answer 0")  # the cache kept what it could
        assert store.cached_response(["k-bad"]) is None
        if isinstance(where, Path):
            assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert [r.row_index for r in rows] == [0, 1, 2, 3, 4]  # every row once
    assert [r.status for r in rows] == ["ok", "error", "error", "error", "ok"]
    assert [r.response for r in rows] == ["answer 0", "answer 1", None, "answer 3", "answer 4"]
    causes = ("OverflowError", "UnicodeEncodeError", "TypeError") if isinstance(where, Path) else ("", "", "")
    for r, cause in zip(rows[1:4], causes, strict=True):
        assert r.error.startswith("the store could not keep this row's answer (" + cause), r.error
        assert "\n" not in r.error
    assert rows[1].input_tokens == 0 and rows[3].output is None
    assert record.rows_done == 5 and record.rows_failed == 3
    assert record.input_tokens == 4 * 3  # the refused count is dropped; the other error rows keep theirs
