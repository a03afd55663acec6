"""A store that cannot be written (issue 13, item 6), met by real `llmcorr run`s against the quota server: a file-size
limit (RLIMIT_FSIZE, `ulimit -f`: SQLite's writes fail with EFBIG, an I/O error) on any machine, and a really full
disk (a 400 KiB tmpfs) where the tests run as root.

What they show: one line (the store, why, the rows kept, the exact resume command), exit code 1, no traceback; the
run marked `failed` with its committed rows, never left `running`; `llmcorr runs resume` then finishes it once there
is room, asking again only for rows the store did not keep — and while the disk is still full, a resume is one line
as well.
"""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench.quota_server import QuotaServer, QuotaServerConfig
from llmcorr.errors import StoreError
from llmcorr.store import Store
from llmcorr.store.failures import storage_failure
from tests.conftest import LLMCORR

from .conftest import store_path

ROWS = 60
ANSWER = " ".join(f"word{i}" for i in range(400))  # about 2.5 KB: a few rows fill the WAL past the limit
PROMPTY = """---
name: Define
model:
  api: chat
  parameters:
    max_tokens: 2000
inputs:
  word:
    type: string
---
user:
Define {{ word }}.
"""
TOML = """
default = "q"

[[endpoints]]
name = "q"
kind = "openai"
base_url = "{url}"
model = "m"
rpm = 60000
max_concurrency = 2
"""


@pytest.fixture
def server() -> Iterator[QuotaServer]:
    config = QuotaServerConfig(
        response_text=ANSWER, rpm=60_000, tpm=100_000_000, base_latency_s=0.02, log_messages=True
    )
    with QuotaServer(config) as srv:
        yield srv


def workdir(path: Path, srv: QuotaServer) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "llmcorr.toml").write_text(TOML.format(url=srv.base_url))
    (path / "define.prompty").write_text(PROMPTY)
    pd.DataFrame({"word": [f"w{i}" for i in range(ROWS)]}).to_json(path / "words.jsonl", orient="records", lines=True)
    (path / "home").mkdir(exist_ok=True)
    return path


def llmcorr(path: Path, *args: object, limit: int | None = None) -> subprocess.CompletedProcess:
    """`llmcorr ARGS` in a subprocess, its files capped at `limit` bytes (SIGXFSZ ignored: a write past it fails)."""

    def capped() -> None:
        if limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLMCORR_"))}
    return subprocess.run(
        [LLMCORR, *map(str, args)],
        env={**clean, "LLMCORR_HOME": str(path / "home"), "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        preexec_fn=capped,
    )


def run_args(path: Path) -> list[object]:
    return [
        "run", path / "define.prompty", "--data", path / "words.jsonl", "--config", path / "llmcorr.toml",
        "--name", "full", "--output", path / "out.csv", "-q",
    ]  # fmt: skip


def resume_args(path: Path) -> list[object]:
    return ["runs", "resume", "full", "--config", path / "llmcorr.toml", "-q"]


def one_error_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    text = result.stdout + result.stderr
    assert "Traceback" not in text, text
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def stored(path: Path) -> tuple[str, list[int]]:
    """The run's status and its rows' indices, read with plain sqlite3 (opening a Store would write)."""
    with sqlite3.connect(store_path(path / "home")) as conn:
        (status,) = conn.execute("SELECT status FROM runs WHERE name = 'full'").fetchone()
        rows = [r[0] for r in conn.execute("SELECT row_index FROM rows ORDER BY row_index")]
    return status, rows


def asked(srv: QuotaServer, since: int = 0) -> list[str]:
    """The words of the requests the server admitted (from the `since`-th on)."""
    log: list[dict[str, Any]] = [e for e in srv.request_log() if e.get("messages")]
    return [e["messages"][-1]["content"].split()[-1].rstrip(".") for e in log[since:]]


def check_failed_then_resumed(path: Path, srv: QuotaServer, failed: subprocess.CompletedProcess, why: str) -> None:
    assert failed.returncode == 1, failed.stderr
    line = one_error_line(failed, f"the store at {store_path(path / 'home')} could not be written ({why})")
    assert f"of {ROWS} rows kept" in line
    assert f"free space, then `llmcorr runs resume full --config {path / 'llmcorr.toml'}`" in line
    status, kept = stored(path)
    assert 0 < len(kept) < ROWS and len(set(kept)) == len(kept), kept  # stopped part way, the rows before it kept
    if status == "failed":  # marked failed, as the line says
        assert f"run full failed; {len(kept)} of {ROWS} rows kept" in line
    else:  # the store could not take even the status: the line says so, and the next opening marks it interrupted
        assert status == "running", status
        assert f"run full stopped (it shows as interrupted); {len(kept)} of {ROWS} rows kept" in line
        with Store(store_path(path / "home")) as store:
            assert store.get_run("full").status == "interrupted"  # never left running
    before = len(asked(srv))
    assert before < ROWS  # it stopped sending once the store could not take the answers

    again = llmcorr(path, *resume_args(path))  # room again (no limit)
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stdout + again.stderr
    status, rows = stored(path)
    assert status == "completed" and rows == list(range(ROWS))  # every row, once
    resumed = asked(srv, before)
    assert not {f"w{i}" for i in kept} & set(resumed)  # no kept row paid twice
    assert len(resumed) <= ROWS - len(kept)
    out = pd.read_csv(path / "out.csv")
    assert len(out) == ROWS


def test_a_file_size_limit_fails_the_run_in_one_line_and_it_resumes_with_its_rows(
    tmp_path: Path, server: QuotaServer
) -> None:
    path = workdir(tmp_path, server)
    failed = llmcorr(path, *run_args(path), limit=300_000)
    check_failed_then_resumed(path, server, failed, "file-size limit reached, ulimit -f")


def mounted_tiny(folder: Path, size: str) -> Iterator[Callable[[str], None]]:
    """A `size` tmpfs at `folder` (root only) while the generator runs; it yields a function to resize it."""
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs a tmpfs mount (root); the file-size-limit test covers the rest")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")

    def resize(size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)

    try:
        yield resize
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Callable[[str], None]]:
    """A 400 KiB tmpfs at tmp_path/home; call it with a new size to grow it."""
    yield from mounted_tiny(tmp_path / "home", "400k")


@pytest.fixture
def tiny_output_disk(tmp_path: Path) -> Iterator[Callable[[str], None]]:
    """A 64 KiB tmpfs at tmp_path/out, for the output file alone (the store has room)."""
    yield from mounted_tiny(tmp_path / "out", "64k")


def test_a_full_disk_fails_the_run_in_one_line_a_resume_too_until_there_is_room(
    tmp_path: Path, server: QuotaServer, tiny_disk: Callable[[str], None]
) -> None:
    path = workdir(tmp_path, server)
    failed = llmcorr(path, *run_args(path))
    assert failed.returncode == 1, failed.stderr
    one_error_line(failed, "could not be written (disk full)", "rows kept")
    still = llmcorr(path, *resume_args(path))  # the disk is still full: one line again, nothing lost
    assert still.returncode == 1, still.stderr
    one_error_line(still, "could not be written (disk full)", "free space")
    tiny_disk("16m")
    with Store(store_path(path / "home")) as store:  # left `running` if the store could not take even the status:
        assert store.get_run("full").status in ("failed", "interrupted")  # then opening it finds the process gone
    status, kept = stored(path)
    again = llmcorr(path, *resume_args(path))
    assert again.returncode == 0, again.stderr
    status, rows = stored(path)
    assert status == "completed" and rows == list(range(ROWS))
    assert kept and set(kept) <= set(rows)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (sqlite3.OperationalError("database or disk is full"), "disk full"),
        (sqlite3.OperationalError("disk I/O error"), "I/O error"),
        (sqlite3.OperationalError("database is locked"), None),  # waited for, not a storage failure
        (sqlite3.IntegrityError("UNIQUE constraint failed"), None),
        (OverflowError("Python int too large"), None),  # a value the store cannot take: row_writes.py
    ],
)
def test_which_database_errors_mean_the_store_cannot_be_written(error: Exception, reason: str | None) -> None:
    assert storage_failure(error) == reason


def test_postgresql_disk_full_and_io_errors_are_storage_failures() -> None:
    psycopg = pytest.importorskip("psycopg")
    assert storage_failure(psycopg.errors.DiskFull("could not extend file")) == "disk full"
    assert storage_failure(psycopg.errors.IoError("could not write block")) == "I/O error"
    assert storage_failure(psycopg.errors.TooManyConnections("too many")) == "insufficient resources"
    assert storage_failure(psycopg.errors.UniqueViolation("duplicate key")) is None
    error = StoreError("postgresql://ann@db:5432/llmcorr", "disk full")
    assert (
        str(error)
        == "the store at postgresql://ann@db:5432/llmcorr could not be written (disk full); free space, then try again"
    )


def test_a_full_disk_under_the_output_file_costs_nothing_the_store_holds(
    tmp_path: Path, server: QuotaServer, tiny_output_disk: Callable[[str], None]
) -> None:
    """The output (60 rows of 2.5 KB) does not fit its 64 KiB disk; the store has room. The run goes on when the
    streamed file stops growing (one warning), completes in the store, and ends with one line naming the fix, exit
    1, no temp file left; the resume it names writes the whole file once there is room, asking the server nothing."""
    path = workdir(tmp_path, server)
    out = path / "out" / "out.csv"
    args = [arg if arg != path / "out.csv" else out for arg in run_args(path)]
    failed = llmcorr(path, *args)
    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in failed.stdout + failed.stderr
    lines = [line for line in failed.stderr.splitlines() if line.strip()]
    assert any("could not be written (No space left on device): it stops growing" in line for line in lines), lines
    assert lines[-1] == (
        f"error: {out} could not be written (No space left on device): run full has every row it finished in the "
        "store; make room, then `llmcorr runs resume full` writes it"
    ), lines
    status, rows = stored(path)
    assert status == "completed" and rows == list(range(ROWS))
    assert not [f.name for f in out.parent.iterdir() if f.name.endswith(".tmp")]
    paid = len(asked(server))
    assert paid == ROWS

    tiny_output_disk("16m")
    again = llmcorr(path, "runs", "resume", "full", "-q")  # the command the line gave, as given
    assert again.returncode == 0, again.stderr
    assert len(asked(server)) == paid  # nothing asked again: the rows were in the store
    written = pd.read_csv(out)
    assert len(written) == ROWS and written["word"].tolist() == [f"w{i}" for i in range(ROWS)]
