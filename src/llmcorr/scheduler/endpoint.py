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
- buckets refill continuously at the quota rate; their capacity (the opening burst) is `DEFAULT_BURST_S` seconds'
  worth, well inside any server's enforcement window (Azure enforces per 10 s);
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
from .buckets import Bucket
from .deadlines import Deadlines
from .tokens import TokenCounter, bytes_estimate, tiktoken_counter

# Opening burst: half a second of quota, never a whole minute's. A burst as large as the server's own bucket would
# meet 429s: the server's bucket starts refilling only when our first request *arrives* (after the client's
# connections open), ours when we admit it.
DEFAULT_BURST_S = 0.5
WINDOW_BURST_FRACTION = 0.02  # with fixed enforcement windows, the burst is this fraction of a window
SAFETY = 0.995  # aim a hair under the quota: the client's and the server's clocks are not the same clock
RATE_CUT = 0.85  # on a 429 episode, the rate is cut to this fraction (once per episode)
RATE_FLOOR = 0.1  # never below this fraction of the configured quota
RECOVERY_PER_OK = 0.001  # each success after an episode gives back this fraction of the quota
MAX_AUTO_CONCURRENCY = 256
CALIBRATION_WINDOW = 100  # answers the calibration averages over: an answer weighs 1/e as much 100 answers later


class Quota:
    """Buckets shared by the endpoints of one quota group."""

    def __init__(self, name: str, rpm: float | None, tpm: float | None, window_s: float | None) -> None:
        self.name = name
        self.rpm, self.tpm = rpm, tpm
        burst_s = DEFAULT_BURST_S
        self.window_factor = 1.0
        if window_s:
            # Fixed windows (Azure) count everything admitted inside each window: a burst B on top of a rate r
            # puts B + r*W into one window, so the burst is kept small and the rate lowered to make room for it.
            burst_s = min(DEFAULT_BURST_S, WINDOW_BURST_FRACTION * window_s)
            self.window_factor = 1 / (1 + burst_s / window_s)
        now = time.monotonic()
        self.factor = 1.0  # rate multiplier after 429 episodes
        base = SAFETY * self.window_factor
        self.requests = Bucket(rpm / 60 * base, max(1.0, rpm / 60 * burst_s), now=now) if rpm else None
        self.tokens = Bucket(tpm / 60 * base, max(1.0, tpm / 60 * burst_s), now=now) if tpm else None
        self.paused_until = 0.0
        self.episode_until = 0.0
        self.rate_limited = 0

    def _apply_rates(self, now: float) -> None:
        scale = SAFETY * self.window_factor * self.factor
        if self.requests and self.rpm:
            self.requests.set_rate(self.rpm / 60 * scale, now)
        if self.tokens and self.tpm:
            self.tokens.set_rate(self.tpm / 60 * scale, now)

    def admission_delay(self, tokens: float, now: float) -> float:
        """Seconds until a request charging `tokens` fits (without reserving)."""
        wait = max(0.0, self.paused_until - now)
        if self.requests:
            wait = max(wait, self.requests.wait_for(1, now))
        if self.tokens:
            wait = max(wait, self.tokens.wait_for(tokens, now))
        return wait

    def reserve(self, tokens: float, now: float) -> float:
        wait = max(0.0, self.paused_until - now)
        if self.requests:
            wait = max(wait, self.requests.reserve(1, now))
        if self.tokens:
            wait = max(wait, self.tokens.reserve(tokens, now))
        return wait

    def refund(self, tokens: float, now: float) -> None:
        """Give back a reservation the server never charged (it answered 429)."""
        if self.requests:
            self.requests.refund(1, now)
        if self.tokens:
            self.tokens.refund(tokens, now)

    def on_rate_limited(self, retry_after: float | None, now: float, in_flight_s: float) -> None:
        """Pause until Retry-After; cut the rate once per episode. An episode lasts until the requests that were
        already in flight when it began have had their answers, so their 429s do not cut the rate again."""
        self.rate_limited += 1
        pause = retry_after if retry_after is not None else 1.0
        self.paused_until = max(self.paused_until, now + pause)
        if now >= self.episode_until:
            self.factor = max(RATE_FLOOR, self.factor * RATE_CUT)
            self._apply_rates(now)
            self.episode_until = self.paused_until + max(0.2, in_flight_s)
        # nothing is banked while paused: the stream resumes at the rate, not with a burst
        for bucket in (self.requests, self.tokens):
            if bucket:
                bucket.clamp(0.0, now)
                bucket.stamp = max(bucket.stamp, self.paused_until)

    def on_success(self, now: float) -> None:
        if self.factor < 1.0 and now >= self.episode_until:
            self.factor = min(1.0, self.factor + RECOVERY_PER_OK)
            self._apply_rates(now)

    def observe_headers(
        self, info: RateLimitInfo, pending_requests: float, pending_tokens: float, now: float, age_s: float = 0.0
    ) -> None:
        """Believe the server's remaining counts, less what we sent after it counted.

        Servers report whole numbers (rounded down), so the true level may be up to one unit higher: the ceiling
        allows that unit, or every response would look like someone else's spending. A count is `age_s` old (it
        was taken when the server admitted the request); if its reset time has passed since, the server's window
        has refilled and the count is stale (Azure's fixed windows). A steady unseen spender is handled by the 429
        episodes (rate cut, slow recovery); the clamp keeps our level from running ahead.
        """
        for bucket, remaining, pending, reset_s in (
            (self.requests, info.remaining_requests, pending_requests, info.reset_requests_s),
            (self.tokens, info.remaining_tokens, pending_tokens, info.reset_tokens_s),
        ):
            if bucket is None or remaining is None or (reset_s is not None and reset_s <= age_s):
                continue
            bucket.refill(now)
            # Our level counts reservations for requests the server has not seen yet; its count does not.
            bucket.level = min(bucket.level, remaining + 1 - pending)


class Gate:
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
        self.weight = (config.tpm or 0) + (config.rpm or 0) * 1000 or 1.0
        self.counter: TokenCounter = self._counter()
        self.calibration = 1.0  # the server's prompt tokens / our raw count (1 until the first answer)
        self._server_tokens = 0.0  # discounted sums of the server's prompt tokens and of our raw counts, same answers
        self._raw_tokens = 0.0
        self.latency_s = 1.0  # EMA of request latency
        self.gate = Gate(self._concurrency())
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

    def _concurrency(self) -> int:
        """Little's law: rate x latency, with headroom; capped by max_concurrency."""
        cap = self.config.max_concurrency or (
            self.provider.max_concurrency if not (self.config.rpm or self.config.tpm) else MAX_AUTO_CONCURRENCY
        )
        if self.config.rpm:
            need = math.ceil(self.config.rpm / 60 * self.latency_s * 1.5) + 2
        elif self.config.tpm:
            need = math.ceil(self.config.tpm / 60 / 200 * self.latency_s * 1.5) + 2  # ~200 tokens a request
        else:
            need = cap
        return max(1, min(cap, need))

    def estimate_prompt(self, raw_prompt: int) -> int:
        """The prompt tokens the server will count for a prompt we count `raw_prompt`."""
        return math.ceil(raw_prompt * self.calibration)

    def charge(self, raw_prompt: int, max_tokens: int) -> int:
        """A request's token charge if it were admitted now (0 where the quota counts no tokens)."""
        return self.estimate_prompt(raw_prompt) + max_tokens if self.quota.tokens is not None else 0

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
        """Whether a try may start here now: fewer than `gate.limit` tries in flight, not counting stalled ones,
        up to twice the limit in all. A `max_concurrency` the user set is never passed (a server's parallelism is
        kept exactly: there a stalled try holds its slot until its deadline cuts it)."""
        active, limit = self.gate.active, self.gate.limit
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

    def done(self, seq: int) -> None:
        """Try `seq` has left its slot, however it ended."""
        self._flights.pop(seq, None)

    def _finished(self, seq: int) -> tuple[float, float]:
        """Forget request `seq`; return (requests, tokens) sent after it that are still in flight."""
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
            self.quota.observe_headers(completion.ratelimit, later_requests, later_tokens, now, age_s=latency_s)
        self.quota.on_success(now)
        self.gate.limit = self._concurrency()

    def on_rate_limited(self, seq: int, charge: float, retry_after: float | None) -> None:
        self._finished(seq)
        now = time.monotonic()
        self.stats.rate_limited += 1
        self.quota.refund(charge, now)
        jitter = random.uniform(0, 0.25) * (retry_after or 1.0)
        self.quota.on_rate_limited((retry_after if retry_after is not None else 1.0) + jitter, now, self.latency_s)

    def on_error(self, seq: int, input_tokens: int = 0, output_tokens: int = 0) -> None:
        """A try that failed; the tokens a server billed for it anyway (an empty answer) count in the usage."""
        self._finished(seq)
        self.stats.errors += 1
        self.stats.input_tokens += input_tokens
        self.stats.output_tokens += output_tokens

    def cost(self) -> float | None:
        return self.config.cost(self.stats.input_tokens, self.stats.output_tokens)
