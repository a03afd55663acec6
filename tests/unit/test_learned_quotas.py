"""Quotas learned from the server (scheduler/learned.py) and fixed windows filled exactly (scheduler/windows.py):
the first answer's limit headers set a quota left out of the config (one request goes first), later headers follow
the server, a configured quota above the server's is replaced with one warning, Azure's remaining-only headers give
the window's allowance, 429s with no quota known cut the concurrency until time gives it back, and reset headers
align the windows. The in-test server stands in for a real one: it answers with the rate-limit headers it is given.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from llmcorr.config import EndpointConfig
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
    assert e.gate.limit > 8  # concurrency now follows the learned quota, not the provider's default
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
    assert e.gate.limit == 8
    seq = e.admitted(0.0)
    e.on_rate_limited(seq, 0.0, 0.01)
    assert e.gate.limit == 6  # cut once for the episode
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
