"""Runs and their rows in the store (a SQLite file, or PostgreSQL: see db.py). A sink: it calls nothing upward."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import NotFoundError, UserError
from .db import StoreURL, connect, dialect, store_location

ROWS_PAGE = 2000  # rows read per query when a run's rows are streamed
CACHE_BUFFER = 1024  # answers held for the next commit at most
STATUSES = ("running", "completed", "failed", "interrupted", "cancelled")
SORTS = {
    "created": "created_utc",
    "name": "lower(COALESCE(name, id))",
    "status": "status",
    "tokens": "input_tokens + output_tokens",
    "rows": "rows_done",
    "kind": "kind",
}

# a run carrying a tag (its tags_json list holds it): the one expression the two SQL dialects cannot share
TAG_IN_LIST = {
    "sqlite": "EXISTS (SELECT 1 FROM json_each(runs.tags_json) WHERE json_each.value = ?)",
    "postgresql": "runs.tags_json::jsonb @> jsonb_build_array(?::text)",
}


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


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
    rate_limited: int = 0
    usage: dict[str, Any] | None = None
    estimate: dict[str, Any] | None = None
    tags: list[str] = field(default_factory=list)
    archived: bool = False
    output_path: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.id

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RunRecord:
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
        )


@dataclass(frozen=True)
class RowRecord:
    """One processed row, committed as soon as it finishes."""

    row_index: int
    sample_id: str | None
    inputs: dict[str, Any]
    status: str  # ok | unparsed | error
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


def _span(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    d.pop("_seq", None)
    d.pop("rowid", None)  # PostgreSQL's stand-in for SQLite's hidden rowid
    d["attributes"] = json.loads(d.pop("attributes_json"))
    return d


def _like_prefix(text: str) -> str:
    """A LIKE pattern matching strings that start with `text`, its own % and _ taken literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Store:
    """The run store at `path`. Opening it marks runs whose process died as `interrupted`."""

    def __init__(self, path: Path | str | StoreURL) -> None:
        self.path = store_location(path)  # a file, or a PostgreSQL URL (which prints without its password)
        self.conn = connect(self.path)
        self._cache_pending: dict[str, tuple[Any, ...]] = {}  # answers waiting for the next commit, by key
        self._cache_hits: Counter[str] = Counter()
        self.recover_interrupted()

    def close(self) -> None:
        try:
            self.flush_cache()
        finally:
            self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs -------------------------------------------------------------------------------------------------

    def create_run(
        self,
        kind: str,
        spec: dict[str, Any],
        rows_total: int,
        name: str | None = None,
        estimate: dict[str, Any] | None = None,
    ) -> str:
        run_id = uuid.uuid4().hex[:12]
        try:
            self.conn.execute(
                "INSERT INTO runs (id, name, kind, status, spec_json, created_utc, pid, host, rows_total,"
                " estimate_json) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    name,
                    kind,
                    json.dumps(spec),
                    utc_now(),
                    os.getpid(),
                    socket.gethostname(),
                    rows_total,
                    json.dumps(estimate) if estimate is not None else None,
                ),
            )
        except sqlite3.IntegrityError:
            raise UserError(f"a run named {name!r} already exists; choose another --name") from None
        return run_id

    def check_name_free(self, name: str | None) -> None:
        """Raise before any work is done if `name` is taken."""
        if name and self.conn.execute("SELECT 1 FROM runs WHERE name = ?", (name,)).fetchone():
            raise UserError(f"a run named {name!r} already exists; choose another --name")

    def add_row(self, run_id: str, row: RowRecord) -> None:
        """Commit one finished row and the run's running totals in a single transaction."""
        self.add_rows(run_id, [row])

    def add_rows(self, run_id: str, rows: Sequence[RowRecord]) -> None:
        """Commit finished rows and the run's running totals in a single transaction (one WAL write for many)."""
        if not rows:
            return
        now = utc_now()
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany(
                "INSERT INTO rows (run_id, row_index, sample_id, inputs_json, prompt_json, response, output_json,"
                " status, error, input_tokens, output_tokens, duration_ms, attempts, endpoint, cached, created_utc)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        run_id,
                        row.row_index,
                        row.sample_id,
                        json.dumps(row.inputs, default=str),
                        json.dumps(row.prompt) if row.prompt is not None else None,
                        row.response,
                        json.dumps(row.output) if row.output is not None else None,
                        row.status,
                        row.error,
                        row.input_tokens,
                        row.output_tokens,
                        row.duration_ms,
                        row.attempts,
                        row.endpoint,
                        int(row.cached),
                        now,
                    )
                    for row in rows
                ],
            )
            self.conn.execute(
                "UPDATE runs SET rows_done = rows_done + ?, rows_failed = rows_failed + ?,"
                " input_tokens = input_tokens + ?, output_tokens = output_tokens + ? WHERE id = ?",
                (
                    len(rows),
                    sum(row.status == "error" for row in rows),
                    sum(row.input_tokens for row in rows),
                    sum(row.output_tokens for row in rows),
                    run_id,
                ),
            )
            self._write_cache()

    def finish_run(
        self,
        run_id: str,
        status: str,
        metrics: dict[str, Any] | None = None,
        error: str | None = None,
        usage: dict[str, Any] | None = None,
    ) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        self.flush_cache()
        rate_limited = sum(int(u.get("rate_limited", 0)) for u in (usage or {}).values())
        self.conn.execute(
            "UPDATE runs SET status = ?, finished_utc = ?, metrics_json = ?, error = ?, pid = NULL,"
            " usage_json = ?, rate_limited = ? WHERE id = ?",
            (
                status,
                utc_now(),
                json.dumps(metrics) if metrics is not None else None,
                error,
                json.dumps(usage) if usage is not None else None,
                rate_limited,
                run_id,
            ),
        )

    def cached_response(self, keys: list[str]) -> tuple[str, str] | None:
        """(key, response) of the first of `keys` the cache holds (answers not yet committed included); counts the
        hit."""
        for key in keys:
            pending = self._cache_pending.get(key)
            if pending is not None:
                self._cache_hits[key] += 1
                return key, pending[2]
            row = self.conn.execute("SELECT response FROM cache WHERE key = ?", (key,)).fetchone()
            if row is not None:
                self._cache_hits[key] += 1
                return key, row["response"]
        return None

    def cache_put(self, key: str, model: str, response: str, input_tokens: int, output_tokens: int) -> None:
        """Remember an answer (first writer wins: the same key always means the same request). It is committed with
        the next rows (`add_rows`), so a row and the answers it was made from reach the store together."""
        self._cache_pending.setdefault(key, (key, model, response, input_tokens, output_tokens, utc_now()))
        if len(self._cache_pending) >= CACHE_BUFFER:
            self.flush_cache()

    def flush_cache(self) -> None:
        """Commit the answers and hit counts not yet written."""
        if self._cache_pending or self._cache_hits:
            with self.conn:
                self.conn.execute("BEGIN IMMEDIATE")
                self._write_cache()

    def _write_cache(self) -> None:
        pending, self._cache_pending = self._cache_pending, {}
        hits, self._cache_hits = self._cache_hits, Counter()
        if pending:
            self.conn.executemany(
                "INSERT OR IGNORE INTO cache (key, model, response, input_tokens, output_tokens, created_utc)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                list(pending.values()),
            )
        if hits:
            self.conn.executemany("UPDATE cache SET hits = hits + ? WHERE key = ?", [(n, k) for k, n in hits.items()])

    def request_cancel(self, run_id: str) -> None:
        """Ask a running run (in any process) to stop cleanly; it notices within about a second."""
        self.conn.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ? AND status = 'running'", (run_id,))

    def cancel_requested(self, run_id: str) -> bool:
        row = self.conn.execute("SELECT cancel_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row["cancel_requested"])

    def reopen_run(self, run_id: str) -> set[int]:
        """Make a stopped run resumable: drop its failed rows (to retry them), mark it running again in this
        process, and return the indices of the rows it keeps."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            status = self.conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if status is None:
                raise NotFoundError(f"no run with id {run_id!r}")
            if status["status"] == "running":
                raise UserError(f"run {run_id} is still running; cancel it first (`llmcorr runs cancel {run_id}`)")
            self.conn.execute("DELETE FROM rows WHERE run_id = ? AND status = 'error'", (run_id,))
            totals = self.conn.execute(
                "SELECT COUNT(*) AS n, COALESCE(SUM(input_tokens), 0) AS i, COALESCE(SUM(output_tokens), 0) AS o"
                " FROM rows WHERE run_id = ?",
                (run_id,),
            ).fetchone()
            self.conn.execute(
                "UPDATE runs SET status = 'running', finished_utc = NULL, error = NULL, metrics_json = NULL,"
                " cancel_requested = 0, pid = ?, host = ?, rows_done = ?, rows_failed = 0, input_tokens = ?,"
                " output_tokens = ? WHERE id = ?",
                (os.getpid(), socket.gethostname(), totals["n"], totals["i"], totals["o"], run_id),
            )
        return {r[0] for r in self.conn.execute("SELECT row_index FROM rows WHERE run_id = ?", (run_id,))}

    def recover_interrupted(self) -> list[str]:
        """Mark as `interrupted` the running runs of this host whose process is gone."""
        host = socket.gethostname()
        dead = [
            row["id"]
            for row in self.conn.execute("SELECT id, pid, host FROM runs WHERE status = 'running'")
            if row["host"] == host and (row["pid"] is None or not _pid_alive(row["pid"]))
        ]
        for run_id in dead:
            self.conn.execute(
                "UPDATE runs SET status = 'interrupted', finished_utc = ?, pid = NULL,"
                " error = 'the process running it stopped before it finished' WHERE id = ? AND status = 'running'",
                (utc_now(), run_id),
            )
        return dead

    def get_run(self, ref: str) -> RunRecord:
        """A run by id, name, or unique id prefix."""
        row = self.conn.execute("SELECT * FROM runs WHERE id = ? OR name = ?", (ref, ref)).fetchone()
        if row is None and ref:
            matches = self.conn.execute(
                "SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\' LIMIT 2", (_like_prefix(ref),)
            ).fetchall()
            if len(matches) == 1:
                row = matches[0]
            elif len(matches) > 1:
                raise NotFoundError(f"run {ref!r} is ambiguous: more than one run id starts with it")
        if row is None:
            raise NotFoundError(f"no run with id or name {ref!r} (see `llmcorr runs list`)")
        return RunRecord.from_row(row)

    def list_runs(
        self,
        limit: int | None = None,
        status: str | None = None,
        *,
        tag: str | None = None,
        name: str | None = None,
        archived: bool | None = False,
        sort: str = "created",
        descending: bool = True,
    ) -> list[RunRecord]:
        """Runs, newest first by default. `name` matches part of a name or id; `archived=None` lists both kinds;
        `sort` is one of created, name, status, tokens, rows, kind."""
        order = SORTS.get(sort)
        if order is None:
            raise UserError(f"--sort: expected one of {', '.join(SORTS)}, got {sort!r}")
        where: list[str] = []
        args: list[Any] = []
        if status:
            where.append("status = ?")
            args.append(status)
        if tag:
            where.append(TAG_IN_LIST[dialect(self.conn)])
            args.append(tag)
        if name:
            where.append("(lower(COALESCE(name, '')) LIKE lower(?) ESCAPE '\\' OR id LIKE ? ESCAPE '\\')")
            args.extend(["%" + _like_prefix(name), _like_prefix(name)])
        if archived is not None:
            where.append("archived = ?")
            args.append(int(archived))
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += f" ORDER BY {order} {'DESC' if descending else 'ASC'}, created_utc DESC"
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        return [RunRecord.from_row(r) for r in self.conn.execute(sql, args)]

    def rename_run(self, run_id: str, name: str | None) -> None:
        """Give a run a new name (None removes it); names are unique."""
        if name is not None and not name.strip():
            raise UserError("a run's name cannot be empty")
        try:
            self.conn.execute("UPDATE runs SET name = ? WHERE id = ?", (name, run_id))
        except sqlite3.IntegrityError:
            raise UserError(f"a run named {name!r} already exists; choose another name") from None

    def tag_run(self, run_id: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> list[str]:
        """Add and remove tags; returns the run's tags, sorted."""
        add, remove = list(add), list(remove)
        for tag in add:
            if not tag.strip() or "," in tag:
                raise UserError(f"tag {tag!r}: a tag is a non-empty word without commas")
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            row = self.conn.execute("SELECT tags_json FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no run with id {run_id!r}")
            tags = sorted((set(json.loads(row["tags_json"])) | {t.strip() for t in add}) - set(remove))
            self.conn.execute("UPDATE runs SET tags_json = ? WHERE id = ?", (json.dumps(tags), run_id))
        return tags

    def set_archived(self, run_id: str, archived: bool) -> None:
        self.conn.execute("UPDATE runs SET archived = ? WHERE id = ?", (int(archived), run_id))

    def set_output_path(self, run_id: str, path: str | Path | None) -> None:
        self.conn.execute(
            "UPDATE runs SET output_path = ? WHERE id = ?", (str(Path(path).resolve()) if path else None, run_id)
        )

    # -- spans ------------------------------------------------------------------------------------------------

    def add_spans(self, records: list[tuple[Any, ...]]) -> None:
        """Finished spans: (span_id, trace_id, parent_id, run_id, row_index, kind, name, start_ns, end_ns, status,
        error, attributes_json), in one transaction."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany(
                "INSERT OR REPLACE INTO spans (span_id, trace_id, parent_id, run_id, row_index, kind, name, start_ns,"
                " end_ns, status, error, attributes_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                records,
            )

    def spans(self, run_id: str, row_index: int | None = None, since_ns: int = 0) -> list[dict[str, Any]]:
        """A run's spans (or one row's), oldest first, attributes decoded; `since_ns` keeps those ending after it."""
        sql = "SELECT * FROM spans WHERE run_id = ? AND end_ns > ?"
        args: list[Any] = [run_id, since_ns]
        if row_index is not None:
            sql += " AND row_index = ?"
            args.append(row_index)
        return [_span(r) for r in self.conn.execute(sql + " ORDER BY start_ns, end_ns", args)]

    def spans_written_after(
        self, run_id: str, cursor: int = 0, row_index: int | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """The spans stored since `cursor` (0: all of them), oldest first, and the cursor for the next call.

        For following a run as it goes: spans reach the store when their row ends, not in the order they ended, so
        a time bound could miss some; the cursor (the table's rowid, which grows with every write) cannot."""
        sql = "SELECT rowid AS _seq, * FROM spans WHERE run_id = ? AND rowid > ?"
        args: list[Any] = [run_id, cursor]
        if row_index is not None:
            sql += " AND row_index = ?"
            args.append(row_index)
        out = []
        for r in self.conn.execute(sql, args):
            cursor = max(cursor, r["_seq"])
            out.append(_span(r))
        out.sort(key=lambda s: (s["start_ns"], s["end_ns"]))
        return out, cursor

    # -- rows -------------------------------------------------------------------------------------------------

    def rows(self, run_id: str) -> list[dict[str, Any]]:
        """The run's committed rows in input order, JSON columns decoded."""
        return list(self.iter_rows(run_id))

    def iter_rows(self, run_id: str, columns: str = "*", page: int = ROWS_PAGE) -> Iterator[dict[str, Any]]:
        """The run's committed rows in input order, JSON columns decoded, read a page at a time (memory stays flat
        however many rows the run has; writes in between are fine). `columns`: the SQL column list to read."""
        after = -1
        while True:
            batch = self.conn.execute(
                f"SELECT {columns}, row_index FROM rows WHERE run_id = ? AND row_index > ? ORDER BY row_index LIMIT ?",
                (run_id, after, page),
            ).fetchall()
            for r in batch:
                d = dict(r)
                for col in ("inputs_json", "prompt_json", "output_json"):
                    if col in d:
                        raw = d.pop(col)
                        d[col.removesuffix("_json")] = json.loads(raw) if raw is not None else None
                yield d
            if len(batch) < page:
                return
            after = batch[-1]["row_index"]

    def row_status_counts(self, run_id: str) -> dict[str, int]:
        return {
            r["status"]: r["n"]
            for r in self.conn.execute(
                "SELECT status, COUNT(*) AS n FROM rows WHERE run_id = ? GROUP BY status", (run_id,)
            )
        }

    def runs_with_output(self, path: str | Path) -> list[str]:
        """The ids of the runs that recorded `path` as their output file."""
        resolved = str(Path(path).resolve())
        return [r["id"] for r in self.conn.execute("SELECT id FROM runs WHERE output_path = ?", (resolved,))]

    def delete_run(self, run_id: str) -> None:
        """Remove a run and (by cascade) its rows and spans. Its output file, if any, is the caller's to remove."""
        self.conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
