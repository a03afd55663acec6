"""Hangs do not throttle a run (issue 13, item 7): `llmcorr run` of a prompt file over N rows against the quota
server on 127.0.0.1 (in this process; each answer takes `latency` seconds), once fault-free and once with a share
of the requests hanging `hang_s` seconds without an answer (the default `timeout_s` of 120 s applies).

The target: with 25% hangs the run finishes within 3x its fault-free time plus the deadlines actually waited. A hung
try is cut at its deadline (3x the p99 latency of the answers, at least 2 s, doubled on each retry of the same
request; scheduler/deadlines.py) and retried at once, so the run's end waits for the row whose tries were cut most
often: "waited" is that row's deadlines (2 s, 4 s, 8 s…: the 2 s floor, as the answers here are fast), and the
bound is 3 x fault-free + waited.

    .venv/bin/python -m bench.hangs                               # 200 rows, 25% hangs of 120 s, 0.2 s answers
    .venv/bin/python -m bench.hangs --rows 200 --rate 0.25 --seed 13
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.quota_server import DEFINE_PROMPTY as PROMPTY
from bench.quota_server import QuotaServer
from llmcorr.scheduler.deadlines import MIN_DEADLINE_S
from llmcorr.store import Store

LLMCORR = str(Path(sys.executable).with_name("llmcorr"))
KEY = "sk-bench-hangs-0123456789"


TOML = """
default = "q"

[[endpoints]]
name = "q"
kind = "openai"
base_url = "{url}"
model = "m"
api_key = "${{env:HANG_KEY}}"
{quota}
"""


def run(rows: int, rate: float, hang_s: float, latency: float, rpm: int, seed: int) -> tuple[float, int, int]:
    """One `llmcorr run`: (seconds, hung requests, most tries of one row)."""
    with (
        tempfile.TemporaryDirectory(prefix="llmcorr-hangs-") as tmp,
        QuotaServer(
            timeout_rate=rate, hang_s=hang_s, base_latency_s=latency, api_key=KEY, seed=seed, rpm=max(rpm, 600)
        ) as srv,
    ):
        path = Path(tmp)
        (path / "define.prompty").write_text(PROMPTY)
        (path / "words.csv").write_text("word\n" + "".join(f"w{i}\n" for i in range(rows)))
        (path / "llmcorr.toml").write_text(TOML.format(url=srv.base_url, quota=f"rpm = {rpm}" if rpm else ""))
        env = {**os.environ, "HANG_KEY": KEY, "LLMCORR_HOME": str(path / "home")}
        args: list[str | Path] = [LLMCORR, "run", path / "define.prompty", "--data", path / "words.csv", "--config"]
        args += [path / "llmcorr.toml", "--name", "hangs", "--output", path / "out.csv", "-q"]
        started = time.monotonic()
        done = subprocess.run(args, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        took = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(f"llmcorr run exited {done.returncode}: {done.stderr.strip()}")
        hangs = srv.stats()["faults"]["timeout"]
        with Store(path / "home" / "llmcorr.db") as store:
            most = max(r.attempts for r in store.rows(store.get_run("hangs").id))
    return took, hangs, most


def waited(tries: int) -> float:
    """The deadlines a row whose first `tries - 1` tries were cut waited (answers under MIN_DEADLINE_S / 3)."""
    return sum(MIN_DEADLINE_S * 2**k for k in range(tries - 1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hangs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--rate", type=float, default=0.25, help="share of requests that hang (default 0.25)")
    parser.add_argument("--hang-s", type=float, default=120.0, help="how long a hang lasts (default 120)")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds an answer takes (default 0.2)")
    parser.add_argument("--rpm", type=int, default=6000, help="the endpoint's rpm (0: no quota, 8 in flight)")
    parser.add_argument("--seed", type=int, default=13)
    a = parser.parse_args(argv)
    clean, _, _ = run(a.rows, 0.0, a.hang_s, a.latency, a.rpm, a.seed)
    hung, hangs, most = run(a.rows, a.rate, a.hang_s, a.latency, a.rpm, a.seed)
    bound = 3 * clean + waited(most)
    print(f"{a.rows} rows, answers in {a.latency:g}s, " + (f"rpm {a.rpm}" if a.rpm else "no quota (8 in flight)"))
    print(f"fault-free:            {clean:6.1f}s")
    print(f"{a.rate:.0%} hangs of {a.hang_s:g}s:  {hung:6.1f}s  ({hangs} hung requests, a row took up to {most} tries)")
    print(f"ratio:                 {hung / clean:6.1f}x")
    print(f"target: 3 x fault-free + {waited(most):.1f}s waited = {bound:.1f}s: {'met' if hung <= bound else 'MISSED'}")
    print(f"reproduce: .venv/bin/python -m bench.hangs --rows {a.rows} --rate {a.rate:g} --hang-s {a.hang_s:g}"
          f" --latency {a.latency:g} --rpm {a.rpm} --seed {a.seed}")  # fmt: skip


if __name__ == "__main__":
    main()
