"""A quota kept in one place for many workers (scheduler/remote.py), without Ray: the keeper's admission, what it
learns from workers, and two workers' schedulers sharing one keeper through a stand-in for Ray's actor handle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from llmcorr.config import EndpointConfig
from llmcorr.providers.base import Completion, GenParams, Message, Provider, RateLimitInfo
from llmcorr.scheduler import Scheduler
from llmcorr.scheduler.remote import QuotaKeeper, QuotaView, RemoteEndpoint, quota_groups, remote_endpoints

RPM_10_PER_S = EndpointConfig(name="a", kind="openai", model="m", base_url="http://127.0.0.1:9/v1", rpm=600)


class _Method:
    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def remote(self, *args: Any) -> asyncio.Future[Any]:
        """As a Ray actor method: runs apart from the caller, which may await the result or drop it."""
        result = self.fn(*args)
        if asyncio.iscoroutine(result):
            return asyncio.ensure_future(result)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(result)
        return future


class Handle:
    """Ray's actor handle, in one process: `handle.method.remote(...)`."""

    def __init__(self, target: object) -> None:
        self.target = target

    def __getattr__(self, name: str) -> _Method:
        return _Method(getattr(self.target, name))


async def _admit_times(keeper: QuotaKeeper, n: int, charge: float = 10) -> tuple[list[int], list[float]]:
    start = time.monotonic()
    times: list[float] = []

    async def one() -> int:
        seq = await keeper.acquire(charge)
        times.append(time.monotonic() - start)
        return seq

    seqs = await asyncio.gather(*(one() for _ in range(n)))
    return list(seqs), times


def test_the_keeper_admits_in_arrival_order_at_the_quota_rate() -> None:
    keeper = QuotaKeeper(RPM_10_PER_S)
    seqs, times = asyncio.run(_admit_times(keeper, 15))
    assert seqs == list(range(1, 16))
    # a burst of half a second's quota (5), then 10 a second: the 15th goes after ~1 s, not at once
    assert max(times[:5]) < 0.3
    assert 0.9 <= max(times) < 2.5


def test_a_429_one_worker_met_pauses_the_group_for_every_worker() -> None:
    async def go() -> tuple[float, dict[str, Any]]:
        keeper = QuotaKeeper(RPM_10_PER_S)
        first = await keeper.acquire(10)
        keeper.on_rate_limited(first, 10, 0.8)
        start = time.monotonic()
        await keeper.acquire(10)
        return time.monotonic() - start, keeper.stats()

    waited, stats = asyncio.run(go())
    assert waited >= 0.8  # Retry-After, plus up to 25% jitter
    assert stats["rate_limited"] == 1 and stats["factor"] < 1.0  # the episode cut the group's rate


def test_headers_a_worker_saw_lower_the_keepers_level() -> None:
    async def go(remaining: int) -> float:
        keeper = QuotaKeeper(RPM_10_PER_S)
        first = await keeper.acquire(10)
        await keeper.acquire(10)  # sent by another worker, still in flight when the first one's answer comes
        keeper.on_success(first, 20, 5, RateLimitInfo(remaining_requests=remaining, reset_requests_s=6.0), 0.05)
        start = time.monotonic()
        await keeper.acquire(10)
        return time.monotonic() - start

    assert asyncio.run(go(remaining=50)) < 0.05  # the burst still has room
    # the server counts nothing left but the request in flight: someone else spends this quota; wait for a refill
    assert asyncio.run(go(remaining=0)) >= 0.08


def test_quota_groups_need_a_keeper_only_with_a_quota() -> None:
    local = EndpointConfig(name="local")
    shared = [EndpointConfig(name=n, kind="openai", model="m", rpm=60, quota_group="g") for n in ("x", "y")]
    groups = quota_groups([local, RPM_10_PER_S, *shared])
    assert set(groups) == {"a", "g"} and groups["g"].name == "x"


class Counting(Provider):
    """Answers at once, noting when each request arrived."""

    kind = "openai"

    def __init__(self, arrivals: list[float]) -> None:
        self.arrivals = arrivals

    @property
    def model(self) -> str:
        return "m"

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        self.arrivals.append(time.monotonic())
        return Completion("ok", 10, 2, 1.0, "m")


def test_two_workers_on_one_keeper_share_the_quota() -> None:
    arrivals: list[float] = []

    async def go() -> tuple[Any, list[Any]]:
        keeper = QuotaKeeper(RPM_10_PER_S)
        handle = Handle(keeper)
        workers = []
        for _ in range(2):
            endpoints = remote_endpoints([RPM_10_PER_S], {"a": handle})
            endpoints[0].provider = Counting(arrivals)
            workers.append(Scheduler(endpoints))
        prompt = [Message("user", "hello")]
        calls = [w.complete(prompt, GenParams(max_tokens=4)) for w in workers for _ in range(12)]
        answers = await asyncio.gather(*calls)
        assert {a.completion.text for a in answers} == {"ok"}
        return keeper.stats(), [w.endpoints[0] for w in workers]

    stats, endpoints = asyncio.run(go())
    assert all(isinstance(e, RemoteEndpoint) and isinstance(e.quota, QuotaView) for e in endpoints)
    # 24 requests at 10/s with a burst of 5: two workers with a quota each would take ~0.7 s
    assert max(arrivals) - min(arrivals) >= 1.6
    assert stats["requests"] == stats["ok"] == 24
    assert [e.stats.ok for e in endpoints] == [12, 12]  # each worker counts its own
