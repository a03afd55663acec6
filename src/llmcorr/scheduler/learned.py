"""Quotas learned from the server: what an endpoint's answers say about its limits, for quotas left out of the config
(most users do not know their RPM/TPM: OpenAI's tiers change, Azure deployments differ) and for configured ones the
server contradicts.

- `x-ratelimit-limit-requests/-tokens` (OpenAI) set the quota from the first answer on, and follow the server when
  its limits change. A configured quota above the server's is a typo or an old tier: the server is believed, and
  one warning line says so (logger "llmcorr.scheduler", once per endpoint); one below it is kept (the user's share),
  and so is a limit left out of a quota configured in part (rpm alone: no tpm is learned).
- With fixed enforcement windows (Azure, `window_s`), `x-ratelimit-reset-*` show where the server's windows end;
  the quota then fills each window exactly (scheduler/windows.py). Where only `x-ratelimit-remaining-*` arrive
  (Azure's own answers), the window's allowance is estimated from them: a request's remaining count plus its own
  charge is at most the allowance, and exactly it for the first request of a window; and the windows' boundaries
  are found where the remaining counts jump up between two sends (scheduler/windows.py `RemainingJumps`), each
  window then filled to its allowance with the uncertainty of the boundary counted on both sides of it.
- With no limits to learn (vLLM, Ollama, llama.cpp, or a gateway that strips the headers), concurrency follows
  latency as before; if 429s arrive, `ConcurrencyAimd` cuts the endpoint's concurrency once per 429 episode and
  gives one slot back per `AIMD_STEP_S` seconds (per unit of time, not per success: a fast server would otherwise
  win its slots back in a blink, a slow one never).

Before the first answer, an endpoint that may learn its quota sends one request, not a burst (scheduler/endpoint.py
`Endpoint.free`), for at most `PROBE_S` seconds.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from ..providers.base import RateLimitInfo
from .windows import RemainingJumps, WindowBucket

if TYPE_CHECKING:
    from .endpoint import Quota

log = logging.getLogger("llmcorr.scheduler")

PROBE_S = 2.0  # the first request goes alone for at most this long (a hung one does not hold the run)
AIMD_CUT = 0.75  # a 429 episode with no quota known cuts the concurrency to this fraction
AIMD_STEP_S = 2.0  # ... and each this many seconds after it gives one slot back

CONFIG, LEARNED, NONE = "config", "learned from headers", "none"


class Learner:
    """What one quota group's answers taught: its limits (per minute) and, with fixed windows, their alignment."""

    def __init__(self, quota: Quota) -> None:
        self.quota = quota
        self.configured = (quota.rpm, quota.tpm)
        self.server: tuple[float | None, float | None] = (None, None)  # the limits the headers state (or imply)
        self.aligned = False
        self.resets_seen = False  # reset headers align the windows; without them, the remaining counts' jumps do
        self.jumps = RemainingJumps(quota.window_s) if quota.window_s else None
        self._warned: set[str] = set()

    @property
    def source(self) -> str:
        """Where the quota in force came from: "config", "learned from headers" or "none"."""
        rpm, tpm = self.configured
        if self.server != (None, None) and (self.quota.rpm, self.quota.tpm) != (rpm, tpm):
            return LEARNED
        return CONFIG if rpm or tpm else NONE

    def observe(self, info: RateLimitInfo, charge: float, sent: float, now: float, endpoint: str) -> None:
        """Learn from the headers of one answer to a request charged `charge` tokens and sent at `sent`."""
        stated = bool(info.limit_requests or info.limit_tokens)
        server = self._limits(info, charge)
        if server != self.server and server != (None, None):
            self.server = server
            self._apply(endpoint, now, stated)
        if self.quota.window_s:
            self._align(info, sent, now)

    def _limits(self, info: RateLimitInfo, charge: float) -> tuple[float | None, float | None]:
        rpm, tpm = self.server
        if info.limit_requests or info.limit_tokens:
            return info.limit_requests or rpm, info.limit_tokens or tpm
        window = self.quota.window_s
        if not window or (info.remaining_requests is None and info.remaining_tokens is None):
            return rpm, tpm
        # remaining-only (Azure): the window's allowance is at least this request's remaining count plus its charge
        per_min = 60 / window
        if info.remaining_requests is not None:
            rpm = max(rpm or 0.0, (info.remaining_requests + 1) * per_min)
        if info.remaining_tokens is not None and charge > 0:
            tpm = max(tpm or 0.0, (info.remaining_tokens + charge) * per_min)
        return rpm, tpm

    def _apply(self, endpoint: str, now: float, stated: bool) -> None:
        """Set the quota from the server's limits: `stated` ones (limit headers) override a higher configured
        quota; estimated ones (a lower bound) only stand in for a quota left out of the config."""
        limits: list[float | None] = []
        partial = any(self.configured)  # a quota configured in part is kept as configured, except where too high
        for what, configured, server in zip(("rpm", "tpm"), self.configured, self.server, strict=True):
            if (configured and not stated) or (partial and not configured):
                limits.append(configured)
                continue
            if configured and server and configured > server and endpoint not in self._warned:
                self._warned.add(endpoint)
                log.warning(
                    "%s: the configured %s %g is above the server's limit %g (x-ratelimit-limit-*): using the server's",
                    endpoint,
                    what,
                    configured,
                    server,
                )
            limits.append(min(configured, server) if configured and server else configured or server)
        self.quota.set_limits(limits[0], limits[1], now)

    def _align(self, info: RateLimitInfo, sent: float, now: float) -> None:
        resets = [r for r in (info.reset_requests_s, info.reset_tokens_s) if r is not None and r > 0]
        self.resets_seen = self.resets_seen or bool(resets)
        if not resets:
            if not self.resets_seen:
                self._align_from_jumps(info, sent, now)
            return
        end = sent + min(resets)
        if not self.aligned:
            self.aligned = True
            self.quota.use_windows(end, now)
            return
        for bucket in (self.quota.requests, self.quota.tokens):
            if isinstance(bucket, WindowBucket):
                bucket.align(end)

    def _align_from_jumps(self, info: RateLimitInfo, sent: float, now: float) -> None:
        jumps, quota = self.jumps, self.quota
        if jumps is None or not quota.window_s:
            return
        per_window = quota.window_s / 60
        allowances = ((quota.rpm or 0.0) * per_window, (quota.tpm or 0.0) * per_window)
        if not jumps.observe(sent, info.remaining_requests, info.remaining_tokens, allowances) or jumps.hi is None:
            return
        if not self.aligned:
            self.aligned = True
            quota.use_windows(jumps.hi, now, jumps.uncertain_s)
            return
        for bucket in (quota.requests, quota.tokens):
            if isinstance(bucket, WindowBucket):
                bucket.realign(jumps.hi, jumps.uncertain_s, now)


class ConcurrencyAimd:
    """An endpoint's concurrency after 429s where no quota is known: cut once per episode, one slot back per
    `AIMD_STEP_S` seconds since."""

    def __init__(self) -> None:
        self.limit: float | None = None  # None: never cut
        self.cut_at = 0.0

    def cut(self, current: int, now: float) -> None:
        self.limit = max(1.0, math.floor(min(current, self.allowed(now) or current) * AIMD_CUT))
        self.cut_at = now

    def allowed(self, now: float) -> int | None:
        """The concurrency allowed now; None when no 429 has cut it."""
        if self.limit is None:
            return None
        return max(1, math.floor(self.limit + max(0.0, now - self.cut_at) / AIMD_STEP_S))
