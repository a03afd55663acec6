"""Schema migrations: a numbered list of functions, recorded by name, applied whenever the store opens.

Never edit a merged migration; add a new one. Every column says what it means.
The same list runs on SQLite and on PostgreSQL. Column types are written `{INT64}` and `{FLOAT64}`, which each
database's dialect renders (dialect.py: SQLite's INTEGER and REAL, PostgreSQL's BIGINT and DOUBLE PRECISION, so
SQLite gets the very DDL it always did); where a migration's SQL must differ otherwise, it asks the dialect in itself
(never a second list).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .db import Connection

Migration = Callable[["Connection"], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_runs_and_rows(conn: Connection) -> None:
    _script(
        conn,
        """
        CREATE TABLE runs (
            id            TEXT PRIMARY KEY,       -- short random hex id
            name          TEXT UNIQUE,            -- optional user-given name; usable wherever an id is
            kind          TEXT NOT NULL,          -- what ran: 'correct' (LLMCorr)
            status        TEXT NOT NULL,          -- running | completed | failed | interrupted
            spec_json     TEXT NOT NULL,          -- RunSpec: everything that re-creates the run (no secrets)
            created_utc   TEXT NOT NULL,
            finished_utc  TEXT,
            pid           {INT64},                -- owning process while running, to spot runs killed mid-way
            host          TEXT,                   -- hostname of that process
            rows_total    {INT64} NOT NULL DEFAULT 0,  -- rows the run will process
            rows_done     {INT64} NOT NULL DEFAULT 0,  -- rows committed (ok, unparsed or error)
            rows_failed   {INT64} NOT NULL DEFAULT 0,  -- rows whose LLM call failed
            input_tokens  {INT64} NOT NULL DEFAULT 0,
            output_tokens {INT64} NOT NULL DEFAULT 0,
            metrics_json  TEXT,                   -- metrics computed when the run finished
            error         TEXT                    -- why the run failed, if it did
        );
        CREATE TABLE rows (
            run_id        TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            row_index     {INT64} NOT NULL,       -- position of the row in the run's input order
            sample_id     TEXT,                   -- the data's own id for the row
            inputs_json   TEXT NOT NULL,          -- the input row as given
            prompt_json   TEXT,                   -- rendered chat messages sent to the LLM
            response      TEXT,                   -- raw LLM text
            output_json   TEXT,                   -- parsed result (e.g. corrected prediction)
            status        TEXT NOT NULL,          -- ok | unparsed | error
            error         TEXT,                   -- parse or call failure, when status is not ok
            input_tokens  {INT64},
            output_tokens {INT64},
            duration_ms   {FLOAT64},                   -- wall time of the LLM call, retries included
            attempts      {INT64},                -- LLM calls made for this row
            created_utc   TEXT NOT NULL,
            PRIMARY KEY (run_id, row_index)
        );
        CREATE INDEX runs_created ON runs(created_utc);
        """,
    )


@migration
def m002_endpoint_usage(conn: Connection) -> None:
    _script(
        conn,
        """
        ALTER TABLE runs ADD COLUMN rate_limited {INT64} NOT NULL DEFAULT 0;  -- 429s the run's requests met
        ALTER TABLE runs ADD COLUMN usage_json TEXT;  -- per-endpoint usage: requests, tokens, 429s, cost
        ALTER TABLE runs ADD COLUMN estimate_json TEXT;  -- the pre-run estimate: requests, tokens, cost, ETA
        ALTER TABLE rows ADD COLUMN endpoint TEXT;  -- name of the endpoint that answered the row
        """,
    )


@migration
def m003_cache_and_cancel(conn: Connection) -> None:
    _script(
        conn,
        """
        CREATE TABLE cache (
            key           TEXT PRIMARY KEY,       -- sha256 of (model identity, messages, sampling params, sample index)
            model         TEXT NOT NULL,          -- the model identity that answered, for humans
            response      TEXT NOT NULL,          -- the raw LLM text
            input_tokens  {INT64} NOT NULL,       -- what the original call cost
            output_tokens {INT64} NOT NULL,
            finish_reason TEXT,
            created_utc   TEXT NOT NULL,
            hits          {INT64} NOT NULL DEFAULT 0  -- times it was served instead of a call
        );
        ALTER TABLE rows ADD COLUMN cached {INT64} NOT NULL DEFAULT 0;  -- 1: answered from the cache, no tokens spent
        ALTER TABLE runs ADD COLUMN cancel_requested {INT64} NOT NULL DEFAULT 0;  -- set by `runs cancel`
        """,
    )


@migration
def m004_spans_tags_archive(conn: Connection) -> None:
    _script(
        conn,
        """
        CREATE TABLE spans (
            span_id         TEXT NOT NULL,     -- OpenTelemetry span id, 16 hex digits
            trace_id        TEXT NOT NULL,     -- 32 hex digits: one trace per execution of a run (a resume adds one)
            parent_id       TEXT,              -- the enclosing span's id; NULL for a run's root span
            run_id          TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            row_index       {INT64},           -- the row it belongs to; NULL for the run's own span
            kind            TEXT NOT NULL,     -- run | row | step | llm
            name            TEXT NOT NULL,     -- "run prompt", "row 3", a step's function name, "chat MODEL"
            start_ns        {INT64} NOT NULL,  -- Unix epoch nanoseconds
            end_ns          {INT64} NOT NULL,
            status          TEXT NOT NULL,     -- ok | error
            error           TEXT,              -- the error's description when status = error
            attributes_json TEXT NOT NULL,     -- span attributes (GenAI semantic conventions on llm spans)
            PRIMARY KEY (trace_id, span_id)
        );
        CREATE INDEX spans_run_row ON spans(run_id, row_index, start_ns);
        ALTER TABLE runs ADD COLUMN tags_json TEXT NOT NULL DEFAULT '[]';  -- the user's tags, a JSON list
        ALTER TABLE runs ADD COLUMN archived {INT64} NOT NULL DEFAULT 0;  -- 1: hidden from lists unless asked for
        ALTER TABLE runs ADD COLUMN output_path TEXT;  -- the file the run wrote its rows to (--output)
        """,
    )
    if not conn.dialect.has_rowid:  # SQLite numbers every row (rowid, growing with each write): a column does it here
        conn.execute("ALTER TABLE spans ADD COLUMN rowid BIGSERIAL")


@migration
def m005_run_segments(conn: Connection) -> None:
    """Usage that accumulates across the processes that work on a run (store/segments.py). A run recorded before
    becomes one segment: created → finished, with the usage it recorded."""
    _script(
        conn,
        """
        CREATE TABLE run_segments (
            id            TEXT PRIMARY KEY,       -- random hex: one process's stretch of work on a run
            run_id        TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            pid           {INT64},                -- the process that created or resumed the run
            host          TEXT,                   -- hostname of that process
            started_utc   TEXT NOT NULL,          -- when it created or reopened the run
            active_utc    TEXT NOT NULL,          -- when it last committed rows, recorded usage or finished the run
            usage_json    TEXT                    -- its own per-endpoint usage by then: requests, ok, 429s, errors,
                                                  -- tokens, cost (NULL: none recorded)
        );
        CREATE INDEX run_segments_run ON run_segments(run_id);
        ALTER TABLE runs ADD COLUMN busy_ms {FLOAT64};  -- time processes spent on the run: segments' durations summed
        ALTER TABLE runs ADD COLUMN active_utc TEXT;  -- when a process last worked on the run (latest segment's end)
        """,
    )
    runs = conn.execute("SELECT id, pid, host, created_utc, finished_utc, usage_json FROM runs").fetchall()
    for run_id, pid, host, created, finished, usage in runs:
        active = finished or created
        busy_ms = max(0.0, (_utc(active) - _utc(created)).total_seconds() * 1000)
        conn.execute(
            "INSERT INTO run_segments (id, run_id, pid, host, started_utc, active_utc, usage_json)"
            " VALUES ({?}, {?}, {?}, {?}, {?}, {?}, {?})",
            (uuid.uuid4().hex[:16], run_id, pid, host, created, active, usage),
        )
        conn.execute("UPDATE runs SET busy_ms = {?}, active_utc = {?} WHERE id = {?}", (busy_ms, active, run_id))


@migration
def m006_rows_share_cached_answers(conn: Connection) -> None:
    """An answer is stored once: a row made from a cached answer references it (store/row_writes.py). Rows written
    before keep their own text. `rows_with_response` shows every row with its full response, for SQL readers."""
    _script(
        conn,
        """
        ALTER TABLE rows ADD COLUMN response_key TEXT;  -- the cache key whose answer is this row's response
                                                        -- (response is then NULL: the text is kept once, there)
        CREATE VIEW rows_with_response AS
            SELECT rows.run_id, rows.row_index, rows.sample_id, rows.inputs_json, rows.prompt_json,
                   COALESCE(rows.response, cache.response) AS response, rows.output_json, rows.status, rows.error,
                   rows.input_tokens, rows.output_tokens, rows.duration_ms, rows.attempts, rows.endpoint,
                   rows.cached, rows.created_utc
            FROM rows LEFT JOIN cache ON cache.key = rows.response_key;
        """,
    )


def _utc(stamp: str) -> datetime:
    when = datetime.fromisoformat(stamp)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _script(conn: Connection, sql: str) -> None:
    """Run several statements inside the caller's transaction (`executescript` would commit it first)."""
    statement = ""
    for line in sql.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement in migration: {statement.strip()[:60]}")


def migrate(conn: Connection) -> list[str]:
    """Apply every migration not yet recorded; return the names applied now."""
    bookkeeping = "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_utc TEXT NOT NULL)"
    if conn.dialect.create_needs_lock:  # IF NOT EXISTS can still collide with another process's create
        with conn.writing():
            conn.execute(bookkeeping)
    else:
        conn.execute(bookkeeping)
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    applied = []
    for fn in MIGRATIONS:
        if fn.__name__ in done:
            continue
        with conn.writing():
            # re-check under the write lock: another process may have migrated meanwhile
            if conn.execute("SELECT 1 FROM _migrations WHERE name = {?}", (fn.__name__,)).fetchone():
                continue
            fn(conn)
            conn.execute(
                "INSERT INTO _migrations (name, applied_utc) VALUES ({?}, {?})",
                (fn.__name__, datetime.now(UTC).isoformat(timespec="seconds")),
            )
        applied.append(fn.__name__)
    return applied
