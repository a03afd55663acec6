"""The two rate limiters the quota server emulates, and OpenAI's duration format for reset headers.

- ``OpenAILimiter``: two continuous-refill token buckets, one for requests (refill rpm/60 per second) and one for
  tokens (tpm/60 per second); capacity defaults to the full minute quota, so a fresh or idle key can burst a whole
  minute's worth at once, as OpenAI's does. A request is admitted only if the request bucket holds 1 and the token
  bucket holds its whole charge; nothing is ever refunded.
- ``AzureLimiter``: fixed windows of ``window_s`` seconds (Azure evaluates over 1 s or 10 s windows), each allowing
  rpm*window_s/60 requests and tpm*window_s/60 tokens; counters restart at every window boundary.

Both take ``now`` (time.monotonic()) explicitly, so they are plain arithmetic and are tested without a clock.
``consume`` charges usage that did not pass admission (the server's hidden second client); it may push the
remaining quota below zero, which later requests then wait out.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Protocol

EPS = 1e-9


@dataclass(frozen=True)
class Verdict:
    """The limiter's answer to one request. When refused, `kind` ("requests" or "tokens") names the binding limit
    and `retry_after_s` the wait until this request would fit (None: it never fits, it exceeds the capacity)."""

    admitted: bool
    kind: str = ""
    retry_after_s: float | None = None
    limit: int = 0
    used: int = 0


@dataclass(frozen=True)
class Headroom:
    """What the x-ratelimit-* headers report."""

    limit_requests: int
    limit_tokens: int
    remaining_requests: int
    remaining_tokens: int
    reset_requests_s: float
    reset_tokens_s: float


class Limiter(Protocol):
    def admit(self, tokens: int, now: float) -> Verdict: ...

    def consume(self, requests: float, tokens: float, now: float) -> None: ...

    def headroom(self, now: float) -> Headroom: ...


class TokenBucket:
    """A bucket of `capacity` that refills continuously at `per_second`; its level may go negative (debt)."""

    def __init__(self, capacity: float, per_second: float, now: float, full: bool = True) -> None:
        self.capacity = capacity
        self.per_second = per_second
        self.level = capacity if full else 0.0
        self.updated = now

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.per_second)
            self.updated = now

    def wait_s(self, amount: float) -> float:
        """Seconds until the bucket holds `amount` (after `refill`); inf if it never can."""
        if amount > self.capacity + EPS:
            return math.inf
        deficit = amount - self.level
        return 0.0 if deficit <= EPS else deficit / self.per_second

    def full_in_s(self) -> float:
        return max(0.0, self.capacity - self.level) / self.per_second


class OpenAILimiter:
    def __init__(
        self,
        rpm: int,
        tpm: int,
        now: float,
        request_capacity: float | None = None,
        token_capacity: float | None = None,
        start_full: bool = True,
    ) -> None:
        self.rpm, self.tpm = rpm, tpm
        self.requests = TokenBucket(request_capacity or rpm, rpm / 60, now, start_full)
        self.tokens = TokenBucket(token_capacity or tpm, tpm / 60, now, start_full)

    def _refill(self, now: float) -> None:
        self.requests.refill(now)
        self.tokens.refill(now)

    def admit(self, tokens: int, now: float) -> Verdict:
        self._refill(now)
        if tokens > self.tokens.capacity + EPS:
            return Verdict(False, "tokens", None, self.tpm, self._used(self.tokens))
        wait_r, wait_t = self.requests.wait_s(1), self.tokens.wait_s(tokens)
        if wait_r == 0 and wait_t == 0:
            self.requests.level -= 1
            self.tokens.level -= tokens
            return Verdict(True)
        if wait_r >= wait_t:
            return Verdict(False, "requests", wait_r, self.rpm, self._used(self.requests))
        return Verdict(False, "tokens", wait_t, self.tpm, self._used(self.tokens))

    @staticmethod
    def _used(bucket: TokenBucket) -> int:
        return math.ceil(bucket.capacity - bucket.level - EPS)

    def consume(self, requests: float, tokens: float, now: float) -> None:
        self._refill(now)
        self.requests.level -= requests
        self.tokens.level -= tokens

    def headroom(self, now: float) -> Headroom:
        self._refill(now)
        return Headroom(
            self.rpm,
            self.tpm,
            max(0, math.floor(self.requests.level + EPS)),
            max(0, math.floor(self.tokens.level + EPS)),
            self.requests.full_in_s(),
            self.tokens.full_in_s(),
        )


class AzureLimiter:
    def __init__(self, rpm: int, tpm: int, now: float, window_s: float = 10.0) -> None:
        self.rpm, self.tpm, self.window_s = rpm, tpm, window_s
        self.allowed_requests = rpm * window_s / 60
        self.allowed_tokens = tpm * window_s / 60
        self.origin = now
        self.window = 0
        self.used_requests = 0.0
        self.used_tokens = 0.0

    def _roll(self, now: float) -> None:
        window = math.floor((now - self.origin) / self.window_s)
        if window != self.window:
            self.window = window
            self.used_requests = self.used_tokens = 0.0

    def _ends_in_s(self, now: float) -> float:
        return max(0.0, self.origin + (self.window + 1) * self.window_s - now)

    def admit(self, tokens: int, now: float) -> Verdict:
        self._roll(now)
        if tokens > self.allowed_tokens + EPS:
            return Verdict(False, "tokens", None, self.tpm, math.ceil(self.used_tokens))
        if self.used_requests + 1 > self.allowed_requests + EPS:
            return Verdict(False, "requests", self._ends_in_s(now), self.rpm, math.ceil(self.used_requests))
        if self.used_tokens + tokens > self.allowed_tokens + EPS:
            return Verdict(False, "tokens", self._ends_in_s(now), self.tpm, math.ceil(self.used_tokens))
        self.used_requests += 1
        self.used_tokens += tokens
        return Verdict(True)

    def consume(self, requests: float, tokens: float, now: float) -> None:
        self._roll(now)
        self.used_requests += requests
        self.used_tokens += tokens

    def headroom(self, now: float) -> Headroom:
        """Limits are the per-minute quotas; remaining and reset are those of the current window."""
        self._roll(now)
        reset = self._ends_in_s(now)
        return Headroom(
            self.rpm,
            self.tpm,
            max(0, math.floor(self.allowed_requests - self.used_requests + EPS)),
            max(0, math.floor(self.allowed_tokens - self.used_tokens + EPS)),
            reset if self.used_requests > 0 else 0.0,
            reset if self.used_tokens > 0 else 0.0,
        )


def format_duration(seconds: float) -> str:
    """OpenAI's (Go's) duration format, to the millisecond, rounded up: "120ms", "1s", "8.64s", "6m0s", "1h0m0s"."""
    ms = max(0, math.ceil(seconds * 1000 - 1e-6))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "") + f"{secs}s"


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str) -> float:
    """Seconds in a duration written by `format_duration` (or by OpenAI); ValueError if it is not one."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"not a duration: {text!r}")
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


LIMIT_HEADER_STYLES = ("openai", "azure", "none")


def limit_headers(h: Headroom, style: str) -> list[tuple[str, str]]:
    """The x-ratelimit-* headers a server of this style sends with `h`.

    - "openai": x-ratelimit-{limit,remaining,reset}-{requests,tokens}, as api.openai.com does.
    - "azure": x-ratelimit-remaining-requests and -tokens only: what Azure OpenAI's chat completions send (captured
      responses in Azure/azure-rest-api-specs#26884 and EvolvingPrograms/oaib#11 carry just those two; some 429s
      add a reset-tokens header, which this emulator leaves out: its 429s carry Retry-After).
    - "none": no rate-limit headers at all (vLLM, Ollama, llama.cpp's server).
    """
    if style == "none":
        return []
    remaining = [
        ("x-ratelimit-remaining-requests", str(h.remaining_requests)),
        ("x-ratelimit-remaining-tokens", str(h.remaining_tokens)),
    ]
    if style == "azure":
        return remaining
    return [
        ("x-ratelimit-limit-requests", str(h.limit_requests)),
        ("x-ratelimit-limit-tokens", str(h.limit_tokens)),
        *remaining,
        ("x-ratelimit-reset-requests", format_duration(h.reset_requests_s)),
        ("x-ratelimit-reset-tokens", format_duration(h.reset_tokens_s)),
    ]
