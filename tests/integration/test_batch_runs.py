"""Batch runs of prompt files and Python flows against the quota server on 127.0.0.1: SIGKILL at ~50% then resume
(every row once, finished rows free), outputs written as rows finish, --resume-from, chaining with --run, resuming a
flow's failed rows, rerun from the spec, and a polars DataFrame through the Python API."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pandas as pd
import pytest

import llmcorr
from bench.quota_server import DEFINE_PROMPTY as PROMPTY
from bench.quota_server import QuotaServer, QuotaServerConfig
from llmcorr.store import RowRecord, Store

from .conftest import quota_toml, run_cli, start_cli, store_path, wait_for_rows

JUDGE = """---
name: Judge
model:
  api: chat
  parameters:
    max_tokens: 2
inputs:
  word:
    type: string
  definition:
    type: string
---
user:
Is "{{ definition }}" a good definition of {{ word }}?
"""

FLOW = """
import os
import llmcorr

def define(word: str) -> dict:
    if word == "w3" and os.path.exists(os.environ["FAIL_FLAG"]):
        raise RuntimeError("flaky tool")
    return {"definition": llmcorr.chat(f"Define {word}", max_tokens=3)}

def vote(word: str) -> dict:
    answers = [llmcorr.chat(f"Is {word} a word?", max_tokens=2, temperature=0.8, sample=i) for i in range(3)]
    return {"answers": answers}
"""


@pytest.fixture
def server() -> QuotaServer:
    with QuotaServer(QuotaServerConfig(rpm=6000, tpm=10_000_000, base_latency_s=0.02)) as srv:
        yield srv


@pytest.fixture
def workdir(tmp_path: Path, server: QuotaServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "llmcorr.toml").write_text(quota_toml(server.base_url, 6000))
    (tmp_path / "define.prompty").write_text(PROMPTY)
    (tmp_path / "judge.prompty").write_text(JUDGE)
    (tmp_path / "myflow.py").write_text(FLOW)
    pd.DataFrame({"word": [f"w{i}" for i in range(80)]}).to_json(tmp_path / "words.jsonl", orient="records", lines=True)
    monkeypatch.chdir(tmp_path)  # llmcorr.toml and the flow module are found in the working directory
    return tmp_path


def store_rows(home: Path, run_id: str) -> list[RowRecord]:
    with Store(store_path(home)) as store:
        return store.rows(run_id)


def show(name: str) -> dict:
    r = run_cli("runs", "show", name, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_prompt_run_killed_at_half_then_resumed(workdir: Path, llmcorr_home: Path) -> None:
    with QuotaServer(QuotaServerConfig(rpm=600)) as slow:  # 10 rows a second: slow enough to be killed mid-run
        (workdir / "llmcorr.toml").write_text(quota_toml(slow.base_url, 600))
        out = workdir / "out.jsonl"
        args = ("run", "define.prompty", "-d", "words.jsonl", "-o", out, "--name", "killed", "--no-cache", "-q")
        proc = start_cli(*args)
        wait_for_rows(llmcorr_home, "killed", 40, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        at_kill = show("killed")
        written = [json.loads(line) for line in out.read_text().splitlines()]
        sent_before = slow.stats()["received"]
        r = run_cli("runs", "resume", "killed", "-q", "-o", out)
        assert r.returncode == 0, r.stderr
        sent_by_resume = slow.stats()["received"] - sent_before
    assert at_kill["status"] == "interrupted" and 40 <= at_kill["rows_done"] < 80
    assert sent_by_resume == 80 - at_kill["rows_done"]  # finished rows cost nothing again
    assert at_kill["rows_done"] - 1 <= len(written) <= at_kill["rows_done"]  # the output grew row by row
    assert all(w["word"] == f"w{w['row'] - 1}" and w["output"] for w in written)
    resumed = show("killed")
    assert resumed["status"] == "completed" and resumed["rows_done"] == 80
    rows = store_rows(llmcorr_home, resumed["id"])
    assert sorted(r.row_index for r in rows) == list(range(80))  # every row exactly once
    final = [json.loads(line) for line in out.read_text().splitlines()]
    assert [f["word"] for f in final] == [f"w{i}" for i in range(80)]  # rewritten in input order at the end


def test_resume_from_reuses_finished_rows_for_free(workdir: Path, server: QuotaServer, llmcorr_home: Path) -> None:
    assert run_cli("run", "define.prompty", "-d", "words.jsonl", "--limit", 30, "--name", "first", "-q").returncode == 0
    assert server.stats()["received"] == 30
    r = run_cli("run", "define.prompty", "-d", "words.jsonl", "--resume-from", "first", "--no-cache", "--name", "all")
    assert r.returncode == 0, r.stderr
    assert "30 rows reused" in r.stdout
    assert server.stats()["received"] == 80  # only the 50 new rows, though the cache was bypassed
    first, everything = show("first"), show("all")
    assert everything["rows_done"] == 80 and everything["spec"]["options"]["resumed_from"] == first["id"]
    rows = store_rows(llmcorr_home, everything["id"])
    assert [r.response for r in rows[:30]] == [r.response for r in store_rows(llmcorr_home, first["id"])]
    assert all(r.cached and r.input_tokens == r.output_tokens == 0 for r in rows[:30])  # reused: free
    assert all(not r.cached and r.input_tokens > 0 for r in rows[30:])
    assert everything["input_tokens"] == sum(r.input_tokens for r in rows[30:])

    (workdir / "define.prompty").write_text(PROMPTY.replace("Define", "Explain"))
    r = run_cli("run", "define.prompty", "-d", "words.jsonl", "--resume-from", "first", "-q")
    assert r.returncode == 2 and "used another prompt file" in r.stderr


def test_chain_a_run_on_another_runs_outputs(workdir: Path, server: QuotaServer) -> None:
    assert run_cli("run", "define.prompty", "-d", "words.jsonl", "--limit", 5, "--name", "defs", "-q").returncode == 0
    args = ("run", "judge.prompty", "--run", "defs", "--map", "definition=${run.outputs.output}", "-q")
    r = run_cli(*args, "--limit", 5, "--name", "judged", "-o", workdir / "judged.csv")
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(workdir / "judged.csv")
    assert list(table["word"]) == [f"w{i}" for i in range(5)]
    assert table["run.outputs.output"].notna().all() and table["output"].notna().all()
    log = server.request_log()[-5:]
    assert all(e["status"] == 200 for e in log)
    judged = show("judged")
    assert judged["spec"]["options"]["run"] == show("defs")["id"]

    r = run_cli(*args, "--limit", 6)  # row 6 has no output in run defs: caught before any request
    assert r.returncode == 2 and "line 6" in r.stderr and "definition" in r.stderr, r.stderr
    r = run_cli("run", "judge.prompty", "-d", "words.jsonl", "--map", "definition=${run.outputs.output}", "-q")
    assert r.returncode == 2 and "needs --run" in r.stderr
    r = run_cli(*args[:4], "--map", "definition=${run.outputs.nope}", "-q")
    assert r.returncode == 2 and "the run has no 'nope'" in r.stderr


def test_a_flows_failed_rows_are_retried_on_resume(workdir: Path, server: QuotaServer) -> None:
    flag = workdir / "fail.flag"
    flag.touch()
    env = {"FAIL_FLAG": str(flag)}
    r = run_cli("run", "myflow:define", "-d", "words.jsonl", "--limit", 6, "--name", "flaky", "-q", env=env)
    assert r.returncode == 1, r.stderr  # one row failed
    assert show("flaky")["rows_failed"] == 1 and server.stats()["received"] == 5
    flag.unlink()
    r = run_cli("runs", "resume", "flaky", "-q", "-o", workdir / "flow.parquet", env=env)
    assert r.returncode == 0, r.stderr
    assert server.stats()["received"] == 6  # only the failed row
    assert show("flaky")["rows_failed"] == 0
    table = pd.read_parquet(workdir / "flow.parquet")
    assert table["definition"].notna().all() and table["error"].isna().all()

    r = run_cli("runs", "rerun", "flaky", "--name", "again", "-q", env=env)
    assert r.returncode == 0, r.stderr
    assert server.stats()["received"] == 6 and show("again")["input_tokens"] == 0  # every answer cached

    (workdir / "myflow.py").write_text(FLOW + "\n# edited\n")
    r = run_cli("runs", "resume", "flaky", "-q", env=env)
    assert r.returncode == 2 and "has changed since the run was made" in r.stderr


def test_samples_at_temperature_are_cached_per_index(workdir: Path, server: QuotaServer) -> None:
    assert run_cli("run", "myflow:vote", "-d", "words.jsonl", "--limit", 2, "-q", "--name", "v1").returncode == 0
    assert server.stats()["received"] == 6  # 3 samples x 2 rows: one request each, not one cached answer
    assert run_cli("run", "myflow:vote", "-d", "words.jsonl", "--limit", 2, "-q", "--name", "v2").returncode == 0
    assert server.stats()["received"] == 6 and show("v2")["input_tokens"] == 0


def test_python_api_takes_a_polars_frame(workdir: Path, server: QuotaServer) -> None:
    import polars as pl

    frame = pl.DataFrame({"term": ["acid", "base", "salt"]})
    result = llmcorr.run(workdir / "define.prompty", frame, mapping={"word": "${data.term}"}, name="pl")
    assert list(result.table["term"]) == ["acid", "base", "salt"]
    assert result.table["output"].str.len().gt(0).all() and result.tokens > 0
    with pytest.raises(llmcorr.UserError, match="made from a DataFrame"):
        llmcorr.resume("pl")
    assert server.stats()["received"] == 3
