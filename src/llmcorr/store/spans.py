"""A run's trace spans in the store (tracing/spans.py writes them with the engine's commits)."""

from __future__ import annotations

import json
from typing import Any

from .db import Connection, Row
from .failures import writes


def _span(row: Row) -> dict[str, Any]:
    d = dict(row)
    d.pop("_seq", None)
    d.pop("rowid", None)  # PostgreSQL's stand-in for SQLite's hidden rowid
    d["attributes"] = json.loads(d.pop("attributes_json"))
    return d


COLUMNS = (  # a span record's values, in `add_spans`' order
    "span_id", "trace_id", "parent_id", "run_id", "row_index", "kind", "name", "start_ns", "end_ns", "status", "error",
    "attributes_json",
)  # fmt: skip


class SpanStore:
    """The spans part of `Store` (store/runs.py)."""

    conn: Connection
    path: Any  # the store's location, for its errors

    @writes
    def add_spans(self, records: list[tuple[Any, ...]]) -> None:
        """Finished spans: (span_id, trace_id, parent_id, run_id, row_index, kind, name, start_ns, end_ns, status,
        error, attributes_json), in one transaction."""
        with self.conn.writing():
            # a span written again (an exporter's retry) replaces the first, and counts as a new write for
            # `spans_written_after`'s cursor
            upsert = self.conn.dialect.upsert("spans", COLUMNS, ("trace_id", "span_id"), renumber=True)
            self.conn.executemany(upsert, records)

    def spans(self, run_id: str, row_index: int | None = None, since_ns: int = 0) -> list[dict[str, Any]]:
        """A run's spans (or one row's), oldest first, attributes decoded; `since_ns` keeps those ending after it."""
        sql = "SELECT * FROM spans WHERE run_id = {?} AND end_ns > {?}"
        args: list[Any] = [run_id, since_ns]
        if row_index is not None:
            sql += " AND row_index = {?}"
            args.append(row_index)
        return [_span(r) for r in self.conn.execute(sql + " ORDER BY start_ns, end_ns", args)]

    def spans_written_after(
        self, run_id: str, cursor: int = 0, row_index: int | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """The spans stored since `cursor` (0: all of them), oldest first, and the cursor for the next call.

        For following a run as it goes: spans reach the store when their row ends, not in the order they ended, so
        a time bound could miss some; the cursor (the table's rowid, which grows with every write) cannot."""
        sql = "SELECT rowid AS _seq, * FROM spans WHERE run_id = {?} AND rowid > {?}"
        args: list[Any] = [run_id, cursor]
        if row_index is not None:
            sql += " AND row_index = {?}"
            args.append(row_index)
        out = []
        for r in self.conn.execute(sql, args):
            cursor = max(cursor, r["_seq"])
            out.append(_span(r))
        out.sort(key=lambda s: (s["start_ns"], s["end_ns"]))
        return out, cursor
