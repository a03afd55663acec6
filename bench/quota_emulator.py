"""The quota server's configuration and request handling: routing, auth, validation, the daily quota, the rate
limiter, fault injection and the OpenAI-shaped replies. Runs on the server's event loop only; bench/quota_server.py
owns the sockets and the thread. The rules are described in bench/quota_server.py's docstring."""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from bench.quota_buckets import (
    LIMIT_HEADER_STYLES,
    AzureLimiter,
    Limiter,
    OpenAILimiter,
    Verdict,
    format_duration,
    limit_headers,
)
from bench.quota_http import Request, Response, json_response
from bench.quota_shapes import SHAPES, AnswerShapeFaults, rejection, reshape
from bench.quota_stats import FAULTS, Stats
from bench.quota_tokens import (
    TokenCounter,
    chars4_prompt_tokens,
    count_prompt_tokens,
    text_tokens,
    tokenizer_name,
    truncate_to_tokens,
)

AZURE_PATH = re.compile(r"^/openai/deployments/([^/]+)/chat/completions$")
CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
MODELS_PATHS = ("/v1/models", "/models")
ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


@dataclass
class QuotaServerConfig(AnswerShapeFaults):
    """Every knob of the quota server. Probabilities are per admitted request, drawn from a RNG seeded by `seed`;
    the answer-shape faults' knobs are in bench/quota_shapes.py."""

    rpm: int = 600
    """Requests per minute."""
    tpm: int = 60_000
    """Tokens per minute (prompt + max_tokens, charged at admission)."""
    mode: Literal["openai", "azure"] = "openai"
    """"openai": continuous-refill token buckets; "azure": fixed windows of `window_s`."""
    request_capacity: float | None = None
    """openai mode: request bucket capacity (the burst); None = rpm, a full minute, as OpenAI."""
    token_capacity: float | None = None
    """openai mode: token bucket capacity; None = tpm. A request charging more is refused for good (no Retry-After)."""
    start_full: bool = True
    """openai mode: buckets start (and restart on reset) full, as OpenAI's for an idle key; False = empty."""
    window_s: float = 10.0
    """azure mode: window length; each window allows rpm*window_s/60 requests and tpm*window_s/60 tokens."""
    daily_requests: int | None = None
    """After this many admitted requests (since start/reset), 429 insufficient_quota without Retry-After."""
    default_max_tokens: int = 16
    """The max_tokens charged when a request sets none (the completions API's old default)."""
    response_text: str = "Prediction: True; Explanation: emulated"
    """The assistant's reply, truncated to max_tokens."""
    model: str = "quota-emulator"
    """The model named by GET /v1/models (a request's own `model` is echoed back)."""
    count_tokens: TokenCounter | None = None
    """str -> tokens; None = bench.quota_tokens.text_tokens (tiktoken offline, else ceil(utf-8 bytes / 4))."""
    prompt_count: Literal["tiktoken", "chars4"] = "tiktoken"
    """Prompt tokens, charged and in usage: "tiktoken" = count_prompt_tokens with `count_tokens`; "chars4" =
    ceil(characters of the messages' contents / 4), no framing (a self-hosted model's tokenizer, not tiktoken's)."""
    limit_headers: Literal["openai", "azure", "none"] = "openai"
    """Which x-ratelimit-* headers answers carry: "openai" all six; "azure" remaining-{requests,tokens} only, as
    Azure OpenAI; "none" none (vLLM, Ollama, llama.cpp). 429s carry Retry-After in every style."""
    base_latency_s: float = 0.0
    """Seconds before every reply (asyncio.sleep; the loop keeps serving)."""
    per_output_token_s: float = 0.0
    """Extra seconds per completion token."""
    error_5xx_rate: float = 0.0
    """Probability of a 500/502/503 JSON error instead of the reply."""
    reset_rate: float = 0.0
    """Probability of closing the connection with a TCP reset and no response."""
    timeout_rate: float = 0.0
    """Probability of hanging `hang_s` seconds, then closing without a response."""
    hang_s: float = 30.0
    """How long a timeout fault hangs."""
    malformed_rate: float = 0.0
    """Probability of a 200 whose body is not JSON."""
    empty_choices_rate: float = 0.0
    """Probability of a 200 with "choices": []."""
    hidden_client_fraction: float = 0.0
    """Share of both quotas an unseen second client consumes continuously (a background task); 0 <= f < 1."""
    hidden_tick_s: float = 0.05
    """How often the hidden client takes its share."""
    api_key: str | None = None
    """When set, chat and models requests need "Authorization: Bearer <key>" or "api-key: <key>", else 401."""
    seed: int = 0
    """Seeds the fault RNG (re-seeded on reset)."""
    port: int = 0
    """Port on 127.0.0.1; 0 picks a free one."""
    request_log_limit: int = 200_000
    """Request log entries kept (the newest); older ones are dropped and counted."""
    log_messages: bool = False
    """Keep each admitted request's messages in its log entry (for tests that check which prompts were paid for)."""
    max_body_bytes: int = 8 * 1024 * 1024
    """Larger request bodies get 413."""
    idle_timeout_s: float = 300.0
    """An idle keep-alive connection is closed after this long."""

    def __post_init__(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(f"QuotaServerConfig: {what}")

        need(self.rpm > 0 and self.tpm > 0, "rpm and tpm must be positive")
        need(self.mode in ("openai", "azure"), f"mode must be 'openai' or 'azure', not {self.mode!r}")
        need(self.prompt_count in ("tiktoken", "chars4"), "prompt_count must be 'tiktoken' or 'chars4'")
        need(self.limit_headers in LIMIT_HEADER_STYLES, f"limit_headers must be one of {LIMIT_HEADER_STYLES}")
        need((self.request_capacity or 1) >= 1, "request_capacity must be at least 1")
        need((self.token_capacity or 1) >= 1, "token_capacity must be at least 1")
        need(self.window_s > 0, "window_s must be positive")
        if self.mode == "azure":
            need(self.rpm * self.window_s / 60 >= 1, "azure mode: rpm * window_s / 60 must allow 1 request a window")
        need(self.daily_requests is None or self.daily_requests >= 0, "daily_requests must be >= 0")
        need(self.default_max_tokens >= 1, "default_max_tokens must be >= 1")
        need(self.huge_answer_chars >= 1, "huge_answer_chars must be >= 1")
        for name in FAULTS:
            need(0.0 <= getattr(self, f"{name}_rate") <= 1.0, f"{name}_rate must be in [0, 1]")
        need(0.0 <= self.hidden_client_fraction < 1.0, "hidden_client_fraction must be in [0, 1)")
        need(self.hidden_tick_s > 0, "hidden_tick_s must be positive")
        need(min(self.base_latency_s, self.per_output_token_s, self.hang_s) >= 0, "latencies must be >= 0")
        need(0 <= self.port <= 65535, "port must be in 0..65535")
        need(self.request_log_limit >= 0, "request_log_limit must be >= 0")


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _invalid(message: str, param: str | None = None) -> Response:
    return json_response(400, error_body(message, "invalid_request_error", None, param))


@dataclass
class _Chat:
    """A validated chat request."""

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int
    request_id: str | None


@dataclass
class Outcome:
    """What the connection does: send `response`, or "reset"/"hang" without one."""

    response: Response | None = None
    action: Literal["send", "reset", "hang"] = "send"


class Emulator:
    """The request handling and quota state of one server; runs on its event loop only."""

    def __init__(self, config: QuotaServerConfig) -> None:
        self.config = config
        self.count: TokenCounter = config.count_tokens or text_tokens
        self._served = 0
        self.reset()

    def reset(self) -> None:
        now = time.monotonic()
        cfg = self.config
        self.rng = random.Random(cfg.seed)
        self.limiter: Limiter = (
            AzureLimiter(cfg.rpm, cfg.tpm, now, cfg.window_s)
            if cfg.mode == "azure"
            else OpenAILimiter(cfg.rpm, cfg.tpm, now, cfg.request_capacity, cfg.token_capacity, cfg.start_full)
        )
        self.stats = Stats(now, time.time(), self.config.request_log_limit)
        self.hidden_at = now

    def snapshot(self, include_log: bool = False) -> dict[str, Any]:
        cfg = self.config
        snap = self.stats.snapshot(time.monotonic(), include_log)
        tokenizer = "chars/4" if cfg.prompt_count == "chars4" else tokenizer_name()
        settings = {"mode": cfg.mode, "rpm": cfg.rpm, "tpm": cfg.tpm, "tokenizer": tokenizer}
        return {**settings, "hidden_client_fraction": cfg.hidden_client_fraction, **snap}

    def hidden_tick(self) -> None:
        now = time.monotonic()
        dt, self.hidden_at = now - self.hidden_at, now
        share = self.config.hidden_client_fraction * dt / 60
        requests, tokens = share * self.config.rpm, share * self.config.tpm
        self.limiter.consume(requests, tokens, now)
        self.stats.hidden(now, requests, tokens)

    async def handle(self, req: Request) -> Outcome:
        azure = AZURE_PATH.match(req.path)
        if req.path in CHAT_PATHS or azure:
            if req.method != "POST":
                return Outcome(self._status(405, f"{req.method} is not allowed on {req.path}"))
            return await self._chat(req, azure.group(1) if azure else None)
        routes: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("GET", "/stats"): lambda r: json_response(200, self.snapshot(r.query.get("log") in ("1", "true"))),
            ("POST", "/reset"): self._reset,
            **{("GET", p): self._models for p in MODELS_PATHS},
        }
        route = routes.get((req.method, req.path))
        if route is None:
            known = any(path == req.path for _, path in routes)
            if known:
                return Outcome(self._status(405, f"{req.method} is not allowed on {req.path}"))
            self.stats.counts["not_found"] += 1
            message = f"Unknown request URL: {req.method} {req.path}."
            return Outcome(json_response(404, error_body(message, "invalid_request_error", "unknown_url")))
        return Outcome(route(req))

    def _status(self, status: int, message: str) -> Response:
        return json_response(status, error_body(message, "invalid_request_error", None))

    def _reset(self, req: Request) -> Response:
        self.reset()
        return json_response(200, {"reset": True})

    def _models(self, req: Request) -> Response:
        denied = self._auth(req)
        if denied:
            return denied
        model = {"id": self.config.model, "object": "model", "created": 0, "owned_by": "llmcorr-bench"}
        return json_response(200, {"object": "list", "data": [model]})

    def _auth(self, req: Request) -> Response | None:
        key = self.config.api_key
        if key is None:
            return None
        bearer = req.headers.get("authorization", "")
        given = bearer[7:].strip() if bearer.lower().startswith("bearer ") else req.headers.get("api-key")
        if given == key:
            return None
        self.stats.counts["unauthorized"] += 1
        if not given:
            message = "You didn't provide an API key. You need to provide your API key in an Authorization header."
            return json_response(401, error_body(message, "invalid_request_error", None))
        masked = given[:3] + "*" * 4 + given[-4:] if len(given) > 8 else "*" * len(given)
        message = f"Incorrect API key provided: {masked}. You can find your API key in your account settings."
        return json_response(401, error_body(message, "invalid_request_error", "invalid_api_key"))

    def _parse_chat(self, req: Request, deployment: str | None) -> _Chat | Response:
        if deployment is not None and "api-version" not in req.query:
            return _invalid("Missing required query parameter: api-version", "api-version")
        try:
            body = json.loads(req.body)
        except (ValueError, UnicodeDecodeError):
            return _invalid("We could not parse the JSON body of your request. (HINT: send valid JSON.)")
        if not isinstance(body, dict):
            return _invalid("The request body must be a JSON object.")
        model = body.get("model", deployment)
        if not isinstance(model, str) or not model:
            return _invalid("you must provide a model parameter", "model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _invalid("'messages' must be a non-empty array", "messages")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES:
                return _invalid(f"messages[{i}] must be an object with a valid 'role'", f"messages.[{i}].role")
            content = m.get("content")
            if not (isinstance(content, str | list) or (content is None and m["role"] == "assistant")):
                return _invalid(f"messages[{i}].content must be a string or an array", f"messages.[{i}].content")
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is None:
            max_tokens = self.config.default_max_tokens
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            return _invalid("max_tokens must be an integer >= 1", "max_tokens")
        if body.get("stream"):
            return _invalid("stream is not supported by the quota emulator", "stream")
        if body.get("n", 1) != 1:
            return _invalid("n > 1 is not supported by the quota emulator", "n")
        metadata = body.get("metadata")
        metadata = metadata if isinstance(metadata, dict) else {}
        rid = req.headers.get("x-request-id") or metadata.get("request_id") or metadata.get("id") or body.get("user")
        return _Chat(model, messages, max_tokens, str(rid) if rid is not None else None)

    def _limit_headers(self, now: float) -> list[tuple[str, str]]:
        return limit_headers(self.limiter.headroom(now), self.config.limit_headers)

    async def _chat(self, req: Request, deployment: str | None) -> Outcome:
        self.stats.counts["received"] += 1
        denied = self._auth(req)
        if denied:
            return Outcome(denied)
        start = time.monotonic()
        parsed = self._parse_chat(req, deployment)
        rid = req.headers.get("x-request-id") or f"req_{self.stats.counts['received']:012d}"
        if isinstance(parsed, Response):
            self.stats.counts["bad_request"] += 1
            self.stats.record(start, 400, "bad_request", req.headers.get("x-request-id"))
            parsed.headers += [("x-request-id", rid), *self._limit_headers(start)]
            return Outcome(parsed)
        chat = parsed
        poisoned = rejection(chat.messages, self.config.reject_marker, self.config.reject_status)
        if poisoned is not None:  # a poisoned row: refused for what it holds, on every try, nothing charged
            self.stats.counts["rejected"] += 1
            self.stats.record(start, poisoned[0], "rejected", chat.request_id)
            return Outcome(json_response(poisoned[0], poisoned[1], [("x-request-id", rid)]))
        chars4 = self.config.prompt_count == "chars4"
        prompt = chars4_prompt_tokens(chat.messages) if chars4 else count_prompt_tokens(chat.messages, self.count)
        charge = prompt + chat.max_tokens
        tokens = {"prompt_tokens": prompt, "max_tokens": chat.max_tokens}
        daily = self.config.daily_requests
        if daily is not None and self.stats.counts["admitted"] >= daily:
            self.stats.counts["insufficient_quota"] += 1
            self.stats.record(start, 429, "insufficient_quota", chat.request_id, **tokens)
            message = "You exceeded your current quota, please check your plan and billing details."
            body = error_body(message, "insufficient_quota", "insufficient_quota")
            return Outcome(json_response(429, body, [("x-request-id", rid), *self._limit_headers(start)]))
        verdict = self.limiter.admit(charge, start)
        if not verdict.admitted:
            return Outcome(self._rate_limited(verdict, chat, charge, rid, start, tokens))
        self.stats.admitted(start, prompt, charge)
        entry = self.stats.record(start, 200, "admitted", chat.request_id, **tokens, charged=charge)
        if self.config.log_messages:
            entry["messages"] = chat.messages
        headers = [("x-request-id", rid), *self._limit_headers(start)]
        return await self._serve(chat, prompt, headers, start)

    def _rate_limited(
        self, verdict: Verdict, chat: _Chat, charge: int, rid: str, now: float, tokens: dict[str, int]
    ) -> Response:
        unit = "requests per min (RPM)" if verdict.kind == "requests" else "tokens per min (TPM)"
        requested = 1 if verdict.kind == "requests" else charge
        where = f"for {chat.model} in organization org-emulator on {unit}: Limit {verdict.limit}"
        headers = [("x-request-id", rid), *self._limit_headers(now)]
        if verdict.retry_after_s is None:
            self.stats.rate_limited(now, "too_large")
            self.stats.record(now, 429, "too_large", chat.request_id, **tokens)
            message = (
                f"Request too large {where}, Requested {requested}. "
                "The input or output tokens must be reduced in order to run successfully."
            )
        else:
            self.stats.rate_limited(now, verdict.kind)
            self.stats.record(now, 429, f"rate_limited_{verdict.kind}", chat.request_id, **tokens)
            wait = verdict.retry_after_s
            message = (
                f"Rate limit reached {where}, Used {verdict.used}, Requested {requested}. "
                f"Please try again in {format_duration(wait)}. "
                "Visit https://platform.openai.com/account/rate-limits to learn more."
            )
            headers += [("retry-after", str(max(1, math.ceil(wait)))), ("retry-after-ms", str(math.ceil(wait * 1000)))]
        return json_response(429, error_body(message, verdict.kind, "rate_limit_exceeded"), headers)

    def _fault(self) -> str | None:
        cfg = self.config
        for name in FAULTS:
            rate = getattr(cfg, f"{name}_rate")
            if rate and self.rng.random() < rate:
                return name
        return None

    async def _serve(self, chat: _Chat, prompt: int, headers: list[tuple[str, str]], start: float) -> Outcome:
        cfg = self.config
        fault = self._fault()
        if fault:
            self.stats.counts[f"fault_{fault}"] += 1
        if fault in ("reset", "timeout"):
            return Outcome(action="reset" if fault == "reset" else "hang")
        text = truncate_to_tokens(cfg.response_text, chat.max_tokens, self.count)
        completion = min(self.count(cfg.response_text), chat.max_tokens)
        finish = "stop" if text == cfg.response_text else "length"
        await asyncio.sleep(cfg.base_latency_s + cfg.per_output_token_s * completion)
        headers.append(("openai-processing-ms", str(round((time.monotonic() - start) * 1000))))
        if fault == "error_5xx":
            status = self.rng.choice((500, 502, 503))
            self.stats.counts["errors_5xx"] += 1
            message = "The server had an error while processing your request. Sorry about that!"
            if status == 503:
                message = "The engine is currently overloaded, please try again later."
            return Outcome(json_response(status, error_body(message, "server_error", None), headers))
        if fault == "malformed":
            return Outcome(Response(200, b'{"id": "chatcmpl-broken", "choices": [', headers))
        self._served += 1
        self.stats.counts["ok"] += 1
        self.stats.counts["completion_tokens_served"] += completion
        choices = [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}]
        body = {
            "id": f"chatcmpl-emu{self._served:09d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": chat.model,
            "choices": [] if fault == "empty_choices" else choices,
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }
        if fault in SHAPES:
            reshape(fault, body, cfg.huge_answer_chars)
        return Outcome(json_response(200, body, headers))
