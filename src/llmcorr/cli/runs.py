"""`llmcorr runs …`: list, show, logs, compare, rename, tag, archive, restore, resume, rerun, cancel and delete recorded
runs. A name works wherever an id does. The work is done by `runs/experiments.py`, which the dashboard and the Python
API (`llmcorr.experiments`) share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .._sync import run_sync
from ..config import Config
from ..errors import UserError
from ..runs import experiments
from ..runs import status as run_status
from ..runs.control import rerun_any_async, resume_any_async
from ..store import Store
from ..view import correction_metrics
from ._common import ConfigOpt, YesOpt, confirm, console, err_console, setup_logging
from ._render import compare_table, print_metrics, print_result, run_table, runs_table, span_details, span_line
from .progress import row_progress

app = typer.Typer(
    help="Recorded runs: list, show, logs, compare, rename, tag, archive, restore, resume, rerun, cancel, delete.",
    no_args_is_help=True,
)
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


@app.command("list")
def list_runs(
    status: Annotated[
        str | None,
        typer.Option(help="only runs with this status (running, completed, failed…); failed: with failed rows too"),
    ] = None,
    tag: Annotated[str | None, typer.Option(help="only runs with this tag")] = None,
    name: Annotated[str | None, typer.Option(help="only runs whose name contains this (or whose id starts so)")] = None,
    archived: Annotated[bool, typer.Option("--archived", help="only archived runs")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="archived runs too")] = False,
    sort: Annotated[str, typer.Option(help="created, name, status, tokens, rows or kind")] = "created",
    asc: Annotated[bool, typer.Option("--asc", help="ascending order (default: descending)")] = False,
    limit: Annotated[int, typer.Option(help="at most this many runs")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List runs, newest first; archived runs are hidden unless asked for."""
    if archived and show_all:
        raise UserError("--archived lists only archived runs, --all lists every run: choose one")
    with Store(Config.load().store_path) as store:
        records = run_status.list_runs(
            store,
            limit=limit,
            status=status,
            tag=tag,
            name=name,
            archived=None if show_all else archived,
            sort=sort,
            descending=not asc,
        )
    if as_json:
        console.print_json(json.dumps([r.__dict__ | {"status_text": run_status.status_text(r)} for r in records]))
    elif records:
        console.print(runs_table(records))
    elif status or tag or name or archived:
        console.print("no runs match")
    else:
        console.print("no runs yet: try `llmcorr demo`")


@app.command("show")
def show(run: Annotated[str, typer.Argument(help="run id or name")], as_json: JsonOpt = False) -> None:
    """Show one run: status, counts, tokens, metrics."""
    with Store(Config.load().store_path) as store:
        record = store.get_run(run)
        counts = store.row_status_counts(record.id)
    if as_json:
        console.print_json(
            json.dumps({**record.__dict__, "status_text": run_status.status_text(record), "row_status": counts})
        )
        return
    console.print(run_table(record))
    if counts:
        console.print("rows by status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    metrics = correction_metrics(record)
    if metrics and metrics.base:
        print_metrics(metrics)


DataOpt = Annotated[
    Path | None, typer.Option("--data", "-d", help="the run's data file, if it has moved (checked by hash)")
]
FlowOpt = Annotated[
    str | None,
    typer.Option(
        "--flow", help="the run's .prompty file, flow (FILE.py:NAME) or correct --template, if it has moved (checked)"
    ),
]


@app.command("resume")
def resume(
    run: Annotated[str, typer.Argument(help="run id or name")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write the rows here (default: where the run wrote them)")
    ] = None,
    data: DataOpt = None,
    flow: FlowOpt = None,
    config_path: ConfigOpt = None,
    skip_failed: Annotated[
        bool,
        typer.Option(
            "--skip-failed",
            help="keep the failed rows as they are (e.g. rows the server rejects) and run only the missing ones",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Continue an interrupted, cancelled or failed run: finished rows are kept, failed rows are retried (unless
    --skip-failed), missing rows are run."""
    setup_logging(quiet)
    config = Config.load(config_path)
    moved: dict[str, object] = {k: v for k, v in (("data", data), ("flow", flow)) if v is not None}
    if skip_failed:
        moved["skip_failed"] = True
    result = run_sync(
        resume_any_async(run, output=output, progress=None if quiet else row_progress, config=config, **moved)
    )
    print_result(config, result, output)


@app.command("rerun")
def rerun(
    run: Annotated[str, typer.Argument(help="run id or name")],
    name: Annotated[str | None, typer.Option(help="a name for the new run")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write the rows here (.csv/.jsonl/.parquet)")
    ] = None,
    data: DataOpt = None,
    flow: FlowOpt = None,
    config_path: ConfigOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Make a run again, as a new run, from its recorded spec (free where its answers are cached)."""
    setup_logging(quiet)
    config = Config.load(config_path)
    moved = {k: v for k, v in (("data", data), ("flow", flow)) if v is not None}
    result = run_sync(
        rerun_any_async(run, name=name, output=output, progress=None if quiet else row_progress, config=config, **moved)
    )
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
    """Delete a run, its rows and spans, and the output file it wrote."""
    with Store(Config.load().store_path) as store:
        record, output = experiments.prepare_delete(store, run)
        what = f"{record.rows_done} rows, their spans" + (f" and its output file {output}" if output else "")
        if not confirm(f"delete run {record.label} ({what})?", yes):
            raise typer.Exit(1)
        experiments.delete_run(store, record.id)
    console.print(f"deleted run {record.label}" + (f" and {output}" if output else ""), markup=False)


@app.command("rename")
def rename(
    run: Annotated[str, typer.Argument(help="run id or name")],
    new_name: Annotated[str, typer.Argument(help="the new name (unique)")],
) -> None:
    """Give a run a new name."""
    with Store(Config.load().store_path) as store:
        old = store.get_run(run)
        record = experiments.rename_run(store, old.id, new_name)
    console.print(f"renamed run {old.label} to {record.name}", markup=False)


@app.command("tag")
def tag(
    run: Annotated[str, typer.Argument(help="run id or name")],
    tags: Annotated[list[str] | None, typer.Argument(help="tags to add")] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", "-r", help="a tag to remove (repeat)")] = None,
) -> None:
    """Add tags to a run (or remove them with --remove); `runs list --tag TAG` finds them."""
    with Store(Config.load().store_path) as store:
        record = store.get_run(run)
        now = experiments.tag_run(store, record.id, tags or [], remove or [])
    console.print(f"run {record.label} tags: {', '.join(now) if now else '(none)'}", markup=False)


@app.command("archive")
def archive(run: Annotated[str, typer.Argument(help="run id or name")]) -> None:
    """Hide a run from `runs list` (nothing is deleted; `runs list --archived` shows it, `runs restore` undoes it)."""
    with Store(Config.load().store_path) as store:
        record = experiments.archive_run(store, run)
    console.print(f"archived run {record.label}; `llmcorr runs restore {record.label}` brings it back", markup=False)


@app.command("restore")
def restore(run: Annotated[str, typer.Argument(help="run id or name")]) -> None:
    """Bring an archived run back into `runs list`."""
    with Store(Config.load().store_path) as store:
        record = experiments.restore_run(store, run)
    console.print(f"restored run {record.label}", markup=False)


@app.command("compare")
def compare(
    runs: Annotated[list[str], typer.Argument(help="two or more run ids or names")],
    as_json: JsonOpt = False,
) -> None:
    """Runs side by side: metrics (a correct run's base vs corrected), rows, tokens, wall time, 429s, cost."""
    with Store(Config.load().store_path) as store:
        frame = experiments.compare_runs(store, runs)
    if as_json:
        columns = {label: dict(zip(frame.index, frame[label], strict=True)) for label in frame.columns}
        console.print_json(json.dumps(columns, default=str))
    else:
        console.print(compare_table(frame))


@app.command("logs")
def logs(
    run: Annotated[str, typer.Argument(help="run id or name")],
    row: Annotated[int | None, typer.Option(help="only this row (from 1), with its prompts and answers")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="print new spans until the run ends")] = False,
) -> None:
    """A run's spans, one line each in time order: row, step or LLM call, duration, status, tokens, cache, 429s."""
    with Store(Config.load().store_path) as store:
        record = store.get_run(run)
        batches = (
            experiments.follow_logs(store, record.id, row)
            if follow
            else iter([experiments.run_logs(store, record.id, row)])
        )
        printed = 0
        for spans in batches:
            for span in spans:
                console.print(span_line(span), markup=False, highlight=False, soft_wrap=True)
                if row is not None:
                    for line in span_details(span):
                        console.print(line, markup=False, highlight=False, soft_wrap=True)
            printed += len(spans)
            console.file.flush()
    if not printed:
        where = f"row {row} of run {record.label}" if row is not None else f"run {record.label}"
        why = "it has not run yet, or ran with --no-trace" if row is not None else "it ran with --no-trace"
        err_console.print(f"no spans recorded for {where} ({why})", markup=False, highlight=False)
