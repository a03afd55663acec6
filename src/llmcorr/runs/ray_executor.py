"""`executor="ray"`: a run's rows spread over a Ray cluster, with the same contract as `engine.execute`.

    driver (this process)                       Ray cluster
    items ──chunks──▶ RowWorker × N ──────────▶ endpoints      each worker: the usual Scheduler
        ▲                 │  acquire / learn                    (retries, backoff, routing, concurrency)
        │                 ▼
        │           QuotaKeeper per quota group                 admission for every worker, on one clock
        └── rows ◀── ChunkResult: committed to the store, `on_row`, row spans, usage

Rows are read from `items` lazily and sent in chunks, at most `DEPTH` chunks per worker at a time, so memory
stays flat however many rows a run has. The driver commits each chunk's rows, writes their spans (with the
worker's host:pid) and adds the workers' usage to its own scheduler's statistics, so progress, output files,
`runs show`, cancel and resume behave as with the local executor. Workers read and write the response cache in
the store themselves (the same SQLite file on one machine; on several machines, a store every worker reaches).

Ray is imported only here, and only when a run asks for it: `import llmcorr` never imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import signal
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.trace import Status, StatusCode

from ..errors import LlmcorrError, UserError
from ..providers import make_provider
from ..scheduler import Scheduler
from ..scheduler.remote import QuotaKeeper, quota_groups
from ..store import Store
from ..tracing import current_tracer, flush_spans
from .engine import ProgressFn, StopWatch, WorkItem, active_run, counting, row_attributes
from .ray_worker import ChunkResult, Done, Recipe, RowWorker
from .stopping import register, unregister

log = logging.getLogger("llmcorr")
RAY_MISSING = "--executor ray needs Ray, which is not installed: pip install 'llmcorr[ray]'"
DEPTH = 2  # chunks in hand per worker: one running, one ready
MAX_CHUNK = 16  # rows per chunk at most: rows come back a chunk at a time
STOP_POLL_S = 0.25  # how soon a stop (Ctrl-C, SIGTERM, runs cancel) is looked for while chunks run
START_TIMEOUT_S = 120.0  # for the workers to be placed on the cluster and start
LOCAL_OBJECT_STORE = 100 * 1024 * 1024  # a local instance's object store: rows are small


def ray_available() -> None:
    """Fail before anything is recorded: Ray asked for and not installed."""
    _ray()


def check_endpoints(scheduler: Scheduler) -> None:
    """Workers rebuild each endpoint from its config: one given as a Provider object (`provider=` in Python) cannot
    travel unless its config describes it exactly."""
    for e in scheduler.endpoints:
        rebuilt = make_provider(e.config)
        if type(rebuilt) is not type(e.provider) or rebuilt.describe() != e.provider.describe():
            raise UserError(
                f"executor='ray': the workers cannot rebuild endpoint {e.name!r}, given as a Provider object; "
                "describe it with an EndpointConfig or in llmcorr.toml"
            )


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(RAY_MISSING) from None
    return ray


@contextmanager
def ray_cluster(address: str | None) -> Iterator[Any]:
    """Ray, connected: to the instance this process already has, to `address`, or to a local instance started
    here (and stopped afterwards)."""
    ray = _ray()
    if ray.is_initialized():
        yield ray
        return
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    with _own_signal_handlers():
        _init(ray, address, quiet)
    try:
        yield ray
    finally:
        ray.shutdown()


@contextmanager
def _own_signal_handlers() -> Iterator[None]:
    """Keep this process's SIGINT/SIGTERM handlers over `ray.init`, which installs its own: the first Ctrl-C or SIGTERM
    must drain the run (runs/stopping.py), not end the process."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            with contextlib.suppress(ValueError, TypeError):  # not the main thread, or a handler set outside Python
                signal.signal(sig, handler)


def _init(ray: Any, address: str | None, quiet: dict[str, Any]) -> None:
    if address:
        try:
            ray.init(address=address, **quiet)
        except Exception as exc:  # Ray's own ConnectionError, ValueError for a malformed address…
            raise UserError(f"--ray-address {address}: cannot connect to Ray ({type(exc).__name__}: {exc})") from None
    else:
        ray.init(include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE, **quiet)
        log.info("ray: started a local instance (%d CPUs)", int(ray.cluster_resources().get("CPU", 1)))


async def execute_ray(
    items: Iterable[WorkItem],
    recipe: Recipe,
    store: Store,
    run_id: str,
    scheduler: Scheduler,
    on_row: ProgressFn | None = None,
    drain_timeout_s: float = 120.0,
    *,
    address: str | None = None,
    workers: int | None = None,
) -> None:
    """Process every item on a Ray cluster, committing each chunk's rows as it comes back.

    As `engine.execute`: a fatal error in a worker or `llmcorr runs cancel` stops the run; the chunks already sent
    are waited for (up to `drain_timeout_s`, each worker finishing the rows it started) and their rows kept.
    `scheduler` is the driver's: it receives the workers' usage, for the progress bar and the run's record.
    `workers` defaults to one per CPU of the cluster that is free when the run starts.
    """
    with ray_cluster(address) as ray:
        _ship_flow_by_value(ray, recipe)
        keepers = {
            group: ray.remote(QuotaKeeper).options(num_cpus=0).remote(config)
            for group, config in quota_groups(list(recipe.endpoints)).items()
        }
        count = workers or max(1, int(ray.available_resources().get("CPU", 1)))
        actor = ray.remote(RowWorker).options(num_cpus=1, scheduling_strategy="SPREAD")
        pool = [actor.remote(recipe, keepers) for _ in range(count)]
        size = max(1, min(MAX_CHUNK, recipe.concurrency))
        log.info("ray: %d workers (one per free CPU), %d rows a chunk, %d quota keeper(s)", count, size, len(keepers))
        try:
            await _started(pool)
            await _dispatch(_chunks(items, size), pool, store, run_id, scheduler, on_row, drain_timeout_s)
        finally:
            await _finish(ray, pool, list(keepers.values()), scheduler)


async def _started(pool: list[Any]) -> None:
    """Wait for every worker to be placed and ready; raise the first one's problem (a missing key, say)."""
    try:
        problems = await asyncio.wait_for(_gather(w.start.remote() for w in pool), START_TIMEOUT_S)
    except TimeoutError:
        raise LlmcorrError(
            f"Ray did not start {len(pool)} workers in {START_TIMEOUT_S:g} s: is the cluster busy? (each takes 1 CPU)"
        ) from None
    problem = next((p for p in problems if p is not None), None)
    if problem is not None:
        raise problem


async def _gather(refs: Iterable[Any]) -> list[Any]:
    return list(await asyncio.gather(*(asyncio.wrap_future(ref.future()) for ref in refs)))


def _chunks(items: Iterable[WorkItem], size: int) -> Iterator[list[WorkItem]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


async def _dispatch(
    chunks: Iterator[list[WorkItem]],
    pool: list[Any],
    store: Store,
    run_id: str,
    scheduler: Scheduler,
    on_row: ProgressFn | None,
    drain_timeout_s: float,
) -> None:
    """Keep every worker DEPTH chunks deep until the rows run out, committing results as they come. It stops as the
    local executor does (engine.py `StopWatch`): `runs cancel`, or this process's first Ctrl-C or SIGTERM, and then
    lets the workers finish the rows they started."""
    in_flight: dict[asyncio.Future[ChunkResult], Any] = {}
    active = register(active_run(store, run_id))  # a first Ctrl-C now drains this run (runs/stopping.py)
    on_row = counting(active, on_row)
    watch = StopWatch(store, run_id)

    def send(worker: Any) -> None:
        chunk = next(chunks, None)
        if chunk is not None:
            in_flight[asyncio.wrap_future(worker.run.remote(chunk).future())] = worker

    def take(done: set[asyncio.Future[ChunkResult]]) -> BaseException | None:
        failure: BaseException | None = None
        for future in done:
            worker = in_flight.pop(future)
            try:
                result = future.result()
            except Exception as exc:  # the worker died (its node went away) or failed outside a row
                failure = failure or LlmcorrError(f"a Ray worker failed: {type(exc).__name__}: {exc}")
                continue
            _commit(result, store, run_id, scheduler, on_row)
            failure = failure or result.failure
            if failure is None:
                send(worker)
        return failure

    for _ in range(DEPTH):
        for worker in pool:
            send(worker)
    failure: BaseException | None = None
    try:
        while in_flight and failure is None:
            done, _ = await asyncio.wait(in_flight, timeout=STOP_POLL_S, return_when=asyncio.FIRST_COMPLETED)
            failure = take(done) or watch.check()
        if failure is not None:
            # stop: the requests already sent were paid for, so let the workers finish the rows they started
            for worker in pool:
                worker.stop.remote()
            if in_flight:
                done, _ = await asyncio.wait(in_flight, timeout=drain_timeout_s)
                take(done)
            raise failure
    finally:
        unregister(active)
        for future in in_flight:  # given up on (a second Ctrl-C, a drain that timed out): their workers are killed next
            future.cancel()


def _add_usage(scheduler: Scheduler, usage: dict[str, dict[str, int]], retried: int) -> None:
    """A worker's requests, 429s, errors and tokens, counted in the driver's scheduler as if it had sent them."""
    for e in scheduler.endpoints:
        for key, value in usage.get(e.name, {}).items():
            setattr(e.stats, key, getattr(e.stats, key) + value)
    scheduler.retried += retried


def _commit(result: ChunkResult, store: Store, run_id: str, scheduler: Scheduler, on_row: ProgressFn | None) -> None:
    """A chunk's rows into the store with the run's usage so far, the worker's included (one transaction), then
    their spans and progress."""
    _add_usage(scheduler, result.usage, result.retried)
    store.add_rows(run_id, [d.row for d in result.done], usage=scheduler.stats())
    for done in result.done:
        _row_span(done, result.worker)
    flush_spans()
    if on_row is not None:
        for done in result.done:
            on_row(done.row)


def _row_span(done: Done, worker: str) -> None:
    """The row's span, as the local executor records it, timed by the worker, beneath the run's span."""
    rt = current_tracer()
    if rt is None:
        return
    row = done.row
    attributes: dict[str, Any] = {
        "llmcorr.span": "row",
        "llmcorr.row_index": row.row_index,
        "llmcorr.sample_id": row.sample_id or "",
        **row_attributes(row),
        "llmcorr.worker": worker,
    }
    span = rt.tracer.start_span(f"row {row.row_index + 1}", attributes=attributes, start_time=done.start_ns)
    if row.error:
        span.set_status(Status(StatusCode.ERROR, row.error))
    span.end(end_time=done.end_ns)


async def _finish(ray: Any, pool: list[Any], keepers: list[Any], scheduler: Scheduler) -> None:
    """Collect the usage not reported yet, close the workers' connections, and free the actors' CPUs."""
    try:
        reports = await asyncio.wait_for(_gather(w.report.remote() for w in pool), 10)
        for usage, retried in reports:
            _add_usage(scheduler, usage, retried)
        await asyncio.wait_for(_gather(w.close.remote() for w in pool), 10)
    except Exception as exc:  # a worker that is gone has nothing more to report
        log.debug("ray: closing the workers: %s", exc)
    for actor in [*pool, *keepers]:
        ray.kill(actor)


def _ship_flow_by_value(ray: Any, recipe: Recipe) -> None:
    """A flow loaded from a file (`file.py:Name`) is not importable on the workers: send its module's code along."""
    if recipe.flow is None:
        return
    target = recipe.flow.fn
    module = inspect.getmodule(target if inspect.isfunction(target) or inspect.ismethod(target) else type(target))
    if module is not None and recipe.flow.ref.partition(":")[0].endswith(".py") and module.__name__ in sys.modules:
        ray.cloudpickle.register_pickle_by_value(module)
