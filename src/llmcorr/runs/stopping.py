"""Stopping a run from its own process: the first Ctrl-C (or SIGTERM) asks the executing run to stop the way
`llmcorr runs cancel` does — no new requests, the requests in flight answered and committed — and a second one makes
the CLI exit at once. The CLI's signal handlers call `request_stop`; `runs/engine.py` `execute` registers the run
it is executing (`register`) and drains when `stop_reason()` says so.

One process, one flag: a stop asked for stays asked for (every later `execute` in the process stops at once) until
`reset()`.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from ..store import RowRecord


@dataclass
class ActiveRun:
    """The run this process is executing: what the line printed when it stops needs, kept current as rows commit."""

    run_id: str
    label: str
    rows_total: int
    rows_kept: int  # rows committed and not failed (a resume retries failed rows)
    wake: Callable[[], None] | None = field(default=None, repr=False)

    def committed(self, row: RowRecord) -> None:
        self.rows_kept += row.status != "error"

    def stopped_line(self, why: str, config_path: str | None = None) -> str:
        """`cancelled: run NAME stopped (why); 37 of 200 rows kept; resume with `llmcorr runs resume NAME``."""
        command = "llmcorr runs resume " + shlex.quote(self.label)
        if config_path:
            command += " --config " + shlex.quote(config_path)
        kept = f"{self.rows_kept} of {self.rows_total} rows kept"
        return f"cancelled: run {self.label} {why}; {kept}; resume with `{command}`"


_lock = threading.Lock()
_reason: str | None = None
_executing: ActiveRun | None = None
_last: ActiveRun | None = None


def request_stop(reason: str = "stopped by the user") -> bool:
    """Ask the executing run to stop after its requests in flight; False when no run is executing (the caller then
    stops the way it would have without a run)."""
    global _reason
    with _lock:
        _reason = _reason or reason
        run = _executing
    if run is None:
        return False
    if run.wake is not None:
        run.wake()
    return True


def stop_reason() -> str | None:
    """Why this process was asked to stop (None: it was not)."""
    return _reason


def current_run() -> ActiveRun | None:
    """The run executing now, else the last one this process executed (None if none)."""
    return _executing or _last


def reset() -> None:
    """Forget a stop request and the last run (for a process that goes on to start another run)."""
    global _reason, _last
    with _lock:
        _reason, _last = None, None


def register(run: ActiveRun) -> ActiveRun:
    """From now on `request_stop` reaches `run` (and calls its `wake`), until `unregister(run)`."""
    global _executing, _last
    with _lock:
        _executing = _last = run
    return run


def unregister(run: ActiveRun) -> None:
    global _executing
    with _lock:
        if _executing is run:
            _executing = None
