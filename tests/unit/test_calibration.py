"""The prompt-token calibration (scheduler/endpoint.py) against servers that count prompts differently from
tiktoken: it converges to the server's ratio and stays there however deep the queue, each request is charged with
the calibration at its admission, and `x-ratelimit-remaining-tokens` headers correct the bucket, not the calibration.

The in-test server stands in for a real one: it counts a prompt as `round(raw x ratio)`, where raw is the prompt's
count under OpenAI's accounting with tiktoken, and holds each answer until `depth` later requests have arrived.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import deque

import pytest

from llmcorr.config import EndpointConfig
from llmcorr.providers.base import Completion, GenParams, Message, Provider, RateLimitInfo
from llmcorr.scheduler import Scheduler
from llmcorr.scheduler.endpoint import Endpoint, Quota
from llmcorr.scheduler.tokens import chat_prompt_tokens, tiktoken_counter

MAX_TOKENS = 16
TIME_LIMIT_S = 30  # the run takes a second or two; a broken calibration could make it wait on the quota for hours
WORDS = ["the", "a", "model", "row", "label", "value", "true", "false", "sample", "prediction", "question", "cell"]


def _config(tpm: float, max_concurrency: int) -> EndpointConfig:
    return EndpointConfig(
        name="server",
        kind="openai",
        model="m",
        base_url="http://127.0.0.1:9/v1",
        tpm=tpm,
        max_concurrency=max_concurrency,
    )


def _prompts(n: int, seed: int = 7) -> list[list[Message]]:
    """Prompts of 100 to 600 words: sizes vary, as rows do."""
    rng = random.Random(seed)
    return [[Message("user", " ".join(rng.choice(WORDS) for _ in range(rng.randint(100, 600))))] for _ in range(n)]


class RatioServer(Provider):
    """Counts each prompt as `round(raw x ratio)` and answers it once `depth` later requests have arrived (the
    queue a run keeps in flight), or once all `total` have; records the endpoint's calibration at each admission."""

    kind = "openai"

    def __init__(self, ratio: float, depth: int = 0, total: int = 0, headers: RateLimitInfo | None = None) -> None:
        self.ratio = ratio
        self.depth = depth
        self.total = total
        self.headers = headers
        self.endpoint: ChargeLog | None = None
        self.raw: list[int] = []  # per request, in admission order
        self.calibration: list[float] = []  # the endpoint's calibration when the request was admitted
        self.charges: list[float] = []  # the token charge the request was admitted with
        self._held: deque[asyncio.Future[None]] = deque()

    @property
    def model(self) -> str:
        return "m"

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        assert self.endpoint is not None
        raw = chat_prompt_tokens(messages, tiktoken_counter())
        self.raw.append(raw)
        self.calibration.append(self.endpoint.calibration)
        # the scheduler calls the provider right after the endpoint admitted the request: its charge is the last one
        self.charges.append(self.endpoint.charges[-1])
        if self.depth:
            held: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._held.append(held)
            while len(self._held) > self.depth or (self._held and len(self.raw) == self.total):
                oldest = self._held.popleft()
                if not oldest.done():  # (a try cut at its deadline leaves its answer cancelled)
                    oldest.set_result(None)
            await held
        await asyncio.sleep(0)  # an answer takes a moment: requests behind this one queue meanwhile
        return Completion("ok", round(raw * self.ratio), 1, 1.0, self.model, ratelimit=self.headers)


class ChargeLog(Endpoint):
    """The real endpoint, remembering the charge of each request it admits."""

    def __init__(self, config: EndpointConfig, provider: RatioServer) -> None:
        super().__init__(config, provider, Quota(config.group, config.rpm, config.tpm, config.enforcement_window_s))
        self.charges: list[float] = []
        provider.endpoint = self

    async def acquire(self, charge: float, now: float) -> int:
        self.charges.append(charge)
        return await super().acquire(charge, now)


def _run(server: RatioServer, config: EndpointConfig, prompts: list[list[Message]]) -> ChargeLog:
    endpoint = ChargeLog(config, server)
    scheduler = Scheduler([endpoint])
    params = GenParams(max_tokens=MAX_TOKENS)

    async def go() -> None:
        # every row queued at once, as a run's workers queue them
        async with asyncio.timeout(TIME_LIMIT_S):
            answers = await asyncio.gather(*(scheduler.complete(p, params) for p in prompts))
        assert all(a.attempts == 1 for a in answers)

    try:
        asyncio.run(go())
    except TimeoutError:  # a calibration run away makes charges that wait on the quota
        pytest.fail(f"not done in {TIME_LIMIT_S}s; calibration every 250 admissions: {server.calibration[::250]}")
    return endpoint


@pytest.mark.parametrize("ratio", [0.85, 1.2])
def test_calibration_converges_with_a_deep_queue(ratio: float) -> None:
    """5,000 requests, each answered 256 admissions after its charge: from request 500 on, every calibration is
    within 2% of the server's ratio, and so is every charged prompt (give or take the one token rounded up)."""
    server = RatioServer(ratio, depth=256, total=5000)
    # one slot more than the depth: each admission after the 256th waits for (and follows) the oldest answer
    endpoint = _run(server, _config(tpm=1e9, max_concurrency=257), _prompts(5000))
    assert len(server.calibration) == 5000
    off = [(i, c) for i, c in enumerate(server.calibration) if i >= 500 and abs(c / ratio - 1) > 0.02]
    assert not off, f"calibration off by more than 2% at {len(off)} admissions, first {off[:3]}"
    assert abs(endpoint.calibration / ratio - 1) < 0.02
    for raw, charge in list(zip(server.raw, server.charges, strict=True))[500:]:
        prompt = charge - MAX_TOKENS
        assert abs(prompt - raw * ratio) <= 0.02 * raw * ratio + 1


def test_each_request_is_charged_with_the_calibration_at_its_admission() -> None:
    """One slot: the second request waits in the queue while the first one's answer moves the calibration; it is
    charged with the calibration it meets when admitted, not the one it met when queued."""
    server = RatioServer(2.0)
    _run(server, _config(tpm=1e9, max_concurrency=1), _prompts(3))
    assert server.calibration[0] == 1.0 and server.calibration[1] != 1.0  # the first answer moved it
    for raw, calibration, charge in zip(server.raw, server.calibration, server.charges, strict=True):
        assert charge == math.ceil(raw * calibration) + MAX_TOKENS


def test_remaining_tokens_headers_correct_the_level_not_the_calibration() -> None:
    """The same answers with and without `x-ratelimit-remaining-tokens`: the same calibration, answer by answer;
    with the headers, the token bucket is lowered to what the server says remains."""
    prompts = _prompts(40)
    config = _config(tpm=6e6, max_concurrency=1)
    plain = RatioServer(1.2)
    unheard = _run(plain, config, prompts)
    remaining = 20_000
    told = RatioServer(1.2, headers=RateLimitInfo(remaining_tokens=remaining, reset_tokens_s=60.0))
    endpoint = _run(told, config, prompts)
    assert told.calibration == plain.calibration
    assert told.charges == plain.charges
    assert unheard.quota.tokens is not None and unheard.quota.tokens.level > remaining + 1
    assert endpoint.quota.tokens is not None and endpoint.quota.tokens.level <= remaining + 1
