"""`llmcorr runs …`: list, show, resume, rerun, cancel and delete recorded runs. A name works wherever an id does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .._sync import run_sync
from ..config import Config
from ..errors import UserError
from ..runs.control import rerun_any_async, resume_any_async
from ..store import Store
from ._common import ConfigOpt, YesOpt, confirm, console, setup_logging
from ._render import metrics_table, print_result, run_table, runs_table

app = typer.Typer(help="Recorded runs: list, show, resume, rerun, cancel, delete.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


@app.command("list")
def list_runs(
    status: Annotated[str | None, typer.Option(help="only runs with this status")] = None,
    limit: Annotated[int, typer.Option(help="at most this many runs, newest first")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List runs, newest first."""
    with Store(Config.load().store_path) as store:
        records = store.list_runs(limit=limit, status=status)
    if as_json:
        console.print_json(json.dumps([r.__dict__ for r in records]))
    elif not records:
        console.print("no runs yet: try `llmcorr demo`")
    else:
        console.print(runs_table(records))


@app.command("show")
def show(run: Annotated[str, typer.Argument(help="run id or name")], as_json: JsonOpt = False) -> None:
    """Show one run: status, counts, tokens, metrics."""
    with Store(Config.load().store_path) as store:
        record = store.get_run(run)
        counts = store.row_status_counts(record.id)
    if as_json:
        console.print_json(json.dumps({**record.__dict__, "row_status": counts}))
        return
    console.print(run_table(record))
    if counts:
        console.print("rows by status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if record.metrics and "base" in record.metrics:
        console.print(metrics_table(record.metrics))


@app.command("resume")
def resume(
    run: Annotated[str, typer.Argument(help="run id or name")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write the rows here (.csv/.jsonl/.parquet)")
    ] = None,
    config_path: ConfigOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Continue an interrupted, cancelled or failed run: finished rows are kept, failed rows are retried."""
    setup_logging(quiet)
    config = Config.load(config_path)
    print_result(config, run_sync(resume_any_async(run, output=output, progress=not quiet, config=config)), output)


@app.command("rerun")
def rerun(
    run: Annotated[str, typer.Argument(help="run id or name")],
    name: Annotated[str | None, typer.Option(help="a name for the new run")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write the rows here (.csv/.jsonl/.parquet)")
    ] = None,
    config_path: ConfigOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Make a run again, as a new run, from its recorded spec (free where its answers are cached)."""
    setup_logging(quiet)
    config = Config.load(config_path)
    result = run_sync(rerun_any_async(run, name=name, output=output, progress=not quiet, config=config))
    print_result(config, result, output)


@app.command("cancel")
def cancel(run: Annotated[str, typer.Argument(help="run id or name")]) -> None:
    """Stop a running run from another terminal; it finishes its requests in flight and keeps every row."""
    with Store(Config.load().store_path) as store:
        record = store.get_run(run)
        if record.status != "running":
            raise UserError(f"run {record.label} is not running (status: {record.status})")
        store.request_cancel(record.id)
    console.print(f"asked run {record.label} to stop; `llmcorr runs show {record.label}` shows when it has")


@app.command("delete")
def delete(run: Annotated[str, typer.Argument(help="run id or name")], yes: YesOpt = False) -> None:
    """Delete a run and its rows."""
    with Store(Config.load().store_path) as store:
        record = store.get_run(run)
        if not confirm(f"delete run {record.label} ({record.rows_done} rows)?", yes):
            raise typer.Exit(1)
        store.delete_run(record.id)
    console.print(f"deleted run {record.label}")
