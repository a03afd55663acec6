"""Stream work items through the scheduler into the store, committing each row as it finishes.

The engine knows nothing of LLMCorr: a job supplies work items (messages to send) and interprets the answers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import FatalProviderError, ProviderError, RunCancelled
from ..providers.base import GenParams, Message
from ..scheduler import Scheduler
from ..store import RowRecord, Store
from .cache import cache_key


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


CANCEL_POLL_S = 1.0  # how often a run looks for `llmcorr runs cancel`


async def execute(
    job: Job,
    items: Iterable[WorkItem],
    scheduler: Scheduler,
    store: Store,
    run_id: str,
    params: GenParams,
    on_row: ProgressFn | None = None,
    use_cache: bool = True,
) -> None:
    """Run every item; a row whose call fails is recorded as an error and the run goes on.

    An answer already in the response cache is used without a call (no tokens spent). A fatal provider error
    (bad key, exhausted quota, unloadable model) stops the run: every later row would fail the same way.
    `llmcorr runs cancel` (seen within CANCEL_POLL_S) stops it with `RunCancelled`. Either way, the requests already
    sent are waited for and their rows kept.
    """
    in_flight: set[asyncio.Task[RowRecord]] = set()
    limit = scheduler.max_concurrency * 2  # keep the scheduler fed without materialising every request
    identities = {e.name: e.provider.cache_identity() for e in scheduler.endpoints}

    async def one(item: WorkItem) -> RowRecord:
        prompt = [m.to_dict() for m in item.messages]
        keys = {name: cache_key(ident, item.messages, params) for name, ident in identities.items()}
        if use_cache:
            hit = store.cached_response(list(dict.fromkeys(keys.values())))
            if hit is not None:
                key, text = hit
                output, parse_error = job.interpret(item, text)
                status = "ok" if parse_error is None else "unparsed"
                return RowRecord(
                    item.index,
                    item.sample_id,
                    item.inputs,
                    status,
                    prompt=prompt,
                    response=text,
                    output=output,
                    error=parse_error,
                    cached=True,
                    cache_key=key,
                    duration_ms=0.0,
                )
        try:
            result = await scheduler.complete(item.messages, params)
        except FatalProviderError:
            raise
        except ProviderError as exc:
            return RowRecord(
                item.index,
                item.sample_id,
                item.inputs,
                "error",
                prompt=prompt,
                error=str(exc),
                attempts=scheduler.retry.max_attempts,
            )
        c = result.completion
        output, parse_error = job.interpret(item, c.text)
        return RowRecord(
            item.index,
            item.sample_id,
            item.inputs,
            "ok" if parse_error is None else "unparsed",
            prompt=prompt,
            endpoint=result.endpoint,
            cache_key=keys[result.endpoint] if use_cache else None,
            model=json.dumps(identities[result.endpoint], sort_keys=True, default=str),
            response=c.text,
            output=output,
            error=parse_error,
            input_tokens=c.input_tokens,
            output_tokens=c.output_tokens,
            duration_ms=c.latency_ms,
            attempts=result.attempts,
        )

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
                    finished, _ = await asyncio.wait(in_flight, timeout=scheduler_timeout(scheduler))
                    in_flight.difference_update(finished)
                    commit(finished)
                raise failure

    try:
        for item in items:
            await drain(limit)
            in_flight.add(asyncio.create_task(one(item)))
        await drain(1)
    finally:
        for task in in_flight:
            task.cancel()
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)


def scheduler_timeout(scheduler: Scheduler) -> float:
    """How long a request already sent may still take: the slowest endpoint's timeout."""
    return max((getattr(e.provider, "timeout_s", 120.0) for e in scheduler.endpoints), default=120.0)


@asynccontextmanager
async def recorded(store: Store, run_id: str, scheduler: Scheduler, hint: str = "") -> AsyncIterator[None]:
    """Record how a run's block ends when it does not complete: `cancelled` (Ctrl-C, SIGTERM, `runs cancel`) or
    `failed`, with the per-endpoint usage so far; the scheduler is closed either way."""
    try:
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
