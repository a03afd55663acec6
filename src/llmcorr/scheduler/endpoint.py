"""One endpoint as the scheduler sees it: its quota (shared within a quota group), its concurrency, its statistics.

The client models what the server charges and never exceeds it:
- a request costs 1 from the request bucket and `prompt tokens + max_tokens` from the token bucket at admission
  (OpenAI's charge), the prompt tokens estimated as `ceil(raw x calibration)` with the calibration of that moment
  (not of the moment the request was queued); `raw` is our own count (scheduler/tokens.py);
- the calibration estimates how the server counts against our count: the ratio of the server's prompt tokens
  (`usage`) to the raw counts of the same requests, summed over about the last `CALIBRATION_WINDOW` answers with
  older ones discounted. It is a plain average of what the server said, so it cannot feed back on itself: an
  earlier design scaled each answer by the calibration at admission over the calibration now, which with a deep
  queue (hundreds of requests, tens of seconds between a charge and its answer) was a delayed multiplicative
  feedback that oscillated — charges first too high, then a burst of 429s;
- the quota is the configured one, or learned from the server's `x-ratelimit-limit-*` headers where none is
  configured (the first request goes alone, to learn it), and the server's limits win over a higher configured
  one; with no limits to learn, 429s cut the concurrency instead (scheduler/learned.py);
- buckets refill continuously at the quota rate; their capacity (the opening burst) is `DEFAULT_BURST_S` seconds'
  worth, well inside any server's enforcement window (Azure enforces per 10 s); once `x-ratelimit-reset-*` show
  where a fixed-window server's windows start, each window is filled exactly instead (scheduler/windows.py); the
  buckets themselves are scheduler/quota.py's;
- `x-ratelimit-remaining-*` headers lower our level when someone else spends the same quota (or when our charges
  were low): they correct the bucket's level only, never the calibration, which `usage` alone sets;
- a 429 pauses the whole quota group until Retry-After and cuts its rate once per episode; successes after the
  episode give the rate back slowly (additive increase, multiplicative decrease);
- a try gets a deadline learned from the endpoint's answers, and a try stalled past half of it leaves its slot to
  another request (scheduler/deadlines.py): hangs cost the time of a deadline, not the run's pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import deque
from dataclasses import dataclass, field

from ..config import EndpointConfig
from ..providers.base import Completion, Provider, RateLimitInfo
from ..providers.servers import ModelServerProvider
from .deadlines import Deadlines
from .learned import PROBE_S, ConcurrencyAimd
from .quota import DEFAULT_BURST_S, RATE_CUT, RATE_FLOOR, SAFETY, WINDOW_BURST_FRACTION, Quota
from .tokens import TokenCounter, bytes_estimate, tiktoken_counter

MAX_AUTO_CONCURRENCY = 256
CALIBRATION_WINDOW = 100  # answers the calibration averages over: an answer weighs 1/e as much 100 answers later


class Slots:
    """An endpoint's concurrency limit; the scheduler admits one request at a time, so plain counters suffice.
    `active` counts every try in flight, stalled ones included (`Endpoint.free` lets stalled ones be replaced)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.active = 0

    @property
    def free(self) -> bool:
        return self.active < self.limit


@dataclass
class EndpointStats:
    requests: int = 0
    ok: int = 0
    rate_limited: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    started: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, float]:
        elapsed_min = max(1e-9, (time.monotonic() - self.started) / 60)
        return {
            "requests": self.requests,
            "ok": self.ok,
            "rate_limited": self.rate_limited,
            "errors": self.errors,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "requests_per_min": round(self.ok / elapsed_min, 1),
            "tokens_per_min": round((self.input_tokens + self.output_tokens) / elapsed_min, 1),
        }


@dataclass
class _Flight:
    """A try in flight: when it was admitted (time.monotonic, the event loop's clock), how many earlier tries of
    its request were cut at their deadline, and its timer once the provider call has started."""

    started: float
    cuts: int = 0
    timer: asyncio.Timeout | None = None


class Endpoint:
    """A provider plus everything the scheduler knows about it."""

    def __init__(self, config: EndpointConfig, provider: Provider, quota: Quota) -> None:
        self.config = config
        self.name = config.name
        self.provider = provider
        self.quota = quota
        # a remote quota service's endpoint may learn its quota from the answers' headers; a model server on this
        # machine (vLLM, Ollama, llama.cpp) or the embedded model has none: their paths stay as they were
        self.learns = config.provider_kind.remote and not isinstance(provider, ModelServerProvider)
        self.aimd = ConcurrencyAimd()
        self._probe_sent: float | None = None  # when the first request went (scheduler/learned.py: PROBE_S)
        self._answered = False
        self.counter: TokenCounter = self._counter()
        self.calibration = 1.0  # the server's prompt tokens / our raw count (1 until the first answer)
        self._server_tokens = 0.0  # discounted sums of the server's prompt tokens and of our raw counts, same answers
        self._raw_tokens = 0.0
        self.latency_s = 1.0  # EMA of request latency
        self.slots = Slots(self._concurrency())
        self.stats = EndpointStats()
        # a request over the network can hang and be cut; an in-process model's cannot
        self.deadlines = Deadlines(config.timeout_s, adaptive=config.provider_kind.remote)
        self._sent: deque[tuple[int, float]] = deque()  # (sequence, charged tokens) of requests in flight
        self._flights: dict[int, _Flight] = {}  # the tries in flight by sequence, oldest first
        self._seq = 0
        self.exhausted: Exception | None = None  # a daily / billing quota error: nothing more is sent here

    def _counter(self) -> TokenCounter:
        own = self.provider.count_tokens
        if not self.config.provider_kind.remote:  # an in-process model counts with its own tokenizer
            return lambda text: own(text) or bytes_estimate(text)
        return tiktoken_counter()

    @property
    def weight(self) -> float:
        """The endpoint's share of work where delays tie: its quota (configured, else learned)."""
        rpm, tpm = self.config.rpm or self.quota.rpm, self.config.tpm or self.quota.tpm
        return (tpm or 0) + (rpm or 0) * 1000 or 1.0

    @property
    def quota_source(self) -> str:
        """Where the endpoint's quota came from: "config", "learned from headers" or "none"."""
        return self.quota.learner.source

    def _concurrency(self, now: float | None = None) -> int:
        """Little's law: rate x latency, with headroom; capped by max_concurrency (and cut after 429s where no
        quota is known: scheduler/learned.py)."""
        rpm, tpm = self.quota.rpm, self.quota.tpm  # configured or learned
        cap = self.config.max_concurrency or (
            self.provider.max_concurrency if not (rpm or tpm) else MAX_AUTO_CONCURRENCY
        )
        if rpm:
            need = math.ceil(rpm / 60 * self.latency_s * 1.5) + 2
        elif tpm:
            need = math.ceil(tpm / 60 / 200 * self.latency_s * 1.5) + 2  # ~200 tokens a request
        else:
            need = cap
        allowed = self.aimd.allowed(time.monotonic() if now is None else now)
        return max(1, min(cap, need, allowed or need))

    def estimate_prompt(self, raw_prompt: int) -> int:
        """The prompt tokens the server will count for a prompt we count `raw_prompt`."""
        return math.ceil(raw_prompt * self.calibration)

    def charge(self, raw_prompt: int, max_tokens: int) -> int:
        """A request's token charge if it were admitted now (0 where the quota counts no tokens, nor may learn to)."""
        counts = self.quota.tokens is not None or self.learns
        return self.estimate_prompt(raw_prompt) + max_tokens if counts else 0

    def calibrate(self, raw_prompt: int, server_prompt: int) -> None:
        """Learn from one answer: the server counted `server_prompt` for a prompt we count `raw_prompt`."""
        if raw_prompt <= 0 or server_prompt <= 0:
            return
        keep = 1 - 1 / CALIBRATION_WINDOW
        self._server_tokens = keep * self._server_tokens + server_prompt
        self._raw_tokens = keep * self._raw_tokens + raw_prompt
        self.calibration = self._server_tokens / self._raw_tokens

    async def acquire(self, charge: float, now: float) -> int:
        """Reserve `charge` on the quota and number the request. Here the reservation is immediate (the scheduler
        only calls this when the quota admits it); a quota kept by another process (scheduler/remote.py) is
        waited for."""
        self.quota.reserve(charge, now)
        return self.admitted(charge)

    def admitted(self, charge: float) -> int:
        if self._probe_sent is None:
            self._probe_sent = time.monotonic()
        self._seq += 1
        self._sent.append((self._seq, charge))
        self._flights[self._seq] = _Flight(time.monotonic())
        self.stats.requests += 1
        return self._seq

    def stalled(self, now: float) -> int:
        """Tries in flight for longer than half the deadline (scheduler/deadlines.py)."""
        after = self.deadlines.stall_after()
        if after is None:
            return 0
        count = 0
        for flight in self._flights.values():  # oldest first: stop at the first one still within its time
            if now - flight.started <= after:
                break
            count += 1
        return count

    def free(self, now: float) -> bool:
        """Whether a try may start here now: fewer than `slots.limit` tries in flight, not counting stalled ones,
        up to twice the limit in all. A `max_concurrency` the user set is never passed (a server's parallelism is
        kept exactly: there a stalled try holds its slot until its deadline cuts it). An endpoint that may learn
        its quota sends one request, not a burst, until its first answer (at most `PROBE_S`)."""
        active, limit = self.slots.active, self.slots.limit
        if self.probing(now):
            return active == 0
        if active < limit:
            return True
        ceiling = min(2 * limit, self.config.max_concurrency or 2 * limit)
        return active < ceiling and active - self.stalled(now) < limit

    def deadline(self, seq: int, cuts: int) -> asyncio.Timeout:
        """The timer of try `seq` (to enter around the provider call), `cuts` earlier tries having been cut."""
        flight = self._flights[seq]
        limit = self.deadlines.for_try(cuts)
        flight.cuts = cuts
        flight.timer = asyncio.timeout_at(None if limit is None else flight.started + limit)
        return flight.timer

    def _retime(self) -> None:
        """The deadline was learned or moved: every try in flight gets it, counted from its own start."""
        for flight in self._flights.values():
            if flight.timer is not None:
                limit = self.deadlines.for_try(flight.cuts)
                with contextlib.suppress(RuntimeError):  # a timer already expiring or left needs nothing
                    flight.timer.reschedule(None if limit is None else flight.started + limit)

    def probing(self, now: float) -> bool:
        """Whether only one request may be in flight: no quota known yet, and no answer to learn one from."""
        if not self.learns or self._answered or self.quota.rpm or self.quota.tpm:
            return False
        return self._probe_sent is None or now - self._probe_sent < PROBE_S

    def done(self, seq: int) -> None:
        """Try `seq` has left its slot, however it ended."""
        self._flights.pop(seq, None)

    def _finished(self, seq: int) -> tuple[float, float]:
        """Forget request `seq`; return (requests, tokens) sent after it that are still in flight."""
        self._answered = True
        later_requests = later_tokens = 0.0
        for s, charge in self._sent:
            if s > seq:
                later_requests += 1
                later_tokens += charge
        self._sent = deque((s, c) for s, c in self._sent if s != seq)
        self._flights.pop(seq, None)
        return later_requests, later_tokens

    def on_success(self, seq: int, completion: Completion, raw_prompt: int, latency_s: float) -> None:
        """Request `seq` was answered; `raw_prompt` is our raw count of its prompt (0: do not calibrate)."""
        charge = next((c for s, c in self._sent if s == seq), 0.0)
        later_requests, later_tokens = self._finished(seq)
        now = time.monotonic()
        self.stats.ok += 1
        self.stats.input_tokens += completion.input_tokens
        self.stats.output_tokens += completion.output_tokens
        self.calibrate(raw_prompt, completion.input_tokens)
        self.latency_s = 0.8 * self.latency_s + 0.2 * latency_s
        if self.deadlines.observe(latency_s):
            self._retime()
        if completion.ratelimit is not None:
            self.quota.learner.observe(completion.ratelimit, charge, now - latency_s, now, self.name)
            self.quota.observe_headers(completion.ratelimit, later_requests, later_tokens, now, age_s=latency_s)
        self.quota.on_success(now)
        self.slots.limit = self._concurrency(now)

    def on_rate_limited(
        self, seq: int, charge: float, retry_after: float | None, ratelimit: RateLimitInfo | None = None
    ) -> None:
        """Request `seq` was refused (429). Its `x-ratelimit-limit-*` headers state the server's limits as well as
        an answer's do, and are learned from alike (a refusal's remaining counts, spent by design, are not)."""
        self._finished(seq)
        now = time.monotonic()
        if ratelimit is not None and (ratelimit.limit_requests or ratelimit.limit_tokens):
            stated = RateLimitInfo(limit_requests=ratelimit.limit_requests, limit_tokens=ratelimit.limit_tokens)
            self.quota.learner.observe(stated, charge, now, now, self.name)
        self.stats.rate_limited += 1
        self.quota.refund(charge, now)
        jitter = random.uniform(0, 0.25) * (retry_after or 1.0)
        episode = now >= self.quota.episode_until
        self.quota.on_rate_limited((retry_after if retry_after is not None else 1.0) + jitter, now, self.latency_s)
        if episode and self.learns and self.quota.requests is None and self.quota.tokens is None:
            self.aimd.cut(self.slots.limit, now)  # no quota to slow down: fewer requests in flight instead
            self.slots.limit = self._concurrency(now)

    def on_error(self, seq: int, input_tokens: int = 0, output_tokens: int = 0) -> None:
        """A try that failed; the tokens a server billed for it anyway (an empty answer) count in the usage."""
        self._finished(seq)
        self.stats.errors += 1
        self.stats.input_tokens += input_tokens
        self.stats.output_tokens += output_tokens

    def cost(self) -> float | None:
        return self.config.cost(self.stats.input_tokens, self.stats.output_tokens)


__all__ = [
    "CALIBRATION_WINDOW",
    "DEFAULT_BURST_S",
    "MAX_AUTO_CONCURRENCY",
    "RATE_CUT",
    "RATE_FLOOR",
    "SAFETY",
    "WINDOW_BURST_FRACTION",
    "Endpoint",
    "EndpointStats",
    "Quota",
    "Slots",
]
