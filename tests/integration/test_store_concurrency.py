"""One store, written by two `llmcorr run` processes at once while `llmcorr ui` reads it the way an open dashboard
does (the runs list, a run's page and its live JSON, a row's trace, polled over HTTP): no 'database is locked'
anywhere, both runs complete with every row, each row answered once, the store passes integrity_check."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from bench.kill import PROMPTY
from bench.quota_server import QuotaServer, QuotaServerConfig
from tests.conftest import LLMCORR

from .conftest import start_cli, store_path

ROWS = 400
TOML = """default = "q"

[[endpoints]]
name = "q"
kind = "openai"
base_url = "{url}"
model = "m"
rpm = 600000
max_concurrency = 8
"""


@dataclass
class Dashboard:
    """Polls the dashboard as its pages do while a run goes, and keeps every answer that was not a clean one."""

    url: str
    polls: int = 0
    saw_both_running: int = 0
    slowest_s: float = 0.0
    failures: list[str] = field(default_factory=list)

    def follow(self, stop: threading.Event) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not stop.is_set():
                try:
                    self.poll(client)
                except Exception as exc:  # a timeout, a body that is not JSON: kept, for the test to report
                    self.failures.append(f"poll: {exc!r}")
                time.sleep(0.05)

    def poll(self, client: httpx.Client) -> None:
        started = time.monotonic()
        listing = self.get(client, "/api/runs")
        runs = listing.json()["runs"] if listing.status_code == 200 else []
        for run in runs:
            self.get(client, f"/api/runs/{run['id']}")
            self.get(client, f"/runs/{run['id']}")
            self.get(client, f"/runs/{run['id']}/rows/1", missing_ok=True)  # 404 until row 1 is committed
        self.saw_both_running += sum(r["status"] == "running" for r in runs) == 2
        self.polls += 1
        self.slowest_s = max(self.slowest_s, time.monotonic() - started)

    def get(self, client: httpx.Client, path: str, missing_ok: bool = False) -> httpx.Response:
        response = client.get(path)
        clean = response.status_code == 200 or (
            missing_ok and response.status_code == 404 and "no row" in response.text
        )
        if not clean or "locked" in response.text:
            self.failures.append(f"GET {path}: {response.status_code} {response.text[:300]}")
        return response


def _dashboard_url(proc: subprocess.Popen, timeout: float = 60) -> str:
    assert proc.stdout is not None
    seen = ""
    while select.select([proc.stdout], [], [], timeout)[0]:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        if match:
            return match.group(1)
    raise AssertionError(f"llmcorr ui printed no address: {seen!r}")


def test_two_runs_write_one_store_while_the_dashboard_reads_it(
    tmp_path: Path, llmcorr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # llmcorr.toml is found in the working directory
    (tmp_path / "define.prompty").write_text(PROMPTY)
    for name in ("a", "b"):
        lines = (json.dumps({"word": f"{name}{i}"}) + "\n" for i in range(ROWS))
        (tmp_path / f"{name}.jsonl").write_text("".join(lines))
    config = QuotaServerConfig(rpm=600_000, tpm=10**9, base_latency_s=0.05)
    with QuotaServer(config) as server:
        (tmp_path / "llmcorr.toml").write_text(TOML.format(url=server.base_url))
        # both runs start on a store that does not exist yet: they create and migrate it together
        runs = {name: start_cli("run", "define.prompty", "-d", f"{name}.jsonl", "--name", name, "-q") for name in "ab"}
        with (tmp_path / "ui.log").open("w") as ui_log:
            ui = subprocess.Popen(
                [LLMCORR, "ui", "--port", "0"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=ui_log,
                text=True,
            )
        stop = threading.Event()
        try:
            dashboard = Dashboard(_dashboard_url(ui))
            reader = threading.Thread(target=dashboard.follow, args=(stop,), daemon=True)
            reader.start()
            ended = {name: proc.communicate(timeout=120) for name, proc in runs.items()}
            stop.set()
            reader.join(timeout=60)
            with httpx.Client(base_url=dashboard.url, timeout=60) as client:
                dashboard.poll(client)  # and once more, after both have finished
        finally:
            stop.set()
            for proc in (*runs.values(), ui):
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGTERM)
                    proc.communicate(timeout=30)
        admitted = server.stats()["admitted"]
    for name, proc in runs.items():
        out, err = ended[name]
        assert proc.returncode == 0, err
        assert "locked" not in out + err
    ui_output = (tmp_path / "ui.log").read_text()
    assert "locked" not in ui_output and "Traceback" not in ui_output, ui_output
    assert dashboard.failures == [], dashboard.failures[:5]
    assert dashboard.polls >= 5 and dashboard.saw_both_running > 0  # it read while both were writing
    assert admitted == 2 * ROWS  # every row answered once

    db = sqlite3.connect(store_path(llmcorr_home))
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        runs_done = db.execute("SELECT name, status, rows_done, created_utc, finished_utc FROM runs").fetchall()
        assert sorted((r[0], r[1], r[2]) for r in runs_done) == [("a", "completed", ROWS), ("b", "completed", ROWS)]
        (_, _, _, a_start, a_end), (_, _, _, b_start, b_end) = sorted(runs_done)
        assert a_start < b_end and b_start < a_end  # the two runs were writing at the same time
        for name in "ab":
            stored = db.execute(
                "SELECT rows.row_index, rows.inputs_json FROM rows JOIN runs ON runs.id = rows.run_id"
                " WHERE runs.name = ? AND rows.status = 'ok' ORDER BY rows.row_index",
                (name,),
            ).fetchall()
            assert [(i, json.loads(inputs)["word"]) for i, inputs in stored] == [(i, f"{name}{i}") for i in range(ROWS)]
    finally:
        db.close()
