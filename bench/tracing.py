"""Tracing overhead: rows/s of the same prompt run with tracing on and off, against an instant endpoint.

The endpoint is the quota emulator (bench/quota_server.py) with no latency and quotas far above the load, in its own
process, so the client's cost is all there is to measure. Each repeat runs the same rows once with tracing and once
without, alternating which goes first; the table gives each repeat and the median ratio (target: overhead < 5%).

    .venv/bin/python -m bench.tracing                       # 2000 rows x 5 repeats
    .venv/bin/python -m bench.tracing --rows 500 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from llmcorr import Config, EndpointConfig, Store
from llmcorr.runs.batch import run_batch_async

REPO = Path(__file__).resolve().parents[1]
PROMPTY = """---
name: Bench
model:
  api: chat
  parameters:
    max_tokens: 8
inputs:
  word:
    type: string
---
system:
You define words in one sentence.

user:
Define {{ word }}.
"""


def start_server() -> tuple[subprocess.Popen[str], str]:
    """The emulator in its own process, instant and unlimited for this load; returns it and its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.quota_server", "--rpm", "100000000", "--tpm", "100000000000"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"http://127\.0\.0\.1:\d+/v1", line)
        if match:
            return proc, match.group(0)
    raise RuntimeError("the quota server did not start")


def one_run(workdir: Path, base_url: str, rows: int, tracing: bool) -> tuple[float, int]:
    """Rows/s of one run (wall time of the whole run, store writes included) and the spans it recorded."""
    home = workdir / ("home-traced" if tracing else "home-plain")
    shutil.rmtree(home, ignore_errors=True)
    endpoint = EndpointConfig(name="instant", kind="openai", base_url=base_url, model="m", max_concurrency=32)
    config = Config(home=home, endpoints=[endpoint], default=["instant"], tracing=tracing)
    started = time.perf_counter()
    run = run_batch_async(workdir / "bench.prompty", workdir / "words.csv", config=config, cache=False, limit=rows)
    result = asyncio.run(run)
    wall = time.perf_counter() - started
    assert len(result.table) == rows and result.table["error"].isna().all()
    with Store(config.store_path) as store:
        spans = store.conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0]
    return rows / wall, spans


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    proc, base_url = start_server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            (workdir / "bench.prompty").write_text(PROMPTY)
            pd.DataFrame({"word": [f"word{i}" for i in range(args.rows)]}).to_csv(workdir / "words.csv", index=False)
            one_run(workdir, base_url, min(args.rows, 200), True)  # warm-up: imports, connections
            results: list[tuple[float, float, int]] = []
            for i in range(args.repeats):
                order = [True, False] if i % 2 == 0 else [False, True]
                measured = {t: one_run(workdir, base_url, args.rows, t) for t in order}
                results.append((measured[True][0], measured[False][0], measured[True][1]))
    finally:
        proc.terminate()
        proc.wait()
    print(f"\nTracing overhead: {args.rows} rows per run, instant endpoint, cache off, {os.cpu_count()} cores\n")
    print("| repeat | traced rows/s | untraced rows/s | traced / untraced | spans stored |")
    print("|---:|---:|---:|---:|---:|")
    for i, (on, off, spans) in enumerate(results, 1):
        print(f"| {i} | {on:,.0f} | {off:,.0f} | {on / off:.3f} | {spans:,} |")
    ratio = statistics.median(on / off for on, off, _ in results)
    print(f"\nmedian traced/untraced: {ratio:.3f} (overhead {100 * (1 - ratio):.1f}%; target < 5%)")
    print(f"reproduce: .venv/bin/python -m bench.tracing --rows {args.rows} --repeats {args.repeats}")


if __name__ == "__main__":
    main()
