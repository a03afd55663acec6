"""What the store hands out: a run's record and a row's. Plain data: no connection, no SQL."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .db import Row


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def parse_utc(stamp: str) -> datetime:
    """A stored timestamp as an aware UTC datetime (stores written before timestamps carried "+00:00" hold naive
    ones, which were UTC too)."""
    when = datetime.fromisoformat(stamp)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RunRecord:
    id: str
    name: str | None
    kind: str
    status: str
    spec: dict[str, Any]
    created_utc: str
    finished_utc: str | None
    rows_total: int
    rows_done: int
    rows_failed: int
    input_tokens: int
    output_tokens: int
    metrics: dict[str, Any] | None
    error: str | None
    rate_limited: int = 0  # 429s, summed over every process that worked on the run
    usage: dict[str, Any] | None = None  # per endpoint, summed over those processes (store/segments.py)
    estimate: dict[str, Any] | None = None
    tags: list[str] = field(default_factory=list)
    archived: bool = False
    output_path: str | None = None
    busy_s: float | None = None  # time those processes spent on the run, up to `active_utc` (None: unknown)
    active_utc: str | None = None  # when a process last worked on it (committed rows, recorded usage, finished)

    @property
    def label(self) -> str:
        return self.name or self.id

    @classmethod
    def from_row(cls, row: Row) -> RunRecord:
        return cls(
            id=row["id"],
            name=row["name"],
            kind=row["kind"],
            status=row["status"],
            spec=json.loads(row["spec_json"]),
            created_utc=row["created_utc"],
            finished_utc=row["finished_utc"],
            rows_total=row["rows_total"],
            rows_done=row["rows_done"],
            rows_failed=row["rows_failed"],
            input_tokens=row["input_tokens"],
            output_tokens=row["output_tokens"],
            metrics=json.loads(row["metrics_json"]) if row["metrics_json"] else None,
            error=row["error"],
            rate_limited=row["rate_limited"],
            usage=json.loads(row["usage_json"]) if row["usage_json"] else None,
            estimate=json.loads(row["estimate_json"]) if row["estimate_json"] else None,
            tags=json.loads(row["tags_json"]),
            archived=bool(row["archived"]),
            output_path=row["output_path"],
            busy_s=row["busy_ms"] / 1000 if row["busy_ms"] is not None else None,
            active_utc=row["active_utc"],
        )


NOT_SENT = "not sent"  # a row recorded with nothing sent (`not sent (gate)`): a resume decides it again


@dataclass(frozen=True)
class RowRecord:
    """One processed row: what the engine commits as soon as the row finishes, and what the store hands back
    (`Store.rows`, `Store.iter_rows`), the same type both ways.

    A read of some columns only (`iter_rows(run_id, "status")`) gives records whose unread fields hold the defaults
    below, not what the store keeps: `status` "" (read it to rely on it), `inputs` {}, `output` None, counts 0."""

    row_index: int
    sample_id: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    status: str = ""  # ok | unparsed | error | not sent (…) ("" only on a read that left the column out)
    prompt: list[dict[str, str]] | None = None
    response: str | None = None
    output: dict[str, Any] | None = None
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    duration_ms: float | None = None
    attempts: int = 0
    endpoint: str | None = None
    cached: bool = False  # answered from the response cache: no tokens spent
    response_key: str | None = None  # the response cache's key holding `response`: the store keeps the text there
