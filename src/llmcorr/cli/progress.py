"""A progress bar with an ETA for long runs, on stderr: rows, rows/s, tokens, errors, 429s, and per endpoint its
tokens/min against its quota. When stderr is not a terminal (a log file, a pipe, CI), plain lines instead: one every
PLAIN_EVERY_S or PLAIN_STEP of the rows, whichever comes first, and one at the end."""

from __future__ import annotations

import math
import sys
import time
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

from ..runs.engine import ProgressFn
from ..scheduler import Scheduler
from ..store import RowRecord

REFRESH_S = 0.1
PLAIN_EVERY_S = 10.0
PLAIN_STEP = 0.1  # of the rows


def endpoint_usage(scheduler: Scheduler) -> str:
    """`east 41k/60k tok/min · west 12/s` — each endpoint's pace against its binding quota."""
    parts = []
    for name, s in scheduler.stats().items():
        if s["tpm"]:
            parts.append(f"{name} {s['tokens_per_min'] / 1000:.1f}k/{s['tpm'] / 1000:g}k tok/min")
        elif s["rpm"]:
            parts.append(f"{name} {s['requests_per_min']:.0f}/{s['rpm']:g} req/min")
        elif len(scheduler.endpoints) > 1:
            parts.append(f"{name} {s['requests_per_min']:.0f} req/min")
    return " · ".join(parts)


@contextmanager
def row_progress(total: int, description: str, scheduler: Scheduler | None = None) -> Iterator[ProgressFn | None]:
    """Yield an `on_row` callback that advances the bar (runs/engine.py `ProgressFactory`)."""
    console = Console(file=sys.stderr)
    if not console.is_terminal:
        with _plain_progress(console, total, description, scheduler) as on_row:
            yield on_row
        return
    tokens = errors = done = 0
    started = time.monotonic()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f} rows/s · {task.fields[tokens]:,} tok · {task.fields[errors]} err"),
        TextColumn("{task.fields[limited]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[usage]}"),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total, tokens=0, errors=0, rate=0.0, limited="", usage="")

        shown = 0  # rows the bar shows: it is updated at most REFRESH_S apart (rows can finish 1,000s a second)
        last = 0.0

        def on_row(row: RowRecord) -> None:
            nonlocal tokens, errors, done, shown, last
            done += 1
            tokens += row.input_tokens + row.output_tokens
            errors += row.status == "error"
            now = time.monotonic()
            if now - last < REFRESH_S and done < total:
                return
            last = now
            limited = scheduler.rate_limited if scheduler else 0
            bar.update(
                task,
                advance=done - shown,
                tokens=tokens,
                errors=errors,
                rate=done / max(1e-9, now - started),
                limited=f"· {limited} × 429" if limited else "",
                usage=endpoint_usage(scheduler) if scheduler else "",
            )
            shown = done

        yield on_row


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


@contextmanager
def _plain_progress(
    console: Console, total: int, description: str, scheduler: Scheduler | None
) -> Iterator[ProgressFn]:
    """Progress as plain lines, for a stderr that is not a terminal: `running r1: 40/400 rows (10%), 12.5 rows/s,
    1,234 tok, 0 err, ETA 29 s`."""
    started = last = time.monotonic()
    tokens = errors = done = 0
    step = max(1, math.ceil(total * PLAIN_STEP))
    next_at = step

    def line(now: float, final: bool = False) -> None:
        rate = done / max(1e-9, now - started)
        parts = [f"{done:,}/{total:,} rows" + (f" ({100 * done / total:.0f}%)" if total else "")]
        parts += [f"{rate:.1f} rows/s", f"{tokens:,} tok", f"{errors} err"]
        limited = scheduler.rate_limited if scheduler else 0
        if limited:
            parts.append(f"{limited} × 429")
        usage = endpoint_usage(scheduler) if scheduler else ""
        if usage:
            parts.append(usage)
        if final:
            parts.append(f"in {_duration(now - started)}")
        elif rate > 0 and done < total:
            parts.append(f"ETA {_duration((total - done) / rate)}")
        console.print(f"{description}: " + ", ".join(parts), markup=False, highlight=False, soft_wrap=True)

    def on_row(row: RowRecord) -> None:
        nonlocal tokens, errors, done, next_at, last
        done += 1
        tokens += row.input_tokens + row.output_tokens
        errors += row.status == "error"
        now = time.monotonic()
        if done < total and (done >= next_at or now - last >= PLAIN_EVERY_S):  # the last row: the final line
            line(now)
            last = now
            next_at = done + step  # a line the clock asked for pushes the next one a whole step on

    yield on_row
    if done:
        line(time.monotonic(), final=True)
