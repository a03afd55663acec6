"""Every LLM request goes through here: quotas, routing across endpoints, concurrency and retries live in this one
place.

A request is charged what the server will charge (prompt tokens + max_tokens, one request) against the quota of the
endpoint that can admit it earliest — with several endpoints, capacity is spread by quota — then waits for its
reservation, takes a concurrency slot and is sent. Rate limits and transient failures are retried with bounded,
jittered exponential backoff honouring Retry-After; fatal errors are raised at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from ..config import EndpointConfig
from ..errors import FatalProviderError, RateLimitError, TransientError
from ..providers import make_provider
from ..providers.base import Completion, GenParams, Message, Provider
from .endpoint import Endpoint, Quota
from .tokens import chat_prompt_tokens

log = logging.getLogger("llmcorr.scheduler")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempt counts from 1)."""
        backoff = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        wait = max(backoff, retry_after or 0.0)
        return wait * (1 + random.random() * 0.25)  # jitter so waiters do not return in lockstep


@dataclass
class Scheduled:
    """A completion plus what it took to get it."""

    completion: Completion
    attempts: int
    endpoint: str


def build_endpoints(configs: list[EndpointConfig], providers: list[Provider] | None = None) -> list[Endpoint]:
    """Endpoints with their quotas; endpoints naming the same `quota_group` share one set of buckets."""
    quotas: dict[str, Quota] = {}
    endpoints = []
    for i, config in enumerate(configs):
        quota = quotas.get(config.group)
        if quota is None:
            quota = quotas[config.group] = Quota(config.group, config.rpm, config.tpm, config.window_s)
        provider = providers[i] if providers else make_provider(config)
        endpoints.append(Endpoint(config, provider, quota))
    return endpoints


class Scheduler:
    """Admits requests to one or more endpoints without exceeding their quotas."""

    def __init__(
        self,
        endpoints: list[Endpoint] | Provider,
        retry: RetryPolicy | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        if isinstance(endpoints, Provider):  # a bare provider: no quota, its own concurrency
            provider = endpoints
            config = EndpointConfig(name=provider.model, max_concurrency=max_concurrency or provider.max_concurrency)
            endpoints = build_endpoints([config], [provider])
        if not endpoints:
            raise ValueError("a scheduler needs at least one endpoint")
        self.endpoints = endpoints
        self.retry = retry or RetryPolicy()
        self.retried = 0

    @property
    def max_concurrency(self) -> int:
        return sum(e.gate.limit for e in self.endpoints)

    @property
    def rate_limited(self) -> int:
        return sum(e.stats.rate_limited for e in self.endpoints)

    def stats(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for e in self.endpoints:
            out[e.name] = {**e.stats.as_dict(), "cost": e.cost(), "rpm": e.config.rpm, "tpm": e.config.tpm}
        return out

    def _charges(self, messages: list[Message], params: GenParams) -> list[tuple[int, int]]:
        """(estimated prompt tokens, token charge) per endpoint; counted once per tokenizer."""
        counted: dict[int, int] = {}
        out = []
        for e in self.endpoints:
            if e.quota.tokens is None:
                out.append((0, 0))
                continue
            key = id(e.counter)
            if key not in counted:
                counted[key] = chat_prompt_tokens(messages, e.counter)
            prompt = e.estimate_prompt(counted[key])
            out.append((prompt, prompt + params.max_tokens))
        return out

    async def _admit(self, charges: list[tuple[int, int]]) -> tuple[Endpoint, int, int, int]:
        now = time.monotonic()
        best, best_key = 0, (float("inf"), 0.0)
        for i, e in enumerate(self.endpoints):
            delay = e.quota.admission_delay(charges[i][1], now)
            if e.gate.active >= e.gate.limit:
                delay += e.latency_s / e.gate.limit  # a free slot is about this far away
            key = (delay, -e.weight)
            if key < best_key:
                best, best_key = i, key
        endpoint = self.endpoints[best]
        prompt, charge = charges[best]
        wait = endpoint.quota.reserve(charge, now)
        if wait > 0:
            await asyncio.sleep(wait)
        # a 429 elsewhere may have paused the group meanwhile: wait it out, released with jitter
        while (pause := endpoint.quota.paused_until - time.monotonic()) > 0:
            await asyncio.sleep(pause + random.uniform(0.0, 0.05 + 0.1 * pause))
        return endpoint, endpoint.admitted(charge), prompt, charge

    async def complete(self, messages: list[Message], params: GenParams) -> Scheduled:
        charges = self._charges(messages, params)
        attempt = 0
        while True:
            attempt += 1
            endpoint, seq, prompt, charge = await self._admit(charges)
            await endpoint.gate.acquire()
            started = time.monotonic()
            try:
                completion = await endpoint.provider.complete(messages, params)
            except RateLimitError as exc:
                endpoint.on_rate_limited(seq, charge, exc.retry_after)
                error: Exception = exc
                retry_after = exc.retry_after
            except TransientError as exc:
                endpoint.on_error(seq)
                error, retry_after = exc, None
            except FatalProviderError:
                endpoint.on_error(seq)
                raise
            else:
                await endpoint.on_success(seq, completion, prompt, time.monotonic() - started)
                return Scheduled(completion=completion, attempts=attempt, endpoint=endpoint.name)
            finally:
                await endpoint.gate.release()
            if attempt >= self.retry.max_attempts:
                raise error
            self.retried += 1
            wait = self.retry.delay(attempt, retry_after)
            log.debug("%s: retrying after %.1fs (attempt %d): %s", endpoint.name, wait, attempt, error)
            await asyncio.sleep(wait)

    async def aclose(self) -> None:
        for e in self.endpoints:
            await e.provider.aclose()
