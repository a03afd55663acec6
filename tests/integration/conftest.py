from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from llmcorr.store import Store
from tests.conftest import LLMCORR


def run_cli(*args: object, timeout: float = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the installed `llmcorr` command as a user would, with this test's environment."""
    return subprocess.run(
        [LLMCORR, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "160", **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def store_path(home: Path) -> Path:
    return home / "llmcorr.db"


def start_cli(*args: object) -> subprocess.Popen:
    """Start `llmcorr ARGS` in the background (to kill or cancel it mid-run)."""
    return subprocess.Popen(
        [LLMCORR, *map(str, args)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_rows(home: Path, name: str, rows: int, proc: subprocess.Popen, timeout: float = 300) -> int:
    """Poll the store until run `name` has committed `rows` rows; return how many it has."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if store_path(home).exists():
            with Store(store_path(home)) as store:
                done = [r.rows_done for r in store.list_runs() if r.name == name]
            if done and done[0] >= rows:
                return done[0]
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"run {name} did not reach {rows} rows in {timeout}s")


QUOTA_TOML = """
default = "q"

[[endpoints]]
name = "q"
kind = "openai"
base_url = "{url}"
model = "m"
"""


def quota_toml(url: str, rpm: int | None = 6000, max_concurrency: int | None = None) -> str:
    """llmcorr.toml with one OpenAI-compatible endpoint `q` (the default) at `url`; `rpm` None: no rate set;
    `max_concurrency`: requests at once there."""
    text = QUOTA_TOML.format(url=url)
    if rpm is not None:
        text += f"rpm = {rpm}\n"
    if max_concurrency is not None:
        text += f"max_concurrency = {max_concurrency}\n"
    return text
