"""How close each tool gets to a rate-limited endpoint's quota: llmcorr's scheduler against the LLMCorr authors' loop,
Prompt flow, LiteLLM's Router and Inspect AI, on the same quota emulator (bench/quota_server.py), workload and quota.

    python -m bench.quota                                    # every scenario and tool (~16 min on 2 cores)
    python -m bench.quota --scenario rpm-bound --tools llmcorr,litellm
    python -m bench.quota --quick                            # a smoke run: short runs, ~2 min

Each (scenario, tool) gets fresh emulator state (`reset()`) and its own child process (bench/peers/), so the client
under test never shares a GIL with the server. The measurement is the server's own per-second series: utilization of
the binding quota over the steady state, i.e. whole seconds from `--skip` seconds after the first admitted request
(the opening burst) to the last whole second with an admission (the tail); see bench/RESULTS.md.

Prompt flow, LiteLLM and Inspect AI run from their own virtualenvs (bench/peers/venvs.py), created with pip the first
time they are needed (`--no-install` skips those tools instead).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.peers import venvs
from bench.peers.__main__ import RESULT_MARK
from bench.peers.common import EndpointSpec, Result, Scenario
from bench.quota_server import QuotaServer, QuotaServerConfig
from bench.quota_tokens import count_prompt_tokens
from llmcorr.scheduler.tokens import tiktoken_counter

REPO = Path(__file__).resolve().parents[1]
MODEL = "m"
MAX_TOKENS = 64
SYSTEM = (
    "You are an expert medicinal chemist. You are shown molecules with a trained model's prediction of whether they "
    "penetrate the blood-brain barrier, and the true label. Correct the model's prediction for the last molecule."
)
SHOT = (
    "Molecule: CC(C)Cc1ccc(cc1)[C@@H](C)C(=O)O. Model prediction: True (probability 0.71). Label: {label}.\n"
    "Molecule: CN1CCC[C@H]1c2cccnc2. Model prediction: False (probability 0.38). Label: {label}.\n"
)
USER = "".join(SHOT.format(label=label) for label in ("True", "False", "True")) + (
    "Molecule: COc1ccc2[nH]cc(CCN(C)C)c2c1. Model prediction: True (probability 0.64).\n"
    "Answer as 'Prediction: <True or False>; Explanation: <one sentence>'."
)
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]
RESPONSE = (
    "Prediction: True; Explanation: the molecule is small, lipophilic and has few hydrogen-bond donors, like the "
    "labelled examples that cross the barrier, so the model's prediction stands."
)
LATENCY_S, PER_TOKEN_S = 0.2, 0.004  # the emulator's reply time: 0.2 s + 4 ms per completion token


@dataclass(frozen=True)
class Setup:
    """A scenario: the emulator's mode and the quota of each endpoint (rpm, tpm), all told to every tool."""

    name: str
    about: str
    mode: str
    quotas: tuple[tuple[int, int], ...]
    window_s: float | None = None
    hidden: float = 0.0
    bucket_s: float | None = None  # OpenAI mode: this scenario's server bucket in seconds of quota (else --bucket-s)


SETUPS = (
    Setup("tpm-bound", "OpenAI mode, rpm 60,000, tpm 120,000", "openai", ((60_000, 120_000),)),
    Setup("rpm-bound", "OpenAI mode, rpm 600, tpm 10,000,000", "openai", ((600, 10_000_000),)),
    Setup("azure-10s", "Azure mode, 10 s windows, rpm 720, tpm 120,000", "azure", ((720, 120_000),), window_s=10.0),
    Setup(
        "three-endpoints",
        "3 OpenAI-mode servers, tpm 30k : 60k : 120k (1:2:4), rpm 60,000 each",
        "openai",
        ((60_000, 30_000), (60_000, 60_000), (60_000, 120_000)),
    ),
    Setup(
        "hidden-30pct",
        "OpenAI mode, rpm 600, 1 s bucket; an unseen client spends 30%",
        "openai",
        ((600, 10_000_000),),
        hidden=0.3,
        bucket_s=1.0,  # a 10 s bucket pays for ~30 s of both clients at once: the run would end before it empties
    ),
)

QUICK = ["tpm-bound", "three-endpoints"]


@dataclass(frozen=True)
class Tool:
    key: str  # the --tools name
    label: str
    runner: str  # module in bench.peers
    venv: str | None = None  # a key of bench/peers/venvs.py: its packages live there; None: the dev venv
    workers: int | None = None
    routes: bool = False  # spreads work across several endpoints; else it gets the largest one only
    multi_ok: bool = True  # worth running on the three-endpoint scenario with one endpoint


TOOLS = (
    Tool("llmcorr", "llmcorr Scheduler", "llmcorr_runner", routes=True),
    Tool("paper", "paper loop (sleep 60/rpm)", "paper_loop"),
    Tool("promptflow", "pf run, default workers (4)", "promptflow_runner", "promptflow", multi_ok=False),
    Tool("promptflow", "pf run, 16 workers", "promptflow_runner", "promptflow", workers=16, multi_ok=False),
    Tool("litellm", "LiteLLM Router usage-based-v2", "litellm_runner", "litellm", routes=True),
    Tool("inspect", "Inspect AI --max-connections 16", "inspect_runner", "inspect", 16, multi_ok=False),
)


@dataclass(frozen=True)
class Knobs:
    seconds: float  # the work takes this long at the full quota
    skip_s: float  # steady state starts this long after the first admission
    bucket_s: float  # OpenAI mode: the server's bucket capacity in seconds of quota
    azure_window_s: float | None = None  # overrides the Azure scenario's window (--quick)


@functools.cache
def charge() -> int:
    """Tokens the server charges one request: prompt (cl100k_base, OpenAI's chat framing) + max_tokens."""
    return count_prompt_tokens(MESSAGES, tiktoken_counter()) + MAX_TOKENS


def binding(setup: Setup) -> str:
    rpm, tpm = setup.quotas[0]
    return "requests" if rpm <= tpm / charge() else "tokens"


def requests_for(setup: Setup, seconds: float) -> int:
    per_min = sum(min(rpm, tpm / charge()) for rpm, tpm in setup.quotas) * (1 - setup.hidden)
    return math.ceil(per_min / 60 * seconds)


def window_s(setup: Setup, knobs: Knobs) -> float | None:
    return setup.window_s and (knobs.azure_window_s or setup.window_s)


def server_config(setup: Setup, rpm: int, tpm: int, knobs: Knobs) -> QuotaServerConfig:
    openai = setup.mode == "openai"
    bucket_s = min(setup.bucket_s or knobs.bucket_s, knobs.bucket_s)
    return QuotaServerConfig(
        rpm=rpm,
        tpm=tpm,
        mode="openai" if openai else "azure",
        request_capacity=rpm * bucket_s / 60 if openai else None,
        token_capacity=tpm * bucket_s / 60 if openai else None,
        window_s=window_s(setup, knobs) or 10.0,
        hidden_client_fraction=setup.hidden,
        base_latency_s=LATENCY_S,
        per_output_token_s=PER_TOKEN_S,
        response_text=RESPONSE,
        model=MODEL,
        count_tokens=tiktoken_counter(),  # the server counts as llmcorr's scheduler does (cl100k_base, bundled)
    )


def endpoints_for(setup: Setup, tool: Tool) -> list[int]:
    """Which of the scenario's endpoints the tool is given: all of them, or the largest if it cannot route."""
    every = range(len(setup.quotas))
    return (
        list(every)
        if tool.routes
        else [max(every, key=lambda i: min(setup.quotas[i][0], setup.quotas[i][1] / charge()))]
    )


def scenario_for(setup: Setup, tool: Tool, knobs: Knobs, work_dir: str) -> Scenario:
    endpoints: list[EndpointSpec] = []
    for i in endpoints_for(setup, tool):
        rpm, tpm = setup.quotas[i]
        endpoints.append({"name": f"e{i}", "rpm": rpm, "tpm": tpm, "window_s": window_s(setup, knobs)})
    return {
        "name": setup.name,
        "mode": setup.mode,
        "model": MODEL,
        "endpoints": endpoints,
        "messages": MESSAGES,
        "max_tokens": MAX_TOKENS,
        "charge": charge(),
        "requests": requests_for(setup, knobs.seconds),
        "seconds": knobs.seconds,
        "workers": tool.workers,
        "work_dir": work_dir,
    }


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


def bucket_levels(snapshot: dict[str, Any], config: QuotaServerConfig) -> list[tuple[int, float]]:
    """OpenAI mode: the server's bucket level at the end of each second, in requests of this benchmark's size,
    replayed from the per-second series (refill, then that second's admissions and the hidden client's share)."""
    if config.mode != "openai":
        return []
    size = charge()
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
    }
    if not firsts:
        return out
    levels = [bucket_levels(snap, config) for snap, config in zip(snapshots, configs, strict=True)]
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
        limit_s = 3 * knobs.seconds + 60
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
        return [row["tool"], row["scenario"], row["skipped"], "", "", "", "", ""]
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
    limited = f"{row['rate_limited']} ({row['rate_limited_pct']:.1f}%)"
    done = f"{row['ok']}/{row['requests']}"
    return [row["tool"], row["scenario"], util, rpm, tpm, limited, done, f"{result['wall_s']:.1f}"]


HEADER = ["tool", "scenario", "utilization (steady)", "requests/min", "tokens/min", "429s", "done", "wall s"]


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
    parser.add_argument("--seconds", type=float, help="how long the work takes at the full quota (default 30)")
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
        seconds=args.seconds or (6.0 if args.quick else 30.0),
        skip_s=args.skip if args.skip is not None else (2.0 if args.quick else 10.0),
        bucket_s=args.bucket_s or (1.0 if args.quick else 10.0),
        azure_window_s=1.0 if args.quick else None,
    )
    chosen = args.scenario or (QUICK if args.quick else [s.name for s in SETUPS])
    setups = [s for s in SETUPS if s.name in chosen]
    tools = [t for t in TOOLS if t.key in wanted]
    print(f"one request: {charge() - MAX_TOKENS} prompt tokens + max_tokens {MAX_TOKENS} = {charge()} charged; {knobs}")
    for setup in setups:
        print(f"  {setup.name}: {setup.about}; {requests_for(setup, knobs.seconds)} requests")
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
