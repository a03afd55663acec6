"""An output file that would destroy what a run reads, or that another run is writing, is refused before anything
is recorded or spent; a temp file a killed rewrite left beside an output is removed the next time that output is
opened; a table with 100,000 columns is one line, not 41 s and 686 MB. Real `llmcorr` processes against the quota
server on 127.0.0.1 and a real SQLite store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.quota_server import DEFINE_PROMPTY as PROMPTY
from bench.quota_server import QuotaServer, QuotaServerConfig
from llmcorr.store import Store

from .conftest import quota_toml, run_cli, start_cli, store_path, wait_for_rows

FLOW = """
import llmcorr

def define(word: str) -> dict:
    return {"definition": llmcorr.chat(f"Define {word}", max_tokens=3)}
"""

WORDS = "word\n" + "".join(f"w{i}\n" for i in range(40))


@pytest.fixture
def server() -> Iterator[QuotaServer]:
    with QuotaServer(QuotaServerConfig(rpm=6000, tpm=10_000_000, base_latency_s=0.01)) as srv:
        yield srv


@pytest.fixture
def workdir(tmp_path: Path, server: QuotaServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "llmcorr.toml").write_text(quota_toml(server.base_url, 6000))
    (tmp_path / "define.prompty").write_text(PROMPTY)
    (tmp_path / "myflow.py").write_text(FLOW)
    (tmp_path / "words.csv").write_text(WORDS)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def assert_refused(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit code 2, one line on stderr (no traceback) holding every needle; returns the line."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def recorded_runs(home: Path) -> list[str]:
    if not store_path(home).exists():
        return []
    with Store(store_path(home)) as store:
        return [r.label for r in store.list_runs()]


@pytest.mark.parametrize("spelling", ["same path", "absolute", "dot-dot", "symlink", "hard link"])
def test_output_that_is_the_data_file_is_refused(
    workdir: Path, server: QuotaServer, llmcorr_home: Path, spelling: str
) -> None:
    (workdir / "sub").mkdir()
    output = {
        "same path": "words.csv",
        "absolute": str(workdir / "words.csv"),
        "dot-dot": "sub/../words.csv",
        "symlink": "link.csv",
        "hard link": "hard.csv",
    }[spelling]
    if spelling == "symlink":
        (workdir / "link.csv").symlink_to(workdir / "words.csv")
    if spelling == "hard link":
        os.link(workdir / "words.csv", workdir / "hard.csv")
    r = run_cli("run", "define.prompty", "-d", "words.csv", "-o", output, "-q")
    assert_refused(r, f"--output {output}", "data file", str(workdir / "words.csv"))
    assert (workdir / "words.csv").read_text() == WORDS  # the input is untouched
    assert server.stats()["received"] == 0  # nothing sent
    assert recorded_runs(llmcorr_home) == []  # nothing recorded


@pytest.mark.parametrize("target", ["prompt file", "flow source", "store"])
def test_output_that_is_the_prompt_the_flow_or_the_store_is_refused(
    workdir: Path, server: QuotaServer, llmcorr_home: Path, target: str
) -> None:
    assert run_cli("runs", "list").returncode == 0  # the store exists, as it does after any run
    flow = "myflow.py:define" if target == "flow source" else "define.prompty"
    linked = {"prompt file": "define.prompty", "flow source": "myflow.py", "store": store_path(llmcorr_home)}[target]
    (workdir / "out.csv").symlink_to(Path(linked).resolve())
    before = Path(linked).read_bytes()
    r = run_cli("run", flow, "-d", "words.csv", "-o", "out.csv", "-q")
    assert_refused(r, "--output out.csv", f"run's {target} (")
    assert Path(linked).read_bytes() == before
    assert server.stats()["received"] == 0
    assert recorded_runs(llmcorr_home) == []


def test_rerun_and_correct_refuse_an_output_that_is_their_data(
    workdir: Path, server: QuotaServer, llmcorr_home: Path, cancer_csv: Path
) -> None:
    r = run_cli("run", "define.prompty", "-d", "words.csv", "--limit", "3", "--name", "first", "-q")
    assert r.returncode == 0, r.stderr
    sent = server.stats()["received"]
    assert_refused(run_cli("runs", "rerun", "first", "-o", "words.csv", "-q"), "data file")
    assert server.stats()["received"] == sent and recorded_runs(llmcorr_home) == ["first"]
    preds = cancer_csv.read_bytes()
    assert_refused(run_cli("correct", "-p", cancer_csv, "-o", cancer_csv, "-q"), "data file", str(cancer_csv))
    assert cancer_csv.read_bytes() == preds and recorded_runs(llmcorr_home) == ["first"]


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_a_second_run_on_a_live_runs_output_is_refused_and_stale_temp_files_go(
    workdir: Path, llmcorr_home: Path
) -> None:
    with QuotaServer(QuotaServerConfig(rpm=120)) as slow:  # 2 rows a second: the first run is still going
        (workdir / "llmcorr.toml").write_text(quota_toml(slow.base_url, 120))
        out = workdir / "out.jsonl"
        stale = [workdir / ".out.jsonl.tmp", workdir / f".out.jsonl.{dead_pid()}.tmp"]  # a killed rewrite's leftovers
        for tmp in stale:
            tmp.write_text('{"word": "half a rewrite"')
        proc = start_cli("run", "define.prompty", "-d", "words.csv", "-o", out, "--name", "first", "--no-cache", "-q")
        try:
            wait_for_rows(llmcorr_home, "first", 1, proc)
            assert [tmp for tmp in stale if tmp.exists()] == []  # gone as soon as the output was opened
            (workdir / "alias.jsonl").symlink_to(out)
            for name in ("out.jsonl", "alias.jsonl"):
                r = run_cli("run", "define.prompty", "-d", "words.csv", "-o", name, "--name", "second", "-q")
                assert_refused(r, f"--output {name}", "run first (pid", "is writing that file now")
            assert recorded_runs(llmcorr_home) == ["first"]
            os.kill(proc.pid, signal.SIGKILL)  # its process is gone: the file is free again
            proc.communicate(timeout=30)
            r = run_cli("run", "define.prompty", "-d", "words.csv", "-o", out, "--limit", "2", "--name", "second", "-q")
            assert r.returncode == 0, r.stderr
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
    assert [json.loads(line)["word"] for line in out.read_text().splitlines()] == ["w0", "w1"]
    assert sorted(p.name for p in workdir.glob(".out.jsonl*")) == []


def test_a_table_of_100k_columns_is_one_line(workdir: Path, server: QuotaServer, llmcorr_home: Path) -> None:
    wide = workdir / "wide.csv"
    names = ["word", *(f"c{i}" for i in range(99_999))]
    wide.write_text(",".join(names) + "\n" + ",".join(["w0", *["1"] * 99_999]) + "\n")
    r = run_cli("run", "define.prompty", "-d", wide, "-q", timeout=30)
    assert_refused(r, str(wide), "100,000 columns", "10,000", "LLMCORR_MAX_COLUMNS")
    r = run_cli("run", "define.prompty", "-d", "words.csv", "-q", env={"LLMCORR_MAX_COLUMNS": "0"})
    assert_refused(r, "LLMCORR_MAX_COLUMNS='0'")
    assert server.stats()["received"] == 0 and recorded_runs(llmcorr_home) == []


def test_a_kill_during_the_final_rewrite_leaves_a_resumable_run_not_a_completed_one(
    workdir: Path, llmcorr_home: Path
) -> None:
    """The output is rewritten in input order when the rows are done; only then is the run completed. Killed
    during that rewrite (its temp file is there), the run shows as interrupted, and its resume writes the ordered
    file, asking the server nothing."""
    rows = 6000
    (workdir / "many.csv").write_text("word\n" + "".join(f"w{i}\n" for i in range(rows)))
    (workdir / "long.prompty").write_text(PROMPTY.replace("max_tokens: 4", "max_tokens: 1000"))
    answer = "an answer long enough to make the rewrite take a while " * 50  # 2.8 KB a row: a ~17 MB file
    config = QuotaServerConfig(rpm=1_000_000, tpm=1_000_000_000, base_latency_s=0.0, response_text=answer)
    with QuotaServer(config) as fast:
        (workdir / "llmcorr.toml").write_text(quota_toml(fast.base_url, 1_000_000))
        first = run_cli("run", "long.prompty", "-d", "many.csv", "--name", "warm", "-q")  # fills the cache
        assert first.returncode == 0, first.stderr
        asked = fast.stats()["received"]
        out = workdir / "out.csv"
        proc = start_cli("run", "long.prompty", "-d", "many.csv", "-o", out, "--name", "killed", "-q")
        try:
            deadline = time.monotonic() + 120
            while not list(workdir.glob(".out.csv.*.tmp")):  # the final rewrite has begun
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.001)
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL  # killed in the rewrite, not after it
            proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
        with Store(store_path(llmcorr_home)) as store:
            killed = store.get_run("killed")
            assert killed.status == "interrupted" and killed.rows_done == rows  # never "completed" half-written
        again = run_cli("runs", "resume", "killed", "-q")
        assert again.returncode == 0, again.stderr
        assert fast.stats()["received"] == asked  # every answer was in the store (or the cache)
    written = out.read_text().splitlines()
    assert written[0].split(",")[0] == "word" and [line.split(",")[0] for line in written[1:]] == [
        f"w{i}" for i in range(rows)
    ]  # in input order
    assert not list(workdir.glob(".out.csv*.tmp"))
