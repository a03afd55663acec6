"""Experiment management against real runs on the quota server (127.0.0.1), through the real `llmcorr` command: list
filters and sorting, archive/restore, rename, tags, delete (rows, spans and the output file), compare, logs for a run
and for one row, `logs --follow` on a running run, and the same operations through `llmcorr.experiments`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import llmcorr
from bench.quota_server import QuotaServer, QuotaServerConfig
from llmcorr.store import RunRecord, Store

from .conftest import quota_toml, run_cli, start_cli, store_path, wait_for_rows

PROMPTY = """---
name: Define
model:
  api: chat
  parameters:
    max_tokens: 4
inputs:
  word:
    type: string
---
system:
You define words.
user:
Define {{ word }}.
"""

FLOW = """
import llmcorr

@llmcorr.trace
def shout(word: str) -> str:
    return word.upper()

def define(word: str) -> dict:
    if word == "w2":
        raise RuntimeError("flaky tool")
    return {"definition": llmcorr.chat(f"Define {word}", max_tokens=3), "loud": shout(word)}

class Judge:
    def __call__(self, word: str) -> dict:
        return {"long": len(llmcorr.chat(f"Define {word}", max_tokens=3)) > 3}

    def aggregate(self, rows: list) -> dict:
        return {"long_share": sum(r["long"] for r in rows) / len(rows), "detail": {"rows": len(rows)}}
"""

LOG_LINE = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3})\s+(?:row (\d+))?\s+(\w+)")


@pytest.fixture
def server() -> QuotaServer:
    with QuotaServer(QuotaServerConfig(rpm=6000, tpm=10_000_000, base_latency_s=0.02)) as srv:
        yield srv


@pytest.fixture
def workdir(tmp_path: Path, server: QuotaServer, monkeypatch: pytest.MonkeyPatch, cancer_table: pd.DataFrame) -> Path:
    (tmp_path / "llmcorr.toml").write_text(quota_toml(server.base_url, 6000))
    (tmp_path / "define.prompty").write_text(PROMPTY)
    (tmp_path / "myflow.py").write_text(FLOW)
    pd.DataFrame({"word": [f"w{i}" for i in range(10)]}).to_json(tmp_path / "words.jsonl", orient="records", lines=True)
    cancer_table.to_csv(tmp_path / "preds.csv", index=False)
    monkeypatch.chdir(tmp_path)  # llmcorr.toml and the flow module are found in the working directory
    return tmp_path


def ok(*args: object) -> subprocess.CompletedProcess:
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    return r


def user_error(*args: object) -> str:
    """Run a command that must fail as a user error: exit 2, one line on stderr, no traceback; return that line."""
    r = run_cli(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    return r.stderr.strip()


def define(name: str, limit: int, **options: object) -> str:
    """A real prompt run over the quota server, made in this process (the commands under test run as `llmcorr`)."""
    return llmcorr.run("define.prompty", data="words.jsonl", limit=limit, name=name, **options).run_id


def correct(name: str, **options: object) -> str:
    return llmcorr.correct("preds.csv", task="is malignant", limit=4, name=name, **options).run_id


def listed(*args: object) -> list[str]:
    return [r["name"] for r in json.loads(ok("runs", "list", "--json", *args).stdout)]


def record(home: Path, ref: str) -> RunRecord:
    with Store(store_path(home)) as store:
        return store.get_run(ref)


def test_list_filters_sorts_and_hides_archived_runs(workdir: Path, llmcorr_home: Path) -> None:
    for name, limit in (("alpha", 4), ("beta", 2), ("gamma-x", 6)):
        define(name, limit, cache=False)  # tokens grow with rows
    llmcorr.experiments.tag_run("alpha", add=["baseline"])
    llmcorr.experiments.tag_run("gamma-x", add=["baseline", "extra"])
    table = ok("runs", "list").stdout
    assert re.search(r"alpha .*prompt .*completed .*4/4 .*baseline", table) and "baseline, extra" in table
    assert set(listed("--tag", "baseline")) == {"alpha", "gamma-x"}
    assert listed("--name", "MMA") == ["gamma-x"]  # part of a name, any case
    assert listed("--sort", "rows", "--asc") == ["beta", "alpha", "gamma-x"]
    assert listed("--sort", "tokens") == ["gamma-x", "alpha", "beta"]
    assert "no runs match" in ok("runs", "list", "--status", "failed").stdout
    assert "--status: expected one of running, completed" in user_error("runs", "list", "--status", "done")

    assert "runs restore beta" in ok("runs", "archive", "beta").stdout
    assert record(llmcorr_home, "beta").archived
    assert listed() == ["gamma-x", "alpha"]  # archived runs are hidden
    assert listed("--archived") == ["beta"]
    every = ok("runs", "list", "--all").stdout
    assert all(name in every for name in ("alpha", "beta", "gamma-x")) and "(archived)" in every
    user_error("runs", "list", "--archived", "--all")
    ok("runs", "restore", "beta")
    assert not record(llmcorr_home, "beta").archived


def test_rename_and_tags(workdir: Path, llmcorr_home: Path) -> None:
    first, second = define("first", 1), define("second", 1)
    assert "renamed run first to renamed" in ok("runs", "rename", "first", "renamed").stdout
    assert record(llmcorr_home, "renamed").id == first
    assert "already exists" in user_error("runs", "rename", "second", "renamed")
    assert "another run's id" in user_error("runs", "rename", "second", first)
    assert record(llmcorr_home, second).name == "second"  # a refused rename changes nothing

    assert "tags: a, b" in ok("runs", "tag", "second", "b", "a").stdout
    assert "tags: b, c" in ok("runs", "tag", "second", "c", "--remove", "a").stdout
    assert "has no tag 'zzz'" in user_error("runs", "tag", "second", "--remove", "zzz")
    assert "without commas" in user_error("runs", "tag", "second", "x,y")
    assert "no tag given" in user_error("runs", "tag", "second")
    assert record(llmcorr_home, second).tags == ["b", "c"]


def test_delete_removes_rows_spans_and_the_output_file(workdir: Path, llmcorr_home: Path) -> None:
    out = workdir / "defs.jsonl"
    run_id = define("defs", 3, output=out)
    define("keeper", 2, output=workdir / "shared.csv")
    define("shared", 2, output=workdir / "shared.csv")  # a second run writing the same file
    correct("c", output="c.csv")
    ok("runs", "rerun", "defs", "--name", "again", "-o", workdir / "again.csv", "-q")
    assert record(llmcorr_home, "defs").output_path == str(out.resolve()) and out.is_file()
    assert record(llmcorr_home, "c").output_path == str((workdir / "c.csv").resolve())  # correct runs record it
    assert record(llmcorr_home, "again").output_path == str((workdir / "again.csv").resolve())  # and reruns
    with Store(store_path(llmcorr_home)) as store:
        assert len(store.rows(run_id)) == 3 and len(store.spans(run_id)) == 7  # run + 3 rows + 3 LLM calls

    r = run_cli("runs", "delete", "defs")  # stdin is not a terminal: it must be told --yes
    assert r.returncode == 2 and f"its output file {out.resolve()}" in r.stderr and "3 rows" in r.stderr
    assert out.is_file() and record(llmcorr_home, "defs").id == run_id

    assert str(out.resolve()) in ok("runs", "delete", "defs", "--yes").stdout
    assert not out.exists()
    with Store(store_path(llmcorr_home)) as store:
        assert store.rows(run_id) == [] and store.spans(run_id) == []
        assert [r.name for r in store.list_runs()] == ["again", "c", "shared", "keeper"]  # the others stay
        assert len(store.rows(store.get_run("again").id)) == 3

    r = ok("runs", "delete", "keeper", "--yes")
    assert (workdir / "shared.csv").is_file() and "shared.csv" not in r.stdout  # run `shared` wrote it too
    assert "no run with id or name 'nope'" in user_error("runs", "delete", "nope", "--yes")


def test_compare_correct_and_flow_runs(workdir: Path, llmcorr_home: Path) -> None:
    correct("one-shot", shots=1)
    correct("three-shot", shots=3)
    llmcorr.run("myflow:Judge", data="words.jsonl", limit=3, name="judge")
    runs = {name: record(llmcorr_home, name) for name in ("one-shot", "three-shot", "judge")}

    table = ok("runs", "compare", "one-shot", "three-shot", "judge").stdout
    header = next(line for line in table.splitlines() if "metric" in line)
    assert header.split() == ["metric", "one-shot", "three-shot", "judge"]
    for label in ("ROC-AUC base", "accuracy corrected", "flips: wrong to right", "long_share", "tokens", "wall time"):
        assert label in table

    compared = json.loads(ok("runs", "compare", "one-shot", "three-shot", "judge", "--json").stdout)
    assert list(compared) == ["one-shot", "three-shot", "judge"]
    for name in ("one-shot", "three-shot"):
        metrics, c = runs[name].metrics or {}, compared[name]
        assert c["accuracy base"] == metrics["base"]["accuracy"]
        assert c["accuracy corrected"] == metrics["corrected"]["accuracy"]
        assert c["flips.changed"] == metrics["flips"]["changed"] and c["long_share"] is None
    assert compared["judge"]["long_share"] == (runs["judge"].metrics or {})["long_share"]
    assert compared["judge"]["detail.rows"] == 3 and compared["judge"]["accuracy base"] is None
    for name, c in compared.items():
        assert c["kind"] == runs[name].kind and c["rows"] == runs[name].rows_done
        assert c["tokens"] == runs[name].input_tokens + runs[name].output_tokens
        assert c["429s"] == 0 and c["wall time (s)"] > 0
    assert compared["three-shot"]["tokens"] > compared["one-shot"]["tokens"]  # more shots, longer prompts
    assert "cost ($)" not in compared["judge"]  # no endpoint has a price

    assert "at least two" in user_error("runs", "compare", "judge")
    assert "no run with id or name 'nope'" in user_error("runs", "compare", "judge", "nope")


def test_logs_of_a_run_and_of_one_row(workdir: Path, llmcorr_home: Path) -> None:
    run_id = define("defs", 3)
    lines = ok("runs", "logs", "defs").stdout.splitlines()
    parsed = [LOG_LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert [m[1] for m in parsed if m] == sorted(m[1] for m in parsed if m)  # in time order
    assert sum(" run prompt " in line for line in lines) == 1
    llm = [line for line in lines if " llm chat m " in line]
    assert sorted(int(m[2]) for m in map(LOG_LINE.match, llm) if m) == [1, 2, 3]
    assert all(re.search(r"\d+ ms +ok +tokens \d+ in 4 out +via q", line) for line in llm), llm
    assert "Define" not in "\n".join(lines)  # prompts only for one row

    out = ok("runs", "logs", "defs", "--row", 2).stdout
    with Store(store_path(llmcorr_home)) as store:
        answer = store.rows(run_id)[1].response
    heads = [line for line in out.splitlines() if not line.startswith(" ")]
    assert len(heads) == 2 and all(" row 2 " in line for line in heads)  # the row and its LLM call
    assert "    prompt:\n      system: You define words.\n      user: Define w1.\n" in out
    assert f"    answer:\n      {answer}\n" in out

    define("again", 3)  # the same requests: answered from the cache
    cached = [line for line in ok("runs", "logs", "again").stdout.splitlines() if " llm " in line]
    assert len(cached) == 3 and all("tokens 0 in 0 out  cache hit" in line for line in cached)

    llmcorr.run("myflow:define", data="words.jsonl", limit=3, name="flow")
    out = ok("runs", "logs", "flow").stdout
    assert re.search(r"row 3 +row .* error +.*error: RuntimeError: flaky tool", out), out
    out = ok("runs", "logs", "flow", "--row", 1).stdout
    assert "step shout" in out and '    input:\n      {"word": "w0"}\n    output:\n      "W0"\n' in out

    assert "no run with id or name 'nope'" in user_error("runs", "logs", "nope")
    assert "--row 4: run defs has rows 1 to 3" in user_error("runs", "logs", "defs", "--row", 4)


def test_logs_show_429s_and_retries(workdir: Path, llmcorr_home: Path) -> None:
    with QuotaServer(QuotaServerConfig(rpm=600, request_capacity=1)) as strict:  # a burst of one request
        (workdir / "llmcorr.toml").write_text(quota_toml(strict.base_url, 60000))  # llmcorr thinks more
        define("pushy", 6, cache=False)
    llm = [line for line in ok("runs", "logs", "pushy").stdout.splitlines() if " llm " in line]
    limited = [int(m[1]) for m in (re.search(r"429s (\d+)", line) for line in llm) if m]
    assert limited and sum(limited) == record(llmcorr_home, "pushy").rate_limited
    assert all(re.search(r"\d+ attempts", line) for line in llm if "429s" in line)


def slow_run(workdir: Path, rpm: int) -> tuple[QuotaServer, subprocess.Popen]:
    server = QuotaServer(QuotaServerConfig(rpm=rpm)).__enter__()
    (workdir / "llmcorr.toml").write_text(quota_toml(server.base_url, rpm))  # llmcorr paces itself
    return server, start_cli("run", "define.prompty", "-d", "words.jsonl", "--name", "slow", "--no-cache", "-q")


def test_follow_prints_new_spans_until_the_run_ends(workdir: Path, llmcorr_home: Path) -> None:
    server, run = slow_run(workdir, rpm=90)  # 10 rows at 1.5 a second: about 6 s
    lines: list[str] = []
    try:
        wait_for_rows(llmcorr_home, "slow", 1, run)
        with start_cli("runs", "logs", "slow", "--follow") as follower:

            def read() -> None:
                for line in follower.stdout or []:
                    lines.append(line.rstrip("\n"))

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            deadline = time.monotonic() + 60
            while not lines:  # its first lines: it is following from here on
                assert follower.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
            with Store(store_path(llmcorr_home)) as store:
                done_when_following = store.get_run("slow").rows_done
            assert run.poll() is None and follower.poll() is None
            run.communicate(timeout=120)
            ended = time.monotonic()
            follower.wait(timeout=30)
            waited = time.monotonic() - ended
            reader.join(timeout=10)
            err = follower.stderr.read() if follower.stderr else ""
    finally:
        server.__exit__(None, None, None)
    assert run.returncode == 0 and follower.returncode == 0, err
    assert waited < 5  # it noticed the end within a few polls
    llm_rows = [int(m[2]) for m in map(LOG_LINE.match, lines) if m and m[3] == "llm"]
    assert done_when_following < 10 and sorted(llm_rows) == list(range(1, 11))  # every row once, later ones too
    assert sum(" run prompt " in line for line in lines) == 1
    assert record(llmcorr_home, "slow").status == "completed"

    r = ok("runs", "logs", "slow", "--follow")  # a finished run: every span, then exit
    assert sorted(r.stdout.splitlines()) == sorted(lines)


def test_follow_stops_when_the_run_is_killed(workdir: Path, llmcorr_home: Path) -> None:
    server, run = slow_run(workdir, rpm=120)
    try:
        wait_for_rows(llmcorr_home, "slow", 1, run)
        follower = start_cli("runs", "logs", "slow", "--follow")
        assert follower.stdout and " row 1 " in follower.stdout.readline()  # following
        os.kill(run.pid, signal.SIGKILL)
        run.communicate(timeout=30)
        _, err = follower.communicate(timeout=30)
    finally:
        server.__exit__(None, None, None)
    assert follower.returncode == 0, err
    assert record(llmcorr_home, "slow").status == "interrupted"


def test_python_api(workdir: Path, llmcorr_home: Path) -> None:
    exp = llmcorr.experiments
    first = llmcorr.run("define.prompty", data="words.jsonl", limit=2, name="p1", output=workdir / "p1.csv")
    llmcorr.run("define.prompty", data="words.jsonl", limit=3, name="p2")
    assert [r.name for r in exp.list_runs()] == ["p2", "p1"]
    assert exp.get_run("p1").output_path == str((workdir / "p1.csv").resolve())
    assert exp.tag_run("p1", add=["base", "x"], remove=[]) == ["base", "x"]
    assert exp.tag_run("p1", remove=["x"]) == ["base"]
    assert [r.name for r in exp.list_runs(tag="base")] == ["p1"]
    assert exp.rename_run("p2", "p2b").name == "p2b"
    assert exp.archive_run("p2b").archived and [r.name for r in exp.list_runs()] == ["p1"]
    assert [r.name for r in exp.list_runs(archived=None, sort="rows", descending=False)] == ["p1", "p2b"]
    assert not exp.restore_run("p2b").archived

    frame = exp.compare_runs(["p1", "p2b"])
    assert list(frame.columns) == ["p1", "p2b"] and frame.loc["rows", "p2b"] == 3
    spans = exp.run_logs("p1", row=2)
    assert {s["kind"] for s in spans} == {"row", "llm"} and {s["row_index"] for s in spans} == {1}
    assert "Define w1." in next(s for s in spans if s["kind"] == "llm")["attributes"]["gen_ai.input.messages"]
    assert len(exp.run_logs("p1")) == 5

    other = llmcorr.Experiments(store_path(llmcorr_home))  # the same store, named by its path
    assert other.get_run(first.run_id).name == "p1"
    assert exp.delete_run("p1").id == first.run_id
    assert not (workdir / "p1.csv").exists() and [r.name for r in other.list_runs()] == ["p2b"]
    with pytest.raises(llmcorr.NotFoundError):
        exp.get_run("p1")
