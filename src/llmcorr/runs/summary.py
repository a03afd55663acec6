"""One view of a run, computed once from its record: its wall time (busy, and first to last), cost and per-endpoint
usage. `llmcorr runs show`/`compare`, the dashboard and the report only format these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..store import RunRecord
from ..store.records import parse_utc
from .spec import shown_spec


@dataclass(frozen=True)
class WallTime:
    """How long a run took. `busy_s`: the time the processes that worked on it spent on it, summed (a killed one up
    to its last commit); `span_s`: from its creation to its last activity, the pauses between a kill or a cancel and
    the resume included. Both count to now while it runs; they differ only for a run that was resumed."""

    busy_s: float | None
    span_s: float | None

    @property
    def paused(self) -> bool:
        """Whether the span shows more than the busy time (as the two are shown, to a tenth of a second)."""
        return self.busy_s is not None and self.span_s is not None and seconds(self.busy_s) != seconds(self.span_s)

    def __str__(self) -> str:
        if self.busy_s is None:
            return "n/a"
        if self.paused:
            return f"busy {seconds(self.busy_s)} (first to last {seconds(self.span_s)})"
        return seconds(self.busy_s)


def seconds(value: float | None) -> str:
    """A duration as runs show it: 51.8 s, 3.5 min."""
    if value is None:
        return "n/a"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def wall_time(record: RunRecord, now: datetime | None = None) -> WallTime:
    """The run's busy time and first-to-last span (see `WallTime`): the one definition the CLI, the dashboard, the
    report and `compare_runs` show."""
    running = record.status == "running"
    now = now or datetime.now(UTC)
    last = record.active_utc or record.finished_utc
    end = now if running else (parse_utc(last) if last else None)
    if end is None:
        return WallTime(None, None)
    span = max(0.0, (end - parse_utc(record.created_utc)).total_seconds())
    if record.busy_s is None:  # a record from before segments: its span is all that is known
        return WallTime(round(span, 3), round(span, 3))
    busy = record.busy_s
    if running and record.active_utc:  # the live process's time since it last recorded
        busy += max(0.0, (now - parse_utc(record.active_utc)).total_seconds())
    return WallTime(round(busy, 3), round(max(span, busy), 3))


def wall_time_s(record: RunRecord) -> float | None:
    """Seconds the run's processes spent on it (`WallTime.busy_s`; to now while it runs)."""
    return wall_time(record).busy_s


def cost(record: RunRecord) -> float | None:
    """Dollars spent on endpoints with prices in llmcorr.toml, summed over every process that worked on the run
    (before a run recorded its usage: its tokens at its one endpoint's prices); None when none has a price."""
    costs = [u["cost"] for u in (record.usage or {}).values() if u.get("cost") is not None]
    if costs:
        return float(sum(costs))
    spec = shown_spec(record)
    configs = spec.options.endpoint_configs if spec is not None else []
    if len(configs) == 1 and (configs[0].get("price_in") is not None or configs[0].get("price_out") is not None):
        price_in, price_out = configs[0].get("price_in") or 0, configs[0].get("price_out") or 0
        return (record.input_tokens * price_in + record.output_tokens * price_out) / 1e6
    return None


def endpoint_usage(usage: dict[str, Any]) -> str:
    """One endpoint's recorded usage: "18 requests (16 answered), 1,234 tokens, 2 429s, $0.0012"."""
    requests, ok = int(usage.get("requests", usage.get("ok", 0)) or 0), int(usage.get("ok", 0) or 0)
    tokens = int(usage.get("input_tokens", 0) or 0) + int(usage.get("output_tokens", 0) or 0)
    text = f"{requests:,} requests" + (f" ({ok:,} answered)" if ok != requests else "")
    text += f", {tokens:,} tokens, {int(usage.get('rate_limited', 0) or 0)} 429s"
    return text + (f", ${usage['cost']:.4f}" if usage.get("cost") is not None else "")
