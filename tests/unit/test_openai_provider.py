"""The OpenAI-compatible provider against a scripted server on 127.0.0.1: error mapping, retries, key hygiene."""

from __future__ import annotations

import asyncio

import pytest

from llmcorr.errors import FatalProviderError, RateLimitError, RequestRejected, TransientError
from llmcorr.providers import GenParams, Message, OpenAIProvider
from llmcorr.scheduler import RetryPolicy, Scheduler
from tests.servers import Reply, ScriptedServer, ok

MESSAGES = [Message("system", "be brief"), Message("user", "hi")]
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05)


def complete(provider: OpenAIProvider) -> object:
    async def go() -> object:
        try:
            return await provider.complete(MESSAGES, GenParams(max_tokens=5, seed=3))
        finally:
            await provider.aclose()

    return asyncio.run(go())


def test_request_and_usage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KEY", "sk-secret-value")
    with ScriptedServer() as server:
        server.script.append(ok("Prediction: False", prompt_tokens=30, completion_tokens=7))
        provider = OpenAIProvider(model="m1", base_url=server.base_url, api_key_env="TEST_KEY")
        c = complete(provider)
        req = server.requests[0]
    assert c.text == "Prediction: False" and (c.input_tokens, c.output_tokens) == (30, 7)
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["authorization"] == "Bearer sk-secret-value"
    assert req["body"]["model"] == "m1" and req["body"]["max_tokens"] == 5 and req["body"]["seed"] == 3
    assert req["body"]["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert "sk-secret-value" not in str(provider.describe())


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(429, {"error": {"message": "slow down"}}, {"retry-after": "2"}), RateLimitError),
        (
            Reply(429, {"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}}),
            FatalProviderError,
        ),
        (Reply(503, "upstream down"), TransientError),
        (Reply(401, {"error": {"message": "bad key"}}), FatalProviderError),
        (Reply(200, "{not json"), TransientError),
        (Reply(200, {"choices": []}), TransientError),
    ],
)
def test_errors_are_translated(reply: Reply, error: type[Exception]) -> None:
    with ScriptedServer() as server:
        server.script.append(reply)
        with pytest.raises(error) as info:
            complete(OpenAIProvider(model="m", base_url=server.base_url, api_key_env=None))
    if isinstance(info.value, RateLimitError):
        assert info.value.retry_after == 2.0


def test_connection_refused_is_transient() -> None:
    with ScriptedServer() as server:
        url = server.base_url
    with pytest.raises(TransientError):
        complete(OpenAIProvider(model="m", base_url=url, api_key_env=None, timeout_s=2))


def schedule(scheduler: Scheduler) -> object:
    async def go() -> object:
        try:
            return await scheduler.complete(MESSAGES, GenParams())
        finally:
            await scheduler.aclose()

    return asyncio.run(go())


def test_scheduler_retries_rate_limits_and_5xx_then_succeeds() -> None:
    with ScriptedServer() as server:
        server.script.extend([Reply(429, {}, {"retry-after-ms": "10"}), Reply(500, "boom"), ok("done")])
        scheduler = Scheduler(OpenAIProvider(model="m", base_url=server.base_url, api_key_env=None), retry=FAST)
        result = schedule(scheduler)
        assert len(server.requests) == 3
    assert result.completion.text == "done" and result.attempts == 3  # type: ignore[attr-defined]
    assert scheduler.rate_limited == 1 and scheduler.retried == 2


def test_scheduler_gives_up_after_bounded_attempts_and_never_retries_fatal() -> None:
    with ScriptedServer(default=Reply(500, "down")) as server:
        scheduler = Scheduler(OpenAIProvider(model="m", base_url=server.base_url, api_key_env=None), retry=FAST)
        with pytest.raises(TransientError):
            schedule(scheduler)
        assert len(server.requests) == 3
    with ScriptedServer(default=Reply(400, {"error": {"message": "bad request"}})) as server:
        scheduler = Scheduler(OpenAIProvider(model="m", base_url=server.base_url, api_key_env=None), retry=FAST)
        with pytest.raises(RequestRejected, match="HTTP 400: bad request"):  # that row fails, the run goes on
            schedule(scheduler)
        assert len(server.requests) == 1
    with ScriptedServer(default=Reply(401, {"error": {"message": "bad key"}})) as server:
        scheduler = Scheduler(OpenAIProvider(model="m", base_url=server.base_url, api_key_env=None), retry=FAST)
        with pytest.raises(FatalProviderError, match="HTTP 401: bad key"):  # the endpoint: the run stops
            schedule(scheduler)
        assert len(server.requests) == 1


@pytest.mark.parametrize("framing", [{}, {"connection": "close"}])  # a Content-Length, or none: read until the end
def test_a_body_past_the_limit_is_not_read(monkeypatch: pytest.MonkeyPatch, framing: dict[str, str]) -> None:
    monkeypatch.setenv("LLMCORR_MAX_ANSWER_CHARS", "1000")  # bodies of at most 64,000 bytes are read
    with ScriptedServer() as server:
        server.script.append(Reply(body=ok("x" * 60_000).body, headers=framing))
        server.script.append(Reply(body=ok("y" * 70_000).body, headers=framing))
        under = complete(OpenAIProvider(model="m1", base_url=server.base_url))
        with pytest.raises(TransientError, match=r"answer body (of 70,\d+ bytes not read|past 64,000 bytes)"):
            complete(OpenAIProvider(model="m1", base_url=server.base_url))
    assert under.text == "x" * 1000 and under.extra == {"truncated_from": 60_000}  # read, then cut at the cap
