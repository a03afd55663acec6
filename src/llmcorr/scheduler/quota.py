"""One quota group's buckets as the scheduler keeps them: the rates, the opening burst, fixed windows, 429 episodes
and the server's remaining counts (the rules are in scheduler/endpoint.py's module docstring)."""

from __future__ import annotations

import time

from ..providers.base import RateLimitInfo
from .buckets import Bucket
from .learned import Learner
from .windows import WindowBucket

# Opening burst: half a second of quota, never a whole minute's. A burst as large as the server's own bucket would
# meet 429s: the server's bucket starts refilling only when our first request *arrives* (after the client's
# connections open), ours when we admit it.
DEFAULT_BURST_S = 0.5
WINDOW_BURST_FRACTION = 0.02  # with fixed enforcement windows, the burst is this fraction of a window
SAFETY = 0.995  # aim a hair under the quota: the client's and the server's clocks are not the same clock
RATE_CUT = 0.85  # on a 429 episode, the rate is cut to this fraction (once per episode)
RATE_FLOOR = 0.1  # never below this fraction of the configured quota
RECOVERY_PER_OK = 0.001  # each success after an episode gives back this fraction of the quota


class Quota:
    """Buckets shared by the endpoints of one quota group."""

    def __init__(self, name: str, rpm: float | None, tpm: float | None, window_s: float | None) -> None:
        self.name = name
        self.rpm, self.tpm = rpm, tpm
        self.window_s = window_s
        self.burst_s = DEFAULT_BURST_S
        self.window_factor = 1.0
        if window_s:
            # Fixed windows (Azure) count everything admitted inside each window: a burst B on top of a rate r
            # puts B + r*W into one window, so the burst is kept small and the rate lowered to make room for it
            # (until the windows' alignment is known: then each window is filled exactly, scheduler/windows.py).
            self.burst_s = min(DEFAULT_BURST_S, WINDOW_BURST_FRACTION * window_s)
            self.window_factor = 1 / (1 + self.burst_s / window_s)
        self.factor = 1.0  # rate multiplier after 429 episodes
        self.requests: Bucket | WindowBucket | None = None
        self.tokens: Bucket | WindowBucket | None = None
        self.set_limits(rpm, tpm, time.monotonic())
        self.paused_until = 0.0
        self.episode_until = 0.0
        self.rate_limited = 0
        self.learner = Learner(self)

    def set_limits(self, rpm: float | None, tpm: float | None, now: float) -> None:
        """The quota in force (per minute): configured, or learned from the server (scheduler/learned.py)."""
        self.rpm, self.tpm = rpm, tpm
        self.requests = self._bucket(self.requests, rpm, now)
        self.tokens = self._bucket(self.tokens, tpm, now)

    def _bucket(
        self, bucket: Bucket | WindowBucket | None, per_min: float | None, now: float
    ) -> Bucket | WindowBucket | None:
        if not per_min:
            return None
        if isinstance(bucket, WindowBucket):  # exact windows: the allowance itself, no margin
            bucket.refill(now)
            bucket.allowance = per_min * bucket.window_s / 60 * self.factor
            return bucket
        rate = per_min / 60 * SAFETY * self.window_factor * self.factor
        capacity = max(1.0, per_min / 60 * self.burst_s)
        if bucket is None:
            return Bucket(rate, capacity, now=now)
        bucket.set_rate(rate, now)
        bucket.capacity = capacity
        bucket.level = min(bucket.level, capacity)
        return bucket

    def use_windows(self, end: float, now: float, uncertain_s: float = 0.0) -> None:
        """The server's windows end at `end` (and every `window_s` around it; perhaps up to `uncertain_s` earlier):
        fill each one exactly."""
        assert self.window_s
        for name in ("requests", "tokens"):
            bucket = getattr(self, name)
            if isinstance(bucket, Bucket):
                setattr(self, name, WindowBucket(1.0, self.window_s, end, now, uncertain_s))
        self.set_limits(self.rpm, self.tpm, now)

    def _apply_rates(self, now: float) -> None:
        self.set_limits(self.rpm, self.tpm, now)

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
                if isinstance(bucket, Bucket):
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
            slack = 1.0
            if isinstance(bucket, WindowBucket):  # a count of an earlier window says nothing of this one's
                if bucket.window_of(now - age_s) != bucket.index:
                    continue
                slack = 0.0  # our allowance is exact: the unit the count rounds off is not ours to spend
            # Our level counts reservations for requests the server has not seen yet; its count does not.
            bucket.level = min(bucket.level, remaining + slack - pending)
