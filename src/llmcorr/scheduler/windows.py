"""Fixed enforcement windows (Azure OpenAI counts its quota per 10-s window): a budget per window, aligned with the
server's windows once `x-ratelimit-reset-*` headers have shown where they start.

Without the alignment the quota is kept as a continuous bucket whose rate leaves room for a burst inside any window
(scheduler/endpoint.py: about 0.97 of the quota). With it, each window is filled exactly: a `WindowBucket` admits up
to the window's allowance from `GUARD_S` after the window's start on our clock, then nothing until the next one.

The alignment: a response's reset header says how long after the server admitted the request its window ends. The
server admitted it after we sent it, so `sent + reset` is never later than the window's true end (less the
millisecond the header rounds up): the latest such estimate, over all answers, is the closest. The estimate is
early by at most the smallest delay between our send and the server's admission, which `GUARD_S` covers. A request
sent within `TAIL_S` of a window's end may reach the server in the next window: it is counted in both.
"""

from __future__ import annotations

import math

GUARD_S = 0.05  # nothing is sent until this long after a window's estimated start
TAIL_S = 0.1  # a request sent this close to a window's end counts in the next window too
ROUNDING_S = 0.001  # reset headers are rounded up to the millisecond


class WindowBucket:
    """A fixed window's budget, with the interface of scheduler/buckets.py's Bucket (level, reserve, refund...)."""

    def __init__(self, allowance: float, window_s: float, boundary: float, now: float) -> None:
        self.allowance = allowance
        self.window_s = window_s
        self.boundary = boundary  # the end of some window of the server's, on our clock
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
        if self.start(self.index + 1) - now < TAIL_S:
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
