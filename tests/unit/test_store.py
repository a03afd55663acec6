from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from llmcorr.errors import NotFoundError, UserError
from llmcorr.store import IntegrityError, RowRecord, Store, connect, row_writes
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
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert migrate(connect(path, migrated=False)) == []  # nothing left to apply


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
        assert rows[0].output == {"v": 1} and rows[1].error == "HTTP 500"
        assert rows[1].response == ("odd\x00answer" if isinstance(where, Path) else "odd\ufffdanswer")  # PG: no NUL
        assert store.row_status_counts(run_id) == {"error": 1, "ok": 1}
        with pytest.raises(IntegrityError):  # a row is written once
            store.add_row(run_id, RowRecord(0, "a", {}, "ok"))
        assert store.get_run(run_id).rows_done == 2  # the failed transaction left the totals alone
        store.finish_run(run_id, "completed", metrics={"n": 2})
        assert store.get_run(run_id[:6]).metrics == {"n": 2}


def test_rows_come_back_as_the_records_that_went_in_and_partial_reads_keep_defaults(where: Path | str) -> None:
    """`rows` hands out `RowRecord`s equal to those committed; a read of some columns sets only their fields."""
    written = [
        RowRecord(0, "a", {"x": 1}, "ok", [{"role": "user", "content": "hi"}], "yes", {"v": 1}, None, 5, 2, 1.5, 1),
        RowRecord(1, "b", {"x": 2}, "error", error="HTTP 500", attempts=3, endpoint="q"),
    ]
    with Store(where) as store:
        run_id = store.create_run("prompt", {}, rows_total=2)
        store.add_rows(run_id, written)
        assert store.rows(run_id) == written
        statuses = list(store.iter_rows(run_id, "status"))
        some = list(store.iter_rows(run_id, "status, output_json, inputs_json"))
    assert statuses == [RowRecord(0, status="ok"), RowRecord(1, status="error")]  # the rest: defaults
    assert [(r.status, r.output, r.inputs, r.response, r.input_tokens) for r in some] == [
        ("ok", {"v": 1}, {"x": 1}, None, 0),
        ("error", None, {"x": 2}, None, 0),
    ]


def test_a_broken_constraint_is_one_error_type_on_either_store(where: Path | str) -> None:
    """A unique or foreign-key violation is `llmcorr.store.IntegrityError` whichever driver reported it (its own
    error the cause), and the write transaction it broke is rolled back, leaving the store usable."""
    driver = sqlite3.IntegrityError if isinstance(where, Path) else pytest.importorskip("psycopg").IntegrityError
    with Store(where) as store:
        run_id, conn = store.create_run("correct", {}, 1, name="taken"), store.conn
        taken = (
            "INSERT INTO runs (id, name, kind, status, spec_json, created_utc) VALUES ('x', {?}, 'k', 's', '{}', 't')"
        )
        with pytest.raises(IntegrityError, match=r"(?i)unique|duplicate") as unique, conn.writing():
            conn.execute("UPDATE runs SET rows_total = 7 WHERE id = {?}", (run_id,))
            conn.execute(taken, ("taken",))
        assert isinstance(unique.value.__cause__, driver)
        assert store.get_run(run_id).rows_total == 1 and not conn.in_transaction()  # rolled back
        orphan = row_writes.row_values("no-such-run", RowRecord(0, None, {}, "ok"), "t")
        with pytest.raises(IntegrityError, match=r"(?i)foreign key") as foreign:
            conn.executemany(row_writes.INSERT_ROW, [orphan])
        assert isinstance(foreign.value.__cause__, driver)
        store.add_row(run_id, RowRecord(0, None, {}, "ok"))  # the store goes on
        assert tuple(conn.execute("SELECT '50%', '?', {?}", ("x",)).fetchone()) == ("50%", "?", "x")  # literal % ?


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
    conn = connect(path, migrated=False)
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
        assert store.rows("abc")[0].endpoint is None
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
        store.finish_run(a, "completed")  # (while a runs, no other run may claim its file: test_output_guard.py)
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


def _usage(requests: int, tokens_in: int, tokens_out: int, limited: int = 0, cost: float | None = None) -> dict:
    """A process's per-endpoint usage as `Scheduler.stats()` gives it (rates included: a segment drops them)."""
    q = {"requests": requests, "ok": requests - limited, "rate_limited": limited, "errors": 0}
    q |= {"input_tokens": tokens_in, "output_tokens": tokens_out, "requests_per_min": 99.0, "tokens_per_min": 9.0}
    return {"q": q | {"cost": cost, "rpm": 600, "tpm": None}}


def test_usage_accumulates_over_the_processes_that_work_on_a_run(where: Path | str) -> None:
    """Issue 12: a resume used to replace the run's usage with its own (a no-op resume turned 16 requests into 0)."""
    with Store(where) as first:  # each Store stands for one process
        run_id = first.create_run("prompt", {}, 3, name="acc")
        first.add_rows(run_id, [RowRecord(0, None, {}, "ok", input_tokens=10, output_tokens=2)], _usage(6, 60, 12, 1))
        first.finish_run(run_id, "cancelled", usage=_usage(7, 70, 14, 1, cost=0.5))
    with Store(where) as store:
        after_first = store.get_run("acc")
    assert after_first.usage is not None and after_first.usage["q"]["requests"] == 7
    with Store(where) as noop:  # a resume with nothing left to do: its own usage is all zeros
        noop.reopen_run(run_id)
        noop.finish_run(run_id, "completed", usage=_usage(0, 0, 0, cost=0.0))
    with Store(where) as store:
        run = store.get_run("acc")
        assert run.usage is not None and run.rate_limited == 1
        q = run.usage["q"]
        assert (q["requests"], q["ok"], q["rate_limited"], q["input_tokens"], q["output_tokens"]) == (7, 6, 1, 70, 14)
        assert q["cost"] == 0.5 and q["rpm"] == 600
        store.reopen_run(run_id)  # a real resume: its usage adds to the two before
        store.add_rows(run_id, [RowRecord(1, None, {}, "ok", input_tokens=10, output_tokens=2)], _usage(2, 20, 4))
        assert store.get_run("acc").usage["q"]["requests"] == 9  # accumulated with each commit, not only at the end
        store.finish_run(run_id, "completed", usage=_usage(3, 30, 6, cost=0.25))
        run = store.get_run("acc")
        q = run.usage["q"]
        assert (q["requests"], q["input_tokens"], q["output_tokens"], q["cost"]) == (10, 100, 20, 0.75)
        parts = store.segments(run_id)
        assert len(parts) == 3 and [p["usage"]["q"]["requests"] for p in parts] == [7, 0, 3]
        assert "requests_per_min" not in parts[0]["usage"]["q"]  # a process's own pace is not summed
        assert run.busy_s is not None and run.active_utc == run.finished_utc
        spans = [datetime.fromisoformat(p["active_utc"]) - datetime.fromisoformat(p["started_utc"]) for p in parts]
        assert run.busy_s == pytest.approx(sum(d.total_seconds() for d in spans), abs=1e-3)


def test_a_killed_process_leaves_the_usage_of_every_row_it_committed(where: Path | str) -> None:
    """Usage used to be written only when a run finished: SIGKILL lost all of it."""
    code = (
        "import os, signal, sys; from llmcorr.store import RowRecord, Store; s = Store(sys.argv[1]);"
        "run = s.create_run('prompt', {}, 5, name='victim'); print(run, flush=True);"
        "q = {'requests': 4, 'ok': 3, 'rate_limited': 1, 'errors': 0, 'input_tokens': 30, 'output_tokens': 6,"
        " 'cost': None};"
        "s.add_rows(run, [RowRecord(i, None, {}, 'ok', input_tokens=10, output_tokens=2) for i in range(3)],"
        " usage={'q': q});"
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(where)], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    with Store(where) as store:
        run = store.get_run("victim")
        assert run.status == "interrupted" and run.rows_done == 3
        assert run.usage is not None and run.usage["q"]["requests"] == 4 and run.rate_limited == 1
        assert run.usage["q"]["input_tokens"] >= run.input_tokens and run.busy_s is not None


def _store_before_segments(where: Path | str) -> None:
    """A store as llmcorr wrote it before m005 (migrations m001-m004), with a finished and a killed run."""
    conn = connect(where, migrated=False)
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_utc TEXT NOT NULL)")
    for fn in MIGRATIONS[:4]:
        fn(conn)
        conn.execute("INSERT INTO _migrations VALUES ({?}, '2026-11-27T00:00:00')", (fn.__name__,))
    usage = {"q": {"requests": 16, "ok": 16, "rate_limited": 2, "errors": 0, "input_tokens": 160}}
    usage["q"] |= {"output_tokens": 32, "requests_per_min": 18.5, "tokens_per_min": 222.0, "cost": 0.0012}
    conn.execute(
        "INSERT INTO runs (id, kind, status, spec_json, created_utc, finished_utc, rows_total, rows_done,"
        " input_tokens, output_tokens, rate_limited, usage_json) VALUES ('old', 'prompt', 'cancelled', '{}',"
        " '2026-11-27T10:00:00.000+00:00', '2026-11-27T10:00:51.800+00:00', 20, 16, 160, 32, 2, {?})",
        (json.dumps(usage),),
    )
    conn.execute(  # killed: never finished, no usage recorded (naive timestamps, as the first versions wrote)
        "INSERT INTO runs (id, kind, status, spec_json, created_utc, rows_total) "
        "VALUES ('dead', 'prompt', 'interrupted', '{}', '2026-11-27T09:00:00', 5)"
    )
    conn.close()


def test_an_older_store_upgrades_and_its_runs_keep_their_usage(where: Path | str) -> None:
    _store_before_segments(where)
    with Store(where) as store:
        old = store.get_run("old")
        assert old.usage is not None and old.usage["q"]["requests"] == 16 and old.usage["q"]["cost"] == 0.0012
        assert old.rate_limited == 2 and old.busy_s == pytest.approx(51.8)
        assert store.get_run("dead").usage is None and store.get_run("dead").busy_s == 0
        assert [p["usage"]["q"]["requests"] for p in store.segments("old")] == [16]
        store.reopen_run("old")  # resumed by this version: the old usage stands, the new adds to it
        store.finish_run("old", "completed", usage=_usage(4, 40, 8, cost=0.0003))
        q = store.get_run("old").usage["q"]
        assert (q["requests"], q["ok"], q["rate_limited"], q["input_tokens"]) == (20, 20, 2, 200)
        assert q["cost"] == pytest.approx(0.0015)
        assert store.conn.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)


def test_deleting_a_run_deletes_its_segments(where: Path | str) -> None:
    with Store(where) as store:
        run_id = store.create_run("prompt", {}, 1)
        store.finish_run(run_id, "completed", usage=_usage(1, 10, 2))
        store.delete_run(run_id)
        assert store.conn.execute("SELECT COUNT(*) FROM run_segments").fetchone()[0] == 0
