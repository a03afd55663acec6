"""The store's SQL notation and the statements each database's dialect builds (store/dialect.py): pure strings, no
database. tests/unit/test_store.py runs them on real SQLite and PostgreSQL."""

from __future__ import annotations

from llmcorr.store.dialect import POSTGRESQL, SQLITE, WRITE_LOCK, insert

STATEMENT = "SELECT '50%', '?', x FROM t WHERE a = {?} AND b LIKE {?} -- why? 100%"
DDL = "CREATE TABLE t (n {INT64} NOT NULL, x {FLOAT64}, s TEXT DEFAULT '{}')"


def test_sqlite_renders_its_own_paramstyle_and_types_and_leaves_the_rest_alone() -> None:
    assert SQLITE.render(STATEMENT) == "SELECT '50%', '?', x FROM t WHERE a = ? AND b LIKE ? -- why? 100%"
    assert SQLITE.render(DDL) == "CREATE TABLE t (n INTEGER NOT NULL, x REAL, s TEXT DEFAULT '{}')"  # as always


def test_postgresql_renders_psycopg_paramstyle_with_every_other_percent_literal() -> None:
    assert POSTGRESQL.render(STATEMENT) == "SELECT '50%%', '?', x FROM t WHERE a = %s AND b LIKE %s -- why? 100%%"
    assert POSTGRESQL.render(DDL) == "CREATE TABLE t (n BIGINT NOT NULL, x DOUBLE PRECISION, s TEXT DEFAULT '{}')"


def test_inserts_that_ignore_or_replace_a_row_with_the_same_key() -> None:
    columns, key = ("k", "a", "b"), ("k",)
    assert insert("t", columns) == "INSERT INTO t (k, a, b) VALUES ({?}, {?}, {?})"
    assert SQLITE.insert_ignore("t", columns) == "INSERT OR IGNORE INTO t (k, a, b) VALUES ({?}, {?}, {?})"
    assert (
        SQLITE.upsert("t", columns, key, renumber=True) == "INSERT OR REPLACE INTO t (k, a, b) VALUES ({?}, {?}, {?})"
    )
    pg_insert = "INSERT INTO t (k, a, b) VALUES ({?}, {?}, {?})"
    assert POSTGRESQL.insert_ignore("t", columns) == f"{pg_insert} ON CONFLICT DO NOTHING"
    assert (
        POSTGRESQL.upsert("t", columns, key)
        == f"{pg_insert} ON CONFLICT (k) DO UPDATE SET a = EXCLUDED.a, b = EXCLUDED.b"
    )
    assert POSTGRESQL.upsert("t", columns, key, renumber=True).endswith("b = EXCLUDED.b, rowid = DEFAULT")
    assert POSTGRESQL.upsert("t", ("k",), key) == "INSERT INTO t (k) VALUES ({?}) ON CONFLICT (k) DO NOTHING"


def test_write_lock_tag_lookup_rowid_and_parameters() -> None:
    assert SQLITE.begin_write == "BEGIN IMMEDIATE"
    assert POSTGRESQL.begin_write == f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
    assert "json_each(runs.tags_json)" in SQLITE.json_array_contains("runs.tags_json")
    assert POSTGRESQL.json_array_contains("c") == "c::jsonb @> jsonb_build_array({?}::text)"
    assert (SQLITE.has_rowid, POSTGRESQL.has_rowid) == (True, False)
    assert SQLITE.parameters(("a\x00b", 1, None)) == ("a\x00b", 1, None)
    assert POSTGRESQL.parameters(["a\x00b", 1, None]) == ("a\ufffdb", 1, None)  # PostgreSQL text cannot hold NUL
