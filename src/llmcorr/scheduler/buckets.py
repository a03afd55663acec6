"""Continuous-refill buckets with reservations: the arithmetic of a quota, with no calendar-minute windows.

A bucket refills at `rate` units per second up to `capacity`. `reserve(amount)` takes the amount at once — the level
may go below zero ("debt") — and returns how long the caller must wait before the debt is paid off. Later callers
queue behind earlier reservations in arrival order, so a large request is never starved by a stream of small ones,
and small ones wait behind a large one for at most `amount / rate` seconds.
"""

from __future__ import annotations

import time


class Bucket:
    def __init__(self, rate: float, capacity: float, level: float | None = None, now: float | None = None) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("a bucket needs a positive rate and capacity")
        self.rate = rate
        self.capacity = capacity
        self.level = capacity if level is None else min(level, capacity)
        self.stamp = time.monotonic() if now is None else now

    def refill(self, now: float) -> float:
        """Bring the level up to `now`; return it."""
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now
        return self.level

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until `amount` could be taken without debt (amounts above capacity wait for a full bucket)."""
        need = min(amount, self.capacity)
        level = self.refill(now)
        return 0.0 if level >= need else (need - level) / self.rate

    def reserve(self, amount: float, now: float) -> float:
        """Take `amount` now; return the seconds until the reservation is covered (0 when it already is)."""
        wait = self.wait_for(amount, now)
        self.level -= amount
        # covered when the level, refilled over `wait`, is back to where taking `amount` was allowed
        return wait

    def refund(self, amount: float, now: float) -> None:
        """Give back part of a reservation (e.g. an over-estimate), never above capacity."""
        self.refill(now)
        self.level = min(self.capacity, self.level + amount)

    def clamp(self, ceiling: float, now: float) -> None:
        """The server says fewer units remain than we think (someone else spends the quota): believe it."""
        self.refill(now)
        self.level = min(self.level, ceiling)

    def set_rate(self, rate: float, now: float) -> None:
        self.refill(now)
        self.rate = max(rate, 1e-9)
