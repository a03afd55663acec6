"""Kill a real run with SIGKILL at random points, resume it each time: nothing lost, nothing paid for twice but
what a kill must cost.

`llmcorr run` of a prompt file over N rows (response cache on, as users run it) against the quota server on
127.0.0.1 (in this process; each answer takes `latency` seconds, so requests are in flight when a kill lands). K
times, at a seeded random point, the process gets SIGKILL; the next one is `llmcorr runs resume NAME` (`llmcorr
run` again when the kill came before the run was recorded), and a last resume runs to the end. A kill point is
"after M more committed rows" (M drawn so that work is left for every kill) or, for a quarter of the kills, "X s
after the process started" (start-up, resume's own setup, the end of a run), plus up to 50 ms of jitter so it lands
anywhere in the commit cycle.

What is checked (every failure is a line in `Report.problems`):

- after every kill: `PRAGMA integrity_check` is ok, the output file holds only rows the store has, each once;
- at the end: the run is `completed`, no run is `running`, every input row is in the store and in the output file
  exactly once (in input order), integrity ok, each row's tokens are those of the answer it kept;
- nothing paid for twice but what a kill must cost. A row is *paid for* by each request for it the server admitted
  (its log keeps each request's messages, so each request names its row). A row the store had committed at a kill
  is never requested again, and no process requests a row twice. So every extra payment is a row that the process a
  kill stopped had requested but not committed: its request was in flight, or its answer was among those waiting
  for the next commit (rows finishing within FLUSH_S = 50 ms share one). Per kill, those rows are at most
  concurrency (in flight) + concurrency x (1 + (FLUSH_S + slack) / latency), rounded down (the answers that can
  arrive while a commit waits; `slack`: the client's own lag on a busy machine).

Measured and printed: per kill, how many lost rows were still in flight at the server and how many it had answered
(and how long before the kill: an answer the client has not read yet is in flight to it); over every kept row, the
time from the row finishing in the client (its trace span's end) to the start of its commit, whose median must be
within FLUSH_S + slack.

    .venv/bin/python -m bench.kill                                  # 20 kills over 1,000 rows, a random seed
    .venv/bin/python -m bench.kill --kills 20 --rows 1000 --seed 7  # the same kill rules again
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from bench.quota_server import QuotaServer, QuotaServerConfig

LLMCORR = str(Path(sys.executable).with_name("llmcorr"))
FLUSH_S = 0.05  # what the README promises (rows finishing within 50 ms share one commit), not the engine's constant
NAME = "killed"
EARLY_SHARE = 0.25  # kills at a random time after the process starts rather than after some rows
EARLY_MAX_S = 4.0  # start-up takes ~3 s on a 2-core machine: most land in it, some in the run
POLL_S = 0.02
ATTEMPT_TIMEOUT_S = 300.0
WORD = re.compile(r"\bw(\d+)\b")

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
user:
Define {{ word }}.
"""

TOML = """default = "q"

[[endpoints]]
name = "q"
kind = "openai"
base_url = "{url}"
model = "m"
rpm = 600000
max_concurrency = {concurrency}
"""


@dataclass(frozen=True)
class Setup:
    rows: int = 1000
    kills: int = 20
    seed: int = 0
    latency_s: float = 0.1  # the server's time to answer
    concurrency: int = 8  # the endpoint's max_concurrency: requests in flight at most
    slack_s: float = 0.1  # the client's own lag before a commit, beyond FLUSH_S

    @property
    def bound(self) -> int:
        """The most rows one kill may make the run pay for again: those in flight, and those answered while a commit
        waits (each request slot answers at most once per `latency`)."""
        waiting = self.concurrency * (1 + math.floor((FLUSH_S + self.slack_s) / self.latency_s))
        return self.concurrency + waiting

    def command(self) -> str:
        return (
            f"python -m bench.kill --rows {self.rows} --kills {self.kills} --seed {self.seed}"
            f" --latency {self.latency_s} --concurrency {self.concurrency} --slack {self.slack_s}"
        )


@dataclass
class Attempt:
    """One `llmcorr` process, from its start to its kill (or its own end); times on the server's clock."""

    n: int
    command: str  # run | resume
    trigger: str
    spawned: float
    ended: float = 0.0
    killed: bool = False
    returncode: int = 0
    status: str | None = None  # the run's status in the store right after (None: not recorded yet)
    committed: frozenset[int] = frozenset()  # the rows the store held right after
    integrity: str = "ok"
    output: list[int] = field(default_factory=list)  # the rows the output file held right after
    unreadable: int = 0  # ... and its lines that could not be read
    log: str = ""


@dataclass
class KillRow:
    """What one kill cost: the rows its process paid for that the store did not have, and what became of them."""

    attempt: Attempt
    paid: int = 0  # requests the process paid for
    in_flight: int = 0  # lost rows whose answer was not yet sent at the kill
    answered: int = 0  # lost rows the server had answered before the kill (not yet read, or not yet committed)
    latest_ms: float = 0.0  # the longest a lost row's answer had been sent before the kill
    paid_again: set[int] = field(default_factory=set)  # lost rows a later process paid for again
    explained: set[int] = field(default_factory=set)  # ... of those, requested by it and uncommitted at the kill


@dataclass
class Report:
    setup: Setup
    attempts: list[Attempt]
    kills: list[KillRow]
    problems: list[str]
    paid: int  # requests the server admitted (and charged) over every process
    prompt_tokens_paid: int
    prompt_tokens_kept: int  # the run's input tokens: the answers it kept
    commit_lag_ms: list[float]  # per row: its answer sent → its commit started


def _peek(db: Path, what: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """A read-only query of the store, [] while it has no tables yet. Read-only, so the harness never writes the
    store (not even a checkpoint on close): the next process finds it exactly as the killed one left it."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(what, args).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


def _rows_done(db: Path) -> int | None:
    found = _peek(db, "SELECT rows_done FROM runs WHERE name = ?", (NAME,))
    return int(found[0][0]) if found else None


def row_of(messages: list[dict[str, Any]]) -> int:
    """The row a request was for: the `wN` in its prompt."""
    match = WORD.search(str(messages[-1]["content"]))
    assert match, messages
    return int(match.group(1))


def output_rows(path: Path) -> tuple[list[int], int]:
    """The rows (0-based, in file order) the output file holds, and how many of its lines could not be read."""
    if not path.exists():
        return [], 0
    rows, unreadable = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line the kill cut short
            unreadable += 1
            continue
        match = WORD.fullmatch(str(record.get("word")))
        if match is None or record.get("row", int(match.group(1)) + 1) != int(match.group(1)) + 1:
            unreadable += 1
            continue
        rows.append(int(match.group(1)))
    return rows, unreadable


def _attempt(
    n: int, setup: Setup, rng: random.Random, kills_left: int, work: Path, home: Path, clock: Callable[[], float]
) -> Attempt:
    db = home / "llmcorr.db"
    done = _rows_done(db)
    out = work / "out.jsonl"
    if done is None:
        command, args = "run", ["run", "define.prompty", "-d", "words.jsonl", "-o", out, "--name", NAME, "-q"]
    else:
        command, args = "resume", ["runs", "resume", NAME, "-o", out, "-q"]
    left = setup.rows - (done or 0)
    more = rng.randint(1, max(1, 2 * left // (kills_left + 1)))  # every draw made, kill or not: reproducible
    at_s = rng.uniform(0.0, EARLY_MAX_S) if rng.random() < EARLY_SHARE else None
    jitter = rng.uniform(0.0, FLUSH_S)
    if not kills_left:
        trigger = "none: runs to the end"
    elif at_s is not None:
        trigger = f"{at_s:.2f} s after start (or +{more} rows)"
    else:
        trigger = f"+{more} rows"
    log_path = work / f"attempt-{n:02d}.log"
    env = {**os.environ, "LLMCORR_HOME": str(home)}
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [LLMCORR, *map(str, args)], cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    attempt = Attempt(n, command, trigger, spawned=clock())
    started, sent = time.monotonic(), False
    while proc.poll() is None:
        elapsed = time.monotonic() - started
        if elapsed > ATTEMPT_TIMEOUT_S:
            proc.terminate()
            break
        if kills_left and ((at_s is not None and elapsed >= at_s) or (_rows_done(db) or 0) >= (done or 0) + more):
            time.sleep(jitter)
            attempt.ended = clock()
            os.kill(proc.pid, signal.SIGKILL)
            sent = True
            break
        time.sleep(POLL_S)
    attempt.returncode = proc.wait()  # reaped before anyone looks: a zombie's pid would look alive
    attempt.killed = sent and attempt.returncode == -signal.SIGKILL  # else it ended before the signal came
    if not attempt.killed:
        attempt.ended = clock()
    attempt.log = log_path.read_text()
    found = _peek(db, "SELECT id, status FROM runs WHERE name = ?", (NAME,))
    if found:
        attempt.status = found[0][1]
        rows = _peek(db, "SELECT row_index FROM rows WHERE run_id = ?", (found[0][0],))
        attempt.committed = frozenset(r[0] for r in rows)
    attempt.integrity = str(_peek(db, "PRAGMA integrity_check")[0][0]) if db.exists() else "ok"
    attempt.output, attempt.unreadable = output_rows(out)
    return attempt


def kill_and_resume(setup: Setup, work: Path, home: Path, say: Callable[[str], None] = print) -> Report:
    """Run, kill and resume as the module docstring says; return what was measured and every problem found."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "define.prompty").write_text(PROMPTY)
    (work / "words.jsonl").write_text("".join(json.dumps({"word": f"w{i}"}) + "\n" for i in range(setup.rows)))
    rng = random.Random(setup.seed)
    config = QuotaServerConfig(rpm=600_000, tpm=10**9, base_latency_s=setup.latency_s, log_messages=True)
    attempts: list[Attempt] = []
    with QuotaServer(config) as server:
        (work / "llmcorr.toml").write_text(TOML.format(url=server.base_url, concurrency=setup.concurrency))

        def clock() -> float:  # the server's log clock
            return time.monotonic() - server.emulator.stats.origin

        while True:
            kills_left = setup.kills - sum(a.killed for a in attempts)
            attempt = _attempt(len(attempts) + 1, setup, rng, kills_left, work, home, clock)
            attempts.append(attempt)
            say(
                f"process {attempt.n:>2} ({attempt.command}, {attempt.trigger}): "
                f"{'killed' if attempt.killed else f'exit {attempt.returncode}'}, {len(attempt.committed)} rows"
            )
            if not attempt.killed:
                break
        log = server.request_log()
    return analyse(setup, attempts, log, home, work / "out.jsonl")


def analyse(setup: Setup, attempts: list[Attempt], log: list[dict[str, Any]], home: Path, out: Path) -> Report:
    problems: list[str] = []
    db = home / "llmcorr.db"
    # every paid request: (admitted at, row, prompt tokens, the process that sent it)
    spawned = [a.spawned for a in attempts]
    paid = [
        (e["t"], row_of(e["messages"]), e["prompt_tokens"], bisect.bisect_right(spawned, e["t"]) - 1)
        for e in log
        if e["status"] == 200
    ]
    by_row: dict[int, list[tuple[float, int, int, int]]] = {}
    for t, row, tokens, who in sorted(paid):
        by_row.setdefault(row, []).append((t, row, tokens, who))
    kills = {a.n - 1: KillRow(a) for a in attempts if a.killed}
    for row, requests in by_row.items():
        for (_, _, _, who), (_, _, _, later) in pairwise(requests):
            kill = kills.get(who)
            if kill is None or later == who:
                problems.append(f"row {row}: paid for twice by process {who + 1}, which was not killed in between")
            elif row in kill.attempt.committed:
                problems.append(f"row {row}: committed before kill {kill.attempt.n}, yet paid for again")
            else:
                kill.paid_again.add(row)
                kill.explained.add(row)
    for i, kill in kills.items():
        mine = [(t, row) for t, row, _, who in paid if who == i]
        kill.paid = len(mine)
        for t, row in mine:
            if row in kill.attempt.committed:
                continue
            before_ms = (kill.attempt.ended - t - setup.latency_s) * 1000
            if before_ms < 0:
                kill.in_flight += 1
            else:
                kill.answered += 1
                kill.latest_ms = max(kill.latest_ms, before_ms)
        if len(kill.paid_again) > setup.bound:
            problems.append(f"kill {kill.attempt.n}: {len(kill.paid_again)} rows paid for again (bound {setup.bound})")
    for a in attempts:
        if a.integrity != "ok":
            problems.append(f"process {a.n}: integrity_check after it: {a.integrity}")
        if len(set(a.output)) != len(a.output) or not set(a.output) <= a.committed or a.unreadable:
            problems.append(
                f"process {a.n}: the output file after it holds {len(a.output)} rows ({len(set(a.output))} distinct,"
                f" {len(set(a.output) - a.committed)} not in the store, {a.unreadable} lines unreadable)"
            )
        if not a.killed and a.returncode != 0:
            problems.append(f"process {a.n} exited {a.returncode}: {a.log[-1000:]}")
        if "database is locked" in a.log:
            problems.append(f"process {a.n}: 'database is locked' in its output")
    final = attempts[-1]
    if final.killed:
        problems.append(f"the run did not reach its end after {len(attempts)} processes")
    lag_ms, kept_tokens = _check_store(setup, db, by_row, problems)
    if lag_ms and statistics.median(lag_ms) > (FLUSH_S + setup.slack_s) * 1000:
        problems.append(
            f"rows waited {statistics.median(lag_ms):.0f} ms (median) from finishing to their commit:"
            f" more than {FLUSH_S * 1000:.0f} ms + slack"
        )
    rows, unreadable = output_rows(out)
    if rows != list(range(setup.rows)) or unreadable:
        problems.append(f"output file: {len(rows)} rows, {unreadable} unreadable; not every row once in input order")
    return Report(
        setup, attempts, list(kills.values()), problems, len(paid), sum(p[2] for p in paid), kept_tokens, lag_ms
    )


def _check_store(
    setup: Setup, db: Path, by_row: dict[int, list[tuple[float, int, int, int]]], problems: list[str]
) -> tuple[list[float], int]:
    """The final store: the run completed with every row once, each row's tokens those of its last paid request,
    nothing left running, integrity ok. Returns each row's finished → commit lag (ms) and the run's input tokens."""
    found = _peek(db, "SELECT id, status, input_tokens FROM runs WHERE name = ?", (NAME,))
    if not found:
        problems.append("the run was never recorded")
        return [], 0
    run_id, status, input_tokens = found[0]
    if status != "completed":
        problems.append(f"the run ended {status}")
    running = _peek(db, "SELECT COUNT(*) FROM runs WHERE status = 'running'")[0][0]
    if running:
        problems.append(f"{running} run(s) left 'running'")
    integrity = _peek(db, "PRAGMA integrity_check")[0][0]
    if integrity != "ok":
        problems.append(f"integrity_check: {integrity}")
    stored = _peek(
        db,
        "SELECT row_index, status, input_tokens, cached, created_utc FROM rows WHERE run_id = ? ORDER BY row_index",
        (run_id,),
    )
    if [r[0] for r in stored] != list(range(setup.rows)):
        problems.append(f"the store holds {len(stored)} rows, not rows 0..{setup.rows - 1} once each")
    if any(r[1] != "ok" for r in stored):
        problems.append(f"rows not ok: {[r[0] for r in stored if r[1] != 'ok'][:10]}")
    # when each kept row finished in the client: the end of its (latest) row span
    finished = dict(
        _peek(db, "SELECT row_index, MAX(end_ns) FROM spans WHERE run_id = ? AND kind = 'row' GROUP BY 1", (run_id,))
    )
    lag_ms = []
    for row, _, tokens, cached, created in stored:
        requests = by_row.get(row)
        if not requests:
            problems.append(f"row {row}: in the store, but the server never answered it")
            continue
        if cached:
            continue
        if tokens != requests[-1][2]:
            problems.append(f"row {row}: {tokens} input tokens stored, its answer cost {requests[-1][2]}")
        if row in finished:  # (a kill between a commit and its spans' leaves none)
            lag_ms.append((datetime.fromisoformat(created).timestamp() - finished[row] / 1e9) * 1000)
    if input_tokens != sum(r[2] for r in stored):
        problems.append(f"the run counts {input_tokens} input tokens, its rows {sum(r[2] for r in stored)}")
    return lag_ms, int(input_tokens)


def print_report(report: Report, say: Callable[[str], None] = print) -> None:
    s = report.setup
    say(
        f"\n{s.kills} SIGKILLs of `llmcorr run` over {s.rows:,} rows: quota server answering in"
        f" {s.latency_s * 1000:.0f} ms, max_concurrency {s.concurrency}, response cache on, {os.cpu_count()} cores\n"
    )
    say(
        "| kill | process | kill point | rows done at kill | paid by it | lost: in flight | lost: answered"
        " (latest, ms before kill) | paid again later | explained | bound |"
    )
    say("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for i, k in enumerate(report.kills, 1):
        a = k.attempt
        done = f"{len(a.committed):,}" if a.status is not None else "not recorded"
        say(
            f"| {i} | {a.command} | {a.trigger} | {done} | {k.paid} | {k.in_flight} |"
            f" {k.answered} ({k.latest_ms:.0f}) | {len(k.paid_again)} | {len(k.explained)} | {s.bound} |"
        )
    extra = report.paid - s.rows
    lag = sorted(report.commit_lag_ms) or [float("nan")]
    why = "every one a row that a kill caught in flight or waiting for its commit"
    say(
        f"\nprocesses: {len(report.attempts)}; requests paid: {report.paid:,} for {s.rows:,} rows"
        f" ({extra} paid again{'' if report.problems else ': ' + why})"
    )
    wasted = report.prompt_tokens_paid - report.prompt_tokens_kept
    say(
        f"prompt tokens paid: {report.prompt_tokens_paid:,}; kept by the run: {report.prompt_tokens_kept:,};"
        f" lost to kills: {wasted:,} ({wasted / max(1, report.prompt_tokens_paid) * 100:.1f}%)"
    )
    say(
        f"row finished -> its commit began: median {statistics.median(lag):.0f} ms,"
        f" p99 {lag[min(len(lag) - 1, int(len(lag) * 0.99))]:.0f} ms, max {lag[-1]:.0f} ms"
        f" (FLUSH_S {FLUSH_S * 1000:.0f} ms)"
    )
    checks = "every row once in store and output, run completed, none running, integrity_check ok after every kill"
    say(f"final checks: {'PASS' if not report.problems else 'FAIL'} ({checks})")
    for problem in report.problems:
        say(f"  problem: {problem}")
    say(f"reproduce: {s.command()}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
    parser.add_argument("--latency", type=float, default=0.1, help="the server's seconds to answer")
    parser.add_argument("--concurrency", type=int, default=8, help="the endpoint's max_concurrency")
    parser.add_argument("--slack", type=float, default=0.1, help="client lag allowed beyond FLUSH_S, seconds")
    parser.add_argument("--keep", type=Path, default=None, help="work in this directory and keep it")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    setup = Setup(args.rows, args.kills, seed, args.latency, args.concurrency, args.slack)
    print(f"seed {seed}: {setup.command()}")
    with tempfile.TemporaryDirectory(prefix="llmcorr-kill-") as tmp:
        work = args.keep or Path(tmp)
        report = kill_and_resume(setup, work, work / "home")
    print_report(report)
    if report.problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
