"""The quota emulator's server styles (bench/quota_server.py), over real HTTP on 127.0.0.1: which x-ratelimit-*
headers each `limit_headers` style sends, on answers and on 429s, and `prompt_count="chars4"` in the charge and in
usage.prompt_tokens."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bench.quota_server import QuotaServer, QuotaServerConfig, _parser, count_prompt_tokens
from bench.quota_tokens import chars4_prompt_tokens

MESSAGES = [
    {"role": "system", "content": "You correct predictions of a trained model."},
    {"role": "user", "content": [{"type": "text", "text": "Is 2 > 1? "}, {"type": "text", "text": "Answer."}]},
]
OPENAI = [f"x-ratelimit-{a}-{b}" for a in ("limit", "remaining", "reset") for b in ("requests", "tokens")]
AZURE = ["x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens"]


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


def chat(client: httpx.Client, srv: QuotaServer, max_tokens: int = 20) -> httpx.Response:
    body: dict[str, Any] = {"model": "m", "messages": MESSAGES, "max_tokens": max_tokens}
    return client.post(f"{srv.base_url}/chat/completions", json=body)


def rate_headers(response: httpx.Response) -> list[str]:
    return sorted(name for name in response.headers if name.lower().startswith("x-ratelimit-"))


@pytest.mark.parametrize(("style", "expected"), [("openai", sorted(OPENAI)), ("azure", sorted(AZURE)), ("none", [])])
def test_limit_header_styles_on_answers_and_429s(client: httpx.Client, style: str, expected: list[str]) -> None:
    config = QuotaServerConfig(rpm=60, tpm=1_000_000, request_capacity=2, limit_headers=style)  # type: ignore[arg-type]
    with QuotaServer(config) as srv:
        answers = [chat(client, srv) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 429]
    for response in answers:
        assert rate_headers(response) == expected
    if style != "none":  # the request bucket: 2, one spent, then none
        assert answers[0].headers["x-ratelimit-remaining-requests"] == "1"
        assert answers[1].headers["x-ratelimit-remaining-requests"] == "0"
    limited = answers[2]
    assert int(limited.headers["retry-after"]) >= 1  # a 429 says when to come back in every style
    assert int(limited.headers["retry-after-ms"]) > 0
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"


def test_azure_mode_with_azure_headers(client: httpx.Client) -> None:
    config = QuotaServerConfig(rpm=600, tpm=100_000, mode="azure", window_s=10.0, limit_headers="azure")
    with QuotaServer(config) as srv:
        url = f"{srv.root_url}/openai/deployments/m/chat/completions?api-version=2024-10-21"
        response = client.post(url, json={"messages": MESSAGES, "max_tokens": 20})
    assert response.status_code == 200
    assert rate_headers(response) == sorted(AZURE)
    charged = count_prompt_tokens(MESSAGES) + 20
    assert int(response.headers["x-ratelimit-remaining-tokens"]) == 100_000 * 10 // 60 - charged


def test_chars4_counts_prompt_tokens_for_usage_and_charge(client: httpx.Client) -> None:
    chars = sum(len(t) for t in ("You correct predictions of a trained model.", "Is 2 > 1? ", "Answer."))
    expected = math.ceil(chars / 4)
    assert chars4_prompt_tokens(MESSAGES) == expected
    assert expected != count_prompt_tokens(MESSAGES)  # the server and tiktoken disagree, which is the point
    config = QuotaServerConfig(rpm=600, tpm=60_000, prompt_count="chars4")
    with QuotaServer(config) as srv:
        response = chat(client, srv, max_tokens=20)
        stats = srv.stats()
        log = srv.request_log()
    assert response.status_code == 200
    usage = response.json()["usage"]
    assert usage["prompt_tokens"] == expected
    assert usage["total_tokens"] == expected + usage["completion_tokens"]
    assert stats["tokenizer"] == "chars/4"
    assert stats["prompt_tokens_admitted"] == expected
    assert stats["tokens_charged"] == expected + 20
    assert log[0]["charged"] == expected + 20
    assert int(response.headers["x-ratelimit-remaining-tokens"]) == 60_000 - (expected + 20)


def test_tiktoken_count_is_the_default(client: httpx.Client) -> None:
    with QuotaServer(QuotaServerConfig()) as srv:
        response = chat(client, srv)
    assert response.json()["usage"]["prompt_tokens"] == count_prompt_tokens(MESSAGES)
    assert rate_headers(response) == sorted(OPENAI)


def test_cli_flags_offer_the_styles() -> None:
    args = _parser().parse_args(["--limit-headers", "azure", "--prompt-count", "chars4"])
    config = QuotaServerConfig(**vars(args))
    assert (config.limit_headers, config.prompt_count) == ("azure", "chars4")
    with pytest.raises(SystemExit):
        _parser().parse_args(["--limit-headers", "anthropic"])
    with pytest.raises(ValueError, match="limit_headers"):
        QuotaServerConfig(limit_headers="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prompt_count"):
        QuotaServerConfig(prompt_count="bytes")  # type: ignore[arg-type]


def test_per_window_utilization_of_the_binding_quota() -> None:
    from bench.quota import windows
    from bench.quota_setups import SETUPS, charge

    setup = next(s for s in SETUPS if s.name == "tokenizer-mismatch")  # TPM-bound, 240,000 tpm
    per_second = setup.quotas[0][1] / 60  # tokens a second at the quota
    rows = [{"second": t, "admitted": 1, "charged": per_second * (0.5 if 30 <= t < 40 else 1.0)} for t in range(75)]
    snapshot = {"series": rows}
    got = windows(setup, [snapshot], first=2.5, last=74.5)
    assert [w["start_s"] for w in got] == [23, 33, 43, 53, 63]  # whole 10-s windows from 20 s after the first
    assert [round(w["utilization"], 3) for w in got] == [0.85, 0.65, 1.0, 1.0, 1.0]
    assert {w["binding"] for w in got} == {"tokens"}
    assert charge(setup) < charge()  # the server's chars/4 count is below tiktoken's for this prompt
