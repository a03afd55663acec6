"""How close each tool gets to a rate-limited endpoint's quota: llmcorr's scheduler against the LLMCorr authors' loop,
Prompt flow, LiteLLM's Router and Inspect AI, on the same quota emulator (bench/quota_server.py), workload and quota.

    python -m bench.quota                                    # every scenario and tool (~16 min on 2 cores)
    python -m bench.quota --scenario rpm-bound --tools llmcorr,litellm
    python -m bench.quota --quick                            # a smoke run: short runs, ~2 min

Each (scenario, tool) gets fresh emulator state (`reset()`) and its own child process (bench/peers/), so the client
under test never shares a GIL with the server. The measurement is the server's own per-second series: utilization of
the binding quota over the steady state, i.e. whole seconds from `--skip` seconds after the first admitted request
(the opening burst) to the last whole second with an admission (the tail); see bench/RESULTS.md. Next to it, the
same figure per 10-s window from 20 s after the first admission (min and median), so that a late burst cannot hide
an under-used stretch. Scenarios, tools and the workload: bench/quota_setups.py (issue 14's long runs,
tokenizer-mismatch, no-quota-config, no-quota-config-no-headers and azure-10s-long, are 120 s each).

    python -m bench.quota --scenario tokenizer-mismatch --tools llmcorr --seconds 60   # a shorter long run

Prompt flow, LiteLLM and Inspect AI run from their own virtualenvs (bench/peers/venvs.py), created with pip the first
time they are needed (`--no-install` skips those tools instead).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

from bench.peers import venvs
from bench.peers.__main__ import RESULT_MARK
from bench.peers.common import Result, Scenario
from bench.quota_server import QuotaServer, QuotaServerConfig
from bench.quota_setups import (
    MAX_TOKENS,
    QUICK,
    SETUPS,
    TOOLS,
    Knobs,
    Setup,
    Tool,
    binding,
    charge,
    endpoints_for,
    requests_for,
    scenario_for,
    seconds_for,
    server_config,
    window_s,
)

REPO = Path(__file__).resolve().parents[1]
WINDOW_S = 10  # the per-window utilization: windows of this many seconds
WINDOWS_FROM_S = 20  # ... from this long after the first admission


def launch(tool: Tool, base_urls: list[str], scenario: Scenario, limit_s: float) -> tuple[Result, float]:
    """Run the tool's runner in a child process (its own session, killed whole past `limit_s`)."""
    # the pf runner only starts `pf`: it runs here, and the `pf` it starts comes from the promptflow venv
    python = str(venvs.bin_dir(tool.venv) / "python") if tool.venv and tool.venv != "promptflow" else sys.executable
    log = Path(scenario["work_dir"]) / "runner.log"
    payload = json.dumps({"base_urls": base_urls, "scenario": scenario})
    started = time.monotonic()
    with log.open("w") as err:
        proc = subprocess.Popen(
            [python, "-m", "bench.peers", tool.runner],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(payload, timeout=limit_s)
        except subprocess.TimeoutExpired:
            out = ""
        finally:
            with suppress(ProcessLookupError):  # the runner's session: its workers and anything they started
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    wall = time.monotonic() - started
    lines = [line for line in out.splitlines() if line.startswith(RESULT_MARK)]
    if lines:
        result: Result = json.loads(lines[-1].removeprefix(RESULT_MARK))
        return result, wall
    why = f"killed after {limit_s:.0f}s" if proc.returncode == -signal.SIGKILL else f"exit {proc.returncode}"
    note = f"runner failed ({why}); see {log}"
    return {"ok": 0, "failed": 0, "wall_s": wall, "errors": {}, "note": note}, wall


def bucket_levels(setup: Setup, snapshot: dict[str, Any], config: QuotaServerConfig) -> list[tuple[int, float]]:
    """OpenAI mode: the server's bucket level at the end of each second, in requests of this benchmark's size,
    replayed from the per-second series (refill, then that second's admissions and the hidden client's share)."""
    if config.mode != "openai":
        return []
    size = charge(setup)
    caps = (config.request_capacity or config.rpm, config.token_capacity or config.tpm)
    levels = list(caps) if config.start_full else [0.0, 0.0]
    out = []
    for row in snapshot["series"]:
        levels[0] = min(caps[0], levels[0] + config.rpm / 60) - row["admitted"] - row["hidden_requests"]
        levels[1] = min(caps[1], levels[1] + config.tpm / 60) - row["charged"] - row["hidden_tokens"]
        out.append((row["second"], min(levels[0], levels[1] / size)))
    return out


def measure(
    setup: Setup, snapshots: list[dict[str, Any]], configs: list[QuotaServerConfig], knobs: Knobs
) -> dict[str, Any]:
    """Steady-state utilization and rates from the servers' per-second series (all reset together).

    The window starts `skip_s` after the first admission, or later, once every server bucket that the client
    emptied has been emptied (the stored burst is spent); it ends at the last whole second with an admission.
    Azure mode counts whole windows, from the first one that starts after the first admission.
    """
    firsts = [s["first_admitted_s"] for s in snapshots if s["first_admitted_s"] is not None]
    lasts = [s["last_admitted_s"] for s in snapshots if s["last_admitted_s"] is not None]
    received = sum(s["received"] for s in snapshots)
    limited = sum(s["rate_limited_total"] for s in snapshots)
    out: dict[str, Any] = {
        "received": received,
        "ok": sum(s["ok"] for s in snapshots),
        "rate_limited": limited,
        "rate_limited_pct": 100 * limited / received if received else 0.0,
        "rate_limited_at_s": sorted({r["second"] for s in snapshots for r in s["series"] if r["rate_limited"]}),
        "steady": None,
        "windows": [],
    }
    if not firsts:
        return out
    out["windows"] = windows(setup, snapshots, min(firsts), max(lasts))
    levels = [bucket_levels(setup, snap, config) for snap, config in zip(snapshots, configs, strict=True)]
    emptied = [next((sec + 1 for sec, level in series if level < 1), None) for series in levels]
    spent = max((e for e in emptied if e is not None), default=0)
    start, end = max(math.ceil(min(firsts) + knobs.skip_s), spent), math.floor(max(lasts))
    w = window_s(setup, knobs)
    if w:  # Azure: whole windows (aligned to the server's reset) after the one holding the first admission
        start, end = int(math.ceil(min(firsts) / w) * w), int(math.floor(max(lasts) / w) * w)
    if end - start < 3:  # finished (or gave up) before any steady state: say what the whole run got
        start, end = math.floor(min(firsts)), max(math.ceil(max(lasts)), math.floor(min(firsts)) + 1)
        out["whole_run"] = _rates(setup, snapshots, start, end)
        return out
    rates = _rates(setup, snapshots, start, end)
    levels_drawn = sum(max(0.0, _level_at(lv, start - 1) - _level_at(lv, end - 1)) for lv in levels if lv)
    # requests the window got from a stored burst (bucket levels falling inside it): the figure is above the refill
    out["steady"] = {"start_s": start, "end_s": end, **rates, "burst_drawn_requests": levels_drawn}
    return out


def _rates(setup: Setup, snapshots: list[dict[str, Any]], start: int, end: int) -> dict[str, Any]:
    """Requests and tokens admitted per minute over whole seconds [start, end), and the binding quota's share."""
    rows = [r for s in snapshots for r in s["series"] if start <= r["second"] < end]
    minutes = (end - start) / 60
    per_min = {
        "requests": sum(r["admitted"] for r in rows) / minutes,
        "tokens": sum(r["charged"] for r in rows) / minutes,
    }
    quota = {"requests": sum(q[0] for q in setup.quotas), "tokens": sum(q[1] for q in setup.quotas)}
    kind = binding(setup)
    utilization = per_min[kind] / quota[kind] / (1 - setup.hidden)
    return {"binding": kind, "utilization": utilization, **per_min}


def windows(setup: Setup, snapshots: list[dict[str, Any]], first: float, last: float) -> list[dict[str, Any]]:
    """Utilization of the binding quota in each whole WINDOW_S-second window from WINDOWS_FROM_S after the first
    admission to the last whole second with an admission (Azure mode: the server's own windows, aligned to its
    reset), so that a later burst cannot hide an under-used stretch."""
    start, end = math.ceil(first + WINDOWS_FROM_S), math.floor(last)
    if setup.mode == "azure":
        start = math.ceil(start / WINDOW_S) * WINDOW_S
    return [
        {"start_s": t, **_rates(setup, snapshots, t, t + WINDOW_S)} for t in range(start, end - WINDOW_S + 1, WINDOW_S)
    ]


def _level_at(levels: list[tuple[int, float]], second: int) -> float:
    return next((level for sec, level in reversed(levels) if sec <= second), levels[0][1])


def run_one(setup: Setup, tool: Tool, knobs: Knobs, work_root: str, install: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"tool": tool.label, "scenario": setup.name}
    if len(setup.quotas) > 1 and not tool.routes and not tool.multi_ok:
        return {**row, "skipped": "n/a: one endpoint per run, no routing across endpoints"}
    missing = tool.venv and venvs.ensure(tool.venv, install)
    if missing:
        return {**row, "skipped": missing}
    work_dir = tempfile.mkdtemp(prefix=f"{setup.name}-{tool.runner}-", dir=work_root)
    scenario = scenario_for(setup, tool, knobs, work_dir)
    with ExitStack() as stack:
        configs = [server_config(setup, *setup.quotas[i], knobs) for i in endpoints_for(setup, tool)]
        servers = [stack.enter_context(QuotaServer(config)) for config in configs]
        for srv in servers:
            srv.reset()
        limit_s = 3 * seconds_for(setup, knobs) + 60
        result, process_s = launch(tool, [srv.base_url for srv in servers], scenario, limit_s)
        snapshots = [srv.stats() for srv in servers]
        arrivals = [log[0]["t"] for log in (srv.request_log() for srv in servers) if log]
    return {
        **row,
        "requests": scenario["requests"],
        "result": result,
        "process_s": process_s,
        "first_request_s": min(arrivals, default=None),  # after the runner was launched: its start-up
        "work_dir": work_dir,
        "series": [snap["series"] for snap in snapshots],
        **measure(setup, snapshots, configs, knobs),
    }


def _cell(row: dict[str, Any]) -> list[str]:
    if "skipped" in row:
        return [row["tool"], row["scenario"], row["skipped"], *[""] * (len(HEADER) - 3)]
    steady, result = row["steady"], row["result"]
    if steady is None:
        whole = row.get("whole_run")
        util = "no steady state" + (f" (whole run {whole['utilization']:.2f})" if whole else "")
        rpm = tpm = "-"
    else:
        short = {"requests": "RPM", "tokens": "TPM"}[steady["binding"]]
        of = " of available" if "hidden" in row["scenario"] else ""
        drawn = "*" if steady.get("burst_drawn_requests", 0) >= 1 else ""
        util, rpm, tpm = (
            f"{steady['utilization']:.3f}{drawn} {short}{of}",
            f"{steady['requests']:.0f}",
            f"{steady['tokens']:,.0f}",
        )
    shares = sorted(w["utilization"] for w in row.get("windows", []))
    per_window = f"{shares[0]:.3f} / {statistics.median(shares):.3f} ({len(shares)})" if shares else "-"
    limited = f"{row['rate_limited']} ({row['rate_limited_pct']:.1f}%)"
    done = f"{row['ok']}/{row['requests']}"
    return [row["tool"], row["scenario"], util, per_window, rpm, tpm, limited, done, f"{result['wall_s']:.1f}"]


HEADER = [
    "tool",
    "scenario",
    "utilization (steady)",
    f"{WINDOW_S}-s windows min / median (n)",
    "requests/min",
    "tokens/min",
    "429s",
    "done",
    "wall s",
]


def table(rows: list[dict[str, Any]]) -> str:
    cells = [HEADER, *(_cell(r) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)) + " |" for cell in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def notes(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for row in rows:
        if "skipped" in row:
            continue
        result = row["result"]
        text = f"{row['tool']} / {row['scenario']}: {result['note']}"
        if row["first_request_s"] is not None:
            text += f"; first request {row['first_request_s']:.1f}s after launch"
        if result["failed"] or result["errors"]:
            text += f"; {result['failed']} failed: {result['errors']}"
        out.append(text)
    return out


def _parser() -> argparse.ArgumentParser:
    names = [s.name for s in SETUPS]
    keys = sorted({t.key for t in TOOLS})
    parser = argparse.ArgumentParser(prog="python -m bench.quota", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", choices=names, help="repeatable; default: all")
    parser.add_argument("--tools", default=",".join(keys), help=f"comma-separated, of {','.join(keys)}")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 10 s runs, 2 s buckets and Azure windows, steady state from 3 s",
    )
    parser.add_argument(
        "--seconds", type=float, help="how long the work takes at the full quota (default: the scenario's, else 30)"
    )
    parser.add_argument("--skip", type=float, help="seconds after the first admission not counted (default 10)")
    parser.add_argument("--bucket-s", type=float, help="OpenAI mode: server bucket in seconds of quota (default 10)")
    parser.add_argument("--no-install", action="store_true", help="skip tools whose venv is missing (else: create it)")
    parser.add_argument("--json", type=Path, help="write every row, with the runners' notes, to this file")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    wanted = {t.strip() for t in args.tools.split(",") if t.strip()}
    unknown = wanted - {t.key for t in TOOLS}
    if unknown:
        _parser().error(f"--tools: unknown {', '.join(sorted(unknown))}")
    knobs = Knobs(
        seconds=args.seconds or (6.0 if args.quick else None),
        skip_s=args.skip if args.skip is not None else (2.0 if args.quick else 10.0),
        bucket_s=args.bucket_s or (1.0 if args.quick else 10.0),
        azure_window_s=1.0 if args.quick else None,
    )
    chosen = args.scenario or (QUICK if args.quick else [s.name for s in SETUPS])
    setups = [s for s in SETUPS if s.name in chosen]
    tools = [t for t in TOOLS if t.key in wanted]
    print(f"one request: {charge() - MAX_TOKENS} prompt tokens + max_tokens {MAX_TOKENS} = {charge()} charged; {knobs}")
    for setup in setups:
        seconds = seconds_for(setup, knobs)
        told = "" if setup.told else "; tools told no quota"
        counted = f"; charge {charge(setup)}" if setup.prompt_count != "tiktoken" else ""
        print(
            f"  {setup.name}: {setup.about}; {requests_for(setup, seconds)} requests ({seconds:.0f} s){told}{counted}"
        )
    work_root = tempfile.mkdtemp(prefix="bench-quota-")  # each run's files: the tool's logs, pf's run folders
    rows = []
    began = time.monotonic()
    for setup in setups:
        for tool in tools:
            row = run_one(setup, tool, knobs, work_root, install=not args.no_install)
            rows.append(row)
            print(f"[{time.monotonic() - began:6.0f}s] " + " | ".join(_cell(row)), file=sys.stderr, flush=True)
    print(table(rows))
    print("\n".join(["", *notes(rows)]))
    command = " ".join(["python -m bench.quota", *(argv if argv is not None else sys.argv[1:])])
    print(f"\ntotal {time.monotonic() - began:.0f}s; runs' files in {work_root}\ncommand: {command}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
