"""The `llmcorr` command. Exit codes: 0 every row done, 1 some rows failed (or an endpoint failed for good), 2 bad
input (one line, no traceback, nothing spent), 130 cancelled (Ctrl-C, SIGTERM, `llmcorr runs cancel`).

Ctrl-C and SIGTERM: the first asks the run to stop as `llmcorr runs cancel` does (no new requests; the requests in
flight are answered and committed), then one line says how many rows were kept and how to resume; a second exits at
once, leaving the run resumable (it shows as interrupted).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from types import FrameType
from typing import Annotated, NoReturn

import typer
from typer.exceptions import Abort, TyperException

from .._version import __version__
from ..errors import LlmcorrError, RunCancelled, StoreError, UserError
from ..runs import stopping
from . import correct, demo, prompt, report, run, runs, ui
from ._common import console, err_console

app = typer.Typer(
    name="llmcorr",
    help="LLMs as post-hoc correctors of ML predictions (LLMCorr), and the experiment bench around them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("demo")(demo.demo)
app.command("correct")(correct.correct)
app.command("estimate", help="What `llmcorr correct` would spend with the same arguments; nothing is sent.")(
    correct.correct
)
app.command("run")(run.run)
app.command("report")(report.report)
app.add_typer(runs.app, name="runs")
app.add_typer(prompt.app, name="prompt")
app.command("ui")(ui.ui)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"llmcorr {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    pass


_ARGV: list[str] = []  # the command line, for the exact resume command
_SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
_signalled: list[str] = []  # the signals received, by name


def _config_path(argv: list[str]) -> str | None:
    """The --config the command was given: a run made with it resumes with it."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.partition("=")[2]
    return None


def _stopped_line(why: str) -> str | None:
    run = stopping.current_run()
    return run.stopped_line(why, _config_path(_ARGV)) if run is not None else None


def _exit_now() -> NoReturn:
    """The second signal: exit at once. The rows committed so far stay; the run shows as interrupted and resumes."""
    line = _stopped_line("stopped at once, its requests in flight dropped") or "interrupted"
    with contextlib.suppress(Exception):
        err_console.show_cursor(True)  # a progress bar hides it
        err_console.print(line, markup=False, highlight=False, soft_wrap=True)
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(130)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _signalled:
        _exit_now()
    _signalled.append(_SIGNALS.get(signal.Signals(signum), signal.Signals(signum).name))
    if not stopping.request_stop("stopped by the user"):
        raise KeyboardInterrupt  # no run is executing: stop here (a run being set up or finished records itself)


def _one_line(exc: Exception) -> str:
    """An error as one line, whatever it quotes (a column name or a value may hold a newline)."""
    return " ".join(str(exc).splitlines())


def _cancelled(exc: RunCancelled | None) -> str:
    """The one line a cancelled run ends with: why, the rows kept, the exact resume command."""
    if _signalled:
        why = f"stopped ({_signalled[0]})"
    elif exc is not None:
        why = "stopped (`llmcorr runs cancel`)"
    else:
        why = "stopped"
    line = _stopped_line(why)
    if line is not None:
        return line
    return f"cancelled: {exc}; its finished rows are kept" if exc is not None else "interrupted"


def main(argv: list[str] | None = None) -> None:
    _ARGV[:] = sys.argv[1:] if argv is None else argv
    for signum in _SIGNALS:
        signal.signal(signum, _on_signal)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="llmcorr", standalone_mode=False)
    except UserError as exc:
        err_console.print(f"error: {_one_line(exc)}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except RunCancelled as exc:
        err_console.print(_cancelled(exc), markup=False, highlight=False, soft_wrap=True)
        sys.exit(130)
    except StoreError as exc:  # disk full, I/O error: not bad input; the run is failed, resumable once there is room
        err_console.print(f"error: {exc.line(_config_path(_ARGV))}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    except LlmcorrError as exc:  # an endpoint failed for good (bad key, exhausted quota): say so, no traceback
        err_console.print(f"error: {_one_line(exc)}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    except TyperException as exc:  # usage errors: typer prints them its own way, exit code 2
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            err_console.print(f"error: {exc.format_message()}", markup=False, highlight=False)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, Abort):
        code = 130
    if code == 130:  # typer turns a KeyboardInterrupt into exit code 130
        err_console.print(_cancelled(None), markup=False, highlight=False, soft_wrap=True)
    sys.exit(code if isinstance(code, int) else 0)
