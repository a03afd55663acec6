"""The `llmcorr` command. User errors print one line and exit with code 2; no traceback."""

from __future__ import annotations

import signal
import sys
from types import FrameType

import typer
from typer.exceptions import Abort, TyperException

from ..errors import LlmcorrError, RunCancelled, UserError
from . import correct, demo, prompt, report, run, runs, ui
from ._common import err_console

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


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # a run in progress records itself as interrupted on the way out


def _one_line(exc: Exception) -> str:
    """An error as one line, whatever it quotes (a column name or a value may hold a newline)."""
    return " ".join(str(exc).splitlines())


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _terminate)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="llmcorr", standalone_mode=False)
    except UserError as exc:
        err_console.print(f"error: {_one_line(exc)}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except RunCancelled as exc:
        err_console.print(f"cancelled: {exc}; its finished rows are kept", markup=False, highlight=False)
        sys.exit(130)
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
        err_console.print("interrupted", markup=False)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
