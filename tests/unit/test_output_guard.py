"""The output guard (runs/outputs.py) on a real SQLite store and real files, the temp files of atomic writes, and
the column cap of input tables (data/io.py, data/stream.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from llmcorr.data import RowWriter, as_frame, open_table, read_table, write_table
from llmcorr.data.output import discard_stale_tmp
from llmcorr.data.output import tmp_path as temp_name
from llmcorr.errors import ConfigError, DataError
from llmcorr.runs.outputs import check_output, claim_output, same_file
from llmcorr.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "llmcorr.db") as s:
        yield s


def test_same_file_sees_through_links_and_dots(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a\n1\n")
    (tmp_path / "sym.csv").symlink_to(data)
    os.link(data, tmp_path / "hard.csv")
    (tmp_path / "sub").mkdir()
    for name in ("sym.csv", "hard.csv", "sub/../data.csv"):
        assert same_file(tmp_path / name, data)
    assert not same_file(tmp_path / "other.csv", data)  # not there yet: compared by resolved path
    assert same_file(tmp_path / "sub" / ".." / "new.csv", tmp_path / "new.csv")


def test_check_output_refuses_what_the_run_reads(tmp_path: Path, store: Store) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a\n1\n")
    (tmp_path / "out.csv").symlink_to(data)
    with pytest.raises(DataError, match=r"--output .*out\.csv: that is the run's data file \(.*data\.csv\)"):
        check_output(tmp_path / "out.csv", {"data file": data}, store)
    (tmp_path / "db.csv").symlink_to(tmp_path / "llmcorr.db")
    with pytest.raises(DataError, match=r"that is the run's store \("):
        check_output(tmp_path / "db.csv", {"data file": data}, store)
    assert check_output(tmp_path / "fresh.csv", {"data file": data, "prompt file": None}, store) == (
        tmp_path / "fresh.csv"
    )


def test_check_output_refuses_a_file_a_running_run_writes(tmp_path: Path, store: Store) -> None:
    out = tmp_path / "out.jsonl"
    run_id = store.create_run("prompt", {}, 3, name="busy")
    store.set_output_path(run_id, out)
    (tmp_path / "alias.jsonl").symlink_to(out)
    out.write_text("")
    for name in ("out.jsonl", "alias.jsonl"):
        with pytest.raises(DataError, match=rf"run busy \(pid {os.getpid()} on .*\) is writing that file now"):
            check_output(tmp_path / name, {}, store)
    check_output(tmp_path / "elsewhere.jsonl", {}, store)
    store.finish_run(run_id, "completed")
    assert check_output(out, {}, store) == out  # the run is over: the file is free


def test_two_runs_that_passed_the_check_together_cannot_both_claim_the_file(tmp_path: Path) -> None:
    """Both runs checked the output before either recorded it (two processes, two connections to one store): the
    claim is made under the store's write lock, so the second is refused and its empty run removed."""
    out, alias = tmp_path / "out.csv", tmp_path / "alias.csv"
    alias.symlink_to(out)
    with Store(tmp_path / "llmcorr.db") as first, Store(tmp_path / "llmcorr.db") as second:
        check_output(out, {}, first)
        check_output(alias, {}, second)  # nobody writes it yet: both pass
        a = first.create_run("prompt", {}, 3, name="a")
        b = second.create_run("prompt", {}, 3, name="b")
        claim_output(first, a, out)
        with pytest.raises(DataError, match=r"--output .*alias.csv: run a \(pid \d+ on .*\) is writing that file now"):
            claim_output(second, b, alias)
        assert [r.name for r in second.list_runs()] == ["a"]  # b did nothing: it is gone, not left "running"
        first.set_output_path(a, out)  # a run may claim its own file again (a resume)
        first.finish_run(a, "completed")
        c = second.create_run("prompt", {}, 3, name="c")
        claim_output(second, c, alias)  # a is over: the file is free
        assert second.get_run("c").output_path == str(out.resolve())


def exited_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_stale_temp_files_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    out = tmp_path / "out[1].csv"  # glob characters in the name are taken literally
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = [tmp_path / ".out[1].csv.tmp", tmp_path / f".out[1].csv.{exited_pid()}.tmp", own_temp(out)]
        kept = [tmp_path / f".out[1].csv.{live.pid}.tmp", tmp_path / ".out[1].csv.notes.tmp", tmp_path / ".o.csv.tmp"]
        for f in stale + kept:
            f.write_text("x")
        assert sorted(discard_stale_tmp(out)) == sorted(stale)
        assert [f.exists() for f in stale + kept] == [False] * 3 + [True] * 3
    finally:
        live.kill()
        live.wait()


def own_temp(path: Path) -> Path:
    """This process's temp file for `path` (a rewrite of its own that died with an exception)."""
    name = temp_name(path).name
    assert name == f".{path.name}.{os.getpid()}.tmp"  # named after the process that writes it
    return path.with_name(name)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_atomic_writes_leave_no_temp_file(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"out{suffix}"
    writer = RowWriter(out)
    writer.write(0, {"a": 1})
    writer.finish_rows(iter([{"a": 1}, {"a": 2}]), ["a"])
    write_table(pd.DataFrame({"a": [3]}), tmp_path / f"t{suffix}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"out{suffix}", f"t{suffix}"])


def wide_files(tmp_path: Path, columns: int) -> dict[str, Path]:
    names = [f"c{i}" for i in range(columns)]
    csv = tmp_path / "wide.csv"
    csv.write_text(",".join(names) + "\n" + ",".join("1" * columns) + "\n")
    jsonl = tmp_path / "wide.jsonl"  # the columns of JSONL are the keys of every line together
    jsonl.write_text(
        json.dumps({n: 1 for n in names[: columns // 2]}) + "\n" + json.dumps({n: 1 for n in names[columns // 2 :]})
    )
    parquet = tmp_path / "wide.parquet"
    pd.DataFrame({n: [1] for n in names}).to_parquet(parquet)
    return {"csv": csv, "jsonl": jsonl, "parquet": parquet}


def test_a_table_wider_than_the_cap_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMCORR_MAX_COLUMNS", "6")
    files = wide_files(tmp_path, 7)
    where = {"csv": "", "jsonl": "line 2: ", "parquet": ""}
    for fmt, path in files.items():
        for read in (open_table, read_table, as_frame):
            with pytest.raises(DataError, match=rf"^{path}: {where[fmt]}7 columns, more than the 6 a table may have"):
                read(path if read is not read_table else Path(path))
    frame = pd.DataFrame({f"c{i}": [1] for i in range(7)})
    for read in (open_table, as_frame):
        with pytest.raises(DataError, match=r"^DataFrame: 7 columns"):
            read(frame)
    monkeypatch.setenv("LLMCORR_MAX_COLUMNS", "7")
    assert all(open_table(path).columns == [f"c{i}" for i in range(7)] for path in files.values())


def test_the_default_cap_is_ten_thousand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMCORR_MAX_COLUMNS", raising=False)
    path = wide_files(tmp_path, 10_001)["csv"]
    with pytest.raises(DataError, match=r"10,001 columns, more than the 10,000"):
        open_table(path)
    monkeypatch.setenv("LLMCORR_MAX_COLUMNS", "ten")
    with pytest.raises(ConfigError, match=r"LLMCORR_MAX_COLUMNS='ten': expected a whole number"):
        open_table(path)
