"""The quota server's counters, per-second time series and capped request log, and the utilization arithmetic a
benchmark runs on them. Times are seconds since the server started (or was last reset)."""

from __future__ import annotations

import math
from collections import Counter, deque
from typing import Any

from bench.quota_shapes import SHAPES

FAULTS = ("error_5xx", "reset", "timeout", "malformed", "empty_choices", *SHAPES)
_SERIES = ("admitted", "charged", "rate_limited", "hidden_requests", "hidden_tokens")


class Stats:
    def __init__(self, origin: float, started_at: float, log_limit: int) -> None:
        self.origin = origin  # time.monotonic() at start
        self.started_at = started_at  # time.time() at start
        self.counts: Counter[str] = Counter()
        self.first_admitted: float | None = None
        self.last_admitted: float | None = None
        self.hidden_requests = 0.0
        self.hidden_tokens = 0.0
        self.series: dict[int, list[float]] = {}
        self.log: deque[dict[str, Any]] = deque(maxlen=log_limit)
        self.logged = 0

    def _bucket(self, t: float) -> list[float]:
        return self.series.setdefault(int(t), [0.0] * len(_SERIES))

    def admitted(self, now: float, prompt_tokens: int, charged: int) -> None:
        t = now - self.origin
        self.counts["admitted"] += 1
        self.counts["prompt_tokens_admitted"] += prompt_tokens
        self.counts["tokens_charged"] += charged
        if self.first_admitted is None:
            self.first_admitted = t
        self.last_admitted = t
        bucket = self._bucket(t)
        bucket[0] += 1
        bucket[1] += charged

    def rate_limited(self, now: float, kind: str) -> None:
        self.counts[f"rate_limited_{kind}"] += 1
        self._bucket(now - self.origin)[2] += 1

    def hidden(self, now: float, requests: float, tokens: float) -> None:
        self.hidden_requests += requests
        self.hidden_tokens += tokens
        bucket = self._bucket(now - self.origin)
        bucket[3] += requests
        bucket[4] += tokens

    def record(self, now: float, status: int, outcome: str, request_id: str | None, **tokens: int) -> dict[str, Any]:
        """One request log entry: t, status, outcome, request_id, prompt_tokens, max_tokens, charged; returned, for
        the caller to add to."""
        self.logged += 1
        entry: dict[str, Any] = {"t": round(now - self.origin, 6), "status": status, "outcome": outcome}
        entry.update({"prompt_tokens": 0, "max_tokens": 0, "charged": 0, **tokens, "request_id": request_id})
        self.log.append(entry)
        return entry

    def snapshot(self, now: float, include_log: bool = False) -> dict[str, Any]:
        c = self.counts
        last = max(self.series, default=-1)
        series = [
            {"second": s, **dict(zip(_SERIES, self.series.get(s, [0.0] * len(_SERIES)), strict=True))}
            for s in range(last + 1)
        ]
        limited = {k: c[f"rate_limited_{k}"] for k in ("requests", "tokens", "too_large")}
        snap: dict[str, Any] = {
            "started_at": self.started_at,
            "uptime_s": now - self.origin,
            **{k: c[k] for k in ("connections", "received", "admitted", "ok")},
            "rate_limited": limited,
            "rate_limited_total": sum(limited.values()),
            **{
                k: c[k]
                for k in ("insufficient_quota", "unauthorized", "bad_request", "not_found", "errors_5xx", "rejected")
            },
            "faults": {k: c[f"fault_{k}"] for k in FAULTS},
            **{k: c[k] for k in ("prompt_tokens_admitted", "completion_tokens_served", "tokens_charged")},
            "first_admitted_s": self.first_admitted,
            "last_admitted_s": self.last_admitted,
            "hidden": {"requests": self.hidden_requests, "tokens": self.hidden_tokens},
            "series": series,
            "log_size": len(self.log),
            "log_dropped": self.logged - len(self.log),
        }
        if include_log:
            snap["log"] = list(self.log)
        return snap


def utilization(stats: dict[str, Any], start_s: float | None = None, end_s: float | None = None) -> dict[str, Any]:
    """Share of each minute quota the visible client was admitted over whole seconds [start_s, end_s) of a
    `stats()` snapshot (which must carry "rpm" and "tpm"). Defaults: from the first admitted second to the last
    complete second. Exclude the opening burst of a full bucket (or run with start_full=False) to measure the steady
    state. "of_available" divides by what the hidden client leaves over."""
    first = stats["first_admitted_s"]
    start = math.floor(start_s if start_s is not None else (first or 0.0))
    end = math.floor(end_s if end_s is not None else stats["uptime_s"])
    window = [row for row in stats["series"] if start <= row["second"] < end]
    duration = max(end - start, 1)
    requests = sum(row["admitted"] for row in window) / (stats["rpm"] * duration / 60)
    tokens = sum(row["charged"] for row in window) / (stats["tpm"] * duration / 60)
    binding = "requests" if requests >= tokens else "tokens"
    best = max(requests, tokens)
    available = 1.0 - stats.get("hidden_client_fraction", 0.0)
    return {
        "start_s": start,
        "end_s": end,
        "requests": requests,
        "tokens": tokens,
        "binding": binding,
        "utilization": best,
        "of_available": best / available,
        "rate_limited": sum(row["rate_limited"] for row in window),
    }
