"""The response cache (a rerun costs 0 tokens), `runs cancel`, and a run killed with SIGKILL at ~50% then resumed:
every row exactly once, no finished row paid for twice. Against the quota server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from bench.quota_server import QuotaServer, QuotaServerConfig
from llmcorr.store import Store

from .conftest import run_cli, start_cli, store_path, wait_for_rows

TOML = """
[[endpoints]]
name = "q"
kind = "openai"
base_url = "{url}"
model = "m"
rpm = {rpm}
"""


def config(tmp_path: Path, srv: QuotaServer, rpm: int) -> Path:
    path = tmp_path / "llmcorr.toml"
    path.write_text(TOML.format(url=srv.base_url, rpm=rpm))
    return path


def show(name: str) -> dict:
    r = run_cli("runs", "show", name, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_rerun_is_served_from_the_cache(cancer_csv: Path, tmp_path: Path) -> None:
    with QuotaServer(QuotaServerConfig(rpm=6000)) as srv:
        toml = config(tmp_path, srv, 6000)
        args = ("correct", "-p", cancer_csv, "--limit", 20, "--config", toml, "--endpoint", "q", "--no-gate", "-q")
        assert run_cli(*args, "--name", "first").returncode == 0
        assert srv.stats()["received"] == 20
        assert run_cli(*args, "--name", "again").returncode == 0
        assert srv.stats()["received"] == 20  # not one request more
        assert run_cli(*args, "--limit", 25, "--name", "more").returncode == 0
        assert srv.stats()["received"] == 25  # only the 5 new rows
        assert run_cli(*args, "--name", "fresh", "--no-cache").returncode == 0
        assert srv.stats()["received"] == 45
        rerun = run_cli("runs", "rerun", "first", "--name", "replayed", "-q")  # from the recorded spec alone
        assert rerun.returncode == 0, rerun.stderr
        assert srv.stats()["received"] == 45  # free: every answer is cached
    replayed = show("replayed")
    assert replayed["spec"]["data_sha256"] == show("first")["spec"]["data_sha256"]
    assert replayed["input_tokens"] == 0 and replayed["metrics"] == show("first")["metrics"]
    first, again, fresh = show("first"), show("again"), show("fresh")
    assert first["input_tokens"] > 0 and again["input_tokens"] == again["output_tokens"] == 0
    assert fresh["input_tokens"] == first["input_tokens"]
    assert again["metrics"] == first["metrics"]  # the same answers


def test_sigkill_at_half_then_resume(cancer_csv: Path, tmp_path: Path, llmcorr_home: Path) -> None:
    with QuotaServer(QuotaServerConfig(rpm=600, base_latency_s=0.05)) as srv:
        toml = config(tmp_path, srv, 600)
        proc = start_cli(
            "correct",
            "--no-gate",
            "-p",
            cancer_csv,
            "--limit",
            "60",
            "--config",
            toml,
            "--endpoint",
            "q",
            "--name",
            "killed",
            "--no-cache",
            "-q",
        )
        wait_for_rows(llmcorr_home, "killed", 30, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        at_kill = show("killed")
        assert at_kill["status"] == "interrupted" and 30 <= at_kill["rows_done"] < 60
        sent_before = srv.stats()["received"]

        r = run_cli("runs", "resume", "killed", "-q", "-o", tmp_path / "out.csv")
        assert r.returncode == 0, r.stderr
        sent_by_resume = srv.stats()["received"] - sent_before
    resumed = show("killed")
    assert resumed["status"] == "completed" and resumed["rows_done"] == 60
    assert sent_by_resume == 60 - at_kill["rows_done"]  # finished rows cost nothing again
    # the usage of both processes: the killed one's (every row it kept, at least) and the resume's
    assert 60 <= resumed["usage"]["q"]["ok"] <= 60 + (sent_before - at_kill["rows_done"])
    with Store(store_path(llmcorr_home)) as store:
        rows = store.rows(resumed["id"])
        assert sorted(r.row_index for r in rows) == list(range(60))  # every row exactly once
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    out = (tmp_path / "out.csv").read_text().splitlines()
    assert len(out) == 61


def test_cancel_from_another_terminal_then_resume(cancer_csv: Path, tmp_path: Path, llmcorr_home: Path) -> None:
    with QuotaServer(QuotaServerConfig(rpm=300)) as srv:
        toml = config(tmp_path, srv, 300)
        proc = start_cli(
            "correct",
            "--no-gate",
            "-p",
            cancer_csv,
            "--limit",
            "60",
            "--config",
            toml,
            "--endpoint",
            "q",
            "--name",
            "stopme",
            "-q",
        )
        wait_for_rows(llmcorr_home, "stopme", 5, proc)
        assert run_cli("runs", "cancel", "stopme").returncode == 0
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and "cancelled" in err and "Traceback" not in err
        stopped = show("stopme")
        assert stopped["status"] == "cancelled" and 5 <= stopped["rows_done"] < 60
        assert "runs resume" in stopped["error"]
        assert run_cli("runs", "cancel", "stopme").returncode == 2  # not running any more
        assert run_cli("runs", "resume", "stopme", "-q").returncode == 0
        assert srv.stats()["received"] == 60
    assert show("stopme")["status"] == "completed"
