"""Quotas kept in one place for a run spread over many processes (a Ray cluster).

A quota group's buckets live in one `QuotaKeeper` (a Ray actor when the run is spread), which admits requests in
the order they arrive, on its own clock, and learns what every worker learns: the tokens a request used, the
server's rate-limit headers, 429s and their Retry-After. Its bookkeeping is an `Endpoint`'s own (requests in
flight, header sync, 429 episodes), so nothing of the quota logic is written twice.

Each worker runs the usual `Scheduler` (routing, concurrency, retries, backoff) over `RemoteEndpoint`s: their
`acquire` waits for the keeper, and what they learn is passed on to it. A worker's `QuotaView` reserves nothing;
it only remembers a pause after a 429 the worker met, so the worker's routing prefers another endpoint meanwhile.

    keeper = ray.remote(QuotaKeeper).remote(config)                          # one per quota group
    scheduler = Scheduler(remote_endpoints(configs, {config.group: keeper}))   # in each worker

Ray is not imported here: a keeper handle is anything whose methods have `.remote(...)` returning an awaitable.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..config import EndpointConfig
from ..providers.base import Completion, GenParams, Message, Provider, RateLimitInfo
from . import MAX_POLL_S, build_endpoints
from .endpoint import Endpoint, Quota


def quota_groups(configs: list[EndpointConfig]) -> dict[str, EndpointConfig]:
    """The quota groups that need a keeper (those with an rpm or tpm), each with the config its buckets come from
    (the group's first endpoint, as in `build_endpoints`)."""
    groups: dict[str, EndpointConfig] = {}
    for config in configs:
        groups.setdefault(config.group, config)
    return {group: config for group, config in groups.items() if config.rpm or config.tpm}


class _Ledger(Provider):
    """Stands for a group's endpoints inside its keeper, which sends no request itself."""

    def __init__(self, config: EndpointConfig) -> None:
        self.kind = config.kind
        self._model = config.model or config.name

    @property
    def model(self) -> str:
        return self._model

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        raise NotImplementedError("a quota keeper sends no requests")


class QuotaKeeper:
    """One quota group's buckets for every worker of a run: admission in arrival order, on this process's clock."""

    def __init__(self, config: EndpointConfig) -> None:
        quota = Quota(config.group, config.rpm, config.tpm, config.enforcement_window_s)
        self.ledger = Endpoint(config, _Ledger(config), quota)
        self._head = asyncio.Lock()

    async def acquire(self, charge: float) -> int:
        """Wait until a request charging `charge` tokens fits the quota, reserve it, and return its number.

        Like the scheduler's head of the line: one request decides at a time and only when it can go at once, so
        429s and headers reported meanwhile change the decision."""
        async with self._head:
            while True:
                now = time.monotonic()
                delay = self.ledger.quota.admission_delay(charge, now)
                if delay <= 0:
                    return await self.ledger.acquire(charge, now)
                await asyncio.sleep(min(delay, MAX_POLL_S))

    def on_success(
        self, seq: int, input_tokens: int, output_tokens: int, ratelimit: RateLimitInfo | None, latency_s: float
    ) -> None:
        model = self.ledger.provider.model
        completion = Completion("", input_tokens, output_tokens, latency_s * 1000, model, ratelimit=ratelimit)
        self.ledger.on_success(seq, completion, 0, latency_s)

    def on_rate_limited(
        self, seq: int, charge: float, retry_after: float | None, ratelimit: RateLimitInfo | None = None
    ) -> None:
        self.ledger.on_rate_limited(seq, charge, retry_after, ratelimit)

    def on_error(self, seq: int) -> None:
        self.ledger.on_error(seq)

    def stats(self) -> dict[str, Any]:
        """The group's requests as the keeper saw them, and its rate factor after 429 episodes."""
        return {**self.ledger.stats.as_dict(), "factor": self.ledger.quota.factor}


class QuotaView(Quota):
    """A worker's stand-in for a quota its keeper holds: admission is the keeper's, so nothing is reserved here.
    The view keeps the pause after a 429 this worker met (the keeper pauses the group too), for routing."""

    def admission_delay(self, tokens: float, now: float) -> float:
        return max(0.0, self.paused_until - now)

    def reserve(self, tokens: float, now: float) -> float:
        return 0.0


class RemoteEndpoint(Endpoint):
    """An endpoint whose quota a keeper holds: `acquire` waits for the keeper; what a response teaches is passed
    on to it. Statistics, calibration, latency and concurrency stay the worker's own."""

    def __init__(self, config: EndpointConfig, provider: Provider, quota: QuotaView, keeper: Any) -> None:
        super().__init__(config, provider, quota)
        self.keeper = keeper
        self._numbers: dict[int, int] = {}  # this worker's request number → the keeper's

    async def acquire(self, charge: float, now: float) -> int:
        number = await self.keeper.acquire.remote(charge)
        seq = self.admitted(charge)
        self._numbers[seq] = number
        return seq

    def on_success(self, seq: int, completion: Completion, raw_prompt: int, latency_s: float) -> None:
        super().on_success(seq, completion, raw_prompt, latency_s)
        number = self._numbers.pop(seq)
        tokens = completion.input_tokens, completion.output_tokens
        self.keeper.on_success.remote(number, *tokens, completion.ratelimit, latency_s)

    def on_rate_limited(
        self, seq: int, charge: float, retry_after: float | None, ratelimit: RateLimitInfo | None = None
    ) -> None:
        super().on_rate_limited(seq, charge, retry_after, ratelimit)
        self.keeper.on_rate_limited.remote(self._numbers.pop(seq), charge, retry_after, ratelimit)

    def on_error(self, seq: int, input_tokens: int = 0, output_tokens: int = 0) -> None:
        super().on_error(seq, input_tokens, output_tokens)
        self.keeper.on_error.remote(self._numbers.pop(seq))


def remote_endpoints(configs: list[EndpointConfig], keepers: dict[str, Any]) -> list[Endpoint]:
    """`build_endpoints`, with each quota group that has a keeper kept by it (groups without one keep local
    buckets: an endpoint with no quota, such as the embedded model, needs no keeper)."""
    views: dict[str, QuotaView] = {}
    endpoints: list[Endpoint] = []
    for e in build_endpoints(configs):
        keeper = keepers.get(e.config.group)
        if keeper is None:
            endpoints.append(e)
            continue
        view = views.get(e.config.group)
        if view is None:
            c = e.config
            view = views[c.group] = QuotaView(c.group, c.rpm, c.tpm, c.enforcement_window_s)
        endpoints.append(RemoteEndpoint(e.config, e.provider, view, keeper))
    return endpoints
