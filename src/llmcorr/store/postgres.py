"""PostgreSQL under the store's one SQL vocabulary (SQLite's): a psycopg connection offering the part of the sqlite3
API the store uses, translating the few differences on the way.

| the store says (SQLite)              | PostgreSQL gets                                                          |
|--------------------------------------|--------------------------------------------------------------------------|
| `?` placeholders                     | `%s` (and a literal `%` becomes `%%`)                                    |
| `BEGIN IMMEDIATE` (the write lock)   | `BEGIN` + a transaction-scoped advisory lock: one writer at a time       |
| `INSERT OR IGNORE INTO t …`          | `INSERT INTO t … ON CONFLICT DO NOTHING`                                 |
| `INSERT OR REPLACE INTO t (c, …) …`  | `… ON CONFLICT (t's primary key) DO UPDATE SET c = EXCLUDED.c, …`        |
|                                      | and a new `rowid`, as SQLite's delete-and-insert gives                   |
| a unique or foreign-key violation    | `sqlite3.IntegrityError`, which the store already handles                |
| `with conn:`                         | COMMIT, or ROLLBACK on an exception                                      |
| a NUL character in a string          | U+FFFD (PostgreSQL text cannot hold NUL)                                 |

Rows answer by name and by index like `sqlite3.Row`; numeric results come back as int or float, never Decimal. Column
types and the `rowid` SQLite gives every table are the migrations' business (migrations.py). Imported only when a
store URL names PostgreSQL: psycopg is an optional extra (`pip install 'llmcorr[postgres]'`).
"""

from __future__ import annotations

import re
import sqlite3
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import RowMaker

from ..errors import ConfigError
from .db import StoreURL

WRITE_LOCK = 0x6C6C6D636F7272  # "llmcorr" read as a number: the advisory lock standing for SQLite's one write lock
CONNECT_TIMEOUT_S = 10
STATEMENT_TIMEOUT_MS = 300_000  # a store statement is short; this only stops one that hangs on a sick server

_SKIPPED = re.compile(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*)")  # literals, quoted names, comments
_INSERT_OR = re.compile(r"^\s*INSERT\s+OR\s+(IGNORE|REPLACE)\s+INTO\s+(\w+)\s*\(([^)]*)\)", re.IGNORECASE)


class Row:
    """A result row like `sqlite3.Row`: `row["name"]`, `row[0]`, `dict(row)`, iteration over the values."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[str, int], values: Sequence[Any]) -> None:
        self._index = index
        self._values = values

    def __getitem__(self, key: int | str) -> Any:
        return self._values[self._index[key]] if isinstance(key, str) else self._values[key]

    def keys(self) -> list[str]:
        return list(self._index)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._index, self._values, strict=False))!r})"


def _rows(cursor: Any) -> RowMaker[Row]:
    index: dict[str, int] = {}
    for i, column in enumerate(cursor.description or ()):
        index.setdefault(column.name, i)  # a repeated name answers with its first column, as sqlite3.Row does
    return lambda values: Row(index, values)


class _NumberLoader(Loader):
    """numeric (what SUM() of integers gives) as int, or float: as SQLite returns it."""

    def load(self, data: Buffer) -> int | float:
        text = bytes(data).decode()
        return int(text) if text.lstrip("-").isdigit() else float(text)


@lru_cache(maxsize=512)
def placeholders(sql: str) -> str:
    """`?` → `%s` outside literals, quoted names and comments; `%` → `%%` everywhere (psycopg reads it anywhere)."""
    parts = _SKIPPED.split(sql.replace("%", "%%"))
    return "".join(part if i % 2 else part.replace("?", "%s") for i, part in enumerate(parts))


class PgConnection:
    """The sqlite3-shaped face of one psycopg connection (autocommit; transactions are explicit, as the store's)."""

    dialect = "postgresql"

    def __init__(self, conn: psycopg.Connection[Row]) -> None:
        self._conn = conn
        self._sql: dict[str, str] = {}

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Row]:
        if sql.strip().upper() == "BEGIN IMMEDIATE":
            return self._conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})")  # one round trip
        try:
            return self._conn.execute(self._translate(sql), _params(parameters))
        except psycopg.IntegrityError as exc:
            raise sqlite3.IntegrityError(_first_line(exc)) from exc

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> psycopg.Cursor[Row]:
        cursor = self._conn.cursor()
        try:
            cursor.executemany(self._translate(sql), [_params(p) for p in seq_of_parameters])
        except psycopg.IntegrityError as exc:
            raise sqlite3.IntegrityError(_first_line(exc)) from exc
        return cursor

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> PgConnection:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if self._conn.info.transaction_status != TransactionStatus.IDLE:
            self._conn.execute("ROLLBACK" if exc_type else "COMMIT")

    def _translate(self, sql: str) -> str:
        if sql not in self._sql:
            self._sql[sql] = placeholders(self._upsert(sql))
        return self._sql[sql]

    def _upsert(self, sql: str) -> str:
        """SQLite's INSERT OR IGNORE / OR REPLACE as PostgreSQL's ON CONFLICT."""
        match = _INSERT_OR.match(sql)
        if not match:
            return sql
        action, table, names = match.group(1).upper(), match.group(2), match.group(3)
        insert = f"INSERT INTO {table} ({names}){sql[match.end() :].rstrip().rstrip(';')}"
        if action == "IGNORE":
            return f"{insert} ON CONFLICT DO NOTHING"
        key, columns = self._columns(table)
        inserted = [n.strip() for n in names.split(",")]
        updates = [f"{c} = EXCLUDED.{c}" for c in inserted if c not in key]
        if "rowid" in columns and "rowid" not in inserted:
            updates.append("rowid = DEFAULT")  # a replaced row is a new write, as with SQLite's delete-and-insert
        return f"{insert} ON CONFLICT ({', '.join(key)}) DO UPDATE SET {', '.join(updates)}"

    def _columns(self, table: str) -> tuple[list[str], list[str]]:
        """The table's primary-key columns and all its columns, from the catalog."""
        found = self._conn.execute(
            "SELECT a.attname, COALESCE(a.attnum = ANY(i.indkey), false) FROM pg_attribute a"
            " LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary"
            " WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (table,),
        ).fetchall()
        return [r[0] for r in found if r[1]], [r[0] for r in found]


def connect_postgres(url: StoreURL, lock_timeout_ms: int) -> PgConnection:
    """Open the database `url` names: autocommit, bounded connect, lock and statement waits. A server that cannot be
    reached (or refuses us) is one ConfigError line naming the store without its password."""
    try:
        given = conninfo_to_dict(url.secret)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"store_url {url}: not a valid PostgreSQL URL: {_first_line(exc, url)}") from None
    settings: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "llmcorr"}
    settings["options"] = f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={lock_timeout_ms}"
    settings = {k: v for k, v in settings.items() if k not in given}  # what the URL says wins
    try:
        conn = psycopg.connect(url.secret, autocommit=True, row_factory=_rows, **settings)
    except psycopg.Error as exc:
        raise ConfigError(f"cannot open the store {url}: {_first_line(exc, url)}") from None
    conn.adapters.register_loader("numeric", _NumberLoader)
    return PgConnection(conn)


def _params(parameters: Sequence[Any]) -> tuple[Any, ...]:
    """PostgreSQL text cannot hold NUL, which SQLite stores: a NUL in a string (an odd LLM answer) becomes U+FFFD."""
    return tuple(p.replace("\x00", "\ufffd") if isinstance(p, str) and "\x00" in p else p for p in parameters)


def _first_line(exc: BaseException, url: StoreURL | None = None) -> str:
    """The error's gist on one line, never with the URL's password in it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    if url is not None:
        password = urllib.parse.urlsplit(url.secret).password
        for secret in {password, urllib.parse.unquote(password or "")} - {None, ""}:
            text = text.replace(str(secret), "***")
    return text
