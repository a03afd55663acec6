"""Usage that adds up across the processes that work on a run (issue 12), against the quota server on 127.0.0.1 and
its request log: a run killed with SIGKILL twice and resumed twice records at least the usage of every row it kept,
and no fewer requests than the server saw but those sent since its last commit (at most the endpoint's concurrency
per kill: the bound the README's Guarantees table states); a cancelled run resumed records the sum of both
processes, exactly what the server saw; a no-op resume of a finished run changes none of it; `runs show`, `runs
compare` and the dashboard's view show the same busy time and first-to-last span."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from bench.quota_server import DEFINE_PROMPTY as PROMPTY
from bench.quota_server import QuotaServer, QuotaServerConfig
from llmcorr.runs.summary import endpoint_usage, wall_time
from llmcorr.store import RowRecord, RunRecord, Store
from llmcorr.view import run_summary

from .conftest import run_cli, start_cli, store_path, wait_for_rows

TOML = """default = "q"

[[endpoints]]
name = "q"
kind = "openai"
base_url = "{url}"
model = "m"
rpm = 600000
max_concurrency = {concurrency}
price_in = 1.0
price_out = 2.0
"""

CONCURRENCY = 4  # the endpoint's requests in flight at most
LATENCY_S = 0.3  # the server's time to answer: longer than a commit's wait, so requests are in flight at a kill
FLUSH_S = 0.05  # what the README promises: rows finishing within 50 ms share one commit
SLACK_S = 0.1  # the client's own lag before a commit on a busy machine
# requests one kill may leave unrecorded: those sent since the last commit, one per request slot per LATENCY_S
PER_KILL = CONCURRENCY * (1 + math.floor((FLUSH_S + SLACK_S) / LATENCY_S))


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # llmcorr.toml, the prompt file and the data are found here
    (tmp_path / "define.prompty").write_text(PROMPTY)
    return tmp_path


def words(work: Path, rows: int) -> None:
    (work / "words.jsonl").write_text("".join(json.dumps({"word": f"w{i}"}) + "\n" for i in range(rows)))


def record(home: Path, name: str) -> tuple[RunRecord, list[RowRecord]]:
    with Store(store_path(home)) as store:
        run = store.get_run(name)
        return run, store.rows(run.id)


def seen(server: QuotaServer) -> tuple[int, int]:
    """What the endpoint's own log holds: requests received, and the prompt tokens of those it admitted."""
    log = server.request_log()
    return len(log), sum(e["prompt_tokens"] for e in log if e["status"] == 200)


def check_kept(run: RunRecord, rows: list[RowRecord]) -> dict[str, Any]:
    """The run's recorded usage covers every row it kept; returns that usage."""
    assert run.usage is not None, run
    usage = run.usage["q"]
    paid = [r for r in rows if not r.cached]
    assert usage["requests"] >= sum(r.attempts for r in paid) and usage["ok"] >= len(paid)
    assert usage["input_tokens"] >= sum(r.input_tokens for r in paid)
    assert usage["output_tokens"] >= sum(r.output_tokens for r in paid)
    assert usage["input_tokens"] >= run.input_tokens and usage["output_tokens"] >= run.output_tokens
    assert usage["cost"] == pytest.approx((usage["input_tokens"] * 1.0 + usage["output_tokens"] * 2.0) / 1e6)
    return dict(usage)


def test_usage_survives_two_sigkills_and_two_resumes_within_the_stated_bound(work: Path, llmcorr_home: Path) -> None:
    rows = 150
    words(work, rows)
    config = QuotaServerConfig(rpm=600_000, tpm=10**9, base_latency_s=LATENCY_S)
    with QuotaServer(config) as server:
        (work / "llmcorr.toml").write_text(TOML.format(url=server.base_url, concurrency=CONCURRENCY))
        proc = start_cli("run", "define.prompty", "-d", "words.jsonl", "--name", "acc", "-q")
        for kills, at_rows in enumerate((30, 90), start=1):
            wait_for_rows(llmcorr_home, "acc", at_rows, proc)
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=60)
            run, kept = record(llmcorr_home, "acc")
            assert run.status == "interrupted" and at_rows <= run.rows_done < rows
            usage = check_kept(run, kept)
            requests, prompt_tokens = seen(server)
            # the server saw every recorded request, and more only by those sent since the last commit, per kill
            assert abs(requests - usage["requests"]) <= PER_KILL * kills, (requests, usage, kills)
            # tokens are known when answers come: missing are those of the requests above and of the ones still
            # unanswered at that commit (as many again at most)
            most = max(e["prompt_tokens"] for e in server.request_log())
            assert 0 <= prompt_tokens - usage["input_tokens"] <= 2 * PER_KILL * kills * most
            assert run.busy_s is not None and run.busy_s > 0
            proc = start_cli("runs", "resume", "acc", "-q")
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        requests, prompt_tokens = seen(server)
    run, kept = record(llmcorr_home, "acc")
    assert run.status == "completed" and run.rows_done == rows == len(kept)
    usage = check_kept(run, kept)
    assert abs(requests - usage["requests"]) <= 2 * PER_KILL
    assert requests >= rows  # every row was paid for at least once; the kills' lost rows again
    with Store(store_path(llmcorr_home)) as store:
        parts = store.segments(run.id)
    assert len(parts) == 3 and len({p["pid"] for p in parts}) == 3
    assert sum(p["usage"]["q"]["requests"] for p in parts) == usage["requests"]  # the run's usage is their sum
    wall = wall_time(run)
    assert wall.busy_s is not None and wall.span_s is not None and wall.busy_s <= wall.span_s


def test_a_cancelled_run_resumed_records_both_processes_and_a_no_op_resume_changes_nothing(
    work: Path, llmcorr_home: Path
) -> None:
    rows = 80
    words(work, rows)
    # 5 rows a second: the cancel (a process of its own) lands mid-run
    with QuotaServer(QuotaServerConfig(rpm=600_000, tpm=10**9, base_latency_s=0.4)) as server:
        (work / "llmcorr.toml").write_text(TOML.format(url=server.base_url, concurrency=2))
        proc = start_cli("run", "define.prompty", "-d", "words.jsonl", "--name", "stopped", "-q")
        wait_for_rows(llmcorr_home, "stopped", 4, proc)
        assert run_cli("runs", "cancel", "stopped").returncode == 0
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        cancelled, kept = record(llmcorr_home, "stopped")
        first = check_kept(cancelled, kept)
        assert cancelled.status == "cancelled" and cancelled.rows_done < rows
        # a cancel waits for the requests in flight: the run recorded exactly what the server saw
        assert (first["requests"], first["input_tokens"]) == seen(server)

        resumed = run_cli("runs", "resume", "stopped", "-q")
        assert resumed.returncode == 0, resumed.stderr
        done, kept = record(llmcorr_home, "stopped")
        both = check_kept(done, kept)
        assert (both["requests"], both["input_tokens"]) == seen(server)  # the sum of both processes ...
        assert both["requests"] == first["requests"] + (rows - cancelled.rows_done)  # ... not the resume's alone
        assert both["cost"] == pytest.approx(first["cost"] + (both["cost"] - first["cost"]))

        again = run_cli("runs", "resume", "stopped", "-q")  # nothing left to do
        assert again.returncode == 0, again.stderr
        assert seen(server)[0] == both["requests"]
    after, _ = record(llmcorr_home, "stopped")
    assert after.status == "completed" and after.usage is not None
    keys = ("requests", "ok", "rate_limited", "errors", "input_tokens", "output_tokens", "cost")
    assert {k: after.usage["q"][k] for k in keys} == {k: both[k] for k in keys}
    assert after.rate_limited == done.rate_limited and after.input_tokens == done.input_tokens

    # one busy time and one span, shown alike by `runs show`, `runs compare` and the dashboard
    wall = wall_time(after)
    assert wall.busy_s is not None and wall.span_s is not None and wall.busy_s <= wall.span_s
    shown = run_cli("runs", "show", "stopped")
    assert shown.returncode == 0, shown.stderr
    assert str(wall) in shown.stdout and endpoint_usage(after.usage["q"]) in shown.stdout
    assert f"{both['requests']} requests" in shown.stdout and f"${both['cost']:.4f}" in shown.stdout
    assert run_summary(after)["wall"] == str(wall) and run_summary(after)["wall_time_s"] == wall.busy_s
    (work / "few.jsonl").write_text('{"word": "w0"}\n')  # a second run to compare with: answered from the cache
    assert run_cli("run", "define.prompty", "-d", "few.jsonl", "--name", "other", "-q").returncode == 0
    compared = run_cli("runs", "compare", "stopped", "other", "--json")
    assert compared.returncode == 0, compared.stderr
    column = json.loads(compared.stdout)["stopped"]
    assert column["wall time (s)"] == pytest.approx(wall.busy_s) and wall.paused  # the pauses between processes
    assert column["first to last (s)"] == pytest.approx(wall.span_s)
    assert column["cost ($)"] == pytest.approx(both["cost"]) and column["429s"] == after.rate_limited
