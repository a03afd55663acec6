"""Prompt flow 1.18.5: `pf run create` on the benchmark prompt as a .prompty file, one data line per request.

Worker count: Prompt flow's default (4 worker processes, from min(4, rows, memory)) or `scenario["workers"]` via
PF_WORKER_COUNT. The prompty's model configuration points at the emulator (api_key any string); Prompt flow's own
retry of 429s (Retry-After honoured, up to 10 tries). One endpoint: a prompty names one connection, with no routing.

Runs the `pf` command of its virtualenv (bench/.venv-peers, see venvs.py) in a child process; imports nothing of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from bench.peers.common import API_KEY, AZURE_API_VERSION, Result, Scenario, root_url
from bench.peers.venvs import bin_dir

# `pf config set telemetry.enabled=false trace.destination=none`: no telemetry upload, and no local trace service
# (otherwise `pf run` starts a background server on 127.0.0.1:23333 that outlives the run)
PF_CONFIG = "telemetry:\n  enabled: 'false'\ntrace:\n  destination: none\n"
OPENAI_CONFIG = """    type: openai
    base_url: ${{env:BENCH_BASE_URL}}
    api_key: ${{env:BENCH_API_KEY}}
    model: {model}"""
AZURE_CONFIG = """    type: azure_openai
    azure_endpoint: ${{env:BENCH_BASE_URL}}
    api_key: ${{env:BENCH_API_KEY}}
    api_version: {api_version}
    azure_deployment: {model}"""
PROMPTY = """---
name: llmcorr_bench
model:
  api: chat
  configuration:
{configuration}
  parameters:
    max_tokens: {max_tokens}
inputs:
  sample:
    type: string
---
system:
{system}

user:
{{{{sample}}}}
"""


def _write_flow(work: Path, scenario: Scenario) -> tuple[Path, Path]:
    system = next(m["content"] for m in scenario["messages"] if m["role"] == "system")
    user = next(m["content"] for m in scenario["messages"] if m["role"] == "user")
    template = AZURE_CONFIG if scenario["mode"] == "azure" else OPENAI_CONFIG
    configuration = template.format(model=scenario["model"], api_version=AZURE_API_VERSION)
    flow = work / "bench.prompty"
    flow.write_text(PROMPTY.format(configuration=configuration, max_tokens=scenario["max_tokens"], system=system))
    data = work / "data.jsonl"
    data.write_text("".join(json.dumps({"sample": user}) + "\n" for _ in range(scenario["requests"])))
    return flow, data


def run(base_urls: list[str], scenario: Scenario) -> Result:
    work = Path(scenario["work_dir"])
    flow, data = _write_flow(work, scenario)
    home = work / "pf-home"  # its run database, config and logs, not ~/.promptflow
    home.mkdir(parents=True, exist_ok=True)
    (home / "pf.yaml").write_text(PF_CONFIG)
    base_url = root_url(base_urls[0]) if scenario["mode"] == "azure" else base_urls[0]
    env = {
        **os.environ,
        "BENCH_BASE_URL": base_url,
        "BENCH_API_KEY": API_KEY,
        "PF_HOME_DIRECTORY": str(home),
    }
    if scenario["workers"]:
        env["PF_WORKER_COUNT"] = str(scenario["workers"])
    name = f"bench_{os.getpid()}_{int(time.time())}"
    command = [
        str(bin_dir("promptflow") / "pf"),
        "run",
        "create",
        "--flow",
        str(flow),
        "--data",
        str(data),
        "--name",
        name,
    ]
    command += ["--column-mapping", "sample=${data.sample}"]
    started = time.monotonic()
    proc = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    (work / "pf-stdout.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    ok = _count_outputs(home, name)
    failed = scenario["requests"] - ok
    errors = {f"pf exited {proc.returncode}: {proc.stderr.strip()[-60:]}": 1} if proc.returncode else {}
    if failed and not proc.returncode:
        errors[f"rows failed (pf's own retries exhausted?): see {home}/.runs/{name}/logs.txt"] = failed
    workers = scenario["workers"] or "default"
    return {"ok": ok, "failed": failed, "wall_s": wall, "errors": errors, "note": f"PF_WORKER_COUNT={workers}"}


def _count_outputs(home: Path, name: str) -> int:
    """Lines of the run's flow_outputs/output.jsonl: the rows that completed."""
    for output in home.glob(f".runs/{name}/flow_outputs/output.jsonl"):
        return sum(1 for line in output.read_text().splitlines() if line.strip())
    return 0
