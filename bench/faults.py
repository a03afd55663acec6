"""Faults cost rows, not the run (issue 13's acceptance): each fault the quota server injects, at a share of the
requests, over one real `llmcorr run` of a prompt file, then one `llmcorr runs resume`.

For each fault (and a fault-free row first, for comparison), a fresh quota server on 127.0.0.1 (in this process;
answers after `latency` seconds, no quota to speak of) injects only that fault, drawn per admitted request at
`rate` from an RNG seeded with `seed`; the knobs are QuotaServerConfig's `*_rate` (bench/quota_emulator.py,
bench/quota_shapes.py, FAULTS in bench/quota_stats.py). The poisoned row is its own line: a share `rate` of the
rows (chosen with the same seed) hold the server's `reject_marker` and are answered 400 on every try. The hang
fault hangs `hang_s` seconds with no answer; its endpoint has `timeout_s` = `--timeout` so a try is cut soon.

`llmcorr run` (response cache on, as users run it; a fresh store per fault) runs to its end; then `llmcorr runs
resume NAME` runs once, whatever the first process left. Per fault, from the process, the store (read-only) and
the server's counters:

- exit: the run's exit code (0 every row ok, 1 some rows failed); ok / failed: the store's rows after the run;
- requests: chat requests the server received (admitted, refused, rejected), per row; 429s; wall time;
- ended: the run's status in the store after the run (`completed` even with failed rows: "completed, N failed");
- resume: its exit code, whether every row was then `ok`, and the requests it sent.

A problem (printed under the table, exit code 1): a traceback in either process's output, a run left `running`,
the store or the output file not holding every row once after the resume, an exit code that is not 0 or 1.

    .venv/bin/python -m bench.faults                                       # 200 rows, each fault at 25%
    .venv/bin/python -m bench.faults --rows 200 --rate 0.25 --seed 13
    .venv/bin/python -m bench.faults --only timeout,malformed              # some of the faults
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.kill_check import peek
from bench.quota_server import DEFINE_PROMPTY as PROMPTY
from bench.quota_server import QuotaServer, QuotaServerConfig
from bench.quota_stats import FAULTS

LLMCORR = str(Path(sys.executable).with_name("llmcorr"))
NAME = "faults"
MARKER = "POISONED"
POISON = "reject"  # the poisoned-row line's name
PROCESS_TIMEOUT_S = 600.0


TOML = """default = "q"

[[endpoints]]
name = "q"
kind = "openai"
base_url = "{url}"
model = "m"
{timeout}
"""


@dataclass(frozen=True)
class Setup:
    rows: int = 200
    rate: float = 0.25
    seed: int = 13
    latency_s: float = 0.02
    hang_s: float = 60.0
    timeout_s: float = 5.0  # the hang fault's endpoint timeout_s

    def command(self, only: list[str] | None = None) -> str:
        line = (
            f".venv/bin/python -m bench.faults --rows {self.rows} --rate {self.rate:g} --seed {self.seed}"
            f" --latency {self.latency_s:g} --hang-s {self.hang_s:g} --timeout {self.timeout_s:g}"
        )
        return line + (f" --only {','.join(only)}" if only else "")


@dataclass
class Process:
    """One `llmcorr` process: its exit code, wall time, the requests the server received meanwhile, its output."""

    returncode: int = 0
    wall_s: float = 0.0
    requests: int = 0
    rate_limited: int = 0
    log: str = ""


@dataclass
class Line:
    """One fault's row of the table."""

    fault: str
    injected: int = 0  # faults the server injected (rejections for the poisoned row) over both processes
    run: Process = field(default_factory=Process)
    resume: Process = field(default_factory=Process)
    ok: int = 0  # rows ok after the run
    failed: int = 0  # rows failed after the run
    status: str = "not recorded"  # the run's status after the run
    status_after: str = "not recorded"  # ... and after the resume
    ok_after: int = 0  # rows ok after the resume
    problems: list[str] = field(default_factory=list)


def _store_rows(db: Path) -> tuple[str, list[tuple[int, str]]]:
    """The run's status and its (row_index, status) rows."""
    found = peek(db, "SELECT id, status FROM runs WHERE name = ?", (NAME,))
    if not found:
        return "not recorded", []
    rows = peek(db, "SELECT row_index, status FROM rows WHERE run_id = ? ORDER BY row_index", (found[0][0],))
    return str(found[0][1]), [(int(i), str(s)) for i, s in rows]


def _output_rows(path: Path) -> list[str]:
    """The `word` column of the output file, in file order."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [r.get("word", "") for r in csv.DictReader(f)]


def _process(args: list[str], work: Path, env: dict[str, str], server: QuotaServer) -> Process:
    before = server.stats()
    started = time.monotonic()
    try:
        done = subprocess.run(
            [LLMCORR, *args], cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=PROCESS_TIMEOUT_S,
        )  # fmt: skip
        code, log = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code, log = -1, f"still running after {PROCESS_TIMEOUT_S:.0f} s: {exc}"
    wall = time.monotonic() - started
    after = server.stats()
    limited = after["rate_limited_total"] - before["rate_limited_total"]
    return Process(code, wall, after["received"] - before["received"], limited, log)


def _overrides(fault: str, setup: Setup) -> dict[str, Any]:
    if fault == "none":
        return {}
    if fault == POISON:
        return {"reject_marker": MARKER, "reject_status": 400}
    extra: dict[str, Any] = {"hang_s": setup.hang_s} if fault == "timeout" else {}
    return {f"{fault}_rate": setup.rate, **extra}


def run_fault(fault: str, setup: Setup, work: Path) -> Line:
    """One fault: `llmcorr run` over `setup.rows` rows with it injected, then `llmcorr runs resume`."""
    work.mkdir(parents=True)
    poisoned = random.Random(setup.seed)
    words = [
        f"w{i} {MARKER}" if fault == POISON and poisoned.random() < setup.rate else f"w{i}" for i in range(setup.rows)
    ]
    (work / "define.prompty").write_text(PROMPTY)
    (work / "words.csv").write_text("word\n" + "".join(f"{w}\n" for w in words))
    out, db = work / "out.csv", work / "home" / "llmcorr.db"
    env = {**os.environ, "LLMCORR_HOME": str(work / "home")}
    line = Line(fault)
    config = QuotaServerConfig(rpm=600_000, tpm=10**9, base_latency_s=setup.latency_s, seed=setup.seed)
    with QuotaServer(config, **_overrides(fault, setup)) as server:
        timeout = f"timeout_s = {setup.timeout_s:g}" if fault == "timeout" else ""
        (work / "llmcorr.toml").write_text(TOML.format(url=server.base_url, timeout=timeout))
        run_args = ["run", "define.prompty", "--data", "words.csv", "--output", str(out), "--name", NAME, "-q"]
        line.run = _process(run_args, work, env, server)
        line.status, rows = _store_rows(db)
        line.ok = sum(s == "ok" for _, s in rows)
        line.failed = len(rows) - line.ok
        line.resume = _process(["runs", "resume", NAME, "--output", str(out), "-q"], work, env, server)
        stats = server.stats()
        line.injected = stats["rejected"] if fault == POISON else stats["faults"].get(fault, 0)
    line.status_after, rows = _store_rows(db)
    line.ok_after = sum(s == "ok" for _, s in rows)
    _check(line, setup, rows, words, _output_rows(out))
    return line


def _check(line: Line, setup: Setup, rows: list[tuple[int, str]], words: list[str], output: list[str]) -> None:
    for what, p in (("run", line.run), ("resume", line.resume)):
        if "Traceback" in p.log:
            line.problems.append(f"{what}: a traceback: {p.log[p.log.index('Traceback') :][:300]!r}")
        if p.returncode not in (0, 1):
            line.problems.append(f"{what}: exit {p.returncode}: {p.log.strip()[-300:]!r}")
    if "running" in (line.status, line.status_after):
        line.problems.append(f"the run was left running (after the run: {line.status}; after the resume)")
    if [i for i, _ in rows] != list(range(setup.rows)):
        line.problems.append(f"the store holds {len(rows)} rows after the resume, not every row once")
    if output != words:
        line.problems.append(f"the output file holds {len(output)} rows after the resume, not every row once in order")


def print_table(setup: Setup, lines: list[Line], only: list[str] | None, say: Any = print) -> None:
    say(
        f"\n{setup.rows} rows, each fault at {setup.rate:.0%} of requests (the poisoned row: of rows), answers after"
        f" {setup.latency_s * 1000:.0f} ms, hangs of {setup.hang_s:g} s against timeout_s {setup.timeout_s:g},"
        f" seed {setup.seed}, {os.cpu_count()} cores\n"
    )
    say(
        "| fault | injected | exit | rows ok / failed | requests | per row | 429s | wall | ended |"
        " resume: exit, all rows ok? | resume requests | resume wall |"
    )
    say("|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|")
    for x in lines:
        ended = x.status + (f", {x.failed} failed" if x.failed and x.status == "completed" else "")
        every = "yes" if x.ok_after == setup.rows else f"no: {x.ok_after} ok"
        say(
            f"| {x.fault} | {x.injected} | {x.run.returncode} | {x.ok} / {x.failed} | {x.run.requests} |"
            f" {x.run.requests / setup.rows:.2f} | {x.run.rate_limited} | {x.run.wall_s:.1f} s | {ended} |"
            f" {x.resume.returncode}, {every} | {x.resume.requests} | {x.resume.wall_s:.1f} s |"
        )
    problems = [(x.fault, p) for x in lines for p in x.problems]
    checks = "no traceback, none left running, every row once in store and output, exit 0 or 1"
    say(f"\nchecks: {'PASS' if not problems else 'FAIL'} ({checks})")
    for fault, problem in problems:
        say(f"  problem ({fault}): {problem}")
    say(f"reproduce: {setup.command(only)}")


def main(argv: list[str] | None = None) -> None:
    names = ["none", *FAULTS, POISON]
    parser = argparse.ArgumentParser(
        prog="python -m bench.faults", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--rate", type=float, default=0.25, help="share of requests given the fault (default 0.25)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds an answer takes (default 0.02)")
    parser.add_argument("--hang-s", type=float, default=60.0, help="how long a hang lasts (default 60)")
    parser.add_argument("--timeout", type=float, default=5.0, help="the hang fault's endpoint timeout_s (default 5)")
    parser.add_argument("--only", default=None, help=f"comma-separated, of: {', '.join(names)}")
    parser.add_argument("--keep", type=Path, default=None, help="work in this directory and keep it")
    a = parser.parse_args(argv)
    csv.field_size_limit(sys.maxsize)  # the huge answers' output cells
    # the server cancels the hung connections when it stops: asyncio logs each one, noise for this table
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    only = a.only.split(",") if a.only else None
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        parser.error(f"--only: unknown fault(s) {', '.join(unknown)}; known: {', '.join(names)}")
    setup = Setup(a.rows, a.rate, a.seed, a.latency, a.hang_s, a.timeout)
    lines: list[Line] = []
    with tempfile.TemporaryDirectory(prefix="llmcorr-faults-") as tmp:
        root = a.keep or Path(tmp)
        for fault in [n for n in names if only is None or n in only]:
            line = run_fault(fault, setup, root / fault)
            lines.append(line)
            print(
                f"{fault}: exit {line.run.returncode}, {line.ok} ok / {line.failed} failed, {line.run.requests}"
                f" requests, {line.run.wall_s:.1f} s; resume exit {line.resume.returncode}, {line.ok_after} ok",
                flush=True,
            )
    print_table(setup, lines, only)
    if any(x.problems for x in lines):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
