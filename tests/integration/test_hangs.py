"""Hanging requests do not throttle a run (issue 13, item 7): a real `llmcorr run` against the quota server on
127.0.0.1 (bench/quota_server.py), a quarter of whose requests hang for a minute without an answer, with the default
`timeout_s` of 120 s.

Once the endpoint has answered 20 requests, a try gets 3x the p99 latency of the answers (at least 2 s; from the
first answer, a provisional 10 s) and is then cut and retried; while it is waited out, it leaves its concurrency slot
to another request. Both ways of sizing concurrency are run: from the quota (rate x latency, the sizing that hangs
used to starve) and, with no quota, the default 8 in flight. So the run ends with
every row answered, each hang costing one retry, long before the first hang would have ended by itself: a run that
waited the hangs out fails here on the command's time limit (50 s, under the minute a hang lasts), whatever the
machine's speed. The time a run takes with and without hangs is measured by bench/hangs.py, not here.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.hangs import TOML  # the endpoint the benchmark uses: key from HANG_KEY, quota filled in
from bench.quota_server import DEFINE_PROMPTY as PROMPTY
from bench.quota_server import QuotaServer
from llmcorr.store import Store

from .conftest import run_cli, store_path

KEY = "sk-hang-test-0123456789-SECRET"
ROWS = 60
HANG_S = 60.0  # a hung request gets no answer for a minute, then the connection closes
LIMIT_S = 50.0  # the command's time limit: under HANG_S, so waiting out even one hang fails the test


@pytest.mark.parametrize(
    "quota",
    ["rpm = 6000", ""],
    ids=["concurrency from rpm x latency", "no quota: 8 in flight"],
)
def test_hanging_requests_are_cut_and_retried_and_every_row_is_answered(quota: str, tmp_path: Path) -> None:
    (tmp_path / "define.prompty").write_text(PROMPTY)
    pd.DataFrame({"word": [f"w{i}" for i in range(ROWS)]}).to_json(
        tmp_path / "words.jsonl", orient="records", lines=True
    )
    home, out = tmp_path / "home", tmp_path / "out.csv"
    with QuotaServer(timeout_rate=0.25, hang_s=HANG_S, api_key=KEY, seed=13) as srv:
        (tmp_path / "llmcorr.toml").write_text(TOML.format(url=srv.base_url, quota=quota))
        started = time.monotonic()
        done = run_cli(
            "run", tmp_path / "define.prompty", "--data", tmp_path / "words.jsonl",
            "--config", tmp_path / "llmcorr.toml", "--name", "hangs", "--output", out, "-q",
            timeout=LIMIT_S, env={"HANG_KEY": KEY, "LLMCORR_HOME": str(home)},
        )  # fmt: skip
        took = time.monotonic() - started
        stats = srv.stats()
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert took < HANG_S  # no row waited for a hang to end

    hangs = stats["faults"]["timeout"]
    assert hangs >= 10  # about a quarter of the ~75 requests hung (the fault RNG is seeded)
    assert stats["ok"] == ROWS  # one answer a row: every hang was retried, and the retry answered
    assert stats["admitted"] == ROWS + hangs

    with Store(store_path(home)) as store:
        record = store.get_run("hangs")
        rows = store.rows(record.id)
    assert record.status == "completed" and record.rows_done == ROWS and record.rows_failed == 0
    assert [r.row_index for r in rows] == list(range(ROWS))
    assert {r.status for r in rows} == {"ok"}
    assert sum(r.attempts for r in rows) == ROWS + hangs  # each cut try is one more try of its row
    assert sum(r.attempts > 1 for r in rows) >= 5
    with out.open() as fh:
        written = list(csv.DictReader(fh))
    assert len(written) == ROWS and not any(r["error"] for r in written)
