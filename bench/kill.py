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

`--signal INT` or `--signal TERM` sends SIGINT (Ctrl-C) or SIGTERM instead, at the same seeded points. The engine
then drains (no new requests; those in flight answered and committed), so each interruption's bound is 0 rows paid
again; the process exits 130, the run is `cancelled`, and stderr has the line `cancelled: run NAME stopped (...); N
of M rows kept; resume with `llmcorr runs resume NAME``. A signal that lands before llmcorr has set its handlers
(Python's own start-up) ends the process as Python does (-2, -15): checked only in that it sent no request.

Measured and printed: per kill, how many lost rows were still in flight at the server and how many it had answered
(and how long before the kill: an answer the client has not read yet is in flight to it); over every kept row, the
time from the row finishing in the client (its trace span's end) to the start of its commit, whose median must be
within FLUSH_S + slack.

    .venv/bin/python -m bench.kill                                  # 20 kills over 1,000 rows, a random seed
    .venv/bin/python -m bench.kill --kills 20 --rows 1000 --seed 7  # the same kill rules again
    .venv/bin/python -m bench.kill --signal TERM --kills 8 --rows 400 --seed 7   # SIGTERM: each drains, 0 paid again
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.kill_check import FLUSH_S, NAME, Report, analyse, end_of, output_rows, peek, print_report
from bench.quota_server import DEFINE_PROMPTY as PROMPTY
from bench.quota_server import QuotaServer, QuotaServerConfig

__all__ = ["PROMPTY", "Attempt", "Report", "Setup", "kill_and_resume", "main", "print_report"]

LLMCORR = str(Path(sys.executable).with_name("llmcorr"))
SIGNALS = {"KILL": signal.SIGKILL, "INT": signal.SIGINT, "TERM": signal.SIGTERM}
EARLY_SHARE = 0.25  # kills at a random time after the process starts rather than after some rows
EARLY_MAX_S = 4.0  # start-up takes ~3 s on a 2-core machine: most land in it, some in the run
POLL_S = 0.02
ATTEMPT_TIMEOUT_S = 300.0


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
    signal: str = "KILL"  # KILL | INT | TERM: what each interruption sends

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
            + (f" --signal {self.signal}" if self.signal != "KILL" else "")
        )


@dataclass
class Attempt:
    """One `llmcorr` process, from its start to its kill (or its own end); times on the server's clock."""

    n: int
    command: str  # run | resume
    trigger: str
    spawned: float
    ended: float = 0.0  # when the signal was sent (else when it ended)
    killed: bool = False  # the signal ended it (SIGKILL: killed; INT/TERM: it drained and exited 130, or died of it)
    returncode: int = 0
    status: str | None = None  # the run's status in the store right after (None: not recorded yet)
    committed: frozenset[int] = frozenset()  # the rows the store held right after
    integrity: str = "ok"
    output: list[int] = field(default_factory=list)  # the rows the output file held right after
    unreadable: int = 0  # ... and its lines that could not be read
    log: str = ""

    @property
    def drained(self) -> bool:
        """Stopped by SIGINT/SIGTERM the way the README says: no new requests, those in flight committed, exit 130."""
        return self.killed and self.returncode == 130


def _rows_done(db: Path) -> int | None:
    found = peek(db, "SELECT rows_done FROM runs WHERE name = ?", (NAME,))
    return int(found[0][0]) if found else None


def _attempt(
    n: int, setup: Setup, rng: random.Random, kills_left: int, work: Path, home: Path, clock: Callable[[], float]
) -> Attempt:
    db = home / "llmcorr.db"
    signum = SIGNALS[setup.signal]
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
            os.kill(proc.pid, signum)
            sent = True
            break
        time.sleep(POLL_S)
    try:  # reaped before anyone looks: a zombie's pid would look alive
        attempt.returncode = proc.wait(timeout=ATTEMPT_TIMEOUT_S)  # INT/TERM: the requests in flight drain first
    except subprocess.TimeoutExpired:
        proc.kill()
        attempt.returncode = proc.wait()
    # else it ended before the signal came (INT/TERM: 130 once it drained; -signum: before llmcorr's handlers)
    attempt.killed = sent and attempt.returncode in {-signum, 130 if signum != signal.SIGKILL else -signum}
    if not attempt.killed:
        attempt.ended = clock()
    attempt.log = log_path.read_text()
    found = peek(db, "SELECT id, status FROM runs WHERE name = ?", (NAME,))
    if found:
        attempt.status = found[0][1]
        rows = peek(db, "SELECT row_index FROM rows WHERE run_id = ?", (found[0][0],))
        attempt.committed = frozenset(r[0] for r in rows)
    attempt.integrity = str(peek(db, "PRAGMA integrity_check")[0][0]) if db.exists() else "ok"
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
                f"{end_of(attempt, setup.signal)}, {len(attempt.committed)} rows"
            )
            if not attempt.killed:
                break
        log = server.request_log()
    return analyse(setup, attempts, log, home, work / "out.jsonl")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
    parser.add_argument("--latency", type=float, default=0.1, help="the server's seconds to answer")
    parser.add_argument("--concurrency", type=int, default=8, help="the endpoint's max_concurrency")
    parser.add_argument("--slack", type=float, default=0.1, help="client lag allowed beyond FLUSH_S, seconds")
    parser.add_argument("--signal", choices=sorted(SIGNALS), default="KILL", help="what interrupts (default KILL)")
    parser.add_argument("--keep", type=Path, default=None, help="work in this directory and keep it")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    setup = Setup(args.rows, args.kills, seed, args.latency, args.concurrency, args.slack, args.signal)
    print(f"seed {seed}: {setup.command()}")
    with tempfile.TemporaryDirectory(prefix="llmcorr-kill-") as tmp:
        work = args.keep or Path(tmp)
        report = kill_and_resume(setup, work, work / "home")
    print_report(report)
    if report.problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
