"""A progress bar with an ETA for long runs, on stderr."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..store import RowRecord
from .engine import ProgressFn


@contextmanager
def row_progress(total: int, description: str, enabled: bool = True) -> Iterator[ProgressFn | None]:
    """Yield an `on_row` callback that advances a bar (rows, tokens, errors, elapsed, ETA); None when disabled."""
    if not enabled:
        yield None
        return
    console = Console(file=sys.stderr)
    tokens = errors = 0
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[tokens]:,} tok · {task.fields[errors]} err"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total, tokens=0, errors=0)

        def on_row(row: RowRecord) -> None:
            nonlocal tokens, errors
            tokens += row.input_tokens + row.output_tokens
            errors += row.status == "error"
            bar.update(task, advance=1, tokens=tokens, errors=errors)

        yield on_row
