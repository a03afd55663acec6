"""Every LLM request goes through here: quotas, routing across endpoints, concurrency and retries live in this one
place.

A request is charged what the server will charge (prompt tokens + max_tokens, one request) against the quota of the
endpoint that can admit it earliest — with several endpoints, capacity is spread by quota — then waits for its
reservation, takes a concurrency slot and is sent. Its prompt is counted once, when it is queued; its charge is
worked out from that count with each endpoint's calibration when it reaches the head of the line (endpoint.py).
Rate limits and transient failures are retried with bounded, jittered exponential backoff honouring Retry-After;
fatal errors, and a request the server rejects for what it holds (`RequestRejected`: that row fails), are raised at
once.

Every wait is bounded, so no row waits forever: a request fails after `max_attempts` failed tries (5xx, timeouts,
dropped connections, malformed answers) or `max_rate_limited` 429s, whichever comes first; the backoff between tries
is at most `max_delay_s` (plus jitter), each try at most the endpoint's `timeout_s` — or less, once the endpoint's
answers show how long a try takes (scheduler/deadlines.py: a hung try is cut at 3x the p99 latency and retried, and
while it is waited out it leaves its concurrency slot to another request). 429s have their own, larger
budget because they are the server pacing us, not failing: a storm (a quota set higher than the server's, another
client spending the same quota) costs time, not rows. A 429 whose
Retry-After is longer than `max_retry_after_s` (5 minutes) is not pacing but a quota spent for hours (a per-day or
per-hour limit, a billing stop): waiting would look like a hang and retrying would only meet more 429s, so that
endpoint is treated like one whose daily quota is spent — the run goes on at the other endpoints, or stops cleanly
with every finished row kept, to be resumed (`llmcorr runs resume`) when the quota is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from ..config import EndpointConfig
from ..errors import (
    FatalProviderError,
    QuotaExhaustedError,
    RateLimitError,
    RequestRejected,
    RunCancelled,
    TransientError,
    UserError,
)
from ..providers import describe_endpoint, make_provider, registry
from ..providers.base import Completion, GenParams, Message, Provider
from .deadlines import DEADLINE_FACTOR
from .endpoint import Endpoint, Quota
from .tokens import chat_prompt_tokens

log = logging.getLogger("llmcorr.scheduler")
MAX_POLL_S = 0.25  # the head re-checks at least this often: headers and 429s change the picture


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6  # failed tries per request (5xx, timeout, reset, malformed answer); 429s not counted
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_rate_limited: int = 20  # 429s per request, each waited out (Retry-After), before it fails
    max_retry_after_s: float = 300.0  # a longer Retry-After means the quota is spent for now (module docstring)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempt counts from 1)."""
        backoff = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        wait = max(backoff, min(retry_after or 0.0, self.max_retry_after_s))
        return wait * (1 + random.random() * 0.25)  # jitter so waiters do not return in lockstep


@dataclass
class Scheduled:
    """A completion plus what it took to get it."""

    completion: Completion
    attempts: int
    endpoint: str
    rate_limited: int = 0  # 429s this request met on the way


def build_endpoints(configs: list[EndpointConfig], providers: list[Provider] | None = None) -> list[Endpoint]:
    """Endpoints with their quotas; endpoints naming the same `quota_group` share one set of buckets."""
    quotas: dict[str, Quota] = {}
    endpoints = []
    for i, config in enumerate(configs):
        quota = quotas.get(config.group)
        if quota is None:
            quota = quotas[config.group] = Quota(config.group, config.rpm, config.tpm, config.enforcement_window_s)
        provider = providers[i] if providers else make_provider(config)
        endpoints.append(Endpoint(config, provider, quota))
    return endpoints


def describe_endpoints(endpoints: list[Endpoint]) -> str:
    """The endpoints a run sends to, as its start-of-run line names them: kind, URL, model, concurrency and where
    the quota came from (config, learned from headers, none: scheduler/learned.py)."""
    return ", ".join(
        describe_endpoint(
            e.provider.describe() | {"name": e.name}, f"concurrency {e.slots.limit}", f"quota: {e.quota_source}"
        )
        for e in endpoints
    )


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
            base_url = getattr(provider, "base_url", None)
            kind = provider.kind if provider.kind in registry.names() else "openai" if base_url else "local"
            config = EndpointConfig(
                name=provider.model,
                kind=kind,
                model=provider.model,
                base_url=base_url,
                max_concurrency=max_concurrency or provider.max_concurrency,
            )
            endpoints = build_endpoints([config], [provider])
        if not endpoints:
            raise ValueError("a scheduler needs at least one endpoint")
        self.endpoints = endpoints
        self.retry = retry or RetryPolicy()
        self.retried = 0
        self._head = asyncio.Lock()  # the head of the line: one request decides at a time, in arrival order
        self._freed = asyncio.Condition()
        self._stopped: str | None = None  # why no more requests are admitted (`stop`)

    def stop(self, reason: str) -> None:
        """Admit no more requests: every request still waiting for its turn (for a quota, a free slot or a retry)
        raises `RunCancelled(reason)` instead of being sent; the requests already sent are answered as usual."""
        self._stopped = reason

    @property
    def max_concurrency(self) -> int:
        return sum(e.slots.limit for e in self.endpoints)

    @property
    def rate_limited(self) -> int:
        return sum(e.stats.rate_limited for e in self.endpoints)

    def stats(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for e in self.endpoints:
            out[e.name] = {**e.stats.as_dict(), "cost": e.cost(), "rpm": e.config.rpm, "tpm": e.config.tpm}
        return out

    def _raw_prompts(self, messages: list[Message]) -> list[int]:
        """The prompt's raw (uncalibrated) token count per endpoint, counted once per tokenizer; 0 where the
        endpoint's quota counts no tokens and cannot learn to (scheduler/learned.py)."""
        counted: dict[int, int] = {}
        out = []
        for e in self.endpoints:
            if e.quota.tokens is None and not e.learns:
                out.append(0)
                continue
            key = id(e.counter)
            if key not in counted:
                counted[key] = chat_prompt_tokens(messages, e.counter)
            out.append(counted[key])
        return out

    async def _admit(self, raw: list[int], max_tokens: int, pool: list[int]) -> tuple[Endpoint, int, int, int]:
        """Wait at the head of the line until some endpoint of `pool` (indexes into `endpoints`) can take the request
        now; reserve it there. Return the endpoint, the request's number there, its raw prompt count there and its
        charge.

        One request decides at a time, in arrival order, and only when it can go at once, so the schedule always
        reflects the latest headers, 429s, rate changes and calibration (nothing is booked seconds ahead, and a
        charge is worked out when it is decided, not when the request was queued). A large request at the head
        waits for its tokens and the requests behind it wait with it: nobody waits forever.
        """
        async with self._head:
            while True:
                if self._stopped is not None:
                    raise RunCancelled(self._stopped)
                now = time.monotonic()
                best: tuple[float, float, float, int] | None = None
                spent = [x for i in pool if (x := self.endpoints[i].exhausted) is not None]
                if len(spent) == len(pool):  # every daily quota is spent: stop instead of sending more
                    raise spent[0]
                charges = {i: self.endpoints[i].charge(raw[i], max_tokens) for i in pool}
                for i in pool:
                    e = self.endpoints[i]
                    if e.exhausted is None and e.free(now):
                        key = (e.quota.admission_delay(charges[i], now), e.slots.active / e.slots.limit, -e.weight, i)
                        best = key if best is None or key < best else best
                if best is None:  # every endpoint is at its concurrency limit: wait for a response
                    async with self._freed:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._freed.wait(), MAX_POLL_S)
                    continue
                delay, *_, i = best
                if delay > 0:
                    await asyncio.sleep(min(delay, MAX_POLL_S))
                    continue
                endpoint = self.endpoints[i]
                seq = await endpoint.acquire(charges[i], now)  # a quota kept elsewhere (a Ray run) waits here
                endpoint.slots.active += 1
                return endpoint, seq, raw[i], charges[i]

    async def _release(self, endpoint: Endpoint, seq: int) -> None:
        endpoint.slots.active -= 1
        endpoint.done(seq)
        async with self._freed:
            self._freed.notify_all()

    def pool(self, only: str | None) -> list[int]:
        """The endpoints a request may go to, as indexes: all of them, or the one named (a flow node's connection)."""
        if only is None:
            return list(range(len(self.endpoints)))
        for i, e in enumerate(self.endpoints):
            if e.name == only:
                return [i]
        names = ", ".join(e.name for e in self.endpoints)
        raise UserError(f"endpoint {only!r} is not one of this run's endpoints ({names}); add it with --endpoint")

    async def complete(self, messages: list[Message], params: GenParams, only: str | None = None) -> Scheduled:
        """Send one request where the quotas allow it soonest (`only`: to that endpoint), retrying as configured."""
        pool = self.pool(only)
        raw = self._raw_prompts(messages)
        attempt = refused = failed = cuts = 0
        while True:
            attempt += 1
            endpoint, seq, raw_prompt, charge = await self._admit(raw, params.max_tokens, pool)
            started = time.monotonic()
            timer = endpoint.deadline(seq, cuts)
            error: Exception
            try:
                async with timer:
                    completion = await endpoint.provider.complete(messages, params)
            except TimeoutError as exc:  # the try's deadline (providers turn their own timeouts into TransientError)
                endpoint.on_error(seq)
                failed += 1
                if not timer.expired():
                    error = TransientError(f"{endpoint.name}: {str(exc) or 'timed out'}")
                else:
                    cuts += 1
                    error = TransientError(
                        f"{endpoint.name}: no answer after {time.monotonic() - started:.1f}s (a try's deadline:"
                        f" {DEADLINE_FACTOR:g}x the p99 latency of the endpoint's answers, doubled on each retry,"
                        f" at most timeout_s {endpoint.config.timeout_s:g}s)"
                    )
            except RateLimitError as exc:
                if (exc.retry_after or 0.0) > self.retry.max_retry_after_s:
                    endpoint.on_error(seq)  # no pause: nothing more is sent here in this run
                    spent = QuotaExhaustedError(
                        f"{exc} (Retry-After {exc.retry_after:.0f}s is more than the"
                        f" {self.retry.max_retry_after_s:.0f}s a run waits: the quota is spent for now)"
                    )
                    endpoint.exhausted = spent
                    if any(self.endpoints[i].exhausted is None for i in pool):
                        continue  # another endpoint still has quota: go there
                    raise spent from exc
                endpoint.on_rate_limited(seq, charge, exc.retry_after, exc.ratelimit)
                refused += 1
                error = exc
            except TransientError as exc:
                endpoint.on_error(seq, exc.input_tokens, exc.output_tokens)  # a billed non-answer counts as spent
                failed += 1
                error = exc
            except RequestRejected:  # the server refused what this request holds: sending it again gets the same
                endpoint.on_error(seq)
                raise
            except FatalProviderError as exc:
                endpoint.on_error(seq)
                if isinstance(exc, QuotaExhaustedError):
                    endpoint.exhausted = exc
                    if any(self.endpoints[i].exhausted is None for i in pool):
                        continue  # another endpoint still has quota: go there
                raise
            else:
                endpoint.on_success(seq, completion, raw_prompt, time.monotonic() - started)
                return Scheduled(completion, attempt, endpoint.name, refused)
            finally:
                await self._release(endpoint, seq)
            if failed >= self.retry.max_attempts or refused >= self.retry.max_rate_limited:
                raise error
            self.retried += 1
            if isinstance(error, RateLimitError):
                continue  # the quota group is paused until Retry-After; the head of the line waits it out
            if timer.expired():
                continue  # the cut try already waited its deadline: the retry goes at once
            wait = self.retry.delay(failed)
            log.debug("%s: retrying after %.1fs (attempt %d): %s", endpoint.name, wait, attempt, error)
            await asyncio.sleep(wait)

    async def aclose(self) -> None:
        for e in self.endpoints:
            await e.provider.aclose()
