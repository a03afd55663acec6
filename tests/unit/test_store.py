from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from llmcorr.errors import NotFoundError, UserError
from llmcorr.store import RowRecord, Store
from llmcorr.store.migrations import MIGRATIONS, migrate


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """A blank store: a SQLite file, or a database of its own on a real PostgreSQL server (tests/pg.py)."""
    return tmp_path / "s.db" if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


def test_blank_store_is_migrated_once(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    names = [r[0] for r in conn.execute("SELECT name FROM _migrations")]
    assert names == [fn.__name__ for fn in MIGRATIONS]
    assert migrate(conn) == []  # nothing left to apply
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_rows_commit_with_totals(where: Path | str) -> None:
    with Store(where) as store:
        run_id = store.create_run("correct", {"k": 1}, rows_total=2, name="first")
        store.add_row(
            run_id,
            RowRecord(
                0, "a", {"x": 1}, "ok", response="Prediction: True", output={"v": 1}, input_tokens=10, output_tokens=3
            ),
        )
        store.add_row(run_id, RowRecord(1, "b", {"x": 2}, "error", error="HTTP 500", response="odd\x00answer"))
        run = store.get_run("first")
        assert (run.id, run.rows_done, run.rows_failed, run.input_tokens, run.output_tokens) == (run_id, 2, 1, 10, 3)
        rows = store.rows(run_id)
        assert rows[0]["output"] == {"v": 1} and rows[1]["error"] == "HTTP 500"
        assert rows[1]["response"] == ("odd\x00answer" if isinstance(where, Path) else "odd\ufffdanswer")  # PG: no NUL
        assert store.row_status_counts(run_id) == {"error": 1, "ok": 1}
        with pytest.raises(sqlite3.IntegrityError):  # a row is written once
            store.add_row(run_id, RowRecord(0, "a", {}, "ok"))
        assert store.get_run(run_id).rows_done == 2  # the failed transaction left the totals alone
        store.finish_run(run_id, "completed", metrics={"n": 2})
        assert store.get_run(run_id[:6]).metrics == {"n": 2}


def test_names_are_unique_and_lookups_fail_clearly(where: Path | str) -> None:
    with Store(where) as store:
        store.create_run("correct", {}, 0, name="dup")
        with pytest.raises(UserError, match="already exists"):
            store.check_name_free("dup")
        with pytest.raises(UserError, match="already exists"):
            store.create_run("correct", {}, 0, name="dup")
        with pytest.raises(UserError, match="already exists; choose another name"):
            store.rename_run(store.create_run("correct", {}, 0, name="other"), "dup")
        with pytest.raises(NotFoundError, match="no run with id or name 'nope'"):
            store.get_run("nope")


def test_delete_cascades_to_rows(where: Path | str) -> None:
    with Store(where) as store:
        run_id = store.create_run("correct", {}, 1)
        store.add_row(run_id, RowRecord(0, "a", {}, "ok"))
        store.delete_run(run_id)
        assert store.conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0] == 0


def test_run_of_a_dead_process_is_interrupted(where: Path | str) -> None:
    path = where
    code = (
        "import sys; from llmcorr.store import Store; s = Store(sys.argv[1]);"
        "print(s.create_run('correct', {}, 5, name='victim'))"
    )
    run_id = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    ).stdout.strip()
    with Store(path) as store:  # the child has exited without finishing its run
        run = store.get_run(run_id)
        assert run.status == "interrupted"
        assert run.finished_utc is not None
        mine = store.create_run("correct", {}, 1)
        assert store.recover_interrupted() == []  # a run of a live process is left alone
        assert store.get_run(mine).status == "running"


def test_upgrade_from_a_first_version_store(tmp_path: Path) -> None:
    """A store written by the skeleton (only m001) opens, migrates, and keeps its runs and rows."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
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
    with Store(path) as store:
        run = store.get_run("abc")
        assert (run.status, run.rows_done, run.rate_limited, run.usage) == ("completed", 1, 0, None)
        assert store.rows("abc")[0]["endpoint"] is None
        names = [r[0] for r in store.conn.execute("SELECT name FROM _migrations ORDER BY name")]
        assert names == [fn.__name__ for fn in MIGRATIONS]


def _span(run_id: str, span_id: str, row: int | None, start_ns: int, end_ns: int) -> tuple[object, ...]:
    return (span_id, "t" * 32, None, run_id, row, "row", f"row {row}", start_ns, end_ns, "ok", None, '{"k": 1}')


def test_spans_written_after_a_cursor_are_found_whatever_their_end_time(where: Path | str) -> None:
    with Store(where) as store:
        run_id, other = store.create_run("prompt", {}, 2), store.create_run("prompt", {}, 1)
        store.add_spans([_span(run_id, "a", 0, 10, 50), _span(other, "x", 0, 1, 2)])
        spans, cursor = store.spans_written_after(run_id)
        assert [s["span_id"] for s in spans] == ["a"] and spans[0]["attributes"] == {"k": 1}
        assert "_seq" not in spans[0] and set(spans[0]) == set(store.spans(run_id)[0])
        # row 1's spans ended before row 0's but reach the store later (when row 1 ends): a time bound misses them
        store.add_spans([_span(run_id, "b", 1, 5, 20), _span(run_id, "c", 1, 1, 30)])
        assert store.spans(run_id, since_ns=50) == []
        spans, cursor = store.spans_written_after(run_id, cursor)
        assert [s["span_id"] for s in spans] == ["c", "b"]  # oldest first within what is new
        assert store.spans_written_after(run_id, cursor) == ([], cursor)
        assert [s["span_id"] for s in store.spans_written_after(run_id, row_index=1)[0]] == ["c", "b"]


def test_runs_with_output_compares_resolved_paths(
    where: Path | str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with Store(where) as store:
        a, b, c = (store.create_run("prompt", {}, 1) for _ in range(3))
        store.set_output_path(a, "out.csv")  # relative: stored resolved
        store.set_output_path(b, tmp_path / "out.csv")
        store.set_output_path(c, None)
        assert store.get_run(a).output_path == str(tmp_path / "out.csv")
        assert sorted(store.runs_with_output("out.csv")) == sorted([a, b])
        assert store.runs_with_output(tmp_path / "other.csv") == []


def test_like_wildcards_in_names_and_id_prefixes_are_literal(where: Path | str) -> None:
    with Store(where) as store:
        a = store.create_run("correct", {}, 1, name="try_1")
        store.create_run("correct", {}, 1, name="tryX1")
        assert [r.name for r in store.list_runs(name="try_")] == ["try_1"]  # _ is not "any character"
        assert store.list_runs(name="%") == []
        with pytest.raises(NotFoundError, match="no run with id or name '%'"):
            store.get_run("%")  # not "every run whose id starts with anything"
        assert store.get_run(a[:6]).id == a


def test_a_span_written_again_replaces_the_first_and_counts_as_new(where: Path | str) -> None:
    with Store(where) as store:
        run_id = store.create_run("prompt", {}, 1)
        store.add_spans([_span(run_id, "a", 0, 10, 20)])
        _, cursor = store.spans_written_after(run_id)
        store.add_spans([_span(run_id, "a", 0, 10, 40)])  # the same span again (an exporter's retry): replaced
        assert [(s["span_id"], s["end_ns"]) for s in store.spans(run_id)] == [("a", 40)]
        assert [s["end_ns"] for s in store.spans_written_after(run_id, cursor)[0]] == [40]  # a follower sees it


def test_tags_and_name_search_match_exactly_what_they_say(where: Path | str) -> None:
    with Store(where) as store:
        a, b = store.create_run("prompt", {}, 1, name="Alpha run"), store.create_run("prompt", {}, 1, name="beta")
        store.tag_run(a, add=["base", 'x"y'])
        store.tag_run(b, add=["baseline"])
        assert [r.id for r in store.list_runs(tag="base")] == [a]  # a whole tag, not a part of one
        assert [r.id for r in store.list_runs(tag='x"y')] == [a] and store.list_runs(tag="y") == []
        assert [r.id for r in store.list_runs(name="PHA R")] == [a]  # part of a name, any case
        assert store.list_runs(tag="Base") == []  # tags are case-sensitive
