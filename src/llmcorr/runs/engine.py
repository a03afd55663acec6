"""Stream work items into the store, committing each row as it finishes.

The engine knows nothing of LLMCorr or of flows: a processor turns one work item into one row. `prompt_rows` is
the processor for prompts (a job supplies the messages and interprets the answers); flows bring their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry.trace import Status, StatusCode

from ..config import Config, EndpointConfig
from ..errors import FatalProviderError, ProviderError, RequestRejected, RunCancelled, StoreError
from ..keys import scrub_all
from ..providers import Provider
from ..providers.base import GenParams, Message
from ..scheduler import Scheduler, build_endpoints
from ..store import RowRecord, Store
from ..tracing import flush_spans, row_span, run_tracing
from .llm import CachedLLM
from .stopping import ActiveRun, register, stop_reason, unregister


@dataclass(frozen=True)
class WorkItem:
    index: int
    sample_id: str | None
    inputs: dict[str, Any]
    messages: list[Message]


class Job(Protocol):
    def interpret(self, item: WorkItem, text: str) -> tuple[dict[str, Any], str | None]:
        """The parsed output of an answer, and why it could not be parsed (None when it could)."""
        ...


ProgressFn = Callable[[RowRecord], None]


class ProgressFactory(Protocol):
    """A progress display for a run (the CLI's bar: cli/progress.py): entered around the execution of `total` rows,
    it gives the callback each committed row is passed to."""

    def __call__(
        self, total: int, description: str, scheduler: Scheduler
    ) -> AbstractContextManager[ProgressFn | None]: ...


Process = Callable[[WorkItem], Coroutine[Any, Any, RowRecord]]
UsageFn = Callable[[], dict[str, dict[str, Any]]]  # this process's per-endpoint usage so far: `Scheduler.stats`
CANCEL_POLL_S = 1.0  # how often a run looks for `llmcorr runs cancel`
USAGE_S = 1.0  # while no row finishes, the usage so far is recorded this often (requests, 429s and errors go on)
# the run `recorded()` is executing and its scheduler: `execute` commits its usage with the rows, and stops it
_recording: contextvars.ContextVar[tuple[str, Scheduler] | None] = contextvars.ContextVar(
    "llmcorr_recording", default=None
)


def prompt_rows(job: Job, llm: CachedLLM, params: GenParams) -> Process:
    """Each item's messages → one LLM answer (cached or fresh) → the job's interpretation, as a row."""

    async def process(item: WorkItem) -> RowRecord:
        prompt = scrub_all([m.to_dict() for m in item.messages])  # recorded without values read via --allow-env
        try:
            answer = await llm.complete(item.messages, params)
        except FatalProviderError:
            raise
        except ProviderError as exc:  # its tries spent, or rejected by the server (sent once): this row fails
            attempts = 1 if isinstance(exc, RequestRejected) else llm.scheduler.retry.max_attempts
            return RowRecord(
                item.index, item.sample_id, item.inputs, "error", prompt=prompt, error=str(exc), attempts=attempts
            )
        output, parse_error = job.interpret(item, answer.text)
        note = "; ".join(e for e in (parse_error, answer.truncation) if e) or None  # a cut answer is still an answer
        return RowRecord(
            item.index,
            item.sample_id,
            item.inputs,
            "ok" if parse_error is None else "unparsed",
            prompt=prompt,
            endpoint=answer.endpoint,
            response=answer.text,
            response_key=answer.key,
            output=output,
            error=note,
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
            duration_ms=answer.latency_ms,
            attempts=answer.attempts,
            cached=answer.cached,
        )

    return process


FLUSH_S = 0.05  # finished rows are committed together at most this long after the first of them finished
FLUSH_ROWS = 512  # ... or as soon as this many are waiting


async def execute(
    items: Iterable[WorkItem],
    process: Process,
    store: Store,
    run_id: str,
    concurrency: int,
    on_row: ProgressFn | None = None,
    drain_timeout_s: float = 120.0,
    usage: UsageFn | None = None,
) -> None:
    """Process every item, up to `concurrency` at once, committing finished rows as they come.

    `concurrency` workers take items from the one iterator as they free up (items are read lazily: a generator over
    a large file is never held in memory). Finished rows are committed in batches — one transaction for all the
    rows that finished within FLUSH_S — so a fast endpoint does not turn into a storm of commits.

    Each commit carries `usage()` (default: the usage of the scheduler of the enclosing `recorded()` block), taken
    after the answers of the rows it commits; while no row finishes it is recorded every USAGE_S. So a process
    killed at any point leaves the run the usage of every row it kept, short only of the requests sent since.

    A row that fails on its own is the processor's to record as an error row. An exception that escapes it (a fatal
    provider error: bad key, exhausted quota, unloadable model) stops the run; so do `llmcorr runs cancel` (seen
    within CANCEL_POLL_S) and the first Ctrl-C or SIGTERM (`stopping.request_stop`, seen at once), with
    `RunCancelled`. A store that cannot be written (disk full: `StoreError`) stops it at once, the requests in
    flight abandoned (their answers could not be kept either). Otherwise, no item is started after that and no
    request is sent (the enclosing `recorded()` block's scheduler stops admitting: rows still waiting for their
    turn are left for a resume), the requests already sent are waited for (up to `drain_timeout_s`) and their rows
    kept.
    """
    source = iter(items)
    recording = _recording.get()
    scheduler = recording[1] if recording is not None and recording[0] == run_id else None
    if usage is None and scheduler is not None:
        usage = scheduler.stats
    usage_noted = time.monotonic()
    finished: list[RowRecord] = []
    failures: list[BaseException] = []
    arrived = asyncio.Event()
    stopping = False
    active = register(_active_run(store, run_id, asyncio.get_running_loop(), arrived))
    on_row = counting(active, on_row)

    async def worker() -> None:
        nonlocal stopping
        try:
            while not stopping:
                item = next(source, None)
                if item is None:
                    return
                finished.append(await traced(item))
                if len(finished) == 1 or len(finished) >= FLUSH_ROWS:
                    arrived.set()
        except Exception as exc:  # a fatal error (or the items' source failing): no more items for anyone
            failures.append(exc)
            stopping = True
        finally:
            arrived.set()

    def flush() -> None:
        nonlocal usage_noted
        if not finished:
            if usage is not None and time.monotonic() - usage_noted >= USAGE_S:
                usage_noted = time.monotonic()
                store.record_usage(run_id, usage())
            return
        batch = finished[:]
        finished.clear()
        usage_noted = time.monotonic()
        try:
            store.add_rows(run_id, batch, usage=usage() if usage is not None else None)
        except StoreError as exc:  # a full disk: these answers are lost (a resume asks for them again)
            exc.rows_lost += len(batch)
            raise
        flush_spans()
        if on_row is not None:
            for row in batch:
                on_row(row)

    async def traced(item: WorkItem) -> RowRecord:
        with row_span(item.index, item.sample_id) as span:
            row = await process(item)
            if span is not None:
                span.set_attributes(row_attributes(row))
                if row.error:
                    span.set_status(Status(StatusCode.ERROR, row.error))
            return row

    workers = {asyncio.create_task(worker()) for _ in range(max(1, concurrency))}
    failure: BaseException | None = None
    watch = StopWatch(store, run_id)
    try:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), CANCEL_POLL_S)
            workers = {w for w in workers if not w.done()}
            if finished and len(finished) < FLUSH_ROWS and workers and not failures:
                await asyncio.sleep(FLUSH_S)  # let the rows finishing now join this commit
            arrived.clear()
            flush()
            workers = {w for w in workers if not w.done()}
            if failures:
                failure = failures[0]
                break
            if not workers:
                break
            failure = watch.check()
            if failure is not None:
                break
        if failure is not None:
            # stop: no new request (those waiting for their turn give up, their rows left for a resume), but the
            # requests already sent were paid for, so wait for their answers and keep them
            stopping = True
            if scheduler is not None:
                scheduler.stop(str(failure))
            if workers:
                _, workers = await asyncio.wait(workers, timeout=drain_timeout_s)
            flush()
            raise failure
        flush()
    finally:
        unregister(active)
        stopping = True
        for task in workers:
            task.cancel()
        if workers:
            await asyncio.gather(*workers, return_exceptions=True)
        with contextlib.suppress(Exception):
            flush()  # rows that finished while the run was being stopped


class StopWatch:
    """Whether the run an executor (local or Ray) is executing must stop: the first Ctrl-C or SIGTERM of this process
    at once (runs/stopping.py), `llmcorr runs cancel` (seen in the store) within CANCEL_POLL_S."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store, self.run_id = store, run_id
        self.polled = time.monotonic()

    def check(self) -> RunCancelled | None:
        why = stop_reason()
        if why is not None:
            return RunCancelled(why)
        if time.monotonic() - self.polled >= CANCEL_POLL_S:
            self.polled = time.monotonic()
            if self.store.cancel_requested(self.run_id):
                return RunCancelled(f"run {self.run_id} was cancelled")
        return None


def row_attributes(row: RowRecord) -> dict[str, Any]:
    """A finished row's attributes on its span, whichever executor ran it."""
    return {
        "llmcorr.status": row.status,
        "gen_ai.usage.input_tokens": row.input_tokens,
        "gen_ai.usage.output_tokens": row.output_tokens,
        "llmcorr.cache_hit": row.cached,
    }


def active_run(store: Store, run_id: str, wake: Callable[[], None] | None = None) -> ActiveRun:
    """The run as `stopping` tracks it (what the line printed when it stops needs); `wake`: called by a stop request
    (from a signal handler) to wake the executor at once."""
    record = store.get_run(run_id)
    return ActiveRun(run_id, record.label, record.rows_total, record.rows_done - record.rows_failed, wake=wake)


def _active_run(store: Store, run_id: str, loop: asyncio.AbstractEventLoop, arrived: asyncio.Event) -> ActiveRun:
    """The run as `stopping` tracks it; a stop request (from a signal handler) wakes `execute` at once."""

    def wake() -> None:
        loop.call_soon_threadsafe(arrived.set)

    return active_run(store, run_id, wake)


def counting(active: ActiveRun, on_row: ProgressFn | None) -> ProgressFn:
    """`on_row`, after counting the committed row for the line printed if the run is stopped."""

    def counted(row: RowRecord) -> None:
        active.committed(row)
        if on_row is not None:
            on_row(row)

    return counted


def make_scheduler(
    config: Config, endpoints: list[str] | None = None, provider: Provider | EndpointConfig | None = None
) -> Scheduler:
    """The scheduler for a run: a given provider, a given endpoint config, the named endpoints, or the default."""
    if isinstance(provider, Provider):
        return Scheduler(provider)
    if isinstance(provider, EndpointConfig):
        provider.check_key()
        return Scheduler(build_endpoints([provider]))
    return Scheduler(build_endpoints(config.select(endpoints)))


def request_timeout(scheduler: Scheduler) -> float:
    """How long a request already sent may still take: the slowest endpoint's timeout."""
    return max((getattr(e.provider, "timeout_s", 120.0) for e in scheduler.endpoints), default=120.0)


@asynccontextmanager
async def recorded(
    store: Store, run_id: str, scheduler: Scheduler, config: Config, kind: str, hint: str = ""
) -> AsyncIterator[None]:
    """Trace the block as the run's root span, and record how it ends when it does not complete: `cancelled`
    (Ctrl-C, SIGTERM, `runs cancel`) or `failed`, with the per-endpoint usage so far; the scheduler is closed either
    way. A store that cannot be written (`StoreError`) marks it `failed` if the store still takes that (else it shows
    as `interrupted` when next opened) and names the rows kept. An `execute` of the run inside the block commits
    the scheduler's usage with its rows."""
    token = _recording.set((run_id, scheduler))
    try:
        with run_tracing(store, run_id, kind, enabled=config.tracing, otlp=config.otlp):
            yield
    except (KeyboardInterrupt, asyncio.CancelledError, RunCancelled) as exc:
        why = str(exc) if isinstance(exc, RunCancelled) else "stopped by the user"
        store.finish_run(run_id, "cancelled", error=why + hint, usage=scheduler.stats())
        raise
    except StoreError as exc:
        raise _store_failed(store, run_id, scheduler, exc) from None
    except BaseException as exc:
        store.finish_run(run_id, "failed", error=f"{type(exc).__name__}: {exc}", usage=scheduler.stats())
        raise
    finally:
        _recording.reset(token)
        await scheduler.aclose()


def _store_failed(store: Store, run_id: str, scheduler: Scheduler, exc: StoreError) -> StoreError:
    """The run as a full disk left it: marked `failed` if the store takes that (with the answers waiting for a
    commit, the lost rows' among them, else without them); `exc` (the first store error, if writing spans failed
    too) naming its rows kept."""
    first = exc
    while isinstance(first.__context__, StoreError):
        first = first.__context__
    error = f"the store could not be written ({first.reason})"
    for attempt in ("with the answers waiting", "without them"):
        try:
            store.finish_run(run_id, "failed", error=error, usage=scheduler.stats())
            first.marked = True
            if attempt == "with the answers waiting":
                first.rows_lost = 0  # the lost rows' answers made it to the response cache: a resume reads them
            break
        except StoreError:
            store.drop_pending_cache()  # the status matters more than these answers
    with contextlib.suppress(Exception):  # the store can still be read
        record = store.get_run(run_id)
        first.run, first.rows_total = record.label, record.rows_total
        first.rows_kept = record.rows_done - record.rows_failed
    return first
