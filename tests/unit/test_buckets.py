"""Quota arithmetic with explicit clocks: refill, reservations (debt), refunds, clamps, 429 episodes, headers."""

from __future__ import annotations

import pytest

from llmcorr.providers.base import RateLimitInfo
from llmcorr.scheduler.buckets import Bucket
from llmcorr.scheduler.endpoint import RATE_CUT, SAFETY, Quota


def test_refill_is_continuous_and_capped() -> None:
    b = Bucket(rate=10, capacity=20, level=0, now=0)
    assert b.refill(0.5) == pytest.approx(5)
    assert b.refill(10) == 20  # capped
    assert b.wait_for(25, 10) == 0  # more than capacity waits only for a full bucket


def test_reservations_queue_in_order_without_starvation() -> None:
    b = Bucket(rate=10, capacity=10, level=10, now=0)
    assert b.reserve(10, 0) == 0  # the whole burst, at once
    big = b.reserve(10, 0)  # a large request waits a full refill …
    small = b.reserve(1, 0)  # … and a small one behind it waits only a little longer, not forever
    assert big == pytest.approx(1.0) and small == pytest.approx(1.1)
    assert b.reserve(1, 1.1) == pytest.approx(0.1)  # debt is paid off by refill over time


def test_refund_and_clamp() -> None:
    b = Bucket(rate=1, capacity=100, level=50, now=0)
    b.reserve(30, 0)
    b.refund(30, 0)
    assert b.level == 50
    b.clamp(10, 0)
    assert b.level == 10
    b.clamp(40, 0)  # a clamp never raises the level
    assert b.level == 10


def test_quota_charges_requests_and_tokens() -> None:
    q = Quota("q", rpm=60, tpm=6000, window_s=None)  # 1 request/s, 100 tokens/s
    now = q.requests.stamp  # type: ignore[union-attr]
    burst_requests = q.requests.capacity  # type: ignore[union-attr]
    assert burst_requests == pytest.approx(1.0)  # an opening burst of a moment (at least one request), not a minute
    assert q.reserve(50, now) == 0
    wait = q.reserve(50, now)  # second request: the request bucket binds (1/s)
    assert wait == pytest.approx(1 / SAFETY, rel=1e-3)
    assert q.admission_delay(10, now) == pytest.approx(2 / SAFETY, rel=1e-3)  # requests bind: 1 in debt, 1 needed
    tokens_bound = Quota("t", rpm=6000, tpm=6000, window_s=None)  # 100 requests/s, 100 tokens/s
    start = tokens_bound.tokens.stamp  # type: ignore[union-attr]
    assert tokens_bound.reserve(80, start) == 0  # prompt + max_tokens, charged at admission
    assert tokens_bound.admission_delay(100, start) == pytest.approx((100 - 20) / (100 * SAFETY), rel=1e-3)


def test_a_429_pauses_the_group_and_cuts_the_rate_once_per_episode() -> None:
    q = Quota("q", rpm=600, tpm=None, window_s=None)
    now = q.requests.stamp  # type: ignore[union-attr]
    q.on_rate_limited(2.0, now, in_flight_s=0.5)  # the episode lasts the pause plus one round trip
    assert q.admission_delay(1, now) >= 2.0
    rate = q.requests.rate  # type: ignore[union-attr]
    assert rate == pytest.approx(10 * SAFETY * RATE_CUT)
    q.on_rate_limited(2.0, now + 2.4, in_flight_s=0.5)  # same episode (a request already in flight): no cut
    assert q.requests.rate == pytest.approx(rate)  # type: ignore[union-attr]
    q.on_rate_limited(2.0, now + 30, in_flight_s=0.5)  # a new episode later: cut again
    assert q.requests.rate == pytest.approx(rate * RATE_CUT)  # type: ignore[union-attr]
    assert q.rate_limited == 3


def test_headers_lower_our_level_to_what_the_server_has_left() -> None:
    q = Quota("q", rpm=None, tpm=60_000, window_s=None)  # 1000 tokens/s, burst 1000
    now = q.tokens.stamp  # type: ignore[union-attr]
    q.observe_headers(RateLimitInfo(remaining_tokens=500), 0, 200, now)
    assert q.tokens.level == pytest.approx(500 + 1 - 200)  # type: ignore[union-attr]
    level = q.tokens.level  # type: ignore[union-attr]
    q.observe_headers(RateLimitInfo(remaining_tokens=59_000), 0, 0, now)  # the server has more: keep ours
    assert q.tokens.level == pytest.approx(level)  # type: ignore[union-attr]


def test_a_count_older_than_its_reset_is_ignored() -> None:
    """Azure's windows: an answer that arrives after the window reset carries the old window's remainder."""
    q = Quota("q", rpm=600, tpm=None, window_s=10)
    now = q.requests.stamp  # type: ignore[union-attr]
    level = q.requests.refill(now)  # type: ignore[union-attr]
    q.observe_headers(RateLimitInfo(remaining_requests=0, reset_requests_s=0.2), 0, 0, now, age_s=0.4)
    assert q.requests.level == pytest.approx(level)  # type: ignore[union-attr]
    q.observe_headers(RateLimitInfo(remaining_requests=0, reset_requests_s=3.0), 0, 0, now, age_s=0.4)
    assert q.requests.level == pytest.approx(1)  # type: ignore[union-attr]
