"""Tables streamed row by row (data/stream.py), ordered outputs written from a stream, and the engine's batched
commits (runs/engine.py) against a real SQLite store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from llmcorr.data import RowWriter, open_table
from llmcorr.data import stream as stream_module
from llmcorr.errors import DataError, FatalProviderError
from llmcorr.runs.engine import WorkItem, execute
from llmcorr.store import RowRecord, Store


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_module, "CHUNK_ROWS", 7)  # chunk boundaries inside every test table


def test_each_format_streams_the_same_cells_across_chunk_boundaries(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(30)], "text": [f"word {i}" for i in range(30)]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_csv(tmp_path / "t.tsv", index=False, sep="\t")
    frame.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "t.parquet")
    expected = frame.to_dict("records")
    for source in ("t.csv", "t.tsv", "t.jsonl", "t.parquet"):
        table = open_table(tmp_path / source)
        assert (table.columns, table.rows) == (["id", "text"], 30), source
        assert list(table) == expected, source
        assert list(table) == expected, f"{source}: a second pass reads it again"
        assert list(table.head(9)) == expected[:9]
    table = open_table(frame)
    assert table.source == "DataFrame" and list(table) == expected


def test_jsonl_columns_are_the_union_and_rows_are_named_by_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2, "b": "x"}\n{"c": null}\n')
    table = open_table(path)
    assert table.columns == ["a", "b", "c"] and table.rows == 3
    assert [table.where(i) for i in range(3)] == ["line 1", "line 3", "line 4"]
    assert list(table) == [{"a": 1}, {"a": 2, "b": "x"}, {"c": None}]


def test_a_bad_row_past_the_first_chunk_is_found_when_opening(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"a": i}) + "\n" for i in range(20)) + "{oops\n")
    with pytest.raises(DataError, match=r"t\.jsonl: line 21: not valid JSON"):
        open_table(path)
    ragged = tmp_path / "t.csv"
    ragged.write_text("a,b\n" + "".join(f"{i},{i}\n" for i in range(20)) + "1,2,3\n")
    with pytest.raises(DataError, match=r"t\.csv: cannot parse CSV: .*line 22"):
        open_table(ragged)


def test_csv_cells_stay_strings_and_a_header_only_file_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('n,text\n007,""\n')
    assert list(open_table(path)) == [{"n": "007", "text": ""}]
    empty = tmp_path / "e.csv"
    empty.write_text("a,b\n")
    table = open_table(empty)
    assert (table.columns, table.rows, list(table)) == (["a", "b"], 0, [])


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_finish_rows_writes_the_stream_in_order(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"out{suffix}"
    writer = RowWriter(path)
    writer.write(1, {"id": "b", "output": "late"})  # as rows finish: out of order, with a row column
    records = ({"id": f"r{i}", "output": {"k": i} if i == 2 else f"o{i}", "tokens": i} for i in range(4))
    writer.finish_rows(records, ["id", "output", "tokens"])
    back = pd.read_parquet(path) if suffix == ".parquet" else None
    if suffix == ".csv":
        back = pd.read_csv(path, dtype=str)
        assert list(back.columns) == ["id", "output", "tokens"]
        assert back["output"].tolist() == ["o0", "o1", '{"k": 2}', "o3"]
    elif suffix == ".jsonl":
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert [r["id"] for r in lines] == ["r0", "r1", "r2", "r3"] and lines[2]["output"] == {"k": 2}
    else:
        assert back is not None and back["id"].tolist() == ["r0", "r1", "r2", "r3"]
    assert not list(path.parent.glob(f".{path.name}*.tmp"))  # the atomic write left no temp file


class CountingStore(Store):
    """A real SQLite store that counts its row commits."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.commits: list[int] = []

    def add_rows(self, run_id: str, rows: Any, usage: Any = None) -> None:
        self.commits.append(len(rows))
        super().add_rows(run_id, rows, usage=usage)


def items(n: int, read: list[int]) -> Any:
    for i in range(n):
        read.append(i)
        yield WorkItem(i, str(i), {"i": i}, [])


def test_rows_are_committed_in_batches_each_exactly_once(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "s.db")
    run_id = store.create_run("prompt", {}, 300)

    async def instant(item: WorkItem) -> RowRecord:
        await asyncio.sleep(0)
        return RowRecord(item.index, item.sample_id, item.inputs, "ok", output_tokens=1)

    seen: list[int] = []
    asyncio.run(execute(items(300, []), instant, store, run_id, 16, on_row=lambda r: seen.append(r.row_index)))
    assert sorted(r.row_index for r in store.rows(run_id)) == list(range(300)) == sorted(seen)
    assert sum(store.commits) == 300 and len(store.commits) < 30  # batched: far fewer commits than rows
    assert store.get_run(run_id).rows_done == 300 and store.get_run(run_id).output_tokens == 300


def test_items_are_read_as_workers_free_up_and_a_fatal_error_keeps_finished_rows(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    run_id = store.create_run("prompt", {}, 1000)
    read: list[int] = []

    async def fails_at_40(item: WorkItem) -> RowRecord:
        await asyncio.sleep(0.001)
        if item.index == 40:
            raise FatalProviderError("bad key")
        return RowRecord(item.index, item.sample_id, item.inputs, "ok")

    with pytest.raises(FatalProviderError, match="bad key"):
        asyncio.run(execute(items(1000, read), fails_at_40, store, run_id, 4))
    kept = {r.row_index for r in store.rows(run_id)}
    assert 40 not in kept and set(range(36)) <= kept  # the rows before the failure (and those in flight) are kept
    assert len(read) < 60  # lazily: the source was not read far beyond what the workers took
