"""Memory of a large run: `llmcorr run` over 20,000 and 200,000 rows against the instant endpoint, peak RSS of each.

The engine streams: rows are read from the file in chunks, rendered when a worker asks for one, committed in
batches, written to the output as they finish and rewritten in input order from the store at the end; nothing holds
the whole table. Targets (issue 7): peak RSS <= 300 MB, and <= 10% growth from 20k to 200k rows.

Each size runs the CLI in its own process with a fresh LLMCORR_HOME (the response cache on, as users run it; tracing
on), over a CSV input, writing a CSV output. Peak RSS is the kernel's high-water mark for that process
(`ru_maxrss` from wait4), so nothing is missed between samples. The server counts the requests it answered.
"rows/s" is over the command's whole wall time (start-up and the checking pass included); "run rows/s" over the run
itself as its record in the store times it (created → finished): the engine's sustained rate, every row rendered,
looked up in the cache, scheduled, sent, parsed, stored, traced and written to the output.

    .venv/bin/python -m bench.memory                      # 20,000 and 200,000 rows
    .venv/bin/python -m bench.memory --rows 2000 20000    # a quick check
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench.instant_server import completions_seen, start_instant_server
from bench.tracing import PROMPTY

TOML = """default = ["instant"]

[[endpoints]]
name = "instant"
kind = "openai"
base_url = "{base_url}"
model = "m"
max_concurrency = 32
"""


@dataclass
class Measured:
    rows: int
    wall_s: float
    run_s: float  # from the run's record to its end: the engine alone (no start-up, no checking pass)
    peak_rss_mb: float
    requests: int
    output_rows: int
    code: int

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall_s


def run_seconds(home: Path) -> float:
    """How long the run itself took: created → finished, as its record in the store says."""
    with sqlite3.connect(home / "llmcorr.db") as db:
        created, finished = db.execute("SELECT created_utc, finished_utc FROM runs").fetchone()
    return (datetime.fromisoformat(finished) - datetime.fromisoformat(created)).total_seconds()


def one(work: Path, base_url: str, rows: int) -> Measured:
    data = work / f"rows-{rows}.csv"
    if not data.exists():
        with data.open("w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["id", "word"])
            out.writerows((i, f"word{i}") for i in range(rows))
    home = work / f"home-{rows}"
    shutil.rmtree(home, ignore_errors=True)
    output = work / f"out-{rows}.csv"
    output.unlink(missing_ok=True)
    llmcorr = str(Path(sys.executable).with_name("llmcorr"))
    command = [llmcorr, "run", "define.prompty", "--data", data.name, "--output", output.name, "--quiet"]
    env = {**os.environ, "LLMCORR_HOME": str(home)}
    before = completions_seen(base_url)
    started = time.perf_counter()
    with (work / f"llmcorr-{rows}.log").open("w") as log:
        proc = subprocess.Popen(command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    requests = completions_seen(base_url) - before
    with output.open() as fh:
        output_rows = sum(1 for _ in fh) - 1 if output.exists() else 0
    run_s = run_seconds(home) if proc.returncode == 0 else float("nan")
    return Measured(rows, wall, run_s, usage.ru_maxrss / 1024, requests, output_rows, proc.returncode)


def report(results: list[Measured], command: str) -> None:
    print(f"\nMemory of `llmcorr run` by input size: instant endpoint, cache and tracing on, {os.cpu_count()} cores\n")
    print("| rows | wall s | rows/s | run s | run rows/s | peak RSS MB | vs smallest | requests | output rows | exit |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = results[0].peak_rss_mb
    for m in results:
        vs = f"{(m.peak_rss_mb / base - 1) * 100:+.1f}%"
        print(
            f"| {m.rows:,} | {m.wall_s:.1f} | {m.rows_per_s:,.0f} | {m.run_s:.1f} | {m.rows / m.run_s:,.0f} |"
            f" {m.peak_rss_mb:.0f} | {vs} | {m.requests:,} |"
            f" {m.output_rows:,} | {m.code} |"
        )
    peak = max(m.peak_rss_mb for m in results)
    growth = results[-1].peak_rss_mb / base - 1
    print(f"\npeak RSS {peak:.0f} MB (target <= 300); growth {growth * 100:+.1f}% from the smallest to the largest")
    print(f"(target <= 10%)\nreproduce: {command}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000])
    args = parser.parse_args(argv)
    server, base_url = start_instant_server()
    try:
        with tempfile.TemporaryDirectory(prefix="llmcorr-memory-") as tmp:
            work = Path(tmp)
            (work / "define.prompty").write_text(PROMPTY)
            (work / "llmcorr.toml").write_text(TOML.format(base_url=base_url))
            results = []
            for rows in sorted(args.rows):
                m = one(work, base_url, rows)
                if m.code != 0:
                    print((work / f"llmcorr-{rows}.log").read_text()[-2000:], file=sys.stderr)
                    raise SystemExit(f"llmcorr exited {m.code} at {rows} rows")
                results.append(m)
    finally:
        server.kill()
        server.wait()
    report(results, "python -m bench.memory " + " ".join(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
