"""Open the store: the one place that opens connections, then migrates.

A SQLite file (the default: WAL, foreign keys, busy timeout set here) or, for a team, a PostgreSQL server named by a
`postgresql://` URL (store/postgres.py; psycopg is imported only then). A URL is held in a `StoreURL`, which prints
without its password.

Either way the store gets a `Connection`: its statements in the store's one notation, rendered for the database by
its `Dialect` (dialect.py), which also builds the few statements whose shape differs; its write transactions taken
under the database's one write lock (`writing`); and a broken unique or foreign key raised as the one
`IntegrityError`, whichever driver reported it (translated here, where the driver is called).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Protocol

from ..errors import ConfigError
from ..locations import POSTGRES_SCHEMES, StoreURL
from .dialect import SQLITE, Dialect
from .migrations import migrate

BUSY_TIMEOUT_MS = 30_000


class IntegrityError(Exception):
    """A write broke a constraint: a unique key (a run name taken, a row written twice), a foreign key, NOT NULL. The
    one type both stores raise for it (the store catches this, never a driver's); the driver's error is its
    `__cause__`."""


class Row(Protocol):
    """A result row: by column name and by index (`sqlite3.Row`, or postgres.py's `Row`); `dict(row)` works."""

    def __getitem__(self, key: int | str, /) -> Any: ...
    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection:
    """One connection to the store's database (a sqlite3 connection here; postgres.py's subclass wraps psycopg's).

    `execute`/`executemany` take a statement in the store's notation (dialect.py: `{?}` for a parameter) and hand it
    to the driver rendered, with its parameters as the database can hold them; the driver's constraint violation
    becomes `IntegrityError`. Outside `writing()` each statement commits on its own (autocommit). (SQLite also takes
    its own `?`, but only `{?}` runs on both databases.)"""

    conflicts: ClassVar[tuple[type[Exception], ...]] = (sqlite3.IntegrityError,)  # the driver's "constraint broken"

    def __init__(self, driver: Any, dialect: Dialect = SQLITE) -> None:
        self.driver = driver  # the DB-API connection, in autocommit mode: transactions are `writing()`'s
        self.dialect = dialect

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        try:
            cursor: Cursor = self.driver.execute(self.dialect.render(sql), self.dialect.parameters(parameters))
        except self.conflicts as exc:
            raise IntegrityError(_first_line(exc)) from exc
        return cursor

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> Cursor:
        cursor = self.driver.cursor()
        try:
            cursor.executemany(self.dialect.render(sql), [self.dialect.parameters(p) for p in seq_of_parameters])
        except self.conflicts as exc:
            raise IntegrityError(_first_line(exc)) from exc
        return cursor

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """One transaction under the database's one write lock (writers take turns): committed when the block ends,
        rolled back when it raises (or when COMMIT fails, which would leave SQLite's transaction open)."""
        try:
            self.driver.execute(self.dialect.begin_write)  # as written: PostgreSQL's is two statements
            yield self
            self.execute("COMMIT")
        except BaseException:
            if self.in_transaction():
                self.driver.execute("ROLLBACK")
            raise

    def in_transaction(self) -> bool:
        return bool(self.driver.in_transaction)

    def close(self) -> None:
        self.driver.close()


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def store_location(where: Path | str | StoreURL) -> Path | StoreURL:
    """A store's location as given (a file path, a postgresql:// URL or a StoreURL), normalised."""
    if isinstance(where, StoreURL):
        return where
    if isinstance(where, str) and where.startswith(POSTGRES_SCHEMES):
        return StoreURL(where)
    return Path(where)


def connect(where: Path | str | StoreURL, *, migrated: bool = True) -> Connection:
    """A connection to the store at `where` (a SQLite file, created if missing, or a PostgreSQL database), migrated
    to the current schema (unless `migrated=False`: for tests of the migrations)."""
    location = store_location(where)
    conn = _postgres(location) if isinstance(location, StoreURL) else _sqlite(location)
    if migrated:
        migrate(conn)
    return conn


def _sqlite(path: Path) -> Connection:
    if str(path) != ":memory:":
        path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable at checkpoints, no fsync per commit
    conn.execute("PRAGMA foreign_keys = ON")
    return Connection(conn, SQLITE)


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
