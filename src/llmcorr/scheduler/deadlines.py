"""How long one try at an endpoint may take: a deadline learned from the endpoint's own answers.

A request that hangs would hold its concurrency slot until the endpoint's `timeout_s` (120 s by default), and a few
hangs filled every slot: a run crawled. So, once `MIN_ANSWERS` answers have been seen, a try gets
`max(DEADLINE_FACTOR x p99, MIN_DEADLINE_S)` — the p99 of the latencies of the last `WINDOW` answers — never more
than `timeout_s`. Before that, from the first answer on, a try gets a provisional, generous
`max(FIRST_FACTOR x the slowest answer, FIRST_MIN_S)` (or else a few hangs among the first requests would hold every
slot until `timeout_s`, before 20 answers could come); before any answer, `timeout_s` alone. Tries already in
flight when the deadline is first learned (or moves by more than `RETIME`) are re-timed from their own start.

A try cut at its deadline counts against the request's tries like any transient failure, and is retried at once (its
deadline already spaced it) with twice the deadline, so a request that is slow rather than lost still gets its
answer, at worst at `timeout_s`.

A try in flight past half the deadline is *stalled*: it keeps its slot, but no longer counts against the
endpoint's concurrency limit (scheduler/endpoint.py; up to twice the limit in all), so the other slots keep the pace
while it is waited out. A `max_concurrency` the user set is never passed: it is a server's parallelism, kept
exactly, and there a stalled try holds its slot until its deadline cuts it.

Only remote endpoints learn deadlines: the embedded model computes in this process, and cutting a try would not
stop the computation.
"""

from __future__ import annotations

import bisect
import math
from collections import deque

MIN_ANSWERS = 20  # answers seen before the deadline follows their p99
WINDOW = 200  # the p99 is taken over this many latest answers
DEADLINE_FACTOR = 3.0
MIN_DEADLINE_S = 2.0
FIRST_FACTOR = 10.0  # with fewer answers: 10x the slowest, at least 10 s
FIRST_MIN_S = 10.0
RETIME = 0.25  # tries in flight are re-timed when the deadline moves by more than this fraction


class Deadlines:
    """The deadlines of one endpoint's tries, from the latencies of its answers."""

    def __init__(self, timeout_s: float, adaptive: bool = True) -> None:
        self.timeout_s = timeout_s
        self.adaptive = adaptive
        self.answers = 0
        self._recent: deque[float] = deque(maxlen=WINDOW)
        self._ordered: list[float] = []  # the same latencies, kept sorted (not sorted anew at each answer)
        self._base: float | None = None

    @property
    def p99(self) -> float | None:
        if self.answers < MIN_ANSWERS:
            return None
        return self._ordered[math.ceil(0.99 * len(self._ordered)) - 1]

    @property
    def base(self) -> float | None:
        """A first try's deadline in seconds; None until the first answer (`timeout_s` alone bounds a try)."""
        return self._base

    def observe(self, latency_s: float) -> bool:
        """Count one answer; True when the deadline was first learned or moved enough to re-time tries in flight."""
        if not self.adaptive:
            return False
        self.answers += 1
        if len(self._recent) == WINDOW:  # the oldest leaves the window
            del self._ordered[bisect.bisect_left(self._ordered, self._recent[0])]
        self._recent.append(latency_s)
        bisect.insort(self._ordered, latency_s)
        p99 = self.p99
        old = self._base
        if p99 is None:  # a few answers: a provisional deadline, generous
            self._base = min(self.timeout_s, max(FIRST_FACTOR * self._ordered[-1], FIRST_MIN_S))
        else:
            self._base = min(self.timeout_s, max(DEADLINE_FACTOR * p99, MIN_DEADLINE_S))
        return old is None or abs(self._base - old) > RETIME * old

    def for_try(self, cuts: int) -> float | None:
        """Seconds a try may take after `cuts` earlier tries of the same request were cut at their deadline;
        None where that reaches `timeout_s` (the provider's own timeout then bounds it)."""
        if self._base is None:
            return None
        limit = self._base * 2**cuts
        return limit if limit < self.timeout_s else None

    def stall_after(self) -> float | None:
        """Seconds after which a try in flight no longer counts against the concurrency limit."""
        return None if self._base is None else self._base / 2
