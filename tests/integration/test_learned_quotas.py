"""A quota left out of the config, learned from a real quota-enforcing server's headers (bench/quota_server.py):
OpenAI's x-ratelimit-limit-* set it from the first answer, and the run keeps to it with next to no 429s."""

from __future__ import annotations

import asyncio
import time

from bench.quota_server import QuotaServer, QuotaServerConfig
from llmcorr.config import EndpointConfig
from llmcorr.providers.base import GenParams, Message
from llmcorr.scheduler import Scheduler, build_endpoints
from llmcorr.scheduler.tokens import tiktoken_counter

PROMPT = [Message("system", "You correct predictions."), Message("user", "Sample: mean radius=17.99. " * 8)]
REQUESTS = 150


def test_no_quota_configured_learns_the_server_s_and_keeps_to_it() -> None:
    # ~115 tokens a request: 60,000 TPM is ~8.7 requests a second, and the server's bucket holds 2 s of it, so an
    # unpaced client (8 requests in flight, 50 ms each: 160 a second) would meet hundreds of 429s
    config = QuotaServerConfig(
        rpm=6_000, tpm=60_000, token_capacity=2_000, base_latency_s=0.05, count_tokens=tiktoken_counter()
    )
    with QuotaServer(config) as srv:
        endpoint = EndpointConfig(name="e", kind="openai", base_url=srv.base_url, model="m")  # no rpm, no tpm
        scheduler = Scheduler(build_endpoints([endpoint]))

        async def go() -> None:
            try:
                params = GenParams(max_tokens=16)
                await asyncio.gather(*(scheduler.complete(PROMPT, params) for _ in range(REQUESTS)))
            finally:
                await scheduler.aclose()

        started = time.monotonic()
        asyncio.run(go())
        took = time.monotonic() - started
        stats = srv.stats()
    (e,) = scheduler.endpoints
    assert (e.quota.rpm, e.quota.tpm) == (6_000, 60_000) and e.quota_source == "learned from headers"
    assert stats["rate_limited_total"] <= 3, stats["rate_limited_total"]
    assert took < 30
