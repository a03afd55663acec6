"""A flow's sync functions (a flex flow's function, a DAG flow's python tools), called from the event loop and run
off it, on threads.

`asyncio.to_thread` hands each call to a pool thread and back on its own: a thread woken, a future chained, the loop
woken through its self-pipe, the GIL passed to and fro, and a burst of calls wakes as many threads, which then fight
for the GIL. For a tool that takes microseconds that hand-off is most of the call, and at a thousand rows a second,
two tools a row, a fifth of the process's CPU.

Here calls go into one queue. A thread that is awake keeps taking calls while there are any, and another is woken
only when none is awake, or when the queue has not moved for GROW_S (every awake thread is held up in a call that
blocks: I/O, a sync `llmcorr.chat`), up to as many threads as asyncio's default executor has (min(32, cores + 4)).
Answers come back to the loop in batches: one wake-up of the loop for all the calls that finished since it last
looked. As under `to_thread`, each call runs in a copy of the caller's context (its row's span and LLM go along), and
a call that blocks holds up only its own row.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
GROW_S = 0.02  # calls waiting this long with none taken: every awake thread is blocked, so wake (or start) another
IDLE_S = 5.0  # a thread with nothing to do for this long ends
_Call = tuple[contextvars.Context, Callable[..., Any], dict[str, Any], "asyncio.Future[Any]"]
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]


class SyncCalls:
    """The threads that run one event loop's sync calls."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threads: int | None = None) -> None:
        self._loop = weakref.ref(loop)  # the threads outlive a run by IDLE_S: they do not keep its loop
        self._max = threads or min(32, (os.cpu_count() or 1) + 4)
        self._lock = threading.Lock()
        self._waiting = threading.Condition(self._lock)
        self._calls: deque[_Call] = deque()
        self._threads = 0  # alive
        self._idle = 0  # waiting for calls
        self._woken = 0  # told to wake, not yet awake
        self._taken = 0  # calls taken so far: whether the queue moves
        self._check: asyncio.TimerHandle | None = None
        self._done: list[_Outcome] = []
        self._done_lock = threading.Lock()

    async def call(self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        """`fn(**kwargs)` on one of the threads, in a copy of the current context."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            self._calls.append((contextvars.copy_context(), fn, kwargs, future))
            if self._threads - self._idle + self._woken == 0:  # nobody awake, nobody coming
                self._wake()
            taken = self._taken
        if self._check is None:
            self._check = loop.call_later(GROW_S, self._grow, taken)
        return await future

    def _wake(self) -> None:
        """One more thread taking calls (the lock held): an idle one, or a new one."""
        if self._idle > self._woken:
            self._woken += 1
            self._waiting.notify()
        elif self._threads < self._max:
            self._threads += 1
            threading.Thread(target=self._work, name="llmcorr-sync", daemon=True).start()

    def _grow(self, taken: int) -> None:
        """While calls wait: if none was taken since the last look, every awake thread is blocked; wake another."""
        self._check = None
        loop = self._loop()
        with self._lock:
            if not self._calls or loop is None:
                return
            if self._taken == taken:
                self._woken = 0  # a wake-up not yet seen is no reason to wait longer
                self._wake()
            taken = self._taken
        self._check = loop.call_later(GROW_S, self._grow, taken)

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._calls:
                    self._idle += 1
                    notified = self._waiting.wait(IDLE_S)
                    self._idle -= 1
                    if notified:
                        self._woken = max(0, self._woken - 1)
                    elif not self._calls:
                        self._threads -= 1
                        return
                context, fn, kwargs, future = self._calls.popleft()
                self._taken += 1
            outcome: _Outcome
            try:
                outcome = (future, context.run(fn, **kwargs), None)
            except BaseException as exc:  # the caller's to see, as to_thread gives it
                outcome = (future, None, exc)
            with self._done_lock:
                self._done.append(outcome)
                first = len(self._done) == 1
            if first:  # the loop is woken once for all the calls finishing before it looks
                self._wake_loop()

    def _wake_loop(self) -> None:
        loop = self._loop()
        try:
            if loop is None:
                raise RuntimeError("the loop is gone")
            loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: nobody waits for these answers any more
            with self._done_lock:
                self._done.clear()

    def _deliver(self) -> None:
        with self._done_lock:
            done, self._done = self._done, []
        for future, result, error in done:
            if future.cancelled():  # its row was cancelled while the call ran
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SyncCalls] = weakref.WeakKeyDictionary()


async def call_sync(fn: Callable[..., T], /, **kwargs: Any) -> T:
    """`fn(**kwargs)` off the running loop, on its SyncCalls' threads: `asyncio.to_thread(fn, **kwargs)`, cheaper."""
    loop = asyncio.get_running_loop()
    calls = _BY_LOOP.get(loop)
    if calls is None:
        calls = _BY_LOOP[loop] = SyncCalls(loop)
    return await calls.call(fn, **kwargs)
