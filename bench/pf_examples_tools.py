"""bench/pf_examples.py's plumbing: example folders from a promptflow git mirror, and one run of a flow by each tool.

`llmcorr run` uses the llmcorr.toml written in the work folder (an openai endpoint per connection name, on the
instant server); `pf run create` uses Prompt flow 1.18.5's CLI with a PF_HOME_DIRECTORY of its own, its connections
created there first, and its trace service (which `pf run` starts and leaves running) stopped after each run with
bench/overhead.py's helpers. Each run gives its rows' flow outputs by line (None: the line failed) and its metrics.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench import overhead, overhead_dag

TIMEOUT_S = 600
LLMCORR_TOML = """[[endpoints]]
name = "{name}"
kind = "openai"
base_url = "{base_url}"
model = "m"
api_key = "${{env:BENCH_API_KEY}}"
"""
# pf's connection, by type: open_ai on the server's OpenAI routes; azure_open_ai on its /openai/deployments/ routes
PF_CONNECTION = {
    "open_ai": "type: open_ai\nbase_url: {base_url}\n",
    "azure_open_ai": "type: azure_open_ai\napi_base: {root}\napi_version: '2024-02-01'\n",
}
_CONNECTION = re.compile(r"""["']?connection["']?\s*:\s*["']?([A-Za-z_][\w-]*)""")
_STATUS = re.compile(r'^    "status": "(\w+)"', re.MULTILINE)  # the run's, in `pf run create`'s JSON
_MESSAGE = re.compile(r'"message": "((?:[^"\\]|\\.)*)"')


@dataclass
class Outcome:
    """One tool's run of one example."""

    code: int
    rows: dict[int, dict[str, Any] | None] = field(default_factory=dict)  # line -> flow outputs (None: failed)
    metrics: dict[str, Any] | None = None
    why: str = ""  # the run's error, or its first failed row's
    asked: int = 0  # chat completions the instant server answered during the run
    status: str = "none"  # the run's, lowercased: completed, failed; none when no run was recorded


def extract(mirror: Path, folders: list[str], into: Path) -> None:
    """Copy `folders` (paths in the mirror's HEAD, e.g. examples/flows/standard/basic) under `into`, same paths."""
    for folder in folders:
        listed = subprocess.run(
            ["git", "-C", str(mirror), "ls-tree", "-r", "-z", "--name-only", "HEAD", "--", folder],
            capture_output=True,
            check=True,
        )
        for name in filter(None, listed.stdout.decode().split("\0")):
            blob = subprocess.run(["git", "-C", str(mirror), "show", f"HEAD:{name}"], capture_output=True, check=True)
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            (into / name).write_bytes(blob.stdout)


def connection_names(flow: Path) -> set[str]:
    """The connection names a flow folder's flow.dag.yaml, run.yml or init.json use."""
    names: set[str] = set()
    for file in ("flow.dag.yaml", "run.yml", "init.json"):
        if (flow / file).is_file():
            names.update(_CONNECTION.findall((flow / file).read_text()))
    return names


def outputs_of(row: dict[str, Any], data_row: dict[str, Any], keys: list[str] | None) -> dict[str, Any]:
    """A flow's outputs from a row of llmcorr's output file: the data's columns, then the outputs (one named like a
    column is `output.NAME`), then error and tokens. `keys`: the flow's outputs (a DAG's), else all but those."""
    if keys is None:
        keys = [k.removeprefix("output.") for k in row if k.startswith("output.") or k not in data_row]
        keys = [k for k in keys if k not in ("error", "tokens")]
    return {k: row[f"output.{k}"] if f"output.{k}" in row else row.get(k) for k in keys}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Llmcorr:
    """llmcorr's side: a work folder with its llmcorr.toml and its own LLMCORR_HOME."""

    def __init__(self, work: Path, base_url: str, connections: set[str]) -> None:
        self.work = work / "llmcorr"
        self.work.mkdir()
        toml = "\n".join(LLMCORR_TOML.format(name=n, base_url=base_url) for n in sorted(connections))
        (self.work / "llmcorr.toml").write_text(toml)
        self.env = overhead.env_for(base_url, LLMCORR_HOME=str(self.work / "home"))
        self.exe = str(Path(sys.executable).with_name("llmcorr"))

    def run(self, name: str, args: list[str], data: list[dict[str, Any]], keys: list[str] | None) -> Outcome:
        out = self.work / f"{name}.jsonl"
        command = [self.exe, "run", *args, "-o", str(out), "--name", name, "--no-cache", "-q"]
        log = self.work / f"{name}.log"
        with log.open("w") as sink:
            code = subprocess.run(command, cwd=self.work, env=self.env, stdout=sink, stderr=sink, timeout=TIMEOUT_S)
        outcome = Outcome(code.returncode)
        for i, row in enumerate(read_jsonl(out)):
            failed = bool(row.get("error"))
            outcome.rows[i] = None if failed else outputs_of(row, data[i] if i < len(data) else {}, keys)
            if failed and not outcome.why:
                outcome.why = f"row {i}: {row['error']}"
        shown = subprocess.run(
            [self.exe, "runs", "show", name, "--json"], cwd=self.work, env=self.env, capture_output=True, text=True
        )
        if shown.returncode == 0:
            record = json.loads(shown.stdout)
            outcome.status = str(record.get("status"))
            failed = outcome.status == "failed"  # pf has no metrics for a failed run; llmcorr's: {} if none
            outcome.metrics = record.get("metrics") if failed else record.get("metrics") or {}
            outcome.why = "; ".join(filter(None, [record.get("error"), outcome.why]))
        if code.returncode and not outcome.rows:
            tail = log.read_text().strip().splitlines()[-1:] or ["?"]
            outcome.why = outcome.why or tail[0]
        return outcome


class Promptflow:
    """Prompt flow's side: `pf` with a PF_HOME_DIRECTORY of its own; each connection made as the example needs."""

    def __init__(self, pf: Path, work: Path, base_url: str, connections: set[str]) -> None:
        self.pf, self.work, self.base_url, self.connections = pf, work / "pf", base_url, sorted(connections)
        self.home = self.work / "home"
        self.home.mkdir(parents=True)
        (self.home / "pf.yaml").write_text(overhead.PF_CONFIG)
        extra = {"PF_HOME_DIRECTORY": str(self.home), "XDG_DATA_HOME": str(self.home), **overhead_dag.KEYRING_ENV}
        self.env = overhead.env_for(base_url, **extra)
        self.env.pop("PYTHONPATH", None)  # llmcorr's checkout is no part of pf's
        self.kind = ""

    def connect(self, kind: str) -> str:
        """Make (or remake) the connections as `kind` (open_ai, azure_open_ai): "" when done, else why not."""
        if kind == self.kind:
            return ""
        root = self.base_url.removesuffix("/v1")
        for name in self.connections:
            conn = self.work / f"{name}.yaml"
            text = "name: {name}\napi_key: {api_key}\n" + PF_CONNECTION[kind]
            text = text.format(name=name, api_key=overhead.API_KEY, base_url=self.base_url, root=root)
            conn.write_text(text)
            done = subprocess.run(
                [str(self.pf), "connection", "create", "--file", str(conn)],
                cwd=self.work,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
            )
            if done.returncode:
                return f"pf connection create: exit {done.returncode}: {(done.stderr or done.stdout)[-160:]}"
        self.kind = kind
        return ""

    def run(self, name: str, args: list[str], kind: str) -> Outcome:
        if why := self.connect(kind):
            return Outcome(-1, why=why)
        log = self.work / f"{name}.log"
        service: list[psutil.Process] = []
        watch = overhead.ServiceWatch(self.home, service)
        watch.start()
        with log.open("w") as sink:
            command = [str(self.pf), "run", "create", *args, "--name", name]
            code = subprocess.run(command, cwd=self.work, env=self.env, stdout=sink, stderr=sink, timeout=TIMEOUT_S)
        watch.done.set()
        watch.join()
        for process in service:  # the trace service outlives `pf run`: stop the one this run started
            process.terminate()
            psutil.wait_procs([process], timeout=10)
        outcome = Outcome(code.returncode)
        for row in read_jsonl(self.home / ".runs" / name / "flow_outputs" / "output.jsonl"):
            outcome.rows[int(row.pop("line_number"))] = row
        metrics = subprocess.run(
            [str(self.pf), "run", "show-metrics", "-n", name], env=self.env, capture_output=True, text=True
        )
        outcome.metrics = json.loads(metrics.stdout) if metrics.returncode == 0 and metrics.stdout.strip() else None
        if status := _STATUS.search(log.read_text()):
            outcome.status = status.group(1).lower()
        if message := _MESSAGE.search(log.read_text()):
            outcome.why = json.loads(f'"{message.group(1)}"')
        return outcome


def fresh_work(keep: bool) -> Path:
    """The work folder; a temporary one is removed at exit unless `keep`."""
    work = Path(tempfile.mkdtemp(prefix="llmcorr-pf-examples-"))
    if not keep:
        atexit.register(shutil.rmtree, work, True)
    return work


def no_promptflow() -> str:
    """Why the comparison would be void: promptflow (its .core) is importable here, so llmcorr would use it; else ""."""
    try:
        spec = importlib.util.find_spec("promptflow.core")
    except ModuleNotFoundError:
        spec = None
    return "" if spec is None else f"promptflow is importable here ({spec.origin}): llmcorr would use it, not its own"
