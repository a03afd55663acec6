"""Rows the server rejects, met by real `llmcorr` commands against the quota server on 127.0.0.1 (bench/quota_server.py)
with a "poisoned row": a request whose prompt holds POISON is answered with `reject_status` and an OpenAI-style error.

What they show: a 4xx about the request (400, 413, 422) fails that row alone, sent once, with the server's message in
one line, and the run goes on (exit 1, `completed, 1 failed`); one about the endpoint (404 model not found) stops the
run cleanly, resumable; `runs resume` sends the rejected row again (once) and `runs resume --skip-failed` does not,
running only the missing rows; and the output file holds every row the store holds, after a run or resume that
completes, fails or is cancelled.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench.quota_server import DEFINE_PROMPTY as PROMPTY
from bench.quota_server import QuotaServer, QuotaServerConfig
from llmcorr.store import RowRecord, RunRecord, Store

from .conftest import run_cli, start_cli, store_path

KEY = "sk-reject-test-0123456789-SECRET"
ROWS = 8
POISONED = 2  # the row whose word is POISON


TOML = """
default = "q"

[[endpoints]]
name = "q"
kind = "openai"
base_url = "{url}"
model = "m"
api_key = "${{env:REJECT_KEY}}"
max_concurrency = 1
"""


def workdir(path: Path, srv: QuotaServer, rows: int = ROWS) -> Path:
    """llmcorr.toml (one endpoint at `srv`, one request at a time), define.prompty and `rows` words, POISON among
    them; `home` holds the store."""
    (path / "llmcorr.toml").write_text(TOML.format(url=srv.base_url))
    (path / "define.prompty").write_text(PROMPTY)
    words = [f"w{i}" if i != POISONED else "POISON" for i in range(rows)]
    pd.DataFrame({"word": words}).to_json(path / "words.jsonl", orient="records", lines=True)
    return path


def env(path: Path) -> dict[str, str]:
    return {"REJECT_KEY": KEY, "LLMCORR_HOME": str(path / "home")}


def run(path: Path, name: str) -> Any:
    args = ["run", path / "define.prompty", "--data", path / "words.jsonl", "--config", path / "llmcorr.toml"]
    return run_cli(*args, "--name", name, "--output", path / "out.csv", "-q", timeout=120, env=env(path))


def resume(path: Path, name: str, *flags: str) -> Any:
    return run_cli("runs", "resume", name, "--config", path / "llmcorr.toml", *flags, "-q", timeout=120, env=env(path))


def stored(path: Path, name: str) -> tuple[RunRecord, list[RowRecord]]:
    with Store(store_path(path / "home")) as store:
        record = store.get_run(name)
        return record, store.rows(record.id)


def written(path: Path) -> list[dict[str, str]]:
    with (path / "out.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def assert_output_matches_store(path: Path, name: str) -> int:
    """The output file holds exactly the rows the store holds (by row number); how many."""
    _, rows = stored(path, name)
    out = written(path)
    assert len(out) == len(rows), (len(out), len(rows))
    numbers = {int(r["row"]) for r in out} if out and "row" in out[0] else set(range(1, len(out) + 1))
    assert numbers == {r.row_index + 1 for r in rows}
    return len(out)


def assert_clean(path: Path, *outputs: str) -> None:
    text = "".join(outputs)
    assert "Traceback" not in text and KEY not in text
    for file in [path / "out.csv", *(path / "home").glob("llmcorr.db*")]:
        if file.exists():
            assert KEY.encode() not in file.read_bytes(), file


@pytest.fixture
def poisoned(request: pytest.FixtureRequest) -> Any:
    status = getattr(request, "param", 400)
    with QuotaServer(QuotaServerConfig(api_key=KEY, reject_marker="POISON", reject_status=status)) as srv:
        yield srv


@pytest.mark.parametrize("poisoned", [400, 413, 422], indirect=True)
def test_rejected_row_fails_alone(tmp_path: Path, poisoned: QuotaServer) -> None:
    path = workdir(tmp_path, poisoned)
    done = run(path, "rej")
    assert done.returncode == 1, done.stderr
    assert_clean(path, done.stdout, done.stderr)
    record, rows = stored(path, "rej")
    assert record.status == "completed" and record.rows_done == ROWS and record.rows_failed == 1
    failed = [r for r in rows if r.status == "error"]
    assert [r.row_index for r in failed] == [POISONED]
    status = poisoned.config.reject_status
    assert f"HTTP {status}:" in failed[0].error and "\n" not in failed[0].error
    assert {r.status for r in rows if r.row_index != POISONED} == {"ok"}
    assert poisoned.stats()["rejected"] == 1  # sent once: a rejected request is not retried
    out = written(path)
    assert len(out) == ROWS and f"HTTP {status}" in out[POISONED]["error"]


def test_resume_retries_rejected_row_and_keeps_output(tmp_path: Path, poisoned: QuotaServer) -> None:
    path = workdir(tmp_path, poisoned)
    assert run(path, "again").returncode == 1
    first = poisoned.stats()["received"]
    done = resume(path, "again")
    assert done.returncode == 1, done.stderr
    assert_clean(path, done.stdout, done.stderr)
    assert poisoned.stats()["received"] - first == 1 and poisoned.stats()["rejected"] == 2  # only that row, once
    record, _ = stored(path, "again")
    assert record.status == "completed" and record.rows_failed == 1 and record.rows_done == ROWS
    assert len(written(path)) == ROWS


@pytest.mark.parametrize("poisoned", [404], indirect=True)
def test_endpoint_rejection_stops_run_cleanly(tmp_path: Path, poisoned: QuotaServer) -> None:
    path = workdir(tmp_path, poisoned)
    done = run(path, "stop")
    assert done.returncode == 1
    assert_clean(path, done.stdout, done.stderr)
    errors = [line for line in done.stderr.splitlines() if "HTTP 404" in line]
    assert len(errors) == 1, done.stderr
    record, rows = stored(path, "stop")
    assert record.status == "failed" and "HTTP 404" in (record.error or "")
    kept = len(rows)
    assert kept >= POISONED and POISONED not in {r.row_index for r in rows}  # the rows answered, not that one
    assert assert_output_matches_store(path, "stop") == kept
    again = resume(path, "stop")  # resumable; the endpoint still says 404: fails the same way, output still whole
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert stored(path, "stop")[0].status == "failed"
    assert assert_output_matches_store(path, "stop") >= kept  # the rows it had, and any answered before the 404


def test_skip_failed_finishes_run(tmp_path: Path, poisoned: QuotaServer) -> None:
    poisoned.config.daily_requests = 4  # rows 0, 1, 3, 4 answered, row 2 rejected, row 5 meets a spent quota
    path = workdir(tmp_path, poisoned)
    done = run(path, "skip")
    assert done.returncode == 1, done.stderr
    record, rows = stored(path, "skip")
    assert record.status == "failed" and len(rows) == 5
    assert assert_output_matches_store(path, "skip") == 5  # a failed run's file: every stored row, not fewer
    poisoned.config.daily_requests = None
    poisoned.reset()
    finished = resume(path, "skip", "--skip-failed")
    assert finished.returncode == 1, finished.stderr
    assert_clean(path, finished.stdout, finished.stderr)
    stats = poisoned.stats()
    assert stats["rejected"] == 0 and stats["received"] == ROWS - 5  # only the missing rows, not the failed one
    record, rows = stored(path, "skip")
    assert record.status == "completed" and record.rows_done == ROWS and record.rows_failed == 1
    assert [r.row_index for r in rows if r.status == "error"] == [POISONED]
    assert len(written(path)) == ROWS


def test_cancelled_resume_keeps_output(tmp_path: Path, poisoned: QuotaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    poisoned.config.daily_requests = 4
    path = workdir(tmp_path, poisoned, rows=40)
    assert run(path, "slow").returncode == 1
    poisoned.config.daily_requests = None
    poisoned.config.base_latency_s = 0.2
    poisoned.reset()
    for var, value in env(path).items():
        monkeypatch.setenv(var, value)  # for the process start_cli starts
    proc = start_cli("runs", "resume", "slow", "--config", path / "llmcorr.toml", "-q")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(stored(path, "slow")[1]) < 9:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        cancel = run_cli("runs", "cancel", "slow", timeout=60, env=env(path))
        assert cancel.returncode == 0, cancel.stderr
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    record, rows = stored(path, "slow")
    assert record.status == "cancelled" and 9 <= len(rows) < 40
    assert assert_output_matches_store(path, "slow") == len(rows)
