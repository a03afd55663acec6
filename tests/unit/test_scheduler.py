from __future__ import annotations

import asyncio

import pytest

from llmcorr.config import EndpointConfig
from llmcorr.errors import UserError
from llmcorr.providers.base import Completion, GenParams, Message, Provider
from llmcorr.scheduler import RetryPolicy, Scheduler, build_endpoints


class SlowProvider(Provider):
    """A unit-test double with the real interface: records how many calls overlap."""

    kind = "test"

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0

    @property
    def model(self) -> str:
        return "slow"

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        self.active += 1
        self.peak = max(self.peak, self.active)
        await asyncio.sleep(0.01)
        self.active -= 1
        return Completion(text="ok", input_tokens=1, output_tokens=1, latency_ms=10, model=self.model)


def test_concurrency_is_capped() -> None:
    provider = SlowProvider()
    scheduler = Scheduler(provider, max_concurrency=3)

    async def go() -> list[object]:
        return list(await asyncio.gather(*(scheduler.complete([], GenParams()) for _ in range(20))))

    assert len(asyncio.run(go())) == 20
    assert provider.peak == 3


def test_backoff_is_bounded_and_honours_retry_after() -> None:
    policy = RetryPolicy(max_attempts=5, base_delay_s=1, max_delay_s=4)
    assert 1 <= policy.delay(1) <= 1.25
    assert 4 <= policy.delay(10) <= 5
    assert 7 <= policy.delay(1, retry_after=7) <= 8.75


def test_a_request_for_one_endpoint_goes_there_only() -> None:
    a, b = SlowProvider(), SlowProvider()
    configs = [EndpointConfig(name=n, kind="openai", model="m", base_url="http://127.0.0.1:9/v1") for n in "ab"]
    scheduler = Scheduler(build_endpoints(configs, [a, b]))

    async def go() -> list[str]:
        pinned = [scheduler.complete([], GenParams(), only="b") for _ in range(10)]
        return [s.endpoint for s in await asyncio.gather(*pinned)]

    assert asyncio.run(go()) == ["b"] * 10 and a.peak == 0 and b.peak > 0
    with pytest.raises(UserError, match=r"endpoint 'c' is not one of this run's endpoints \(a, b\)"):
        asyncio.run(scheduler.complete([], GenParams(), only="c"))
