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
from .migrations import migrate

BUSY_TIMEOUT_MS = 30_000
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


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


class StoreURL:
    """A PostgreSQL store's URL. It prints as `postgresql://user@host:port/db`: the password (and the query, which
    may carry one) never reaches a message, a log or a run's spec; `secret` is for opening the connection only."""

    __slots__ = ("secret",)

    def __init__(self, url: str) -> None:
        if not url.startswith(POSTGRES_SCHEMES):
            raise ConfigError("store_url: expected a postgresql://user@host:port/db URL (PostgreSQL)")
        self.secret = url

    def __str__(self) -> str:
        scheme, _, rest = self.secret.partition("://")
        authority, slash, path = rest.partition("/")
        userinfo, at, hosts = authority.rpartition("@")  # the host part never holds the password
        user = userinfo.partition(":")[0]
        return f"{scheme}://{user + '@' if at and user else ''}{hosts}{slash}{path.partition('?')[0]}"

    def __repr__(self) -> str:
        return f"StoreURL({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoreURL) and other.secret == self.secret

    def __hash__(self) -> int:
        return hash(self.secret)


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
