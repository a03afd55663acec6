"""`llmcorr report RUN`: a correct run as one self-contained HTML file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..config import Config
from ..report import render_report
from ..runs.correction import recorded_table
from ..store import Store
from ._common import console


def report(
    run: Annotated[str, typer.Argument(help="run id or name (a correct run)")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="the HTML file (default: report-RUN.html)")
    ] = None,
) -> None:
    """Write an HTML report of a correct run: metrics with 95% intervals, flips and McNemar's test, the gate,
    confusion, calibration or a scatter of predictions, and examples of flips with the LLM's explanations."""
    with Store(Config.load().store_path) as store:
        record = store.get_run(run)
        table, metrics = recorded_table(store, record)
    path = output or Path(f"report-{record.label}.html")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render_report(record, table, metrics), encoding="utf-8")
    tmp.replace(path)
    console.print(f"wrote {path} ({len(table)} test rows)")
