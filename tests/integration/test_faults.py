"""Endpoint faults, each met by a real `llmcorr run` of a prompt file against the quota server on 127.0.0.1
(bench/quota_server.py) with one fault turned on: a 5xx error, a connection reset, a hang past the request timeout,
malformed JSON or empty choices on every try; a 429 storm; a daily quota; a Retry-After an hour away.

What they show: the run finishes (or, on a spent quota, stops cleanly with one line and exit code 1); a row that used
up its tries is an `error` row whose error names the cause in one line; every wait is bounded (six tries a row, the
configured `timeout_s` a try, no hour-long pause); `llmcorr runs resume` then answers exactly the rows that failed or
never ran, and nothing else.

A row that fails on every try waits out the scheduler's whole backoff (0.5 + 1 + 2 + 4 + 8 s, jittered, between six
tries), so the five row-fault runs start together when the module starts, one process and one server each, and run
in the background while the other tests go; each fault's test then waits for its own run.
"""

from __future__ import annotations

import asyncio
import csv
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import llmcorr
from bench.quota_server import DEFINE_PROMPTY as PROMPTY
from bench.quota_server import QuotaServer, QuotaServerConfig
from llmcorr.config import Config, EndpointConfig
from llmcorr.providers.base import GenParams, Message
from llmcorr.scheduler import RetryPolicy, Scheduled, Scheduler, build_endpoints
from llmcorr.store import RowRecord, RunRecord, Store
from tests.conftest import LLMCORR

from .conftest import run_cli, store_path

KEY = "sk-fault-test-0123456789-SECRET"
TRIES = RetryPolicy().max_attempts  # six tries a request
TIMEOUT_S = 0.5  # timeout_s in the row-fault runs' llmcorr.toml; the timeout fault hangs 2 s


TOML = """
default = "q"

[[endpoints]]
name = "q"
kind = "openai"
base_url = "{url}"
model = "m"
api_key = "${{env:FAULT_KEY}}"
rpm = {rpm}
{extra}
"""

# what each fault's error rows must say: the cause, in the words a researcher would search for
FAULTS = {
    "error_5xx": r"HTTP 50[023]: (The server had an error|The engine is currently overloaded)",
    "reset": r"(ServerDisconnectedError: Server disconnected|ClientOSError: .*Connection reset by peer)",
    "timeout": rf"timed out after {TIMEOUT_S:g}s",
    "malformed": r"malformed response: not JSON",
    "empty_choices": r"malformed response: empty choices",
}
FAULT_ROWS = 3
MESSAGES = [Message("user", "Define w0.")]


def workdir(path: Path, srv: QuotaServer, rows: int, rpm: int = 6000, **endpoint: Any) -> Path:
    """A directory with llmcorr.toml (endpoint `q` at `srv`, plus `endpoint` settings), define.prompty and a words
    table of `rows` rows; its `home` is the run store's LLMCORR_HOME."""
    path.mkdir(parents=True, exist_ok=True)
    extra = "\n".join(f"{k} = {v}" for k, v in endpoint.items())
    (path / "llmcorr.toml").write_text(TOML.format(url=srv.base_url, rpm=rpm, extra=extra))
    (path / "define.prompty").write_text(PROMPTY)
    words = pd.DataFrame({"word": [f"w{i}" for i in range(rows)]})
    words.to_json(path / "words.jsonl", orient="records", lines=True)
    return path


def run_args(path: Path, name: str) -> list[object]:
    return [
        "run", path / "define.prompty", "--data", path / "words.jsonl", "--config", path / "llmcorr.toml",
        "--name", name, "--output", path / "out.csv", "-q",
    ]  # fmt: skip


def cli(path: Path, *args: object) -> subprocess.CompletedProcess:
    return run_cli(*args, timeout=120, env={"FAULT_KEY": KEY, "LLMCORR_HOME": str(path / "home")})


def recorded(path: Path, name: str) -> tuple[RunRecord, list[RowRecord]]:
    """Run `name` as the store has it, and its rows."""
    with Store(store_path(path / "home")) as store:
        record = store.get_run(name)
        return record, store.rows(record.id)


def seconds(record: RunRecord) -> float:
    assert record.finished_utc is not None
    return (datetime.fromisoformat(record.finished_utc) - datetime.fromisoformat(record.created_utc)).total_seconds()


def assert_clean(path: Path, *outputs: str) -> None:
    """No traceback on the console; the key nowhere: console, store, output file."""
    text = "".join(outputs)
    assert "Traceback" not in text and KEY not in text
    for file in [path / "out.csv", *(path / "home").glob("llmcorr.db*")]:
        if file.exists():
            assert KEY.encode() not in file.read_bytes(), file


def assert_one_error_line(stderr: str, *fragments: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error")]
    assert len(lines) == 1, stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def resume(path: Path, name: str, srv: QuotaServer) -> int:
    """Resume run `name` (through the Python API: the code `llmcorr runs resume` runs, without a process start);
    the requests the server received meanwhile."""
    before = srv.stats()["received"]
    llmcorr.resume(name, config=Config(home=path / "home"), output=path / "out.csv")
    assert_clean(path)
    sent: int = srv.stats()["received"] - before
    return sent


def assert_all_ok(path: Path, name: str, rows: int) -> RunRecord:
    record, stored = recorded(path, name)
    assert record.status == "completed" and record.error is None
    assert record.rows_done == rows and record.rows_failed == 0
    assert [r.row_index for r in stored] == list(range(rows))  # every row exactly once
    assert {r.status for r in stored} == {"ok"} and all(r.response for r in stored)
    with (path / "out.csv").open() as fh:
        written = list(csv.DictReader(fh))
    assert len(written) == rows and not any(r["error"] for r in written)
    return record


@dataclass
class FaultRun:
    """A `llmcorr run` in the background against a server whose fault fires on every request."""

    path: Path
    server: QuotaServer
    proc: subprocess.Popen

    def wait(self) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=120)
        return self.proc.returncode, out, err


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAULT_KEY", KEY)  # for the runs resumed in this process


@pytest.fixture(scope="module", autouse=True)
def fault_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, FaultRun]]:
    """Start one run per row fault at once (see the module docstring)."""
    runs: dict[str, FaultRun] = {}
    servers: list[QuotaServer] = []
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLMCORR_"))}
    try:
        for fault in FAULTS:
            srv = QuotaServer(QuotaServerConfig(api_key=KEY, hang_s=2.0, **{f"{fault}_rate": 1.0}))
            servers.append(srv.start())
            path = workdir(tmp_path_factory.mktemp(fault), srv, FAULT_ROWS, timeout_s=TIMEOUT_S)
            env = {**clean, "FAULT_KEY": KEY, "LLMCORR_HOME": str(path / "home"), "COLUMNS": "160"}
            proc = subprocess.Popen(
                [LLMCORR, *map(str, run_args(path, fault))],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            runs[fault] = FaultRun(path, srv, proc)
        yield runs
    finally:
        for run in runs.values():
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.communicate()
        for srv in servers:
            srv.stop()


def test_a_429_storm_is_paced_out_and_no_row_fails(tmp_path: Path) -> None:
    # we believe in 3000 rpm; the server allows 600 with a burst of 3: the opening burst and the rate are refused
    # until the 429s (Retry-After honoured, the rate cut once per episode) bring us down to what it admits
    rows = 40
    with QuotaServer(QuotaServerConfig(rpm=600, request_capacity=3, api_key=KEY)) as srv:
        path = workdir(tmp_path, srv, rows, rpm=3000)
        r = cli(path, *run_args(path, "storm"))
        stats = srv.stats()
    assert r.returncode == 0, r.stderr
    assert_clean(path, r.stdout, r.stderr)
    record = assert_all_ok(path, "storm", rows)  # no row failed
    assert stats["admitted"] == rows  # and none was paid for twice
    assert 0 < stats["rate_limited_total"] <= 3 * rows  # a storm, met with a bounded number of 429s
    assert record.rate_limited == stats["rate_limited_total"]  # every 429 is on the record


def test_a_daily_quota_stops_the_run_then_resume_finishes_it(tmp_path: Path) -> None:
    rows, daily = 8, 4
    with QuotaServer(QuotaServerConfig(rpm=6000, daily_requests=daily, api_key=KEY)) as srv:
        path = workdir(tmp_path, srv, rows, max_concurrency=2)
        r = cli(path, *run_args(path, "daily"))
        stats = srv.stats()
        assert r.returncode == 1, r.stderr
        assert_clean(path, r.stdout, r.stderr)
        assert_one_error_line(r.stderr, "HTTP 429", "exceeded your current quota")
        # requests stop at the quota: what was in flight (2 at most) is refused once, nothing is retried against it
        assert stats["admitted"] == daily and 1 <= stats["insufficient_quota"] <= 2
        assert stats["received"] == stats["admitted"] + stats["insufficient_quota"]
        stopped, kept = recorded(path, "daily")
        assert stopped.status == "failed" and stopped.error and "exceeded your current quota" in stopped.error
        assert "\n" not in stopped.error and seconds(stopped) < 30
        assert len(kept) == daily and {row.status for row in kept} == {"ok"}  # every answer received is kept

        srv.reset()  # the next day: the daily quota is back (4 more: as many as rows are left)
        sent = resume(path, "daily", srv)
    assert sent == rows - daily  # only the rows that never ran
    assert_all_ok(path, "daily", rows)


def test_a_retry_after_an_hour_away_stops_the_run_instead_of_hanging(tmp_path: Path) -> None:
    # one token a minute, starting empty: every request is refused with a Retry-After of its charge in minutes
    # (about 15 tokens: a quarter of an hour); honouring it would hold every row that long
    rows = 3
    config = QuotaServerConfig(rpm=6000, tpm=1, token_capacity=10_000, start_full=False, api_key=KEY)
    with QuotaServer(config) as srv:
        path = workdir(tmp_path, srv, rows)
        r = cli(path, *run_args(path, "patience"))
        stats = srv.stats()
        assert r.returncode == 1, r.stderr
        assert_clean(path, r.stdout, r.stderr)
        line = assert_one_error_line(r.stderr, "HTTP 429", "a run waits: the quota is spent for now")
        waits = [int(w) for w in re.findall(r"Retry-After (\d+)s", line)]
        assert waits and waits[0] > RetryPolicy().max_retry_after_s
        assert stats["admitted"] == 0 and stats["received"] <= rows  # each row asked at most once
        stopped, _ = recorded(path, "patience")
        assert stopped.status == "failed" and stopped.error and "Retry-After" in stopped.error
        assert seconds(stopped) < 30

        srv.config.tpm, srv.config.start_full = 60_000, True
        srv.reset()  # the quota is back
        sent = resume(path, "patience", srv)
    assert sent == rows
    assert_all_ok(path, "patience", rows)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_fault_on_every_try_makes_error_rows_that_resume_answers(fault: str, fault_runs: dict[str, FaultRun]) -> None:
    run = fault_runs[fault]
    code, out, err = run.wait()
    assert code == 1, err  # the run went on (a row's failure is the row's), and its exit code says rows failed
    assert f"{FAULT_ROWS} of {FAULT_ROWS} rows failed" in err and f"llmcorr runs resume {fault}" in err
    assert_clean(run.path, out, err)
    stats = run.server.stats()
    assert stats["received"] == stats["faults"][fault] == FAULT_ROWS * TRIES  # bounded: six tries a row, no more

    record, rows = recorded(run.path, fault)
    assert record.status == "completed" and record.rows_failed == FAULT_ROWS
    assert seconds(record) < 45  # the backoff (at most 19.4 s) and, for hangs, six tries of TIMEOUT_S
    assert [r.row_index for r in rows] == list(range(FAULT_ROWS))
    for row in rows:
        assert row.status == "error" and row.attempts == TRIES
        assert re.search(FAULTS[fault], row.error), row.error
        assert "\n" not in row.error and "Traceback" not in row.error
    with (run.path / "out.csv").open() as fh:
        written = list(csv.DictReader(fh))
    assert [w["error"] for w in written] == [r.error for r in rows]

    setattr(run.server.config, f"{fault}_rate", 0.0)  # the fault is gone (the server reads its knobs per request)
    sent = resume(run.path, fault, run.server)
    assert sent == FAULT_ROWS  # exactly the failed rows, once each
    assert_all_ok(run.path, fault, FAULT_ROWS)


def test_a_retry_after_an_hour_away_sends_the_rest_to_another_endpoint() -> None:
    # the scheduler's side of the same rule: an endpoint whose quota is spent for now is left, the others go on
    spent_config = QuotaServerConfig(tpm=1, token_capacity=10_000, start_full=False)
    with QuotaServer(spent_config) as spent, QuotaServer(QuotaServerConfig()) as fine:
        configs = [
            EndpointConfig(name=name, kind="openai", base_url=srv.base_url, model="m", rpm=6000)
            for name, srv in (("spent", spent), ("fine", fine))
        ]
        scheduler = Scheduler(build_endpoints(configs))

        async def go() -> list[Scheduled]:
            try:
                params = GenParams(max_tokens=4)
                return list(await asyncio.gather(*(scheduler.complete(MESSAGES, params) for _ in range(10))))
            finally:
                await scheduler.aclose()

        results = asyncio.run(go())
        assert spent.stats()["admitted"] == 0 and 1 <= spent.stats()["received"] <= 10
        assert fine.stats()["admitted"] == 10
    assert {r.endpoint for r in results} == {"fine"}
    assert scheduler.endpoints[0].quota.paused_until == 0.0  # nobody was held for the hour


def test_the_retry_policy_caps_every_wait() -> None:
    policy = RetryPolicy()
    assert policy.delay(50) <= policy.max_delay_s * 1.25
    assert policy.delay(1, retry_after=3600) <= policy.max_retry_after_s * 1.25
