"""What differs between the store's two databases, said in one place: a `Dialect` per backend, asked by the code that
writes the store's SQL. A statement reaches its driver as the store built it; nothing parses or rewrites it afterwards.

The store writes SQL once, in SQL both databases share, with three tokens that a dialect renders (`render`):

| token       | SQLite (the default) | PostgreSQL (psycopg)                                                   |
|-------------|----------------------|------------------------------------------------------------------------|
| `{?}`       | `?`                  | `%s`; every other `%` doubled, as psycopg reads `%%` as one `%`        |
| `{INT64}`   | `INTEGER`            | `BIGINT` (SQLite's INTEGER holds 64 bits, PostgreSQL's 32)             |
| `{FLOAT64}` | `REAL`               | `DOUBLE PRECISION` (SQLite's REAL is 8 bytes, PostgreSQL's 4)          |

`{?}` is the store's only parameter token, so every `%` in its SQL is literal text and doubling it is always right; a
`?` or `%` inside a string literal stays what it is. The statements whose shape differs the dialect builds itself:

| asked for                       | SQLite                    | PostgreSQL                                             |
|---------------------------------|---------------------------|--------------------------------------------------------|
| `insert_ignore(table, columns)` | `INSERT OR IGNORE INTO …` | `INSERT INTO … ON CONFLICT DO NOTHING`                 |
| `upsert(table, columns, key)`   | `INSERT OR REPLACE …`     | `… ON CONFLICT (key) DO UPDATE SET c = EXCLUDED.c, …`, |
|                                 | (a delete and an insert:  | and `rowid = DEFAULT` when asked to `renumber`: a      |
|                                 | the row gets a new rowid) | replaced row counts as a new write, as on SQLite       |
| `begin_write` (the write lock)  | `BEGIN IMMEDIATE`         | `BEGIN` + a transaction-scoped advisory lock           |
| `json_array_contains(column)`   | `json_each(column)`       | `column::jsonb @> …`                                   |
| `parameters(values)`            | as given                  | a NUL in a string becomes U+FFFD (text cannot hold it) |
| `has_rowid`                     | every table has one       | a table that needs one gets a column (migrations m004) |

Pure strings: no driver is imported here (db.py and postgres.py hold the connections).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, ClassVar

PARAM = "{?}"  # the store's one parameter token
WRITE_LOCK = 0x6C6C6D636F7272  # "llmcorr" read as a number: the advisory lock standing for SQLite's one write lock


def values(columns: Sequence[str]) -> str:
    """`(a, b) VALUES ({?}, {?})`: a column list and one parameter for each."""
    return f"({', '.join(columns)}) VALUES ({', '.join([PARAM] * len(columns))})"


def insert(table: str, columns: Sequence[str]) -> str:
    """A plain INSERT of one row (the same in both dialects)."""
    return f"INSERT INTO {table} {values(columns)}"


class Dialect:
    """SQLite's SQL, the default store's; `PostgresDialect` says what PostgreSQL needs instead."""

    name = "sqlite"
    param = "?"  # sqlite3's paramstyle, qmark
    types: ClassVar[dict[str, str]] = {"{INT64}": "INTEGER", "{FLOAT64}": "REAL"}
    begin_write = "BEGIN IMMEDIATE"  # the database's one write lock, taken at once: writers queue (busy timeout)
    has_rowid = True  # SQLite numbers every table's rows (rowid), growing with each write
    create_needs_lock = False  # `CREATE … IF NOT EXISTS` may race another process's create (PostgreSQL's can)

    def __init__(self) -> None:
        # statements are few and reused: each is rendered once (the bound keeps ad-hoc ones from piling up)
        self.render = functools.lru_cache(maxsize=1024)(self._render)

    def _render(self, template: str) -> str:
        """The statement `template` (in the store's notation, module docstring) as this database's driver takes it."""
        sql = template.replace(PARAM, self.param)
        for token, type_name in self.types.items():
            sql = sql.replace(token, type_name)
        return sql

    def insert_ignore(self, table: str, columns: Sequence[str]) -> str:
        """Insert one row unless it would break a unique key (the row there stays as it is)."""
        return f"INSERT OR IGNORE INTO {table} {values(columns)}"

    def upsert(self, table: str, columns: Sequence[str], key: Sequence[str], *, renumber: bool = False) -> str:
        """Insert one row, replacing the one with the same `key` (its primary key). SQLite deletes that row and
        inserts this one, which gets a new rowid; `renumber` asks PostgreSQL for the same."""
        return f"INSERT OR REPLACE INTO {table} {values(columns)}"

    def json_array_contains(self, column: str) -> str:
        """True when the JSON list in `column` holds the text parameter `{?}` as one of its items."""
        return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE json_each.value = {PARAM})"

    def parameters(self, given: Sequence[Any]) -> Sequence[Any]:
        """A statement's parameters as this database can hold them (SQLite: as given)."""
        return given

    def __repr__(self) -> str:
        return f"<{self.name} dialect>"


class PostgresDialect(Dialect):
    """PostgreSQL through psycopg (store/postgres.py)."""

    name = "postgresql"
    param = "%s"  # psycopg's paramstyle, format
    types: ClassVar[dict[str, str]] = {"{INT64}": "BIGINT", "{FLOAT64}": "DOUBLE PRECISION"}
    begin_write = f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"  # one round trip; released at COMMIT/ROLLBACK
    has_rowid = False
    create_needs_lock = True

    def _render(self, template: str) -> str:
        return super()._render(template.replace("%", "%%"))  # `{?}` is the only parameter: any other % is literal

    def insert_ignore(self, table: str, columns: Sequence[str]) -> str:
        return f"{insert(table, columns)} ON CONFLICT DO NOTHING"

    def upsert(self, table: str, columns: Sequence[str], key: Sequence[str], *, renumber: bool = False) -> str:
        updates = [f"{c} = EXCLUDED.{c}" for c in columns if c not in key]
        if renumber:
            updates.append("rowid = DEFAULT")  # the table's rowid column (a BIGSERIAL) takes the next number
        action = f"DO UPDATE SET {', '.join(updates)}" if updates else "DO NOTHING"
        return f"{insert(table, columns)} ON CONFLICT ({', '.join(key)}) {action}"

    def json_array_contains(self, column: str) -> str:
        return f"{column}::jsonb @> jsonb_build_array({PARAM}::text)"

    def parameters(self, given: Sequence[Any]) -> Sequence[Any]:
        """PostgreSQL text cannot hold NUL, which SQLite stores: a NUL in a string (an odd LLM answer) becomes
        U+FFFD."""
        return tuple(p.replace("\x00", "\ufffd") if isinstance(p, str) and "\x00" in p else p for p in given)


SQLITE = Dialect()
POSTGRESQL = PostgresDialect()
