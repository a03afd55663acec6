"""A run's segments: the stretches of work processes did on it, each with its own usage.

One process works on a run at a time: the one that created it, then one per resume. Each opens a segment (pid,
host, when it started) and records in it, in the same transaction as each commit of rows (and at least about once a
second while it waits), its own per-endpoint usage so far and the time (`active_utc`). A killed process's segment
keeps what it last recorded. The run's `usage_json`, `rate_limited`, `busy_ms` and `active_utc` are rewritten from
its segments with every such write, so every reader reads one value that accumulates across processes:

    usage     per endpoint, the counts (requests, ok, 429s, errors, tokens) and the cost summed over segments
    busy_ms   the sum of the segments' durations (started → last active): the time processes spent on the run
    span      created_utc → active_utc: first start to last activity, pauses between processes included

The functions here run inside the caller's transaction (store/runs.py takes the write lock).
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from typing import TYPE_CHECKING, Any

from .dialect import insert
from .records import parse_utc

if TYPE_CHECKING:
    from .db import Connection

COUNTS = ("requests", "ok", "rate_limited", "errors", "input_tokens", "output_tokens")
RATES = ("requests_per_min", "tokens_per_min")  # a process's own pace: recomputed over the run's busy time


def own_usage(usage: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A process's per-endpoint usage as a segment keeps it: the counts, the cost and the endpoint's settings
    (rpm, tpm); its rates, which belong to that process's clock, are left out."""
    return {name: {k: v for k, v in u.items() if k not in RATES} for name, u in usage.items()}


def counts(usage: dict[str, Any] | None) -> dict[str, tuple[int, ...]]:
    """What changes as requests are made: to tell whether a usage snapshot says anything new."""
    return {name: tuple(int(u.get(k) or 0) for k in COUNTS) for name, u in (usage or {}).items()}


def total(usages: list[dict[str, Any]], busy_s: float) -> dict[str, dict[str, Any]] | None:
    """Per-endpoint usage summed over segments (None when none recorded any): counts and cost added up, the
    latest settings kept, rates per minute of busy time."""
    if not usages:
        return None
    out: dict[str, dict[str, Any]] = {}
    for usage in usages:
        for name, u in usage.items():
            into = out.setdefault(name, {k: 0 for k in COUNTS} | {"cost": None})
            for key, value in u.items():
                if key in COUNTS:
                    into[key] += int(value or 0)
                elif key == "cost":
                    into[key] = value if into[key] is None else into[key] + (value or 0.0)
                elif key not in RATES:
                    into[key] = value
    minutes = busy_s / 60
    for u in out.values():
        u["requests_per_min"] = round(u["ok"] / minutes, 1) if minutes > 0 else 0.0
        u["tokens_per_min"] = round((u["input_tokens"] + u["output_tokens"]) / minutes, 1) if minutes > 0 else 0.0
    return out


def open_segment(conn: Connection, run_id: str, now: str) -> str:
    """This process starts working on `run_id` (creating or resuming it); returns the segment's id."""
    segment = uuid.uuid4().hex[:16]
    columns = ("id", "run_id", "pid", "host", "started_utc", "active_utc")
    conn.execute(insert("run_segments", columns), (segment, run_id, os.getpid(), socket.gethostname(), now, now))
    refresh(conn, run_id)
    return segment


def record(conn: Connection, segment: str, run_id: str, now: str, usage: dict[str, Any] | None) -> None:
    """The segment is active at `now`, with this usage so far (None: the usage it recorded last stands); the run's
    totals follow."""
    if usage is None:
        conn.execute("UPDATE run_segments SET active_utc = {?} WHERE id = {?}", (now, segment))
    else:
        conn.execute(
            "UPDATE run_segments SET active_utc = {?}, usage_json = {?} WHERE id = {?}",
            (now, json.dumps(own_usage(usage)), segment),
        )
    refresh(conn, run_id)


def refresh(conn: Connection, run_id: str) -> None:
    """Rewrite the run's usage, 429s, busy time and last activity from its segments."""
    rows = conn.execute(
        "SELECT started_utc, active_utc, usage_json FROM run_segments WHERE run_id = {?}", (run_id,)
    ).fetchall()
    if not rows:
        return
    busy_s = sum(max(0.0, (parse_utc(r["active_utc"]) - parse_utc(r["started_utc"])).total_seconds()) for r in rows)
    usage = total([json.loads(r["usage_json"]) for r in rows if r["usage_json"]], busy_s)
    active = max((r["active_utc"] for r in rows), key=parse_utc)
    conn.execute(
        "UPDATE runs SET usage_json = {?}, rate_limited = {?}, busy_ms = {?}, active_utc = {?} WHERE id = {?}",
        (
            json.dumps(usage) if usage is not None else None,
            sum(u["rate_limited"] for u in (usage or {}).values()),
            round(busy_s * 1000, 3),
            active,
            run_id,
        ),
    )


def segments(conn: Connection, run_id: str) -> list[dict[str, Any]]:
    """A run's segments, oldest first: pid, host, started_utc, active_utc, usage (None if it recorded none)."""
    rows = conn.execute(
        "SELECT pid, host, started_utc, active_utc, usage_json FROM run_segments WHERE run_id = {?}", (run_id,)
    ).fetchall()
    out = [
        {
            "pid": r["pid"],
            "host": r["host"],
            "started_utc": r["started_utc"],
            "active_utc": r["active_utc"],
            "usage": json.loads(r["usage_json"]) if r["usage_json"] else None,
        }
        for r in rows
    ]
    return sorted(out, key=lambda s: parse_utc(s["started_utc"]))
