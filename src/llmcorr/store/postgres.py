"""PostgreSQL for the store: a psycopg connection behind the store's `Connection` (db.py), with PostgreSQL's
`Dialect` (dialect.py) rendering the store's statements and building the few whose shape differs. Nothing here parses
or rewrites SQL; this module only opens and adapts the connection:

| the store needs                          | PostgreSQL gets                                                          |
|------------------------------------------|--------------------------------------------------------------------------|
| parameters, types, upserts, the write    | the PostgreSQL dialect's statements (dialect.py: `%s`, BIGINT, ON        |
| lock                                     | CONFLICT, an advisory lock)                                              |
| a unique or foreign-key violation        | `IntegrityError` (db.py), the one type both stores raise                 |
| rows by name and by index                | `Row`, like `sqlite3.Row`                                                |
| numbers as SQLite gives them             | numeric (what SUM() of integers gives) as int or float, never Decimal    |
| a transaction per `writing()` block      | autocommit, with explicit BEGIN / COMMIT / ROLLBACK                      |
| a server that cannot be reached          | one `ConfigError` line after 10 s, the URL's password never in it        |
| no statement hanging forever             | `statement_timeout` (5 min), and `lock_timeout` as SQLite's busy timeout |

The `rowid` SQLite gives every table is the migrations' business (migrations.py m004). Imported only when a store URL
names PostgreSQL: psycopg is an optional extra (`pip install 'llmcorr[postgres]'`).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import psycopg
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import RowMaker

from ..errors import ConfigError
from .db import Connection, StoreURL
from .dialect import POSTGRESQL

CONNECT_TIMEOUT_S = 10
STATEMENT_TIMEOUT_MS = 300_000  # a store statement is short; this only stops one that hangs on a sick server


class Row:
    """A result row like `sqlite3.Row`: `row["name"]`, `row[0]`, `dict(row)`, iteration over the values."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[str, int], values: Sequence[Any]) -> None:
        self._index = index
        self._values = values

    def __getitem__(self, key: int | str, /) -> Any:
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


class PgConnection(Connection):
    """The store's `Connection` over one psycopg connection (autocommit; transactions are `writing()`'s)."""

    conflicts: ClassVar[tuple[type[Exception], ...]] = (psycopg.IntegrityError,)  # unique, foreign key, not null

    def in_transaction(self) -> bool:
        return bool(self.driver.info.transaction_status != TransactionStatus.IDLE)


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
    return PgConnection(conn, POSTGRESQL)


def _first_line(exc: BaseException, url: StoreURL) -> str:
    """The error's gist on one line, never with the URL's password in it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    password = urllib.parse.urlsplit(url.secret).password
    for secret in {password, urllib.parse.unquote(password or "")} - {None, ""}:
        text = text.replace(str(secret), "***")
    return text
