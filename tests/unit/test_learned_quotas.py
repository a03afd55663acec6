"""Quotas learned from the server (scheduler/learned.py) and fixed windows filled exactly (scheduler/windows.py):
the first answer's limit headers set a quota left out of the config (one request goes first), later headers follow
the server, a configured quota above the server's is replaced with one warning, Azure's remaining-only headers give
the window's allowance, 429s with no quota known cut the concurrency until time gives it back, and reset headers
align the windows. The in-test server stands in for a real one: it answers with the rate-limit headers it is given.
"""

from __future__ import annotations

import asyncio
import logging
import math

import pytest

from llmcorr.config import EndpointConfig
from llmcorr.errors import RateLimitError
from llmcorr.providers import make_provider
from llmcorr.providers.base import Completion, GenParams, Message, Provider, RateLimitInfo
from llmcorr.scheduler import Scheduler, build_endpoints, describe_endpoints
from llmcorr.scheduler.endpoint import Quota
from llmcorr.scheduler.learned import AIMD_STEP_S
from llmcorr.scheduler.windows import GUARD_S, WindowBucket

PROMPT = [Message("user", "Is this row right? " * 20)]


class HeaderServer(Provider):
    """Answers after `latency_s` with `headers`; records how many calls were in flight when each call began."""

    kind = "openai"

    def __init__(self, headers: RateLimitInfo | None, latency_s: float = 0.01) -> None:
        self.headers = headers
        self.latency_s = latency_s
        self.active = 0
        self.in_flight_at_start: list[int] = []
        self.answers = 0

    @property
    def model(self) -> str:
        return "m"

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        self.in_flight_at_start.append(self.active)
        self.active += 1
        try:
            await asyncio.sleep(self.latency_s)
        finally:
            self.active -= 1
        self.answers += 1
        return Completion("ok", 50, 1, self.latency_s * 1000, "m", ratelimit=self.headers)


def scheduler(provider: Provider, kind: str = "openai", **quota: float) -> Scheduler:
    config = EndpointConfig(name="e", kind=kind, model="m", base_url="http://127.0.0.1:9/v1", **quota)
    return Scheduler(build_endpoints([config], [provider]))


def run(s: Scheduler, n: int) -> None:
    async def go() -> None:
        await asyncio.gather(*(s.complete(PROMPT, GenParams(max_tokens=16)) for _ in range(n)))

    asyncio.run(go())


def test_the_first_answer_s_limit_headers_set_a_quota_left_out_of_the_config() -> None:
    limits = RateLimitInfo(limit_requests=60_000, limit_tokens=900_000, remaining_requests=59_999)
    server = HeaderServer(limits, latency_s=0.05)
    s = scheduler(server)
    (e,) = s.endpoints
    assert e.quota_source == "none" and "quota: none" in describe_endpoints(s.endpoints)
    run(s, 30)
    # one request went alone: the second started only after the first had its answer
    assert server.in_flight_at_start[:2] == [0, 0]
    assert (e.quota.rpm, e.quota.tpm) == (60_000, 900_000)
    assert e.quota_source == "learned from headers"
    assert "quota: learned from headers" in describe_endpoints(s.endpoints)
    assert e.slots.limit > 8  # concurrency now follows the learned quota, not the provider's default
    server.headers = RateLimitInfo(limit_requests=30_000, limit_tokens=450_000)  # the server's limits changed
    run(s, 5)
    assert (e.quota.rpm, e.quota.tpm) == (30_000, 450_000)


def test_a_configured_quota_above_the_server_s_is_replaced_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    server = HeaderServer(RateLimitInfo(limit_requests=60_000, limit_tokens=200_000))
    s = scheduler(server, rpm=1_000, tpm=5_000_000)
    with caplog.at_level(logging.WARNING, logger="llmcorr.scheduler"):
        run(s, 40)
    (e,) = s.endpoints
    assert (e.quota.rpm, e.quota.tpm) == (1_000, 200_000)  # the lower of each: config's rpm, the server's tpm
    warnings = [r for r in caplog.records if r.name == "llmcorr.scheduler" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "tpm 5e+06" in warnings[0].getMessage()
    assert e.quota_source == "learned from headers"


def test_azure_remaining_only_headers_give_the_window_s_allowance() -> None:
    # Azure: a 10-s window of 50,000 tokens and 300 requests; only the remaining counts come back
    server = HeaderServer(RateLimitInfo(remaining_requests=299, remaining_tokens=50_000 - 200))
    s = scheduler(server, kind="azure")
    (e,) = s.endpoints
    charge = e.charge(s._raw_prompts(PROMPT)[0], 16)
    server.headers = RateLimitInfo(remaining_requests=299, remaining_tokens=50_000 - charge)
    run(s, 3)
    assert e.quota.rpm == pytest.approx(300 * 6) and e.quota.tpm == pytest.approx(300_000)
    assert e.quota_source == "learned from headers"


def test_429s_with_no_quota_known_cut_the_concurrency_and_time_gives_it_back() -> None:
    s = scheduler(HeaderServer(None))
    (e,) = s.endpoints
    assert e.slots.limit == 8
    seq = e.admitted(0.0)
    e.on_rate_limited(seq, 0.0, 0.01)
    assert e.slots.limit == 6  # cut once for the episode
    cut_at = e.aimd.cut_at
    assert e._concurrency(cut_at + AIMD_STEP_S * 1.01) == 7  # one slot back per AIMD_STEP_S, not per success
    assert e._concurrency(cut_at + AIMD_STEP_S * 10) == 8  # never above the endpoint's own limit


def test_model_servers_and_the_embedded_model_send_as_before() -> None:
    for kind in ("vllm", "ollama", "llamacpp"):
        config = EndpointConfig(name="e", kind=kind, model="m")
        (e,) = build_endpoints([config], [make_provider(config)])
        assert not e.learns and not e.probing(0.0)
        assert e.quota_source == "none"


def test_reset_headers_align_fixed_windows_and_each_is_filled_exactly() -> None:
    quota = Quota("q", 720, 120_000, 10.0)  # 120 requests and 20,000 tokens a 10-s window
    # a request sent at t=100 says the server's window ends 3 s after it counted it: windows end at 103, 113...
    quota.learner.observe(RateLimitInfo(reset_requests_s=3.0, reset_tokens_s=3.0), 400, 100.0, 100.5, "e")
    assert isinstance(quota.tokens, WindowBucket) and quota.tokens.boundary == pytest.approx(103.0)
    quota.learner.observe(RateLimitInfo(reset_tokens_s=2.5), 400, 100.501, 101.0, "e")  # a later estimate wins
    assert quota.tokens.boundary == pytest.approx(103.001)
    now = 103.02
    assert quota.admission_delay(400, now) == pytest.approx(103.001 + GUARD_S - now)  # not before the window opens
    now = 103.1
    admitted = 0
    while quota.admission_delay(400, now) == 0:
        quota.reserve(400, now)
        admitted += 400
    assert admitted == 20_000  # the whole window, no margin
    assert quota.admission_delay(400, now) == pytest.approx(113.001 + GUARD_S - now)  # then the next window
    assert quota.admission_delay(400, 113.1) == 0


class AzureWindows:
    """Azure's fixed windows on our clock, as its answers show them: `x-ratelimit-remaining-*` only. A window ends
    at `end` and every `window_s` around it; the server admits a request `delay_s` after we send it."""

    def __init__(self, end: float, requests: int, tokens: int, window_s: float = 10.0, delay_s: float = 0.002) -> None:
        self.end, self.window_s, self.delay_s = end, window_s, delay_s
        self.allowed = (requests, tokens)
        self.used: dict[int, list[int]] = {}  # window -> [requests, tokens]

    def window(self, t: float) -> int:
        return math.floor((t - self.end) / self.window_s)

    def admit(self, sent: float, charge: int) -> RateLimitInfo | None:
        """The answer's headers; None for a 429 (the window's allowance would be exceeded)."""
        used = self.used.setdefault(self.window(sent + self.delay_s), [0, 0])
        if used[0] + 1 > self.allowed[0] or used[1] + charge > self.allowed[1]:
            return None
        used[0] += 1
        used[1] += charge
        return RateLimitInfo(remaining_requests=self.allowed[0] - used[0], remaining_tokens=self.allowed[1] - used[1])


class Client:
    """A quota driven as the scheduler drives it: it sends whenever the quota admits (looked at every 10 ms), and
    the answers come back `latency_s` later, passed on as scheduler/endpoint.py does."""

    def __init__(self, quota: Quota, server: AzureWindows, charge: int = 264, latency_s: float = 0.3) -> None:
        self.quota, self.server, self.charge, self.latency_s = quota, server, charge, latency_s
        self.in_flight: list[tuple[float, float, RateLimitInfo]] = []  # (answered at, sent, headers)
        self.now = 100.0
        self.refused = 0
        for bucket in (quota.requests, quota.tokens):
            assert bucket is not None
            bucket.stamp = self.now  # the quota's clock is this test's, from 100 s on

    def run(self, until: float) -> int:
        """Run until `until` on the clock; return the 429s so far."""
        quota, charge = self.quota, self.charge
        while self.now < until:
            self.now = now = round(self.now + 0.01, 6)
            for answer in [a for a in self.in_flight if a[0] <= now]:
                self.in_flight.remove(answer)
                _, sent, info = answer
                later = [a for a in self.in_flight if a[1] > sent]
                quota.learner.observe(info, charge, sent, now, "e")
                quota.observe_headers(info, len(later), charge * len(later), now, age_s=now - sent)
            while quota.admission_delay(charge, now) == 0:
                quota.reserve(charge, now)
                headers = self.server.admit(now, charge)
                if headers is None:
                    self.refused += 1
                    quota.refund(charge, now)
                    quota.on_rate_limited(1.0, now, self.latency_s)
                    break
                self.in_flight.append((now + self.latency_s, now, headers))
        return self.refused


def test_remaining_only_answers_around_a_window_boundary_give_its_alignment() -> None:
    # Azure: 300 requests and 50,000 tokens a 10-s window; the server's windows end at 103.023, 113.023...
    quota = Quota("q", 1_800, 300_000, 10.0)
    server = AzureWindows(103.023, 300, 50_000)
    client = Client(quota, server)
    assert client.run(103.2) == 0  # no answer from the new window yet: the steady stream of the continuous bucket
    assert not isinstance(quota.tokens, WindowBucket)
    assert client.run(104.5) == 0
    assert isinstance(quota.tokens, WindowBucket) and isinstance(quota.requests, WindowBucket)
    # the boundary is pinned to within the gap between two sends, and taken no earlier than the server's
    bucket = quota.tokens
    phase = (bucket.boundary - 103.023) % 10.0
    phase = phase - 10.0 if phase > 5.0 else phase
    assert -server.delay_s <= phase <= 0.1
    assert 0 < bucket.uncertain_s <= 0.1


def test_remaining_only_windows_are_each_filled_to_their_allowance_and_no_more() -> None:
    charge = 264
    quota = Quota("q", 1_800, 300_000, 10.0)
    server = AzureWindows(103.023, 300, 50_000)
    assert Client(quota, server, charge).run(160.0) == 0  # no 429s
    full = 50_000 // charge * charge  # another request would not fit
    windows = sorted(server.used)
    # every window after the first one aligned (the boundary is seen at ~103; the window from 103 is then
    # finished at once) takes its whole allowance, and none more (the server refused nothing)
    assert [server.used[w][1] for w in windows[1:-1]] == [full] * (len(windows) - 2)


def test_a_remaining_count_that_rises_by_a_request_or_two_is_no_window_boundary() -> None:
    from llmcorr.scheduler.windows import RemainingJumps  # (here: the other tests run without it)

    # two requests sent 1 ms apart and admitted in the other order: the later one's count is one unit higher
    jumps = RemainingJumps(10.0)
    allowances = (300.0, 50_000.0)
    assert not jumps.observe(100.000, 150, 25_000, allowances)
    assert not jumps.observe(100.001, 151, 25_264, allowances)
    assert jumps.hi is None
    assert jumps.observe(100.050, 298, 49_472, allowances)  # a new window: the counts jump back up
    assert (jumps.lo, jumps.hi) == (100.001, 100.050)
    # the same boundary a window later, pinned closer: the estimate narrows (and stays the latest possible)
    assert not jumps.observe(110.020, 20, 1_000, allowances)  # (the same window as the last answer)
    assert jumps.observe(110.040, 299, 49_736, allowances)
    assert jumps.lo == pytest.approx(100.020) and jumps.hi == pytest.approx(100.040)


def test_a_request_sent_within_the_uncertainty_of_a_window_s_end_counts_in_both_windows() -> None:
    bucket = WindowBucket(10.0, 10.0, 100.0, 100.5, uncertain_s=0.3)
    bucket.reserve(4.0, 109.55)  # 0.45 s before our window's end: the server's may end 0.3 s earlier
    assert bucket.level == 6.0
    bucket.reserve(2.0, 109.7)  # within TAIL_S + uncertain_s of the end: counted in the next window too
    assert bucket.refill(110.1) == 8.0


class RefusingFirst(HeaderServer):
    """Refuses its first request with a 429 that states the limits (as OpenAI's do), then answers with no headers."""

    def __init__(self, limits: RateLimitInfo) -> None:
        super().__init__(None)
        self.limits = limits
        self.refused = 0

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        if not self.refused:
            self.refused += 1
            raise RateLimitError("429 slow down", retry_after=0.01, ratelimit=self.limits)
        return await super().complete(messages, params)


def test_a_429_s_limit_headers_are_learned_like_an_answer_s() -> None:
    server = RefusingFirst(RateLimitInfo(limit_requests=6_000, limit_tokens=90_000, remaining_requests=0))
    s = scheduler(server)
    (e,) = s.endpoints
    run(s, 6)
    assert server.refused == 1 and server.answers == 6  # the refused request was sent again, and answered
    assert (e.quota.rpm, e.quota.tpm) == (6_000, 90_000) and e.quota_source == "learned from headers"
