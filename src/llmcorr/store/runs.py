"""Runs and their rows in the store (a SQLite file, or PostgreSQL: see db.py). A sink: it calls nothing upward.

`Store` is this module's runs and rows, with the response cache (cache.py), the trace spans (spans.py) and each
process's stretch of work on a run with its usage (segments.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import NotFoundError, UserError
from . import row_writes, segments
from .cache import CacheStore
from .db import IntegrityError, StoreURL, connect, store_location
from .edits import RunEdits
from .failures import writes
from .records import NOT_SENT, RowRecord, RunRecord, utc_now
from .spans import SpanStore

ROWS_PAGE = 2000  # rows read per query when a run's rows are streamed
STATUSES = ("running", "completed", "failed", "interrupted", "cancelled")
SORTS = {
    "created": "created_utc",
    "name": "lower(COALESCE(name, id))",
    "status": "status",
    "tokens": "input_tokens + output_tokens",
    "rows": "rows_done",
    "kind": "kind",
}


def _like_prefix(text: str) -> str:
    """A LIKE pattern matching strings that start with `text`, its own % and _ taken literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    return True


class Store(CacheStore, SpanStore, RunEdits):
    """The run store at `path`. Opening it marks runs whose process died as `interrupted`."""

    @writes
    def __init__(self, path: Path | str | StoreURL) -> None:
        self.path = store_location(path)  # a file, or a PostgreSQL URL (which prints without its password)
        self.conn = connect(self.path)
        self._cache_pending: dict[str, tuple[Any, ...]] = {}  # answers waiting for the next commit, by key
        self._cache_hits: Counter[str] = Counter()
        self._segments: dict[str, str] = {}  # run id → the segment this process opened on it (segments.py)
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

    @writes
    def create_run(
        self,
        kind: str,
        spec: dict[str, Any],
        rows_total: int,
        name: str | None = None,
        estimate: dict[str, Any] | None = None,
    ) -> str:
        run_id, now = uuid.uuid4().hex[:12], utc_now()
        try:
            with self.conn.writing():
                self.conn.execute(
                    "INSERT INTO runs (id, name, kind, status, spec_json, created_utc, pid, host, rows_total,"
                    " estimate_json) VALUES ({?}, {?}, {?}, 'running', {?}, {?}, {?}, {?}, {?}, {?})",
                    (
                        run_id,
                        name,
                        kind,
                        json.dumps(spec),
                        now,
                        os.getpid(),
                        socket.gethostname(),
                        rows_total,
                        json.dumps(estimate) if estimate is not None else None,
                    ),
                )
                self._segments[run_id] = segments.open_segment(self.conn, run_id, now)
        except IntegrityError:
            raise UserError(f"a run named {name!r} already exists; choose another --name") from None
        return run_id

    def check_name_free(self, name: str | None) -> None:
        """Raise before any work is done if `name` is taken."""
        if name and self.conn.execute("SELECT 1 FROM runs WHERE name = {?}", (name,)).fetchone():
            raise UserError(f"a run named {name!r} already exists; choose another --name")

    def add_row(self, run_id: str, row: RowRecord) -> None:
        """Commit one finished row and the run's running totals in a single transaction."""
        self.add_rows(run_id, [row])

    @writes
    def add_rows(self, run_id: str, rows: Sequence[RowRecord], usage: dict[str, Any] | None = None) -> None:
        """Commit finished rows and the run's running totals in a single transaction (one WAL write for many), with
        `usage`: this process's per-endpoint usage so far (the scheduler's `stats()`, taken after these rows'
        answers), so a run keeps the usage of every row it keeps even if its process is killed next. A value the
        store cannot take fails its own row, never the batch: the cache's answers, then the rows, go one by one,
        a row the store refuses kept as an `error` row (row_writes.py). A full disk or an I/O error is `StoreError`
        (failures.py); the cache's answers then wait for the next commit that can be made."""
        if not rows:
            if usage is not None:
                self.record_usage(run_id, usage)
            return
        try:
            self._commit_rows(run_id, rows, usage, with_cache=True)
        except row_writes.unstorable():
            self.salvage_cache()  # first: a kill meanwhile leaves the answers, not paid twice
            for row in rows:
                self._commit_alone(run_id, row, usage)

    def _commit_rows(
        self, run_id: str, rows: Sequence[RowRecord], usage: dict[str, Any] | None, with_cache: bool = False
    ) -> None:
        now = utc_now()
        with self.conn.writing():
            if with_cache:
                self._write_cache()
            rows = [self.shared_or_own(row) for row in rows]
            self.conn.executemany(row_writes.INSERT_ROW, [row_writes.row_values(run_id, row, now) for row in rows])
            self.conn.execute(
                "UPDATE runs SET rows_done = rows_done + {?}, rows_failed = rows_failed + {?},"
                " input_tokens = input_tokens + {?}, output_tokens = output_tokens + {?} WHERE id = {?}",
                (
                    len(rows),
                    sum(row.status == "error" for row in rows),
                    sum(row.input_tokens for row in rows),
                    sum(row.output_tokens for row in rows),
                    run_id,
                ),
            )
            segments.record(self.conn, self._segment(run_id, now), run_id, now, usage)
        if with_cache:
            self._cache_written()

    def _commit_alone(self, run_id: str, row: RowRecord, usage: dict[str, Any] | None) -> None:
        """Commit one row; one the store refuses becomes an error row keeping what it can (row_writes.py)."""
        try:
            self._commit_rows(run_id, [row], usage)
        except row_writes.unstorable() as exc:
            for kept in row_writes.kept_as_error(row, exc):
                with contextlib.suppress(*row_writes.unstorable()):
                    return self._commit_rows(run_id, [kept], usage)
            raise

    @writes
    def record_usage(self, run_id: str, usage: dict[str, Any] | None) -> None:
        """This process is still working on the run, with this per-endpoint usage so far (None: as recorded last)."""
        now = utc_now()
        with self.conn.writing():
            segments.record(self.conn, self._segment(run_id, now), run_id, now, usage)

    def _segment(self, run_id: str, now: str) -> str:
        """The segment this process works on `run_id` in; opened now if it neither created nor reopened the run."""
        if run_id not in self._segments:
            self._segments[run_id] = segments.open_segment(self.conn, run_id, now)
        return self._segments[run_id]

    def segments(self, run_id: str) -> list[dict[str, Any]]:
        """The processes that worked on the run, oldest first: pid, host, started_utc, active_utc and the
        per-endpoint usage each recorded (store/segments.py)."""
        return segments.segments(self.conn, run_id)

    @writes
    def finish_run(
        self,
        run_id: str,
        status: str,
        metrics: dict[str, Any] | None = None,
        error: str | None = None,
        usage: dict[str, Any] | None = None,
    ) -> None:
        """End the run with `status`; `usage` is this process's per-endpoint usage (the scheduler's `stats()`): the
        run's usage becomes the sum over every process that worked on it (store/segments.py)."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        self.flush_cache()
        now = utc_now()
        with self.conn.writing():
            self.conn.execute(
                "UPDATE runs SET status = {?}, finished_utc = {?}, metrics_json = {?}, error = {?}, pid = NULL"
                " WHERE id = {?}",
                (status, now, json.dumps(metrics) if metrics is not None else None, error, run_id),
            )
            segments.record(self.conn, self._segment(run_id, now), run_id, now, usage)

    def cancel_requested(self, run_id: str) -> bool:
        row = self.conn.execute("SELECT cancel_requested FROM runs WHERE id = {?}", (run_id,)).fetchone()
        return bool(row and row["cancel_requested"])

    @writes
    def reopen_run(self, run_id: str, retry_failed: bool = True) -> set[int]:
        """Make a stopped run resumable: drop its failed rows (to retry them; `retry_failed=False` keeps them as
        they are) and the rows recorded with nothing sent (a selective run decides them again, from the validation
        rows as they stand after the resume: a retried row can move the gate), mark it running again in this
        process (a new segment: the usage recorded so far stands, this process's is added to it), and return the
        indices of the rows it keeps."""
        with self.conn.writing():
            status = self.conn.execute("SELECT status FROM runs WHERE id = {?}", (run_id,)).fetchone()
            if status is None:
                raise NotFoundError(f"no run with id {run_id!r}")
            if status["status"] == "running":
                raise UserError(f"run {run_id} is still running; cancel it first (`llmcorr runs cancel {run_id}`)")
            if retry_failed:
                self.conn.execute("DELETE FROM rows WHERE run_id = {?} AND status = 'error'", (run_id,))
            self.conn.execute("DELETE FROM rows WHERE run_id = {?} AND status LIKE {?}", (run_id, f"{NOT_SENT}%"))
            totals = self.conn.execute(
                "SELECT COUNT(*) AS n, COALESCE(SUM(input_tokens), 0) AS i, COALESCE(SUM(output_tokens), 0) AS o,"
                " COUNT(CASE WHEN status = 'error' THEN 1 END) AS f FROM rows WHERE run_id = {?}",
                (run_id,),
            ).fetchone()
            self.conn.execute(
                "UPDATE runs SET status = 'running', finished_utc = NULL, error = NULL, metrics_json = NULL,"
                " cancel_requested = 0, pid = {?}, host = {?}, rows_done = {?}, rows_failed = {?}, input_tokens = {?},"
                " output_tokens = {?} WHERE id = {?}",
                (os.getpid(), socket.gethostname(), totals["n"], totals["f"], totals["i"], totals["o"], run_id),
            )
            self._segments[run_id] = segments.open_segment(self.conn, run_id, utc_now())
        return {r[0] for r in self.conn.execute("SELECT row_index FROM rows WHERE run_id = {?}", (run_id,))}

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
                "UPDATE runs SET status = 'interrupted', finished_utc = {?}, pid = NULL,"
                " error = 'the process running it stopped before it finished' WHERE id = {?} AND status = 'running'",
                (utc_now(), run_id),
            )
        return dead

    def get_run(self, ref: str) -> RunRecord:
        """A run by id, name, or unique id prefix."""
        row = self.conn.execute("SELECT * FROM runs WHERE id = {?} OR name = {?}", (ref, ref)).fetchone()
        if row is None and ref:
            matches = self.conn.execute(
                "SELECT * FROM runs WHERE id LIKE {?} ESCAPE '\\' LIMIT 2", (_like_prefix(ref),)
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
            where.append("status = {?}")
            args.append(status)
        if tag:
            where.append(self.conn.dialect.json_array_contains("runs.tags_json"))  # the run carries the tag
            args.append(tag)
        if name:
            where.append("(lower(COALESCE(name, '')) LIKE lower({?}) ESCAPE '\\' OR id LIKE {?} ESCAPE '\\')")
            args.extend(["%" + _like_prefix(name), _like_prefix(name)])
        if archived is not None:
            where.append("archived = {?}")
            args.append(int(archived))
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += f" ORDER BY {order} {'DESC' if descending else 'ASC'}, created_utc DESC"
        if limit:
            sql += " LIMIT {?}"
            args.append(limit)
        return [RunRecord.from_row(r) for r in self.conn.execute(sql, args)]

    # -- rows -------------------------------------------------------------------------------------------------

    def rows(self, run_id: str) -> list[RowRecord]:
        """The run's committed rows in input order, every column read (`iter_rows`)."""
        return list(self.iter_rows(run_id))

    def iter_rows(self, run_id: str, columns: str = "*", page: int = ROWS_PAGE) -> Iterator[RowRecord]:
        """The run's committed rows in input order, as the `RowRecord`s they went in as (JSON columns decoded, the
        full response: row_writes.py `decoded`), read a page at a time (memory stays flat however many rows the run
        has; writes in between are fine). `columns`: the SQL column list to read (`"status, output_json"`); a
        record's fields for columns not read keep RowRecord's defaults (`status` "", `inputs` {}, `output` None)."""
        after = -1
        while True:
            batch = self.conn.execute(
                f"SELECT {row_writes.columns_read(columns)}, row_index FROM rows"
                " WHERE run_id = {?} AND row_index > {?} ORDER BY row_index LIMIT {?}",
                (run_id, after, page),
            ).fetchall()
            for r in batch:
                yield row_writes.decoded(dict(r))
            if len(batch) < page:
                return
            after = batch[-1]["row_index"]

    def row_status_counts(self, run_id: str) -> dict[str, int]:
        return {
            r["status"]: r["n"]
            for r in self.conn.execute(
                "SELECT status, COUNT(*) AS n FROM rows WHERE run_id = {?} GROUP BY status", (run_id,)
            )
        }
