"""What `python -m bench.kill` checks and prints: each interruption's cost (the rows its process paid for and did
not commit, and which of them a later process paid for again), the final store and output file, and the table.
The method and the exact criteria are in bench/kill.py's docstring."""

from __future__ import annotations

import bisect
import json
import os
import re
import sqlite3
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.kill import Attempt, Setup

FLUSH_S = 0.05  # what the README promises (rows finishing within 50 ms share one commit), not the engine's constant
NAME = "killed"
WORD = re.compile(r"\bw(\d+)\b")


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
    bound: int = 0  # the most rows it may make the run pay for again: 0 for a drained SIGINT/SIGTERM


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


def peek(db: Path, what: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
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
        kill.bound = 0 if kill.attempt.drained else setup.bound
        if len(kill.paid_again) > kill.bound:
            problems.append(f"kill {kill.attempt.n}: {len(kill.paid_again)} rows paid for again (bound {kill.bound})")
        if setup.signal != "KILL":
            _check_drain(kill, problems)
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


STOPPED_LINE = re.compile(
    r"^cancelled: run \S+ stopped \((Ctrl-C|SIGTERM)\); \d+ of \d+ rows kept; resume with `llmcorr runs resume ", re.M
)


def end_of(a: Attempt, signal: str) -> str:
    """How a process ended, as the table shows it."""
    if not a.killed:
        return f"exit {a.returncode}"
    if not a.drained:
        return f"died of SIG{signal}" if signal != "KILL" else "killed"
    return f"exit 130, {a.status or 'not recorded'}" + (", line ok" if STOPPED_LINE.search(a.log) else "")


def _check_drain(kill: KillRow, problems: list[str]) -> None:
    """A SIGINT/SIGTERM: the process drains (no new requests, those in flight answered and committed), exits 130,
    the run ends `cancelled` with the one line saying how many rows are kept and the resume command. A signal that
    lands before llmcorr sets its handlers (Python's start-up) kills the process as SIGKILL would: fine before any
    request is sent."""
    a = kill.attempt
    if "Traceback" in a.log and (a.drained or kill.paid):
        problems.append(f"process {a.n}: a traceback after the signal: {a.log[a.log.index('Traceback') :][:300]!r}")
    if not a.drained:
        if kill.paid:
            problems.append(
                f"process {a.n}: died of the signal (exit {a.returncode}) after sending {kill.paid} requests"
            )
        return
    if a.status == "running":
        problems.append(f"process {a.n}: exit 130 but the run is left 'running'")
    if kill.paid and a.status != "cancelled":
        problems.append(f"process {a.n}: exit 130 after {kill.paid} requests, but the run ended {a.status}")
    if a.status == "cancelled" and kill.paid and not STOPPED_LINE.search(a.log):
        problems.append(f"process {a.n}: no `cancelled: ... rows kept; resume with ...` line: {a.log[-300:]!r}")


def _check_store(
    setup: Setup, db: Path, by_row: dict[int, list[tuple[float, int, int, int]]], problems: list[str]
) -> tuple[list[float], int]:
    """The final store: the run completed with every row once, each row's tokens those of its last paid request,
    nothing left running, integrity ok. Returns each row's finished → commit lag (ms) and the run's input tokens."""
    found = peek(db, "SELECT id, status, input_tokens FROM runs WHERE name = ?", (NAME,))
    if not found:
        problems.append("the run was never recorded")
        return [], 0
    run_id, status, input_tokens = found[0]
    if status != "completed":
        problems.append(f"the run ended {status}")
    running = peek(db, "SELECT COUNT(*) FROM runs WHERE status = 'running'")[0][0]
    if running:
        problems.append(f"{running} run(s) left 'running'")
    integrity = peek(db, "PRAGMA integrity_check")[0][0]
    if integrity != "ok":
        problems.append(f"integrity_check: {integrity}")
    stored = peek(
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
        peek(db, "SELECT row_index, MAX(end_ns) FROM spans WHERE run_id = ? AND kind = 'row' GROUP BY 1", (run_id,))
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
        f"\n{s.kills} SIG{s.signal}s of `llmcorr run` over {s.rows:,} rows: quota server answering in"
        f" {s.latency_s * 1000:.0f} ms, max_concurrency {s.concurrency}, response cache on, {os.cpu_count()} cores\n"
    )
    say(
        "| kill | process | kill point | ended | rows done at kill | paid by it | lost: in flight | lost: answered"
        " (latest, ms before kill) | paid again later | explained | bound |"
    )
    say("|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for i, k in enumerate(report.kills, 1):
        a = k.attempt
        done = f"{len(a.committed):,}" if a.status is not None else "not recorded"
        say(
            f"| {i} | {a.command} | {a.trigger} | {end_of(a, s.signal)} | {done} | {k.paid} | {k.in_flight} |"
            f" {k.answered} ({k.latest_ms:.0f}) | {len(k.paid_again)} | {len(k.explained)} | {k.bound} |"
        )
    extra = report.paid - s.rows
    lag = sorted(report.commit_lag_ms) or [float("nan")]
    why = "every one a row that a kill caught in flight or waiting for its commit" if extra else "none"
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
    if s.signal != "KILL":
        checks += ", each signal drained: exit 130, `cancelled`, its line, nothing paid again"
    say(f"final checks: {'PASS' if not report.problems else 'FAIL'} ({checks})")
    for problem in report.problems:
        say(f"  problem: {problem}")
    say(f"reproduce: {s.command()}")
