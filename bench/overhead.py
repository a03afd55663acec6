"""Client overhead: llmcorr against Prompt flow 1.18.5 on the same flow, rows and instant server.

The server (bench/instant_server.py) answers every request at once in its own process, so each tool's own cost is
all there is to measure. Each tool runs as its CLI in a child process, started cold, and writes its output file.
Two flows, each its own table (`--flow`):

    prompty  one .prompty (a system and a user message):
        llmcorr run flow/bench.prompty --data rows.jsonl --output out.jsonl --no-cache --quiet   (llmcorr.toml)
        pf run create --flow flow/bench.prompty --data rows.jsonl --column-mapping word='${data.word}'
    dag      a DAG flow (flow.dag.yaml), python → llm → python nodes, the llm node's `connection: instant` being
             llmcorr.toml's endpoint of that name for llmcorr and, for pf, a connection created before the run
             (bench/overhead_dag.py):
        llmcorr run dagflow --data rows.jsonl --output out.jsonl --no-cache --quiet
        pf run create --flow dagflow --data rows.jsonl --column-mapping word='${data.word}'

Measured per run: wall time of the command (process start to exit), rows with an answer in the tool's output,
requests the server saw meanwhile (each row must be asked once), peak memory of the process tree (RSS summed over
the process and its children every 50 ms; PSS every 0.5 s, which counts pages shared by forked workers once), and
what the run left on disk. Prompt flow's background trace service, which `pf run` starts and leaves running, is
counted in its tree and stopped after each run.

    .venv/bin/python -m bench.overhead                    # 10,000 rows, .prompty then DAG: llmcorr, pf run ×2
    .venv/bin/python -m bench.overhead --rows 500         # a quick check
    .venv/bin/python -m bench.overhead --flow dag         # the DAG flow only (prompty: the .prompty only)
    .venv/bin/python -m bench.overhead --llmcorr-only     # no Prompt flow

Prompt flow runs from its own virtualenv (bench/.venv-peers, bench/peers/venvs.py), created with pip when missing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench import overhead_dag
from bench.instant_server import completions_seen, start_instant_server
from bench.peers import venvs
from llmcorr.providers.kinds import DEFAULT_HTTP_CONCURRENCY

PROMPTY = """---
name: Bench
description: One short completion per row; valid for llmcorr and Prompt flow alike.
model:
  api: chat
  configuration:
    type: openai
    base_url: ${env:BENCH_BASE_URL}
    api_key: ${env:BENCH_API_KEY}
    model: m
  parameters:
    max_tokens: 8
inputs:
  word:
    type: string
---
system:
You define words in one sentence.

user:
Define {{word}}.
"""
LLMCORR_TOML = """default = ["instant"]

[[endpoints]]
name = "instant"
kind = "openai"
base_url = "{base_url}"
model = "m"
{concurrency}"""
# Telemetry upload off (it targets Azure Monitor); tracing left as it ships (trace.destination unset)
PF_CONFIG = "telemetry:\n  enabled: 'false'\n"
API_KEY = "sk-bench-not-a-secret"
WARMUP_ROWS = 20


@dataclass(frozen=True)
class Case:
    tool: str  # "llmcorr" | "promptflow"
    label: str
    knob: int | None  # llmcorr max_concurrency / Prompt flow PF_WORKER_COUNT; None: the tool's default
    knob_text: str


def prompty_answered(row: dict[str, Any]) -> bool:
    return bool(row.get("output")) and not row.get("error")


@dataclass(frozen=True)
class Family:
    """One flow both tools run: what differs between the .prompty and the DAG flow."""

    key: str  # --flow's name
    what: str  # for the table's title
    flow: str  # path under the work folder, given to both CLIs
    answered: Callable[[dict[str, Any]], bool]  # a row of either tool's output has its answer
    pf_setup: Callable[[Path, Path, dict[str, str]], str] | None = None  # (pf, work, env) -> "" or why it failed


FAMILIES = {
    "prompty": Family("prompty", "one .prompty", "flow/bench.prompty", prompty_answered),
    "dag": Family(
        "dag",
        "a DAG flow of 3 nodes (python → llm → python)",
        overhead_dag.FLOW_DIR,
        overhead_dag.answered,
        overhead_dag.pf_connection,
    ),
}


@dataclass(frozen=True)
class Measured:
    case: Case
    rows: int  # rows with an answer in the tool's output
    wall_s: float
    rss_mb: float
    pss_mb: float
    requests: int  # chat completions the server answered during the run
    files: int  # files the run left (outputs, run records, store)
    written_mb: float
    note: str = ""

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall_s


CASES = (
    Case("llmcorr", "llmcorr run", None, f"default ({DEFAULT_HTTP_CONCURRENCY})"),
    Case("llmcorr", "llmcorr run", 16, "max_concurrency 16"),
    Case("promptflow", "pf run create", None, "default (4)"),
    Case("promptflow", "pf run create", 16, "PF_WORKER_COUNT=16"),
)


class TreeMemory:
    """Peak memory of a process and its descendants (plus `extra` processes), sampled in a thread until stopped."""

    def __init__(self, pid: int, extra: list[psutil.Process] | None = None, every_s: float = 0.05) -> None:
        self.root = psutil.Process(pid)
        self.extra = extra if extra is not None else []
        self.every_s = every_s
        self.peak_rss = 0
        self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _processes(self) -> list[psutil.Process]:
        try:
            tree = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            tree = []
        return list({p.pid: p for p in [*tree, *self.extra]}.values())

    def _sample(self) -> None:
        tick = 0
        while not self._stop.is_set():
            full = tick % 10 == 0  # PSS reads every mapping of every process: every 0.5 s only
            rss = pss = 0
            for process in self._processes():
                try:
                    if full:
                        info = process.memory_full_info()
                        rss, pss = rss + info.rss, pss + info.pss
                    else:
                        rss += process.memory_info().rss
                except psutil.Error:
                    continue  # it ended between the listing and the reading
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            tick += 1
            self._stop.wait(self.every_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class Run:
    code: int
    wall_s: float
    rss_mb: float
    pss_mb: float


def timed(command: list[str], cwd: Path, env: dict[str, str], log: Path, extra: list[psutil.Process]) -> Run:
    """Run `command`, sampling its tree's memory; stdout and stderr go to `log`."""
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        memory = TreeMemory(proc.pid, extra)
        code = proc.wait()
    wall = time.perf_counter() - started
    memory.stop()
    return Run(code, wall, memory.peak_rss / 2**20, memory.peak_pss / 2**20)


def disk(paths: list[Path]) -> tuple[int, float]:
    """Files under `paths` and their size in MB."""
    files = [f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
    return len(files), sum(f.stat().st_size for f in files) / 2**20


def env_for(base_url: str, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("PF_", "LLMCORR_", "OPENAI_"))}
    return {**keep, "BENCH_BASE_URL": base_url, "BENCH_API_KEY": API_KEY, **extra}


def run_llmcorr(work: Path, base_url: str, family: Family, case: Case) -> Measured:
    home = work / "llmcorr-home"
    shutil.rmtree(home, ignore_errors=True)
    output = work / "out.jsonl"
    output.unlink(missing_ok=True)
    concurrency = f"max_concurrency = {case.knob}\n" if case.knob else ""
    (work / "llmcorr.toml").write_text(LLMCORR_TOML.format(base_url=base_url, concurrency=concurrency))
    llmcorr = str(Path(sys.executable).with_name("llmcorr"))
    command = [llmcorr, "run", family.flow, "--data", "rows.jsonl", "--output", str(output), "--no-cache", "--quiet"]
    log = work / f"llmcorr-{family.key}.log"
    before = completions_seen(base_url)
    run = timed(command, work, env_for(base_url, LLMCORR_HOME=str(home)), log, [])
    requests = completions_seen(base_url) - before
    answered = count_answered(output, family)
    files, written = disk([home, output])
    note = f"exit {run.code}, see {log}" if run.code else ""
    return Measured(case, answered, run.wall_s, run.rss_mb, run.pss_mb, requests, files, written, note)


def count_answered(output: Path, family: Family) -> int:
    if not output.is_file():
        return 0
    rows = [json.loads(line) for line in output.read_text().splitlines() if line.strip()]
    return sum(1 for row in rows if family.answered(row))


def pf_service(home: Path, since: float) -> psutil.Process | None:
    """The trace service this run's `pf` started (it writes its port under PF_HOME_DIRECTORY/pfs), if running."""
    for port_file in home.glob("pfs/*.port"):
        text = port_file.read_text()
        port = int(text.split("port:")[-1].split()[0]) if "port:" in text else 0
        for conn in psutil.net_connections("tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                process = psutil.Process(conn.pid)
                return process if process.create_time() >= since - 1 else None  # not someone else's
    return None


class ServiceWatch(threading.Thread):
    """Adds Prompt flow's trace service to the sampled processes once it appears."""

    def __init__(self, home: Path, found: list[psutil.Process]) -> None:
        super().__init__(daemon=True)
        self.home, self.found, self.since = home, found, time.time()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5) and not self.found:
            try:
                service = pf_service(self.home, self.since)
            except (OSError, ValueError, psutil.Error):
                continue
            if service is not None:
                self.found.append(service)


def run_promptflow(work: Path, base_url: str, family: Family, case: Case) -> Measured:
    knob = case.knob or "default"
    home = work / f"pf-home-{knob}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir()
    (home / "pf.yaml").write_text(PF_CONFIG)
    # The connection store's key in a keyring file under PF_HOME_DIRECTORY (no system keyring here)
    extra = {"PF_HOME_DIRECTORY": str(home), "XDG_DATA_HOME": str(home), **overhead_dag.KEYRING_ENV}
    if case.knob:
        extra["PF_WORKER_COUNT"] = str(case.knob)
    env, pf, log = env_for(base_url, **extra), venvs.bin_dir("promptflow") / "pf", work / f"pf-{family.key}-{knob}.log"
    if family.pf_setup and (why := family.pf_setup(pf, work, env)):  # untimed, before the run
        return Measured(case, 0, float("nan"), 0, 0, 0, 0, 0, why)
    name = f"bench_{family.key}_{knob}_{int(time.time())}"
    command = [str(pf), "run", "create", "--flow", family.flow, "--data", "rows.jsonl", "--name", name]
    command += ["--column-mapping", "word=${data.word}"]
    before = completions_seen(base_url)
    service: list[psutil.Process] = []
    watch = ServiceWatch(home, service)
    watch.start()
    run = timed(command, work, env, log, service)
    watch.done.set()
    watch.join()
    requests = completions_seen(base_url) - before
    for process in service:  # the trace service outlives `pf run`: stop the one this run started
        with contextlib.suppress(psutil.NoSuchProcess):  # unless it is gone already
            process.terminate()
        psutil.wait_procs([process], timeout=10)
    answered = count_answered(home / ".runs" / name / "flow_outputs" / "output.jsonl", family)
    files, written = disk([home])
    note = "" if service else "no trace service seen"
    if run.code:
        note = f"exit {run.code}, see {log}"
    return Measured(case, answered, run.wall_s, run.rss_mb, run.pss_mb, requests, files, written, note)


def measure(work: Path, base_url: str, family: Family, case: Case) -> Measured:
    runner = run_llmcorr if case.tool == "llmcorr" else run_promptflow
    return runner(work, base_url, family, case)


def write_inputs(work: Path, rows: int) -> None:
    (work / "flow").mkdir(exist_ok=True)  # the flow folder holds only the prompty: pf snapshots the whole folder
    (work / "flow" / "bench.prompty").write_text(PROMPTY)
    overhead_dag.write_flow(work)
    with (work / "rows.jsonl").open("w") as out:
        out.writelines(json.dumps({"word": f"word{i}"}) + "\n" for i in range(rows))


def report(family: Family, results: list[Measured], rows: int, load: tuple[float, float]) -> None:
    cores = os.cpu_count()
    print(f"\nClient overhead: {rows:,} rows, {family.what}, instant server in its own process, {cores} cores")
    print(f"(1-min load average {load[0]:.1f} before, {load[1]:.1f} after: anything above ~0 is other work)\n")
    print(
        "| tool | workers / concurrency | rows answered | wall s | rows/s | peak RSS MB | peak PSS MB "
        "| server requests | files written | MB written | check |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for m in results:
        check = "ok" if m.rows == rows == m.requests else f"MISMATCH {m.note}".strip()
        print(
            f"| {m.case.label} | {m.case.knob_text} | {m.rows:,} | {m.wall_s:.1f} | {m.rows_per_s:,.0f} "
            f"| {m.rss_mb:,.0f} | {m.pss_mb:,.0f} | {m.requests:,} | {m.files:,} | {m.written_mb:.1f} | {check} |"
        )
    ours = [m for m in results if m.case.tool == "llmcorr"]
    peers = [m for m in results if m.case.tool == "promptflow"]
    if ours and peers:
        print("\nllmcorr rows/s ÷ Prompt flow rows/s:\n")
        print("| | " + " | ".join(f"pf run, {p.case.knob_text}" for p in peers) + " |")
        print("|---|" + "---:|" * len(peers))
        for m in ours:
            ratios = " | ".join(f"{m.rows_per_s / p.rows_per_s:.1f}×" if p.rows and m.rows else "n/a" for p in peers)
            print(f"| llmcorr, {m.case.knob_text} | {ratios} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--flow", choices=("prompty", "dag", "both"), default="both", help="which flow (default both)")
    parser.add_argument("--skip-promptflow", "--llmcorr-only", dest="skip_promptflow", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (outputs, logs) and print it")
    args = parser.parse_args(argv)
    families = [FAMILIES[key] for key in (("prompty", "dag") if args.flow == "both" else (args.flow,))]
    cases = [c for c in CASES if c.tool == "llmcorr" or not args.skip_promptflow]
    if not args.skip_promptflow and (why := venvs.ensure("promptflow")):
        print(f"Prompt flow {why}", file=sys.stderr)
        cases = [c for c in cases if c.tool == "llmcorr"]
    load_before = os.getloadavg()[0]
    server, base_url = start_instant_server()
    work = Path(tempfile.mkdtemp(prefix="llmcorr-overhead-"))
    results: dict[str, list[Measured]] = {}
    try:
        write_inputs(work, WARMUP_ROWS)  # warm-up: disk caches and imports, for each tool and flow, not measured
        for family in families:
            for tool in dict.fromkeys(c.tool for c in cases):
                measure(work, base_url, family, next(c for c in cases if c.tool == tool))
        write_inputs(work, args.rows)
        for family in families:
            for case in cases:
                what = f"{case.label} ({case.knob_text}), {family.key} flow, over {args.rows:,} rows"
                print(f"running {what}…", file=sys.stderr, flush=True)
                results.setdefault(family.key, []).append(measure(work, base_url, family, case))
    finally:
        server.terminate()
        server.wait()
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    load = (load_before, os.getloadavg()[0])
    for family in families:
        report(family, results.get(family.key, []), args.rows, load)
    flags = f" --rows {args.rows}" if args.rows != 10_000 else ""
    flags += f" --flow {args.flow}" if args.flow != "both" else ""
    flags += " --llmcorr-only" if args.skip_promptflow else ""
    print(f"\nreproduce: .venv/bin/python -m bench.overhead{flags}")


if __name__ == "__main__":
    main()
