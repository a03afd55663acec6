"""Stream work items into the store, committing each row as it finishes.

The engine knows nothing of LLMCorr or of flows: a processor turns one work item into one row. `prompt_rows` is
the processor for prompts (a job supplies the messages and interprets the answers); flows bring their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry.trace import Status, StatusCode

from ..config import Config, EndpointConfig
from ..errors import FatalProviderError, ProviderError, RunCancelled
from ..providers import Provider
from ..providers.base import GenParams, Message
from ..scheduler import Scheduler, build_endpoints
from ..store import RowRecord, Store
from ..tracing import row_span, run_tracing
from .llm import CachedLLM


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
Process = Callable[[WorkItem], Coroutine[Any, Any, RowRecord]]
CANCEL_POLL_S = 1.0  # how often a run looks for `llmcorr runs cancel`


def prompt_rows(job: Job, llm: CachedLLM, params: GenParams) -> Process:
    """Each item's messages → one LLM answer (cached or fresh) → the job's interpretation, as a row."""

    async def process(item: WorkItem) -> RowRecord:
        prompt = [m.to_dict() for m in item.messages]
        try:
            answer = await llm.complete(item.messages, params)
        except FatalProviderError:
            raise
        except ProviderError as exc:
            attempts = llm.scheduler.retry.max_attempts
            return RowRecord(
                item.index, item.sample_id, item.inputs, "error", prompt=prompt, error=str(exc), attempts=attempts
            )
        output, parse_error = job.interpret(item, answer.text)
        return RowRecord(
            item.index,
            item.sample_id,
            item.inputs,
            "ok" if parse_error is None else "unparsed",
            prompt=prompt,
            endpoint=answer.endpoint,
            response=answer.text,
            output=output,
            error=parse_error,
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
            duration_ms=answer.latency_ms,
            attempts=answer.attempts,
            cached=answer.cached,
        )

    return process


async def execute(
    items: Iterable[WorkItem],
    process: Process,
    store: Store,
    run_id: str,
    concurrency: int,
    on_row: ProgressFn | None = None,
    drain_timeout_s: float = 120.0,
) -> None:
    """Process every item, up to `concurrency` at once, committing each row as it finishes.

    A row that fails on its own is the processor's to record as an error row. An exception that escapes it (a fatal
    provider error: bad key, exhausted quota, unloadable model) stops the run; so does `llmcorr runs cancel` (seen
    within CANCEL_POLL_S), with `RunCancelled`. Either way, the work already started is waited for (up to
    `drain_timeout_s`) and its rows kept.
    """
    in_flight: set[asyncio.Task[RowRecord]] = set()
    limit = max(1, concurrency)

    def commit(done: set[asyncio.Task[RowRecord]]) -> BaseException | None:
        """Commit each finished row; return the first failure, if any."""
        failure: BaseException | None = None
        for task in sorted(done, key=lambda t: t.get_name()):
            if task.exception() is not None:
                failure = failure or task.exception()
                continue
            row = task.result()
            store.add_row(run_id, row)
            if on_row is not None:
                on_row(row)
        return failure

    last_poll = time.monotonic()

    def cancelled() -> BaseException | None:
        nonlocal last_poll
        if time.monotonic() - last_poll < CANCEL_POLL_S:
            return None
        last_poll = time.monotonic()
        return RunCancelled(f"run {run_id} was cancelled") if store.cancel_requested(run_id) else None

    async def drain(until_below: int) -> None:
        """Wait for tasks until fewer than `until_below` are in flight, committing each finished row."""
        while True:
            failure = cancelled()
            if failure is None and not (len(in_flight) >= until_below and in_flight):
                return
            if failure is None:
                done, _ = await asyncio.wait(in_flight, timeout=CANCEL_POLL_S, return_when=asyncio.FIRST_COMPLETED)
                in_flight.difference_update(done)
                failure = commit(done)
            if failure is not None:
                # stop: but the requests already sent were paid for, so wait for their answers and keep them
                if in_flight:
                    finished, _ = await asyncio.wait(in_flight, timeout=drain_timeout_s)
                    in_flight.difference_update(finished)
                    commit(finished)
                raise failure

    async def traced(item: WorkItem) -> RowRecord:
        with row_span(item.index, item.sample_id) as span:
            row = await process(item)
            if span is not None:
                span.set_attributes(
                    {
                        "llmcorr.status": row.status,
                        "gen_ai.usage.input_tokens": row.input_tokens,
                        "gen_ai.usage.output_tokens": row.output_tokens,
                        "llmcorr.cache_hit": row.cached,
                    }
                )
                if row.error:
                    span.set_status(Status(StatusCode.ERROR, row.error))
            return row

    try:
        for item in items:
            await drain(limit)
            in_flight.add(asyncio.create_task(traced(item)))
        await drain(1)
    finally:
        for task in in_flight:
            task.cancel()
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)


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
    way."""
    try:
        with run_tracing(store, run_id, kind, enabled=config.tracing, otlp=config.otlp):
            yield
    except (KeyboardInterrupt, asyncio.CancelledError, RunCancelled) as exc:
        why = str(exc) if isinstance(exc, RunCancelled) else "stopped by the user"
        store.finish_run(run_id, "cancelled", error=why + hint, usage=scheduler.stats())
        raise
    except BaseException as exc:
        store.finish_run(run_id, "failed", error=f"{type(exc).__name__}: {exc}", usage=scheduler.stats())
        raise
    finally:
        await scheduler.aclose()
