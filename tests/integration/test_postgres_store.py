"""The shared PostgreSQL store on a real server (tests/pg.py): migrations on a blank and on an old database, opens
racing on a blank one, a batch run end to end through the CLI with LLMCORR_STORE (list, show, the response cache,
spans), one-line errors for a server that cannot be reached, and a password that is never shown or stored.
(tests/unit/test_store.py runs the store's own checks on both SQLite and PostgreSQL.)"""

from __future__ import annotations

import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from bench.quota_server import DEFINE_PROMPTY as PROMPTY
from llmcorr.config import Config
from llmcorr.errors import ConfigError
from llmcorr.store import Store
from llmcorr.store.db import connect
from llmcorr.store.migrations import MIGRATIONS, migrate
from tests.pg import PASSWORD, USER
from tests.servers import ScriptedServer, ok

from .conftest import quota_toml, run_cli, store_path


def shown(url: str) -> str:
    """How llmcorr names the store: postgresql://USER@127.0.0.1:PORT/DB."""
    return url.replace(f":{PASSWORD}@", "@")


def column_types(store: Store, table: str) -> dict[str, str]:
    sql = "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = {?}"
    return {r[0]: r[1] for r in store.conn.execute(sql, (table,))}


def test_a_blank_database_gets_every_migration_and_reopening_applies_none(postgres_url: str) -> None:
    with Store(postgres_url) as store:
        names = [r["name"] for r in store.conn.execute("SELECT name FROM _migrations ORDER BY name")]
        assert names == [fn.__name__ for fn in MIGRATIONS]
        assert migrate(store.conn) == []  # nothing left to apply
        spans, rows = column_types(store, "spans"), column_types(store, "rows")
        assert spans["start_ns"] == "bigint" and rows["duration_ms"] == "double precision"  # SQLite's 64-bit types
        assert str(store.path) == shown(postgres_url) and PASSWORD not in repr(store.path)
    with Store(postgres_url) as store:  # re-opened: the same migrations, recorded once
        assert store.conn.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)


def test_an_old_database_is_upgraded_and_keeps_its_runs(postgres_url: str) -> None:
    """A database at the first migration only opens, migrates, and keeps its runs and rows."""
    conn = connect(postgres_url, migrated=False)
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_utc TEXT NOT NULL)")
    MIGRATIONS[0](conn)
    conn.execute("INSERT INTO _migrations VALUES ('m001_runs_and_rows', '2026-11-27T00:00:00')")
    conn.execute(
        "INSERT INTO runs (id, kind, status, spec_json, created_utc, rows_total, rows_done) "
        "VALUES ('abc', 'correct', 'completed', '{}', '2026-11-27T00:00:00', 1, 1)"
    )
    conn.execute(
        "INSERT INTO rows (run_id, row_index, inputs_json, status, created_utc) "
        "VALUES ('abc', 0, '{}', 'ok', '2026-11-27T00:00:00')"
    )
    conn.close()
    with Store(postgres_url) as store:
        run = store.get_run("abc")
        assert (run.status, run.rows_done, run.rate_limited, run.tags, run.archived) == ("completed", 1, 0, [], False)
        assert store.rows("abc")[0].endpoint is None and not store.rows("abc")[0].cached
        assert len(store.conn.execute("SELECT name FROM _migrations").fetchall()) == len(MIGRATIONS)


def test_stores_opening_a_blank_database_at_once_migrate_it_once(postgres_url: str) -> None:
    start = threading.Barrier(4)

    def open_store() -> int:
        start.wait()
        with Store(postgres_url) as store:  # each its own connection, as separate processes would have
            return int(store.conn.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0])

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda _: open_store(), range(4))) == [len(MIGRATIONS)] * 4


def test_a_batch_run_end_to_end_in_postgresql(
    postgres_url: str, tmp_path: Path, llmcorr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMCORR_STORE", postgres_url)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "define.prompty").write_text(PROMPTY)
    pd.DataFrame({"word": ["acid", "base", "salt"]}).to_csv(tmp_path / "words.csv", index=False)
    with ScriptedServer(ok("A definition.", prompt_tokens=9, completion_tokens=3)) as server:
        (tmp_path / "llmcorr.toml").write_text(quota_toml(server.base_url))
        first = run_cli("run", "define.prompty", "-d", "words.csv", "--name", "words", "-q")
        again = run_cli("run", "define.prompty", "-d", "words.csv", "--name", "words-again", "-q")
        listed = run_cli("runs", "list", "--json")
        detail = run_cli("runs", "show", "words")
    for r in (first, again, listed, detail):
        assert r.returncode == 0, r.stderr
        assert PASSWORD not in r.stdout + r.stderr
    assert len(server.requests) == 3  # the rerun was answered from the cache in PostgreSQL
    runs = {r["name"]: r for r in json.loads(listed.stdout)}
    assert runs["words"]["status"] == runs["words-again"]["status"] == "completed"
    assert (runs["words"]["rows_done"], runs["words"]["input_tokens"], runs["words"]["output_tokens"]) == (3, 27, 9)
    assert runs["words-again"]["input_tokens"] == 0
    assert "words" in detail.stdout and runs["words"]["id"] in detail.stdout
    assert not store_path(llmcorr_home).exists()  # nothing went to the SQLite file
    with Store(postgres_url) as store:
        again_rows = store.rows(runs["words-again"]["id"])
        assert [r.response for r in again_rows] == ["A definition."] * 3 and all(r.cached for r in again_rows)
        spans = store.spans(runs["words"]["id"])
        assert {s["kind"] for s in spans} >= {"run", "row", "llm"} and len(spans) >= 7
        cursor_spans, _ = store.spans_written_after(runs["words"]["id"])
        assert sorted(s["span_id"] for s in cursor_spans) == sorted(s["span_id"] for s in spans)
        everything = json.dumps([run.__dict__ for run in store.list_runs()])
    assert PASSWORD not in everything and str(Config.load().store_path) == shown(postgres_url)


def test_a_server_that_cannot_be_reached_is_one_line(postgres_server: str, tmp_path: Path) -> None:
    refused = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:1/nowhere"
    r = run_cli("runs", "list", env={"LLMCORR_STORE": refused})
    assert r.returncode == 2
    assert r.stderr.startswith(f"error: cannot open the store postgresql://{USER}@127.0.0.1:1/nowhere: ")
    assert len(r.stderr.strip().splitlines()) == 1 and PASSWORD not in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(ConfigError, match="password authentication failed") as wrong:
        Store(postgres_server.replace(PASSWORD, "not-the-password") + "/postgres")
    assert "not-the-password" not in str(wrong.value)
    (tmp_path / "llmcorr.toml").write_text('store_url = "mysql://me:hunter2@db/x"\n')
    with pytest.raises(ConfigError, match="store_url: expected a PostgreSQL URL") as bad:
        Config.load(tmp_path / "llmcorr.toml")
    assert "hunter2" not in str(bad.value)


def test_without_psycopg_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "llmcorr.store.postgres", raising=False)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"pip install 'llmcorr\[postgres\]'"):
        Store(f"postgresql://{USER}:{PASSWORD}@127.0.0.1:1/x")
