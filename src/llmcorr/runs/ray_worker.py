"""One worker process of a Ray run (runs/ray_executor.py): it builds the run's processor once, from a picklable
recipe, and runs the chunks of rows it is sent, concurrently, through the usual Scheduler, whose quota groups are
kept by their keeper actors (scheduler/remote.py).

Nothing here imports Ray: the executor wraps `RowWorker` as an actor. API keys are read from the worker's own
environment at request time, as everywhere; the recipe holds the names of their variables, never a key.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ..config import STORE_ENV, EndpointConfig
from ..errors import LlmcorrError, RunCancelled
from ..providers.base import GenParams
from ..scheduler import RetryPolicy, Scheduler
from ..scheduler.remote import remote_endpoints
from ..store import RowRecord, Store
from ..store.db import store_location
from .correction_rows import CorrectionRows, correction_rows
from .engine import Job, Process, WorkItem, prompt_rows
from .flows import Flow, flow_context, flow_rows
from .llm import CachedLLM

USAGE_FIELDS = ("requests", "ok", "rate_limited", "errors", "input_tokens", "output_tokens")


@dataclass(frozen=True)
class Recipe:
    """What a worker needs to process rows like the driver would: picklable, and without secrets."""

    endpoints: tuple[EndpointConfig, ...]
    retry: RetryPolicy
    params: GenParams
    store: str  # where the store is (a PostgreSQL URL without its password): workers keep the response cache there
    cache: bool
    concurrency: int  # rows a worker processes at once
    job: Job | None = None  # a prompt run: how answers become outputs
    flow: Flow | None = None  # a flow run: the flow (its LLM calls go through `llmcorr.chat`)
    sys_path: tuple[str, ...] = field(default_factory=tuple)  # where the driver imports flows from
    correction: CorrectionRows | None = None  # a correct run: the LLMCorr loop over prompts the driver rendered

    def processor(self, llm: CachedLLM) -> Process:
        if self.correction is not None:
            return correction_rows(self.correction, llm, self.params)
        if self.flow is not None:
            return flow_rows(self.flow)
        if self.job is None:
            raise ValueError("a recipe needs a job (prompt runs), a flow or a correction")
        return prompt_rows(self.job, llm, self.params)


def make_recipe(
    scheduler: Scheduler,
    store: Store,
    params: GenParams,
    cache: bool,
    concurrency: int,
    *,
    job: Job | None = None,
    flow: Flow | None = None,
    correction: CorrectionRows | None = None,
) -> Recipe:
    """The recipe for a run whose driver holds `scheduler` (its endpoints' configs, its retry policy)."""
    configs = tuple(e.config for e in scheduler.endpoints)
    path = tuple(dict.fromkeys([os.getcwd(), *sys.path]))
    return Recipe(configs, scheduler.retry, params, str(store.path), cache, concurrency, job, flow, path, correction)


@dataclass(frozen=True)
class Done:
    """A finished row and when it ran (wall-clock ns on the worker's machine, for its span)."""

    row: RowRecord
    start_ns: int
    end_ns: int


@dataclass
class ChunkResult:
    done: list[Done]
    failure: BaseException | None  # what stopped the chunk (a fatal provider error): the run stops
    usage: dict[str, dict[str, int]]  # per endpoint, what this worker spent since its last report
    retried: int
    worker: str  # host:pid


class RowWorker:
    """A Ray actor (async). The driver calls `start()` once, then `run(chunk)` as often as it likes, `stop()` to have
    the rows already started finish and no more start, `report()` and `close()` at the end."""

    def __init__(self, recipe: Recipe, keepers: dict[str, Any]) -> None:
        self.recipe = recipe
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.stopping = False
        self.problem: BaseException | None = None
        self._reported: dict[str, dict[str, int]] = {}
        self._retried = 0
        try:
            for path in recipe.sys_path:
                if path not in sys.path:
                    sys.path.append(path)
            for config in recipe.endpoints:
                config.check_key()  # the key must be set on this machine too
            self.scheduler = Scheduler(remote_endpoints(list(recipe.endpoints), keepers), retry=recipe.retry)
            self.store = Store(_location(recipe.store))
            self.llm = CachedLLM(self.scheduler, self.store, recipe.cache)
            self.process = recipe.processor(self.llm)
            self.slots = asyncio.Semaphore(max(1, recipe.concurrency))
        except Exception as exc:
            self.problem = _portable(exc, self.worker)

    def start(self) -> BaseException | None:
        """What keeps this worker from running rows (a key missing on its machine, a flow that does not import
        here), for the driver to raise; None when it is ready."""
        return self.problem

    def stop(self) -> None:
        """No row starts from now on, and no request is sent: those waiting for their turn give up (their rows are
        left for a resume); the requests already sent are answered and their rows kept, as the local executor does."""
        self.stopping = True
        if self.problem is None:
            self.scheduler.stop("the run was stopped")

    async def run(self, items: list[WorkItem]) -> ChunkResult:
        """Process the chunk's rows concurrently (up to the recipe's concurrency across every chunk in hand)."""
        failures: list[BaseException] = []

        async def one(item: WorkItem) -> Done | None:
            async with self.slots:
                if self.stopping:
                    return None
                start = time.time_ns()
                try:
                    row = await self.process(item)
                except RunCancelled:  # waiting for its turn when the run stopped: nothing was sent for it
                    return None
                except Exception as exc:
                    self.stopping = True  # as with the local executor, a fatal error stops the run
                    failures.append(exc)
                    return None
                return Done(row, start, time.time_ns())

        with flow_context(self.llm, self.recipe.params, self.recipe.flow):
            results = await asyncio.gather(*(one(item) for item in items))
        self.store.flush_cache()  # the answers reach the store before the rows made from them
        failure = _portable(failures[0], self.worker) if failures else None
        usage, retried = self.report()
        return ChunkResult([d for d in results if d is not None], failure, usage, retried, self.worker)

    def report(self) -> tuple[dict[str, dict[str, int]], int]:
        """Per endpoint, the requests, 429s, errors and tokens since the last report; and the retries since."""
        usage: dict[str, dict[str, int]] = {}
        if self.problem is not None:
            return usage, 0
        for e in self.scheduler.endpoints:
            now = {k: int(getattr(e.stats, k)) for k in USAGE_FIELDS}
            before = self._reported.get(e.name, dict.fromkeys(USAGE_FIELDS, 0))
            usage[e.name] = {k: now[k] - before[k] for k in USAGE_FIELDS}
            self._reported[e.name] = now
        retried, self._retried = self.scheduler.retried - self._retried, self.scheduler.retried
        return usage, retried

    async def close(self) -> None:
        if self.problem is None:
            await self.scheduler.aclose()
            self.store.close()


def _location(store: str) -> str:
    """The store's location on this worker. A PostgreSQL URL travels without its password: the full URL is this
    machine's LLMCORR_STORE when it names the same database (else libpq's PGPASSWORD or ~/.pgpass supply it)."""
    full = os.environ.get(STORE_ENV)
    if full and str(store_location(full)) == store:
        return full
    return store


def _portable(exc: BaseException, worker: str) -> BaseException:
    """An error that pickles back to the driver: llmcorr's own as they are, anything else described."""
    if isinstance(exc, LlmcorrError) and len(exc.args) <= 1:
        return exc
    return LlmcorrError(f"Ray worker {worker}: {type(exc).__name__}: {exc}")
