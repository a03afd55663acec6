"""Any OpenAI-compatible chat-completions endpoint: OpenAI, Azure OpenAI (v1 API), vLLM, Ollama, llama.cpp's server.

The API key is read at request time (its environment variable, else the secrets file: `llmcorr.keys`) and kept only
in the request header; it is never part of `describe()`. Servers echo keys in errors ("Incorrect API key provided:
sk-…"): all text taken from a response or a client exception is scrubbed of the key (and of `sk-…` tokens) here,
before it can reach an error row, a log, a span or the store.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections.abc import Mapping
from typing import Any

import aiohttp

from ..config import without_userinfo
from ..errors import (
    ConfigError,
    FatalProviderError,
    QuotaExhaustedError,
    RateLimitError,
    RequestRejected,
    TransientError,
)
from ..keys import MIN_SCRUBBED, REDACTED, key_value, redact
from .base import Completion, GenParams, Message, Provider, RateLimitInfo
from .openai_answer import (
    BODY_BYTES_PER_CHAR,
    MAX_ANSWER_ENV,
    MalformedAnswer,
    max_body_bytes,
    read_answer,
    unanswered,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for header in ("retry-after-ms", "retry-after"):
        value = headers.get(header)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            continue
        return seconds / 1000 if header.endswith("-ms") else seconds
    return None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str | None) -> float | None:
    """OpenAI's reset durations ("1s", "6m0s", "120ms", "0.5s") or plain seconds, in seconds."""
    if value is None:
        return None
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def parse_ratelimit(headers: Mapping[str, str]) -> RateLimitInfo | None:
    """The x-ratelimit-* headers OpenAI (and Azure, vLLM gateways…) send, or None if there are none."""
    info = RateLimitInfo(
        limit_requests=_int(headers.get("x-ratelimit-limit-requests")),
        limit_tokens=_int(headers.get("x-ratelimit-limit-tokens")),
        remaining_requests=_int(headers.get("x-ratelimit-remaining-requests")),
        remaining_tokens=_int(headers.get("x-ratelimit-remaining-tokens")),
        reset_requests_s=parse_duration(headers.get("x-ratelimit-reset-requests")),
        reset_tokens_s=parse_duration(headers.get("x-ratelimit-reset-tokens")),
    )
    return None if info.empty else info


async def _read_body(url: str, r: aiohttp.ClientResponse) -> bytes:
    """The body, read no further than `max_body_bytes()`: a runaway server fails the try, never fills memory."""
    limit = max_body_bytes()
    if r.content_length is not None and r.content_length > limit:
        raise TransientError(f"{url}: answer body of {r.content_length:,} bytes not read: {_too_big(limit)}")
    body = bytearray()
    async for chunk in r.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > limit:
            raise TransientError(f"{url}: answer body past {limit:,} bytes, not read further: {_too_big(limit)}")
    return bytes(body)


def _too_big(limit: int) -> str:
    chars = limit // BODY_BYTES_PER_CHAR
    return f"the limit is {BODY_BYTES_PER_CHAR} bytes per character of {MAX_ANSWER_ENV} ({chars:,})"


class _Response:
    """What the provider keeps of an HTTP response: status, headers (case-insensitive), body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def _server_message(response: _Response, key: str | None = None) -> str:
    """The server's words about an error, without the key, at most 200 characters."""
    try:
        body = json.loads(response.body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _scrubbed(response.text, key).strip()
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return _scrubbed(str(error.get("message", "")), key)
        if error is not None:
            return _scrubbed(str(error), key)
        if "detail" in body:
            return _scrubbed(str(body["detail"]), key)
    return ""


def _scrubbed(text: str, key: str | None, limit: int = 200) -> str:
    """`text` without the key, cut to `limit` after scrubbing: a key across the cut leaves no prefix behind."""
    return redact(text[: limit + len(key or "") + 64], key)[:limit]


# a 4xx about the request (its messages, its size, a content filter): that row fails, the run goes on
REJECTED_STATUSES = frozenset({400, 413, 422})
# ... unless the server's words say it is about the endpoint (some servers answer a wrong model or key with a 400)
_ENDPOINT_CODES = ('"model_not_found"', '"invalid_api_key"')
_ABOUT_ENDPOINT = re.compile(r"\bapi[ _-]?key\b|\bmodel\b[^.]*\b(does not exist|not found)\b", re.I)


def _env_proxy(url: str) -> str | None:
    """The proxy the environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY…) names for `url`, looked up once per client:
    aiohttp's `trust_env` would look it up (and read ~/.netrc) on a thread for every request."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    if urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(scheme)


class OpenAIProvider(Provider):
    """POST {base_url}/chat/completions with a bearer key from `api_key_env` (optional for local servers)."""

    kind = "openai"

    def __init__(
        self,
        model: str,
        base_url: str = DEFAULT_BASE_URL,
        api_key_env: str | None = None,
        max_concurrency: int = 8,
        timeout_s: float = 120.0,
    ) -> None:
        if not model:
            raise ConfigError("the openai provider needs a model name (--model)")
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")
        self._model = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self._client: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proxy: str | None = None

    @property
    def model(self) -> str:
        return self._model

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "model": self.model,
            "base_url": without_userinfo(self.base_url),  # a password in the URL is never recorded
            "api_key_env": self.api_key_env,
        }

    def _key(self) -> str | None:
        return key_value(self.api_key_env) if self.api_key_env else None

    def _headers(self, key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if key:
            headers.update(self._auth_header(key))
        return headers

    def _auth_header(self, key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"}

    def _url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _get_client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client.closed or self._loop is not loop:
            # no pool limit: the scheduler's concurrency gate decides how many requests are in flight, and a pool
            # queue below it would delay requests the quota already admitted
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
            timeout = aiohttp.ClientTimeout(total=self.timeout_s)
            self._client = aiohttp.ClientSession(
                connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",)
            )
            self._loop = loop
            self._proxy = _env_proxy(self._url())
        return self._client

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [m.to_dict() for m in messages],
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
        }
        if params.seed is not None:
            payload["seed"] = params.seed
        if params.stop:
            payload["stop"] = list(params.stop)
        target = self._url()
        url = without_userinfo(target)  # as errors name it: no user:password@
        data = json.dumps(payload, ensure_ascii=False).encode()
        key = self._key()
        start = time.perf_counter()
        try:
            async with self._get_client().post(target, data=data, headers=self._headers(key), proxy=self._proxy) as r:
                response = _Response(r.status, r.headers, await _read_body(url, r))
        except TimeoutError as exc:
            raise TransientError(f"{url}: timed out after {self.timeout_s:g}s") from exc
        except aiohttp.ClientError as exc:  # a reset, a dropped or refused connection, a cut-off body
            detail = _scrubbed((str(exc).strip().splitlines() or [""])[0], key)
            raise TransientError(f"{url}: {type(exc).__name__}" + (f": {detail}" if detail else "")) from exc
        latency_ms = (time.perf_counter() - start) * 1000
        self._raise_for_status(url, response, key)
        return self._parse(url, response, latency_ms, key, params.max_tokens)

    def _raise_for_status(self, url: str, response: _Response, key: str | None = None) -> None:
        status = response.status
        if status < 400:
            return
        message = " ".join(_server_message(response, key).split())  # one line, whatever the server sent
        text = f"{url}: HTTP {status}" + (f": {message}" if message else "")
        if status == 429:
            lowered = message.lower()
            if "insufficient_quota" in response.text or ("quota" in lowered and "day" in lowered):
                raise QuotaExhaustedError(text)  # a daily/billing quota: retrying cannot help
            raise RateLimitError(
                text, retry_after=_retry_after(response.headers), ratelimit=parse_ratelimit(response.headers)
            )
        if status >= 500 or status == 408:
            raise TransientError(text)
        about_endpoint = _ABOUT_ENDPOINT.search(message) or any(c in response.text for c in _ENDPOINT_CODES)
        if status in REJECTED_STATUSES and not about_endpoint:
            raise RequestRejected(text)  # this request, not the endpoint: only its row fails
        raise FatalProviderError(text)  # 401, 403, 404 (a model not found): the endpoint, for every row

    def _parse(
        self, url: str, response: _Response, latency_ms: float, key: str | None = None, max_tokens: int | None = None
    ) -> Completion:
        raw = response.body
        if key and len(key) >= MIN_SCRUBBED and key.encode() in raw:  # a server that echoes the key it was sent:
            raw = raw.replace(key.encode(), REDACTED.encode())  # gone before any text is read or cut from the body
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise TransientError(f"{url}: malformed response: not JSON ({len(response.body)} bytes)") from exc
        try:
            answer = read_answer(body, max_tokens)  # any valid JSON: text and sane counts, or what came back
        except MalformedAnswer as exc:  # a failed answer may still be billed
            raise unanswered(f"{url}: malformed response: {_scrubbed(str(exc), key)}", body) from None
        text = answer.text
        if key and len(key) >= MIN_SCRUBBED and key in text:  # a server that answers with the key it was sent
            text = text.replace(key, REDACTED)
        return Completion(
            text=text,
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
            latency_ms=latency_ms,
            model=answer.model or self.model,
            finish_reason=answer.finish_reason,
            ratelimit=parse_ratelimit(response.headers),
            extra={"truncated_from": answer.truncated_from} if answer.truncated_from else {},
        )

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            if not client.closed and self._loop is asyncio.get_running_loop():
                await client.close()


class AzureOpenAIProvider(OpenAIProvider):
    """Azure OpenAI: `base_url` is the deployment's URL (…/openai/deployments/NAME); the key goes in `api-key`."""

    kind = "azure"

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key_env: str | None = None,
        max_concurrency: int = 8,
        timeout_s: float = 120.0,
        api_version: str = "2024-10-21",
    ) -> None:
        super().__init__(model, base_url, api_key_env, max_concurrency, timeout_s)
        self.api_version = api_version

    def _auth_header(self, key: str) -> dict[str, str]:
        return {"api-key": key}

    def _url(self) -> str:
        return f"{self.base_url}/chat/completions?api-version={self.api_version}"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "api_version": self.api_version}
