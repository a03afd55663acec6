"""The runs: the table of runs, one run (summary, metrics, rows, actions), one row's trace; and the JSON the pages
poll to stay live while runs go."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ..errors import NotFoundError, UserError
from ..report import render_report
from ..runs.correct_options import CorrectSpecOptions
from ..runs.correction import recorded_table
from ..runs.experiments import (
    archive_run,
    delete_run,
    output_to_delete,
    rename_run,
    restore_run,
    tag_run,
)
from ..runs.spec import shown_spec
from ..runs.status import describe, failing, list_runs
from ..store import RunRecord, Store
from ..view import (
    ROW_FILTERS,
    confusion_view,
    correction_metrics,
    endpoints,
    flip_rows,
    metric_rows,
    other_metrics,
    row_view,
    row_views,
    run_summary,
    trace_tree,
)
from .common import back_to, form_fields, fragment, open_store, page, templates

router = APIRouter()
StoreDep = Annotated[Store, Depends(open_store)]
FormDep = Annotated[dict[str, str], Depends(form_fields)]
MAX_ROWS = 500  # rows a run's page lists at once
# a run's status as every page shows it: `completed, 3 failed` (runs/status.py), given its status and failed rows
templates.env.globals.update(status_text=describe, status_failing=failing)


def _summary(record: RunRecord) -> dict[str, Any]:
    """`run_summary` and the status as people read it."""
    return run_summary(record) | {"status_text": describe(record.status, record.rows_failed)}


def _list(store: Store, status: str, tag: str, name: str, archived: str) -> list[dict[str, Any]]:
    records = list_runs(
        store,
        status=status or None,
        tag=tag.strip() or None,
        name=name.strip() or None,
        archived=None if archived else False,
    )
    return [_summary(r) for r in records]


@router.get("/", response_class=HTMLResponse)
def runs_page(
    request: Request,
    store: StoreDep,
    status: str = "",
    tag: str = "",
    name: str = "",
    archived: str = "",
    message: str = "",
) -> HTMLResponse:
    runs = _list(store, status, tag, name, archived)
    filters = {"status": status, "tag": tag, "name": name, "archived": archived}
    return page(request, "runs.html", runs=runs, filters=filters, message=message)


@router.get("/api/runs")
def runs_json(store: StoreDep, status: str = "", tag: str = "", name: str = "", archived: str = "") -> dict[str, Any]:
    runs = _list(store, status, tag, name, archived)
    running = sum(r["status"] == "running" for r in runs)
    filters = {"status": status, "tag": tag, "name": name, "archived": archived}
    return {"runs": runs, "running": running, "html": fragment("_runs_rows.html", runs=runs, filters=filters)}


def _run_context(store: Store, record: RunRecord, show: str) -> dict[str, Any]:
    metrics = correction_metrics(record)
    options = CorrectSpecOptions.of(record)
    gated = bool(metrics and metrics.gate) or bool(options and options.gate)
    filters = {
        k: v
        for k, v in ROW_FILTERS.items()
        if (k not in ("changed", "unsent") or record.kind == "correct")
        and (k != "gate" or (record.kind == "correct" and gated))
    }
    show = show if show in filters else "all"
    rows = row_views(record, store.rows(record.id), show)
    return {
        "run": record,
        "spec": shown_spec(record),
        "summary": _summary(record),
        "endpoints": endpoints(record),
        "metrics": metric_rows(metrics),
        "flips": flip_rows(metrics),
        "confusion": confusion_view(metrics),
        "other_metrics": other_metrics(record),
        "rows": rows[:MAX_ROWS],
        "rows_matching": len(rows),
        "show": show,
        "row_filters": filters,
    }


@router.get("/runs/{ref}", response_class=HTMLResponse)
def run_page(
    request: Request, ref: str, store: StoreDep, show: str = "all", error: str = "", message: str = ""
) -> HTMLResponse:
    record = store.get_run(ref)
    return page(request, "run.html", error=error, message=message, **_run_context(store, record, show))


@router.get("/api/runs/{ref}")
def run_json(ref: str, store: StoreDep, show: str = "all") -> dict[str, Any]:
    context = _run_context(store, store.get_run(ref), show)
    return {"run": context["summary"], "rows": len(context["rows"]), "html": fragment("_run_live.html", **context)}


@router.get("/runs/{ref}/report", response_class=HTMLResponse)
def report_page(ref: str, store: StoreDep) -> HTMLResponse:
    """The same self-contained report `llmcorr report` writes."""
    record = store.get_run(ref)
    table, metrics = recorded_table(store, record)
    return HTMLResponse(render_report(record, table, metrics))


@router.get("/runs/{ref}/rows/{n}", response_class=HTMLResponse)
def row_page(request: Request, ref: str, n: int, store: StoreDep) -> HTMLResponse:
    record = store.get_run(ref)
    rows = {r.row_index: r for r in store.rows(record.id)}
    row = rows.get(n - 1)
    if row is None:
        raise NotFoundError(f"run {record.label} has no row {n}" + (" yet" if record.status == "running" else ""))
    options = CorrectSpecOptions.of(record)
    problem = options.problem if options else None
    return page(
        request,
        "row.html",
        run=record,
        row=row,
        view=row_view(record.kind, problem, row),
        spans=trace_tree(store.spans(record.id, n - 1)),
        previous=n - 1 if (n - 2) in rows else None,
        next=n + 1 if n in rows else None,
    )


# -- actions: a form posts, the page comes back with what happened --------------------------------------------------


def _act(store: Store, ref: str, action: Callable[[RunRecord], str]) -> RedirectResponse:
    record = store.get_run(ref)
    try:
        message = action(record)
    except UserError as exc:
        return back_to(f"/runs/{record.id}", error=str(exc))
    return back_to(f"/runs/{record.id}", message=message)


@router.post("/runs/{ref}/rename")
def rename(ref: str, store: StoreDep, form: FormDep) -> RedirectResponse:
    name = form.get("name", "")
    return _act(store, ref, lambda record: f"renamed to {rename_run(store, record.id, name).label}")


@router.post("/runs/{ref}/tags")
def tags(ref: str, store: StoreDep, form: FormDep) -> RedirectResponse:
    add = [t.strip() for t in form.get("add", "").split(",") if t.strip()]
    remove = [t for t in [form.get("remove", "").strip()] if t]

    def act(record: RunRecord) -> str:
        return "tags: " + (", ".join(tag_run(store, record.id, add, remove)) or "none")

    return _act(store, ref, act)


@router.post("/runs/{ref}/archive")
def archive(ref: str, store: StoreDep, form: FormDep) -> RedirectResponse:
    hide = form.get("archived", "1") == "1"

    def act(record: RunRecord) -> str:
        if hide:
            archive_run(store, record.id)
            return "archived: the runs table hides it unless asked"
        restore_run(store, record.id)
        return "restored"

    return _act(store, ref, act)


@router.post("/runs/{ref}/cancel")
def cancel(ref: str, store: StoreDep) -> RedirectResponse:
    def act(record: RunRecord) -> str:
        if record.status != "running":
            raise UserError(f"run {record.label} is not running (status: {record.status})")
        store.request_cancel(record.id)
        return "asked the run to stop: it finishes the requests in flight and keeps every row"

    return _act(store, ref, act)


@router.get("/runs/{ref}/delete", response_class=HTMLResponse)
def delete_confirm(request: Request, ref: str, store: StoreDep) -> HTMLResponse:
    record = store.get_run(ref)
    return page(request, "delete.html", run=record, output=output_to_delete(store, record))


@router.post("/runs/{ref}/delete")
def delete(ref: str, store: StoreDep) -> RedirectResponse:
    record = store.get_run(ref)
    try:
        delete_run(store, record.id)
    except UserError as exc:  # still running
        return back_to(f"/runs/{record.id}", error=str(exc))
    return back_to("/", message=f"deleted run {record.label}")
