"""A try's deadline, learned from the endpoint's answers (scheduler/deadlines.py), and what the scheduler does with
it: hung tries leave their slots to other requests, are cut at the deadline and retried within the request's tries.

The provider is a double with the real interface whose chosen calls hang for a minute (the quota server's hang is
met by tests/integration/test_hangs.py); each scheduler test is bounded well below that minute, so on a scheduler
that waits hangs out it fails instead of waiting."""

from __future__ import annotations

import asyncio
import time

import pytest

from llmcorr.config import EndpointConfig
from llmcorr.errors import TransientError
from llmcorr.providers.base import Completion, GenParams, Message, Provider
from llmcorr.scheduler import RetryPolicy, Scheduled, Scheduler, build_endpoints
from llmcorr.scheduler.deadlines import MIN_ANSWERS, Deadlines
from llmcorr.scheduler.endpoint import Endpoint

HANG_S = 60.0
BOUND_S = 20.0  # a scheduler that waits the hangs out fails here instead


class HangingProvider(Provider):
    """Answers in 10 ms, except the calls numbered in `hang` (from 0), which hang for a minute."""

    kind = "openai"

    def __init__(self, hang: set[int]) -> None:
        self.hang = hang
        self.calls = 0
        self.active = self.peak = 0
        self.answered: list[tuple[float, str]] = []  # (when, prompt) of each answer
        self.cut: list[float] = []  # when each hanging call was cut off
        self.limits: list[int] = []  # the endpoint's concurrency limit at each call (once `scheduler` has set it)
        self.endpoint: Endpoint | None = None

    @property
    def model(self) -> str:
        return "m"

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        call, self.calls = self.calls, self.calls + 1
        if self.endpoint is not None:
            self.limits.append(self.endpoint.slots.limit)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(HANG_S if call in self.hang else 0.01)
        except asyncio.CancelledError:
            self.cut.append(time.monotonic())
            raise
        finally:
            self.active -= 1
        prompt = messages[0].content
        self.answered.append((time.monotonic(), prompt))
        return Completion(text=f"re: {prompt}", input_tokens=1, output_tokens=1, latency_ms=10, model=self.model)


def scheduler(provider: HangingProvider, max_attempts: int = 6, **endpoint: float) -> Scheduler:
    """A scheduler over one OpenAI-compatible endpoint (timeout_s 120 s, `endpoint` settings) served by `provider`."""
    config = EndpointConfig(name="e", kind="openai", model="m", base_url="http://127.0.0.1:9")
    s = Scheduler(
        build_endpoints([config.model_copy(update=endpoint)], [provider]),
        RetryPolicy(max_attempts=max_attempts, base_delay_s=0.01),
    )
    provider.endpoint = s.endpoints[0]
    return s


def ask(s: Scheduler, prompt: str) -> asyncio.Future[Scheduled]:
    return asyncio.ensure_future(s.complete([Message("user", prompt)], GenParams()))


def test_the_deadline_is_provisional_from_the_first_answer_then_three_times_the_p99() -> None:
    d = Deadlines(timeout_s=120)
    assert d.base is None and d.for_try(0) is None and d.stall_after() is None  # no answer yet: timeout_s alone
    assert d.observe(0.1)  # the first answer: a provisional deadline, tries in flight are re-timed
    assert d.base == 10.0 and d.stall_after() == 5.0  # 10x the slowest answer, at least 10 s
    assert not d.observe(1.2)  # 12 s: moved by less than a quarter, tries in flight keep their deadlines
    assert d.base == 12.0
    for _ in range(MIN_ANSWERS - 3):
        assert not d.observe(0.1)
    assert d.observe(0.1)  # the 20th answer: 3x the p99 (the 1.2 s answer), and tries in flight are re-timed
    assert d.base == pytest.approx(3.6)
    d = Deadlines(timeout_s=120)
    for _ in range(MIN_ANSWERS):
        d.observe(0.1)
    assert d.base == 2.0  # 3 x 0.1 s is under the 2 s floor
    assert d.stall_after() == 1.0
    assert (d.for_try(0), d.for_try(1), d.for_try(5)) == (2.0, 4.0, 64.0)
    assert d.for_try(6) is None  # 128 s is past timeout_s: the provider's own timeout bounds that try
    for _ in range(10):
        d.observe(5.0)  # 10 slow answers among 30: the p99 is 5 s
    assert d.base == 15.0
    bounded = Deadlines(timeout_s=10)
    for _ in range(MIN_ANSWERS):
        bounded.observe(5.0)
    assert bounded.base == 10.0 and bounded.for_try(0) is None  # never past timeout_s
    slow_start = Deadlines(timeout_s=120)
    slow_start.observe(30.0)  # a model loading on its first request
    assert slow_start.base == 120.0 and slow_start.for_try(0) is None
    local = Deadlines(timeout_s=120, adaptive=False)  # the embedded model: cutting a try would not stop it
    for _ in range(100):
        assert not local.observe(0.1)
    assert local.base is None


def test_the_embedded_model_learns_no_deadline() -> None:
    class Local(HangingProvider):
        kind = "local"

    assert not Scheduler(Local(set()), max_concurrency=1).endpoints[0].deadlines.adaptive
    assert scheduler(HangingProvider(set()), max_concurrency=1).endpoints[0].deadlines.adaptive


def test_hung_tries_leave_their_slots_then_are_cut_and_retried() -> None:
    provider = HangingProvider(set())
    s = scheduler(provider, tpm=600_000)  # concurrency sized from the quota: ~3 slots once answers take 10 ms
    gate = s.endpoints[0].slots

    async def go() -> tuple[list[Scheduled], list[Scheduled]]:
        learn = [await ask(s, f"learn {i}") for i in range(2 * MIN_ANSWERS)]
        provider.hang = {provider.calls + i for i in range(gate.limit)}  # the next tries hang: every slot held
        hung = [ask(s, f"hung {i}") for i in range(gate.limit)]
        await asyncio.sleep(0.05)
        assert provider.active == gate.limit
        rest = [ask(s, f"rest {i}") for i in range(20)]
        return learn + list(await asyncio.gather(*rest)), list(await asyncio.gather(*hung))

    fast, hung = asyncio.run(asyncio.wait_for(go(), BOUND_S))
    assert 2 <= len(hung) <= 8
    assert all(r.attempts == 1 for r in fast)
    assert all(r.attempts == 2 for r in hung)  # cut, then answered by the retry
    assert [r.completion.text for r in hung] == [f"re: hung {i}" for i in range(len(hung))]
    assert len(provider.cut) == len(hung)
    last_rest = max(t for t, prompt in provider.answered if prompt.startswith("rest"))
    assert last_rest < min(provider.cut)  # the others went on while the hung tries were waited out
    assert provider.peak <= 2 * max(provider.limits)  # a stalled try is replaced, at most twice the limit in all


def test_a_max_concurrency_the_user_set_is_never_passed_hung_tries_are_cut() -> None:
    provider = HangingProvider(hang={MIN_ANSWERS, MIN_ANSWERS + 1})  # the first two calls after the deadline is learned
    s = scheduler(provider, max_concurrency=2, rpm=60_000)

    async def go() -> list[Scheduled]:
        for i in range(MIN_ANSWERS):
            await ask(s, f"learn {i}")
        hung = [ask(s, "hung 0"), ask(s, "hung 1")]
        await asyncio.sleep(0.05)
        rest = [ask(s, f"rest {i}") for i in range(10)]
        await asyncio.gather(*rest)
        return list(await asyncio.gather(*hung))

    hung = asyncio.run(asyncio.wait_for(go(), BOUND_S))
    assert [r.attempts for r in hung] == [2, 2]
    assert provider.peak == 2
    first_rest = min(t for t, prompt in provider.answered if prompt.startswith("rest"))
    assert first_rest > min(provider.cut)  # both slots stayed held until the deadline cut the hung tries


def test_a_try_in_flight_when_the_deadline_is_learned_is_cut_from_its_own_start() -> None:
    provider = HangingProvider(hang={0})  # the very first call hangs, before anything is known
    s = scheduler(provider, max_concurrency=4)

    async def go() -> tuple[Scheduled, float]:
        started = time.monotonic()
        first = ask(s, "first")
        await asyncio.sleep(0.01)
        for i in range(MIN_ANSWERS):
            await ask(s, f"learn {i}")
        return await first, time.monotonic() - started

    first, took = asyncio.run(asyncio.wait_for(go(), BOUND_S))
    assert first.attempts == 2 and first.completion.text == "re: first"
    assert took < 10  # cut at its 2 s deadline, never waited to the hang's minute
    assert provider.cut and provider.cut[0] - provider.answered[0][0] < 5


def test_a_cut_try_counts_against_the_requests_tries() -> None:
    provider = HangingProvider(hang={MIN_ANSWERS})
    s = scheduler(provider, max_attempts=1, max_concurrency=2)

    async def go() -> None:
        for i in range(MIN_ANSWERS):
            await ask(s, f"learn {i}")
        await ask(s, "hung")

    with pytest.raises(TransientError, match=r"^e: no answer after 2\.\ds \(a try's deadline: 3x the p99 latency"):
        asyncio.run(asyncio.wait_for(go(), BOUND_S))
    assert provider.calls == MIN_ANSWERS + 1  # one try, cut, and no other: the budget was one try
    assert s.endpoints[0].stats.errors == 1
