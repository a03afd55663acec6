"""Every LLM request goes through here: concurrency limits and bounded retries live in this one place.

The skeleton admits requests under a per-endpoint concurrency cap and retries rate-limit and transient failures with
bounded, jittered exponential backoff (honouring Retry-After). Quota buckets (RPM/TPM) and routing across several
endpoints build on this class.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

from ..errors import RateLimitError, TransientError
from ..providers.base import Completion, GenParams, Message, Provider

log = logging.getLogger("llmcorr.scheduler")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempt counts from 1)."""
        backoff = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        wait = max(backoff, retry_after or 0.0)
        return wait * (1 + random.random() * 0.25)  # jitter so waiters do not return in lockstep


@dataclass
class Scheduled:
    """A completion plus what it took to get it."""

    completion: Completion
    attempts: int


class Scheduler:
    """Admits requests to one provider, at most `max_concurrency` at a time, retrying what is worth retrying."""

    def __init__(
        self,
        provider: Provider,
        max_concurrency: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.provider = provider
        self.max_concurrency = max(1, max_concurrency or provider.max_concurrency)
        self.retry = retry or RetryPolicy()
        self._slots = asyncio.Semaphore(self.max_concurrency)
        self.rate_limited = 0
        self.retried = 0

    async def complete(self, messages: list[Message], params: GenParams) -> Scheduled:
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._slots:
                    completion = await self.provider.complete(messages, params)
                return Scheduled(completion=completion, attempts=attempt)
            except (RateLimitError, TransientError) as exc:
                if isinstance(exc, RateLimitError):
                    self.rate_limited += 1
                if attempt >= self.retry.max_attempts:
                    raise
                self.retried += 1
                retry_after = exc.retry_after if isinstance(exc, RateLimitError) else None
                wait = self.retry.delay(attempt, retry_after)
                log.info("retrying after %.1fs (attempt %d): %s", wait, attempt, exc)
                await asyncio.sleep(wait)
