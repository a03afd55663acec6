"""Open the store: the one place that opens connections, then migrates.

A SQLite file (the default: WAL, foreign keys, busy timeout set here) or, for a team, a PostgreSQL server named by a
`postgresql://` URL (store/postgres.py: the same SQL and migrations through a thin adapter; psycopg is imported only
then). A URL is held in a `StoreURL`, which prints without its password.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..errors import ConfigError
from ..locations import POSTGRES_SCHEMES, StoreURL
from .migrations import migrate

BUSY_TIMEOUT_MS = 30_000


class Cursor(Protocol):
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What the store uses of a connection: sqlite3's API, which store/postgres.py offers over psycopg."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...
    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> Cursor: ...
    def close(self) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: Any) -> Any: ...


def store_location(where: Path | str | StoreURL) -> Path | StoreURL:
    """A store's location as given (a file path, a postgresql:// URL or a StoreURL), normalised."""
    if isinstance(where, StoreURL):
        return where
    if isinstance(where, str) and where.startswith(POSTGRES_SCHEMES):
        return StoreURL(where)
    return Path(where)


def dialect(conn: Connection) -> str:
    """'sqlite' or 'postgresql': for the rare expression the two cannot share."""
    return str(getattr(conn, "dialect", "sqlite"))


def connect(where: Path | str | StoreURL, *, migrated: bool = True) -> Connection:
    """A connection to the store at `where` (a SQLite file, created if missing, or a PostgreSQL database), migrated
    to the current schema (unless `migrated=False`: for tests of the migrations)."""
    location = store_location(where)
    conn = _postgres(location) if isinstance(location, StoreURL) else _sqlite(location)
    if migrated:
        migrate(conn)
    return conn


def _sqlite(path: Path) -> sqlite3.Connection:
    if str(path) != ":memory:":
        path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable at checkpoints, no fsync per commit
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _postgres(url: StoreURL) -> Connection:
    try:
        from .postgres import connect_postgres
    except ImportError as exc:
        if not (exc.name or "").startswith("psycopg"):
            raise
        raise ConfigError(
            f"the store {url} is PostgreSQL, which needs psycopg: pip install 'llmcorr[postgres]'"
        ) from None
    return connect_postgres(url, lock_timeout_ms=BUSY_TIMEOUT_MS)
