"""Start a run from the dashboard: `python -m llmcorr run …` in its own process (the run outlives the page and the
server), then find the run it recorded, or the one-line error it stopped with."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..config import Config
from ..errors import UserError
from ..runs.spec import shown_spec
from ..store import Store

START_TIMEOUT_S = 60.0  # loading a large data file and estimating happen before the run is recorded


@dataclass(frozen=True)
class RunRequest:
    prompt: Path
    data: Path
    endpoint: str | None = None
    name: str | None = None
    limit: int | None = None

    def command(self, config: Config) -> list[str]:
        cmd = [sys.executable, "-m", "llmcorr", "run", str(self.prompt), "--data", str(self.data), "--quiet"]
        if config.source:
            cmd += ["--config", str(Path(config.source).resolve())]
        if self.endpoint:
            cmd += ["--endpoint", self.endpoint]
        if self.name:
            cmd += ["--name", self.name]
        if self.limit:
            cmd += ["--limit", str(self.limit)]
        return cmd


def check_request(prompt: str, data: str, endpoint: str, name: str, limit: str, config: Config) -> RunRequest:
    """The form's fields, checked; paths are taken from the server's working directory."""
    if not prompt.strip() or not data.strip():
        raise UserError("a prompt file and a data file are both needed")
    if "\x00" in prompt + data:
        raise UserError("a file name cannot hold a NUL byte")
    prompt_path, data_path = Path(prompt.strip()).expanduser().resolve(), Path(data.strip()).expanduser().resolve()
    if prompt_path.suffix != ".prompty":
        raise UserError(f"{prompt.strip()}: expected a .prompty file")
    for path, given in ((prompt_path, prompt), (data_path, data)):
        if not path.is_file():
            raise UserError(f"{given.strip()}: no such file")
    if endpoint:
        config.endpoint(endpoint)  # an unknown name is one line, before anything starts
    if limit.strip() and (not limit.strip().isdigit() or int(limit) < 1):
        raise UserError(f"limit: expected a whole number of rows, got {limit.strip()!r}")
    return RunRequest(prompt_path, data_path, endpoint or None, name.strip() or None, int(limit) if limit else None)


def _last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].removeprefix("error: ") if lines else "it stopped without saying why"


def start_run(request: RunRequest, config: Config, timeout_s: float = START_TIMEOUT_S) -> str:
    """Start the run in the background and return its id once the store has it; a run that fails before it is
    recorded (bad template, taken name, missing key) raises UserError with its own one-line message."""
    logs = config.home / "ui-logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"run-{datetime.now(UTC):%Y%m%dT%H%M%S%f}.log"
    with Store(config.store_path) as store:
        before = {r.id for r in store.list_runs(archived=None)}
    with log.open("w") as out:
        proc = subprocess.Popen(
            request.command(config),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LLMCORR_HOME": str(config.home)},
            start_new_session=True,  # stopping the dashboard (Ctrl-C) leaves the run going; cancel it from its page
        )
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()  # no zombie when it ends
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        exited = proc.poll()
        with Store(config.store_path) as store:
            new = [
                r
                for r in store.list_runs(limit=20, archived=None)
                if r.id not in before and getattr(shown_spec(r), "template", None) == str(request.prompt)
            ]
        if new:
            return new[0].id
        if exited is not None:
            raise UserError(f"the run did not start: {_last_line(log)}")
        time.sleep(0.1)
    raise UserError(f"the run has not started after {timeout_s:.0f} s; its output goes to {log}")
