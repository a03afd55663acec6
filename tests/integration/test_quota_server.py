"""The quota-enforcing emulator (bench/quota_server.py) over real HTTP on 127.0.0.1: replies, charges, both limiter
modes, 429s, the daily quota, fault knobs, auth, the hidden client, stats, several servers, the CLI."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.quota_buckets import format_duration, parse_duration
from bench.quota_server import QuotaServer, QuotaServerConfig, count_prompt_tokens
from bench.quota_tokens import text_tokens

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = [{"role": "system", "content": "You correct predictions."}, {"role": "user", "content": "Is 2 > 1?"}]
TEXT = "Prediction: True; Explanation: emulated"
RATE_HEADERS = [f"x-ratelimit-{a}-{b}" for a in ("limit", "remaining", "reset") for b in ("requests", "tokens")]


def chat(client: httpx.Client, srv: QuotaServer, max_tokens: int | None = 50, **body: Any) -> httpx.Response:
    payload: dict[str, Any] = {"model": "gpt-test", "messages": MESSAGES, **body}
    if max_tokens is not None:
        payload["max_tokens"] = max_tokens
    return client.post(f"{srv.base_url}/chat/completions", json=payload)


def hammer(client: httpx.Client, srv: QuotaServer, seconds: float, **kwargs: Any) -> list[httpx.Response]:
    """Back-to-back requests for `seconds`, as a client that ignores rate limits."""
    return hammer_timed(client, srv, seconds, **kwargs)[0]


def hammer_timed(
    client: httpx.Client, srv: QuotaServer, seconds: float, **kwargs: Any
) -> tuple[list[httpx.Response], float]:
    """`hammer`, and how long after it started its last request was sent: a client stalled by a loaded machine
    near the end sends its last request early, and what refilled after that could not be admitted."""
    replies = []
    started = time.monotonic()
    deadline = started + seconds
    last = 0.0
    while (now := time.monotonic()) < deadline:
        last = now - started
        replies.append(chat(client, srv, **kwargs))
    return replies, last


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


def test_reply_usage_and_rate_limit_headers(client: httpx.Client) -> None:
    with QuotaServer(rpm=600, tpm=60_000) as srv:
        r = client.post(
            f"{srv.base_url}/chat/completions",
            json={"model": "gpt-test", "messages": MESSAGES, "max_tokens": 100},
            headers={"x-request-id": "row-7"},
        )
        assert r.status_code == 200
        body = r.json()
        assert body["object"] == "chat.completion" and body["model"] == "gpt-test" and body["id"]
        assert body["choices"] == [
            {"index": 0, "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}
        ]
        prompt = count_prompt_tokens(MESSAGES)
        assert prompt == 3 + 2 * 4 + text_tokens(MESSAGES[0]["content"]) + text_tokens(MESSAGES[1]["content"])
        completion = text_tokens(TEXT)
        assert body["usage"] == {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        assert all(h in r.headers for h in RATE_HEADERS)
        assert r.headers["x-ratelimit-limit-requests"] == "600"
        assert r.headers["x-ratelimit-limit-tokens"] == "60000"
        assert r.headers["x-ratelimit-remaining-requests"] == "599"
        assert parse_duration(r.headers["x-ratelimit-reset-requests"]) == pytest.approx(0.1, abs=0.002)
        assert r.headers["x-request-id"] == "row-7"

        short = chat(client, srv, max_tokens=3)
        choice = short.json()["choices"][0]
        assert choice["finish_reason"] == "length"
        assert TEXT.startswith(choice["message"]["content"]) and choice["message"]["content"] != TEXT
        assert text_tokens(choice["message"]["content"]) <= 3
        assert short.json()["usage"]["completion_tokens"] == 3


def test_charge_is_prompt_plus_max_tokens_and_never_refunded(client: httpx.Client) -> None:
    tpm = 6_000  # refills 100 tokens/s, so a few ms between requests cannot hide a charge
    with QuotaServer(rpm=6_000, tpm=tpm) as srv:
        prompt = count_prompt_tokens(MESSAGES)
        t0 = time.monotonic()
        first = chat(client, srv, max_tokens=500)
        assert first.json()["usage"]["completion_tokens"] < 500
        assert int(first.headers["x-ratelimit-remaining-tokens"]) == tpm - (prompt + 500)
        second = chat(client, srv, max_tokens=None)  # no max_tokens: 16 is charged
        refill = (time.monotonic() - t0) * tpm / 60
        remaining = int(second.headers["x-ratelimit-remaining-tokens"])
        assert tpm - (prompt + 500) - (prompt + 16) <= remaining <= tpm - (prompt + 500) - (prompt + 16) + refill + 1
        stats = srv.stats()
        assert stats["tokens_charged"] == 2 * prompt + 516
        assert stats["prompt_tokens_admitted"] == 2 * prompt


def test_continuous_refill_admits_rpm_over_60_per_second(client: httpx.Client) -> None:
    with QuotaServer(rpm=600, tpm=10_000_000, start_full=False) as srv:
        srv.reset()
        t0 = time.monotonic()
        replies, last_sent = hammer_timed(client, srv, 1.5)
        elapsed = time.monotonic() - t0
        admitted = sum(r.status_code == 200 for r in replies)
        assert len(replies) > 100  # the client really did outrun the limit
        assert 10 * last_sent - 2 <= admitted <= 10 * elapsed + 1
        limited = [r for r in replies if r.status_code == 429]
        assert {r.json()["error"]["type"] for r in limited} == {"requests"}
        assert max(int(r.headers["retry-after-ms"]) for r in limited) <= 100


def test_token_bucket_binds_when_tokens_run_out(client: httpx.Client) -> None:
    with QuotaServer(rpm=60_000, tpm=30_000, start_full=False) as srv:  # 500 tokens/s
        charge = count_prompt_tokens(MESSAGES) + 90
        srv.reset()
        t0 = time.monotonic()
        replies, last_sent = hammer_timed(client, srv, 1.2, max_tokens=90)
        elapsed = time.monotonic() - t0
        admitted = sum(r.status_code == 200 for r in replies)
        assert len(replies) > admitted  # the client outran the bucket
        assert 500 * last_sent / charge - 2 <= admitted <= 500 * elapsed / charge + 1
        assert {r.json()["error"]["type"] for r in replies if r.status_code == 429} == {"tokens"}


def test_burst_capacity_limits_the_opening_burst(client: httpx.Client) -> None:
    with QuotaServer(rpm=600, tpm=10_000_000, request_capacity=20) as small, QuotaServer(rpm=600) as full:
        t0 = time.monotonic()
        burst = [chat(client, small).status_code for _ in range(40)]
        elapsed = time.monotonic() - t0
        first_refusal = burst.index(429)
        # 20 in the bucket, plus what refilled (10 a second) while the burst ran: timing-free on a loaded machine
        assert 20 <= first_refusal <= 20 + math.ceil(10 * elapsed) + 1
        assert [chat(client, full).status_code for _ in range(100)] == [200] * 100  # default: a full minute


def test_azure_fixed_windows(client: httpx.Client) -> None:
    with QuotaServer(mode="azure", rpm=600, tpm=10_000_000, window_s=1.0) as srv:
        url = f"{srv.root_url}/openai/deployments/gpt-4o/chat/completions"
        assert client.post(url, json={"messages": MESSAGES}).status_code == 400  # no api-version
        srv.reset()
        replies = []
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            replies.append(client.post(url, params={"api-version": "2024-06-01"}, json={"messages": MESSAGES}))
        assert replies[0].json()["model"] == "gpt-4o"
        log = srv.request_log()
        per_window = Counter(int(e["t"]) for e in log if e["status"] == 200)
        assert per_window[0] == 10 and per_window[1] == 10  # the whole window's allowance, at its start
        refused = [r for r in replies if r.status_code == 429]
        assert refused and all(0 < int(r.headers["retry-after-ms"]) <= 1000 for r in refused)
        assert all(r.headers["x-ratelimit-remaining-requests"] == "0" for r in refused)

    with QuotaServer(mode="azure", rpm=600, tpm=6_000, window_s=1.0) as srv:  # 100 tokens a window
        statuses = [chat(client, srv, max_tokens=60).status_code for _ in range(2)]
        assert statuses == [200, 429]


def test_429_body_and_retry_headers(client: httpx.Client) -> None:
    with QuotaServer(rpm=60, tpm=10_000, request_capacity=1) as srv:
        assert chat(client, srv).status_code == 200
        r = chat(client, srv)
        assert r.status_code == 429
        error = r.json()["error"]
        assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
        assert "Rate limit reached" in error["message"] and "Please try again in " in error["message"]
        wait_ms = int(r.headers["retry-after-ms"])
        assert 900 <= wait_ms <= 1000
        assert r.headers["retry-after"] == "1"
        assert all(h in r.headers for h in RATE_HEADERS)
        assert r.headers["x-ratelimit-remaining-requests"] == "0"

        too_large = chat(client, srv, max_tokens=20_000)
        assert too_large.status_code == 429
        assert "Request too large" in too_large.json()["error"]["message"]
        assert "retry-after" not in too_large.headers  # waiting cannot help
        stats = srv.stats()
        assert stats["rate_limited"] == {"requests": 1, "tokens": 0, "too_large": 1}


def test_daily_quota_is_insufficient_quota(client: httpx.Client) -> None:
    with QuotaServer(daily_requests=3) as srv:
        assert [chat(client, srv).status_code for _ in range(3)] == [200] * 3
        r = chat(client, srv)
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "insufficient_quota"
        assert r.json()["error"]["message"] == (
            "You exceeded your current quota, please check your plan and billing details."
        )
        assert "retry-after" not in r.headers
        assert srv.stats()["insufficient_quota"] == 1


@pytest.mark.parametrize("fault", ["error_5xx", "reset", "timeout", "malformed", "empty_choices"])
def test_fault_knobs_at_rate_one(client: httpx.Client, fault: str) -> None:
    knobs: dict[str, Any] = {f"{fault}_rate": 1.0, "hang_s": 0.3}
    with QuotaServer(QuotaServerConfig(**knobs)) as srv:
        t0 = time.monotonic()
        if fault in ("reset", "timeout"):
            with pytest.raises(httpx.TransportError):
                chat(client, srv)
            if fault == "timeout":
                assert time.monotonic() - t0 >= 0.3
        else:
            r = chat(client, srv)
            if fault == "error_5xx":
                assert r.status_code in (500, 502, 503) and r.json()["error"]["type"] == "server_error"
            elif fault == "malformed":
                assert r.status_code == 200
                with pytest.raises(ValueError):
                    r.json()
            else:
                assert r.status_code == 200 and r.json()["choices"] == []
        stats = srv.stats()
        assert stats["faults"][fault] == 1 and sum(stats["faults"].values()) == 1
        assert stats["admitted"] == 1 and stats["ok"] == (1 if fault == "empty_choices" else 0)


def test_api_key(client: httpx.Client) -> None:
    key = "sk-emulator-0123456789"
    with QuotaServer(api_key=key) as srv:
        missing = chat(client, srv)
        assert missing.status_code == 401 and missing.json()["error"]["type"] == "invalid_request_error"
        url = f"{srv.base_url}/chat/completions"
        body = {"model": "m", "messages": MESSAGES}
        wrong = client.post(url, json=body, headers={"authorization": "Bearer sk-wrong-key-99999"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        assert "sk-wrong-key-99999" not in wrong.text
        assert client.post(url, json=body, headers={"authorization": f"Bearer {key}"}).status_code == 200
        assert client.post(url, json=body, headers={"api-key": key}).status_code == 200
        assert client.get(f"{srv.base_url}/models").status_code == 401
        assert srv.stats()["admitted"] == 2


def test_hidden_client_makes_a_naive_full_rate_client_see_429s(client: httpx.Client) -> None:
    def paced(srv: QuotaServer, per_s: float, seconds: float) -> list[int]:
        statuses = []
        start = time.monotonic()
        for i in range(int(per_s * seconds)):
            time.sleep(max(0.0, start + i / per_s - time.monotonic()))
            statuses.append(chat(client, srv).status_code)
        return statuses

    config = QuotaServerConfig(rpm=600, tpm=10_000_000, request_capacity=2)
    with QuotaServer(config) as alone, QuotaServer(config, hidden_client_fraction=0.5) as shared:
        assert paced(alone, 8, 2.0).count(429) == 0  # 80% of the quota: fine on its own
        shared.reset()
        t0 = time.monotonic()
        statuses = paced(shared, 8, 2.0)
        elapsed = time.monotonic() - t0
        assert statuses.count(429) >= 2
        hidden = shared.stats()["hidden"]["requests"]
        assert hidden == pytest.approx(0.5 * 10 * elapsed, rel=0.25)


def test_stats_series_log_and_utilization(client: httpx.Client) -> None:
    with QuotaServer(rpm=600, tpm=10_000_000, start_full=False, request_log_limit=10_000) as srv:
        srv.reset()
        replies = hammer(client, srv, 2.3)
        ids = client.post(
            f"{srv.base_url}/chat/completions",
            json={"model": "m", "messages": MESSAGES, "user": "row-from-user", "metadata": {"request_id": "row-meta"}},
        )
        stats = srv.stats(include_log=True)
        assert stats["received"] == len(replies) + 1
        assert stats["admitted"] == stats["ok"] == sum(r.status_code == 200 for r in replies) + (ids.status_code == 200)
        assert stats["rate_limited"]["requests"] == sum(r.status_code == 429 for r in replies) + (
            ids.status_code == 429
        )
        assert sum(row["admitted"] for row in stats["series"]) == stats["admitted"]
        assert sum(row["charged"] for row in stats["series"]) == stats["tokens_charged"]
        # the bucket starts empty at reset and refills 10 a second: never more admitted than refilled so far (a
        # second can hold more than 10 when the client stalled in the one before, so the bound is cumulative)
        admitted_so_far = 0
        for row in sorted(stats["series"], key=lambda r: r["second"]):
            admitted_so_far += row["admitted"]
            assert admitted_so_far <= 10 * (row["second"] + 1) + 1
        assert stats["connections"] == 1  # keep-alive: one connection for everything
        assert 0 <= stats["first_admitted_s"] <= stats["last_admitted_s"] <= stats["uptime_s"]
        log = stats["log"]
        assert len(log) == stats["received"] and log[-1]["request_id"] == "row-meta"
        assert {e["status"] for e in log} == {200, 429}
        admitted = [e for e in log if e["status"] == 200]
        assert all(e["charged"] == e["prompt_tokens"] + e["max_tokens"] for e in admitted)
        steady = srv.utilization(start_s=0, end_s=2)
        assert steady["binding"] == "requests" and 0.6 <= steady["utilization"] <= 1.05  # loose below: a loaded CI

        over_http = client.get(f"{srv.root_url}/stats").json()
        assert over_http["admitted"] == stats["admitted"] and "log" not in over_http
        assert client.post(f"{srv.root_url}/reset").json() == {"reset": True}
        assert srv.stats()["received"] == 0 and srv.stats()["series"] == []

    with QuotaServer(request_log_limit=5) as capped:
        for _ in range(8):
            chat(client, capped)
        stats = capped.stats()
        assert stats["log_size"] == 5 and stats["log_dropped"] == 3


def test_bad_requests_and_other_endpoints(client: httpx.Client) -> None:
    with QuotaServer() as srv:
        url = f"{srv.base_url}/chat/completions"
        bad_json = client.post(url, content=b"{not json", headers={"content-type": "application/json"})
        assert bad_json.status_code == 400 and bad_json.json()["error"]["type"] == "invalid_request_error"
        for body in ({"model": "m"}, {"model": "m", "messages": []}, {"messages": MESSAGES}, [1, 2]):
            assert client.post(url, json=body).status_code == 400
        assert chat(client, srv, max_tokens=0).status_code == 400
        assert chat(client, srv, stream=True).status_code == 400
        assert client.get(url).status_code == 405
        assert client.get(f"{srv.root_url}/nope").status_code == 404
        assert client.post(f"{srv.root_url}/chat/completions", json={"model": "m", "messages": MESSAGES}).is_success
        chunked = client.post(
            url, content=iter([b'{"model": "m", ', b'"messages": [{"role": "user", "content": "x"}]}'])
        )
        assert chunked.status_code == 200
        models = client.get(f"{srv.base_url}/models").json()
        assert models["data"][0]["id"] == "quota-emulator"
        stats = srv.stats()
        assert stats["bad_request"] == 7 and stats["not_found"] == 1 and stats["admitted"] == 2
    with pytest.raises(ValueError, match="hidden_client_fraction"):
        QuotaServerConfig(hidden_client_fraction=1.0)


def test_two_servers_and_hundreds_of_concurrent_connections() -> None:
    async def crowd(srv: QuotaServer, n: int) -> list[int]:
        limits = httpx.Limits(max_connections=n)
        async with httpx.AsyncClient(timeout=20, limits=limits) as c:
            body = {"model": "m", "messages": MESSAGES}
            replies = await asyncio.gather(*(c.post(f"{srv.base_url}/chat/completions", json=body) for _ in range(n)))
        return [r.status_code for r in replies]

    with (
        QuotaServer(rpm=60, request_capacity=1) as tight,
        QuotaServer(rpm=6000, tpm=10_000_000, base_latency_s=0.5) as slow,
    ):
        assert tight.port != slow.port
        t0 = time.monotonic()
        statuses = asyncio.run(crowd(slow, 200))
        elapsed = time.monotonic() - t0
        assert statuses == [200] * 200
        assert elapsed < 0.5 * 200 / 10  # they waited out their latency together, not one after another
        assert slow.stats()["connections"] == 200
        with httpx.Client() as c:
            assert [chat(c, tight).status_code for _ in range(2)] == [200, 429]
            assert chat(c, slow).status_code == 200  # one server's limit is not the other's


def test_duration_format_round_trips() -> None:
    cases = {0.12: "120ms", 1.0: "1s", 8.64: "8.64s", 360.0: "6m0s", 3600.0: "1h0m0s", 0.0: "0s", 0.0001: "1ms"}
    for seconds, text in cases.items():
        assert format_duration(seconds) == text
        assert parse_duration(text) == pytest.approx(math.ceil(seconds * 1000) / 1000)


def test_cli_prints_base_url_and_serves_until_interrupted() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.quota_server", "--port", "0", "--rpm", "60", "--tpm", "6000", "--mode", "azure"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        with httpx.Client() as c:
            r = c.post(f"{base_url}/chat/completions", json={"model": "m", "messages": MESSAGES})
            assert r.status_code == 200 and r.headers["x-ratelimit-limit-tokens"] == "6000"
            assert c.get(base_url.removesuffix("/v1") + "/stats").json()["mode"] == "azure"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
