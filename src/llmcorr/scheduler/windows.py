"""Fixed enforcement windows (Azure OpenAI counts its quota per 10-s window): a budget per window, aligned with the
server's windows once `x-ratelimit-reset-*` headers, or the jumps of `x-ratelimit-remaining-*`, have shown where they
start.

Without the alignment the quota is kept as a continuous bucket whose rate leaves room for a burst inside any window
(scheduler/endpoint.py: about 0.97 of the quota). With it, each window is filled exactly: a `WindowBucket` admits up
to the window's allowance from `GUARD_S` after the window's start on our clock, then nothing until the next one.

The alignment: a response's reset header says how long after the server admitted the request its window ends. The
server admitted it after we sent it, so `sent + reset` is never later than the window's true end (less the
millisecond the header rounds up): the latest such estimate, over all answers, is the closest. The estimate is
early by at most the smallest delay between our send and the server's admission, which `GUARD_S` covers. A request
sent within `TAIL_S` of a window's end may reach the server in the next window: it is counted in both.

Without reset headers (Azure's own answers carry `x-ratelimit-remaining-*` only), `RemainingJumps` finds the
boundaries: a window's remaining count only falls as the server admits requests, so where it rises between two
requests (in the order we sent them) a new window began between their sends. With a steady stream of requests that
pins the boundary to within the gap between two sends, and answers over many windows narrow it further (the windows
repeat every `window_s`). The window is then taken to start at the latest time the answers allow (a request sent
after it counts in the new window), and a request sent within the uncertainty (plus `TAIL_S`) of a window's end is
counted in both windows: where the alignment is uncertain, a request may count in either window, and no window
takes more than its allowance.
"""

from __future__ import annotations

import bisect
import math

GUARD_S = 0.05  # nothing is sent until this long after a window's estimated start
TAIL_S = 0.1  # a request sent this close to a window's end counts in the next window too
ROUNDING_S = 0.001  # reset headers are rounded up to the millisecond
JUMP_FRACTION = 0.25  # a remaining count that rises by this fraction of the allowance (or more): a new window
MAX_UNCERTAIN_S_FRACTION = 0.25  # a boundary known less closely than this fraction of a window is not used


class WindowBucket:
    """A fixed window's budget, with the interface of scheduler/buckets.py's Bucket (level, reserve, refund...)."""

    def __init__(
        self, allowance: float, window_s: float, boundary: float, now: float, uncertain_s: float = 0.0
    ) -> None:
        self.allowance = allowance
        self.window_s = window_s
        self.boundary = boundary  # the end of some window of the server's, on our clock
        self.uncertain_s = uncertain_s  # ... which may be this much earlier (RemainingJumps)
        self.index = self.window_of(now)
        self.used = 0.0
        self.carry = 0.0  # sent at the end of the current window: counted in the next one too
        self.stamp = now  # (a Bucket's refill clock; unused here)

    def window_of(self, t: float) -> int:
        return math.floor((t - self.boundary) / self.window_s)

    def start(self, index: int) -> float:
        return self.boundary + index * self.window_s

    @property
    def level(self) -> float:
        return self.allowance - self.used

    @level.setter
    def level(self, value: float) -> None:
        self.used = self.allowance - value

    def refill(self, now: float) -> float:
        index = self.window_of(now)
        if index > self.index:
            self.used = self.carry if index == self.index + 1 else 0.0
            self.carry = 0.0
            self.index = index
        return self.level

    def wait_for(self, amount: float, now: float) -> float:
        self.refill(now)
        opens = self.start(self.index) + GUARD_S
        if now < opens:
            return opens - now
        if self.used + min(amount, self.allowance) <= self.allowance + 1e-9:
            return 0.0
        return self.start(self.index + 1) + GUARD_S - now

    def reserve(self, amount: float, now: float) -> float:
        wait = self.wait_for(amount, now)
        self.used += amount
        if self.start(self.index + 1) - now < TAIL_S + self.uncertain_s:
            self.carry += amount
        return wait

    def refund(self, amount: float, now: float) -> None:
        self.refill(now)
        self.used = max(0.0, self.used - amount)

    def clamp(self, ceiling: float, now: float) -> None:
        self.refill(now)
        self.level = min(self.level, ceiling)

    def align(self, end: float) -> bool:
        """Take a window end `end` seen in a reset header; True when the estimate moved (later only: see module)."""
        shift = end - self.boundary
        shift -= round(shift / self.window_s) * self.window_s  # the same end, in the window nearest ours
        if shift <= ROUNDING_S:
            return False
        self.boundary += shift
        return True

    def realign(self, boundary: float, uncertain_s: float, now: float) -> None:
        """Take a boundary found by `RemainingJumps`: the latest it may be, and how much earlier it may be."""
        self.boundary, self.uncertain_s = boundary, uncertain_s
        self.refill(now)  # a window that has ended by the new reckoning starts the next one (from its carry)


class RemainingJumps:
    """Where the server's windows start, from the remaining counts of answers without reset headers (see module).

    The estimate is an interval: a boundary lies after `lo` and no later than `hi` (plus the delay between a send
    and the server's admission, which `GUARD_S` covers); `lo` and `hi` stand for every boundary `window_s` apart.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.answers: list[tuple[float, int | None, int | None]] = []  # (sent, remaining requests, tokens) by send
        self.lo: float | None = None
        self.hi: float | None = None

    @property
    def uncertain_s(self) -> float:
        return 0.0 if self.lo is None or self.hi is None else self.hi - self.lo

    def observe(
        self, sent: float, remaining_requests: int | None, remaining_tokens: int | None, allowances: tuple[float, float]
    ) -> bool:
        """Take one answer's remaining counts (`allowances`: a window's requests and tokens, 0 where unknown);
        True when the estimate moved."""
        answer = (sent, remaining_requests, remaining_tokens)
        i = bisect.bisect(self.answers, sent, key=lambda a: a[0])
        self.answers.insert(i, answer)
        newest = self.answers[-1][0]
        drop = bisect.bisect(self.answers, newest - self.window_s, key=lambda a: a[0])
        del self.answers[:drop]
        i -= drop
        moved = False
        for p, q in ((i - 1, i), (i, i + 1)):
            if p >= 0 and q < len(self.answers) and self._jump(self.answers[p], self.answers[q], allowances):
                moved = self._narrow(self.answers[p][0], self.answers[q][0]) or moved
        return moved

    @staticmethod
    def _jump(
        before: tuple[float, int | None, int | None],
        after: tuple[float, int | None, int | None],
        allowances: tuple[float, float],
    ) -> bool:
        """Whether a window began between two sends: a count rose by a good part of its allowance (a request the
        server admitted out of our order raises it by a few units only)."""
        for earlier, later, allowance in zip(before[1:], after[1:], allowances, strict=True):
            rose = later - earlier if earlier is not None and later is not None and allowance > 0 else 0
            if rose >= max(1.0, JUMP_FRACTION * allowance):
                return True
        return False

    def _narrow(self, lo: float, hi: float) -> bool:
        """A boundary lies in (lo, hi]: keep what every answer allows (the newest, where they disagree)."""
        if hi - lo > MAX_UNCERTAIN_S_FRACTION * self.window_s:
            return False
        if self.lo is not None and self.hi is not None:
            shift = round((hi - self.hi) / self.window_s) * self.window_s  # the same boundary, nearest ours
            new_lo, new_hi = max(self.lo, lo - shift), min(self.hi, hi - shift)
            if new_hi >= new_lo - GUARD_S:  # consistent (within a send's delay to the server): narrow
                lo, hi = new_lo, max(new_hi, new_lo)
        moved = (lo, hi) != (self.lo, self.hi)
        self.lo, self.hi = lo, hi
        return moved
