"""The local executor (runs/engine.py `execute`) and the stop check both executors share (`StopWatch`), on a real
SQLite store, with processors that stand in for LLM-backed ones (each row takes a set time, or fails).

What they show: every item is processed and committed once, in input-independent batches; `runs cancel`, the first
Ctrl-C/SIGTERM (`stopping.request_stop`) and a fatal error each stop the run — no item starts afterwards, the rows
already started finish and are kept — and the error or `RunCancelled` reaches the caller."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmcorr.errors import FatalProviderError, RunCancelled
from llmcorr.providers.base import Message
from llmcorr.runs import engine, stopping
from llmcorr.runs.engine import StopWatch, WorkItem, execute
from llmcorr.store import RowRecord, Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "llmcorr.db") as s:
        yield s
    stopping.reset()


def items(n: int) -> list[WorkItem]:
    return [WorkItem(i, f"s{i}", {"n": i}, [Message("user", f"row {i}")]) for i in range(n)]


class Rows:
    """A processor: each row takes `seconds`; records which rows started; `fail_at` raises a fatal error there."""

    def __init__(self, seconds: float, fail_at: int | None = None) -> None:
        self.seconds, self.fail_at = seconds, fail_at
        self.started: list[int] = []

    async def __call__(self, item: WorkItem) -> RowRecord:
        self.started.append(item.index)
        if item.index == self.fail_at:
            raise FatalProviderError("401 bad key")
        await asyncio.sleep(self.seconds)
        return RowRecord(item.index, item.sample_id, item.inputs, "ok", response=f"answer {item.index}")


def test_every_item_is_processed_and_committed_once(store: Store) -> None:
    run_id = store.create_run("prompt", {}, 50)
    seen: list[int] = []
    asyncio.run(execute(items(50), Rows(0.002), store, run_id, 8, on_row=lambda r: seen.append(r.row_index)))
    rows = store.rows(run_id)
    assert [r.row_index for r in rows] == list(range(50)) and sorted(seen) == list(range(50))
    assert store.get_run(run_id).rows_done == 50
    assert all(r.response == f"answer {r.row_index}" for r in rows)


@pytest.mark.parametrize("how", ["runs cancel", "first signal"])
def test_a_stop_drains_the_rows_started_and_starts_no_more(
    store: Store, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.setattr(engine, "CANCEL_POLL_S", 0.05)
    run_id = store.create_run("prompt", {}, 200)
    rows = Rows(0.05)

    async def go() -> None:
        task = asyncio.create_task(execute(items(200), rows, store, run_id, 4))
        while len(rows.started) < 12:
            await asyncio.sleep(0.005)
        if how == "runs cancel":
            store.request_cancel(run_id)
        else:
            assert stopping.request_stop("stopped (SIGTERM)")  # a run is executing: it is asked to drain
        with pytest.raises(RunCancelled) as stopped:
            await task
        assert ("cancelled" in str(stopped.value)) == (how == "runs cancel")

    asyncio.run(go())
    kept = [r.row_index for r in store.rows(run_id)]
    assert 12 <= len(rows.started) < 200  # stopped part way
    assert sorted(kept) == sorted(rows.started)  # every row started was finished and kept, no other


def test_a_fatal_error_stops_the_run_and_reaches_the_caller(store: Store) -> None:
    run_id = store.create_run("prompt", {}, 100)
    rows = Rows(0.01, fail_at=20)
    with pytest.raises(FatalProviderError, match="401 bad key"):
        asyncio.run(execute(items(100), rows, store, run_id, 4))
    kept = {r.row_index for r in store.rows(run_id)}
    assert 20 not in kept and kept == set(rows.started) - {20}  # the others started were kept
    assert len(rows.started) < 100


def test_the_stop_watch_sees_a_signal_at_once_and_a_cancel_at_its_next_poll(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = store.create_run("prompt", {}, 1)
    watch = StopWatch(store, run_id)
    assert watch.check() is None
    store.request_cancel(run_id)
    assert watch.check() is None  # within CANCEL_POLL_S of the last look: not looked for yet
    monkeypatch.setattr(engine, "CANCEL_POLL_S", 0.0)
    stopped = watch.check()
    assert isinstance(stopped, RunCancelled) and f"run {run_id} was cancelled" in str(stopped)
    stopping.request_stop("stopped (Ctrl-C)")
    signalled = StopWatch(store, run_id).check()
    assert isinstance(signalled, RunCancelled) and str(signalled) == "stopped (Ctrl-C)"
