"""The bad-input fuzz tests' harness (tests/integration/test_fuzz_*.py).

`Fuzz.call(...)` runs `llmcorr ARGS` in this process — `llmcorr.cli.main`, the function the installed script calls —
in a directory of its own with its own LLMCORR_HOME and an `llmcorr.toml` whose default endpoint is a scripted
OpenAI-compatible server on 127.0.0.1 that counts what reaches it. A run that starts when it should not spends a
"token" there, and the test sees it. `Fuzz.spawn(...)` does the same through the real `llmcorr` process, to show
the two behave alike.

`refused(outcome, *needles)` is the property every bad input must have: exit code 2, one line on stderr (`error: …`,
short, naming what it must), no traceback, no request sent, no run recorded.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import typer
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

from llmcorr.cli import app, main
from llmcorr.store import Store
from tests.conftest import LLMCORR
from tests.servers import ScriptedServer

# hypothesis's caches (unicode data, literals it finds in the source) go to the temp folder, not the repository
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "llmcorr-hypothesis")
COMMAND = typer.main.get_command(app)  # main() builds it on every call (~80 ms, most of a refused call): once here
NO_MODEL = "/nonexistent/model.gguf"  # a config broken into naming no endpoint must not load the embedded model
MAX_LINE = 1000  # an error line a person can read: it quotes values and names, it does not dump them
ENDPOINT_TOML = """default = "fuzz"

[[endpoints]]
name = "fuzz"
kind = "openai"
base_url = "{url}"
model = "m"
max_concurrency = 2
"""


def fuzz_settings(examples: int) -> settings:
    """Deterministic (derandomize: CI sees the same inputs every run), nothing written into the repository (no
    example database), no deadline (a run that starts does real work). LLMCORR_FUZZ_EXAMPLES=N fuzzes longer."""
    return settings(
        max_examples=int(os.environ.get("LLMCORR_FUZZ_EXAMPLES") or examples),
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.function_scoped_fixture,  # each example makes its own directory and home
        ],
    )


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    requests: int  # requests the server received during the call
    runs: int  # runs recorded in the store afterwards

    def __repr__(self) -> str:  # what a failed assertion shows: never megabytes
        return (
            f"Outcome(code={self.code}, requests={self.requests}, runs={self.runs}, "
            f"stderr={self.stderr[-3000:]!r}, stdout={self.stdout[-500:]!r})"
        )


def error_lines(outcome: Outcome) -> list[str]:
    return [line for line in outcome.stderr.splitlines() if line.strip()]


def refused(outcome: Outcome, *needles: str) -> str:
    """The input was refused as a user error: exit 2, one short `error:` line holding every needle, no traceback,
    nothing sent, nothing recorded. Returns the line."""
    assert "Traceback" not in outcome.stderr, outcome
    assert outcome.code == 2, outcome
    lines = error_lines(outcome)
    assert len(lines) == 1, outcome
    line = lines[0]
    assert line.startswith("error: "), outcome
    assert len(line) <= MAX_LINE, f"{len(line)} characters: {line[:300]}…"
    for needle in needles:
        assert needle in line, (needle, line)
    assert outcome.requests == 0, outcome
    assert outcome.runs == 0, outcome
    return line


def ran_or_refused(outcome: Outcome, *needles: str) -> None:
    """An input that may be valid: it ran (exit 0, no error), or it was refused as `refused` says."""
    if outcome.code == 0:
        assert "Traceback" not in outcome.stderr and "error:" not in outcome.stderr, outcome
    else:
        refused(outcome, *needles)


def ran(outcome: Outcome) -> None:
    """A valid input: the run went to the server and finished."""
    assert outcome.code == 0 and "Traceback" not in outcome.stderr, outcome
    assert outcome.requests > 0, outcome


class Fuzz:
    """Per-example directories under `root`, each with llmcorr.toml pointing at `server`."""

    def __init__(self, server: ScriptedServer, root: Path) -> None:
        self.server = server
        self.root = root

    @contextlib.contextmanager
    def workdir(self, toml: str | bytes | None = None) -> Iterator[Path]:
        """A fresh directory holding llmcorr.toml (the counting server's, or `toml`), removed afterwards."""
        path = Path(tempfile.mkdtemp(dir=self.root))
        config = path / "llmcorr.toml"
        text = toml if toml is not None else ENDPOINT_TOML.format(url=self.server.base_url)
        config.write_bytes(text.encode() if isinstance(text, str) else text)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def call(self, workdir: Path, *args: object) -> Outcome:
        """`llmcorr ARGS` in this process, in `workdir`. An exception escaping `main` is what a user would see as a
        traceback (exit code 1); a warning is what Python would print on stderr."""
        before = len(self.server.requests)
        out, err = io.StringIO(), io.StringIO()
        logger = logging.getLogger("llmcorr")
        handlers, level, propagate = logger.handlers[:], logger.level, logger.propagate
        sigterm = signal.getsignal(signal.SIGTERM)  # main() installs its own
        limit = sys.getrecursionlimit()  # hypothesis raises it; a real process starts main() with 1000 frames to go
        env = {"LLMCORR_HOME": str(workdir / "home"), "COLUMNS": "160", "LLMCORR_LOCAL_MODEL": NO_MODEL}
        with (
            mock.patch.object(typer.main, "get_command", lambda _: COMMAND),
            mock.patch.dict(os.environ, env),
            contextlib.chdir(workdir),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            warnings.catch_warnings(record=True) as caught,
        ):
            warnings.simplefilter("always")
            sys.setrecursionlimit(_depth() + 1000)
            try:
                main([str(a) for a in args])
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:
                code = 1
                err.write(traceback.format_exc())
            finally:
                sys.setrecursionlimit(limit)
                signal.signal(signal.SIGTERM, sigterm)
                logger.handlers[:], logger.propagate = handlers, propagate
                logger.setLevel(level)
        for w in caught:  # as a real process prints them (it hides ResourceWarning, aiohttp's "large body" too)
            if not issubclass(w.category, ResourceWarning):
                err.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line))
        return Outcome(code, out.getvalue(), err.getvalue(), len(self.server.requests) - before, runs(workdir))

    def spawn(self, workdir: Path, *args: object) -> Outcome:
        """`llmcorr ARGS` as its own process, as a user runs it."""
        before = len(self.server.requests)
        env = {**os.environ, "LLMCORR_HOME": str(workdir / "home"), "COLUMNS": "160", "LLMCORR_LOCAL_MODEL": NO_MODEL}
        done = subprocess.run(
            [LLMCORR, *map(str, args)],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        requests = len(self.server.requests) - before
        return Outcome(done.returncode, done.stdout, done.stderr, requests, runs(workdir))


def _depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


def runs(workdir: Path) -> int:
    db = workdir / "home" / "llmcorr.db"
    if not db.exists():
        return 0
    with Store(db) as store:
        return len(store.list_runs(archived=None))
