"""runs/sync_calls.py: a flow's sync functions run off the event loop, as under asyncio.to_thread."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

from llmcorr.runs import sync_calls
from llmcorr.runs.sync_calls import SyncCalls, call_sync

ROW: contextvars.ContextVar[int] = contextvars.ContextVar("row", default=-1)


def test_results_errors_and_context_come_back() -> None:
    def tool(x: int) -> tuple[int, int, bool]:
        return x * 2, ROW.get(), threading.current_thread() is threading.main_thread()

    def broken() -> None:
        raise ValueError("bad row")

    async def row(i: int) -> tuple[int, int, bool]:
        ROW.set(i)  # each task's own context: the call must see its caller's value
        return await call_sync(tool, x=i)

    async def main() -> None:
        results = await asyncio.gather(*(row(i) for i in range(200)))
        assert results == [(2 * i, i, False) for i in range(200)]
        with pytest.raises(ValueError, match="bad row"):
            await call_sync(broken)

    asyncio.run(main())


def test_calls_that_block_run_at_once() -> None:
    """Calls that wait for one another (I/O, a sync llmcorr.chat) each get a thread, up to the limit: six calls
    meeting at a barrier all pass it; were they run one after another, the first would wait out the timeout."""
    barrier = threading.Barrier(6, timeout=10)

    def meet(i: int) -> int:
        barrier.wait()
        return i

    async def main() -> list[int]:
        return await asyncio.gather(*(call_sync(meet, i=i) for i in range(6)))

    assert asyncio.run(main()) == list(range(6))


def test_a_cancelled_caller_leaves_the_others_their_answers() -> None:
    gate = threading.Event()

    def slow() -> str:
        gate.wait(10)
        return "late"

    async def main() -> list[str]:
        calls = SyncCalls(asyncio.get_running_loop(), threads=2)
        doomed = asyncio.create_task(calls.call(slow))
        kept = asyncio.create_task(calls.call(lambda: "kept"))
        await asyncio.sleep(0.05)
        doomed.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        await asyncio.sleep(0.05)  # the cancelled call's answer arrives and is dropped, without an error
        return [await kept, await calls.call(lambda: "after")]

    assert asyncio.run(main()) == ["kept", "after"]


def test_idle_threads_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync_calls, "IDLE_S", 0.05)

    async def main() -> SyncCalls:
        calls = SyncCalls(asyncio.get_running_loop())
        assert await calls.call(lambda: 1) == 1
        return calls

    calls = asyncio.run(main())
    deadline = time.monotonic() + 5
    while calls._threads and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls._threads == 0
