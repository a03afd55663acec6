"""Pages that work across runs or before one: compare runs, preview a prompt, start a run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from ..config import Config, EndpointConfig
from ..errors import LlmcorrError, NotFoundError, UserError
from ..prompts.env import NO_ENV
from ..prompts.preview import PromptPreview, parse_inputs, preview, prompty_from_text
from ..prompts.prompty import load_prompty
from ..report.charts import metric_bars, requests_over_time
from ..store import RunRecord, Store
from ..view import METRIC_NAMES, correction_metrics, endpoints, flip_rows, metric_rows, request_times, run_summary
from .common import back_to, config_of, form_fields, fragment, open_store, page
from .launch import check_request, start_run

router = APIRouter()
StoreDep = Annotated[Store, Depends(open_store)]
FormDep = Annotated[dict[str, str], Depends(form_fields)]

# -- compare ---------------------------------------------------------------------------------------------------------


def _refs(ids: str, id_: list[str]) -> list[str]:
    refs = [r.strip() for r in ids.replace(" ", ",").split(",") if r.strip()] + [r for r in id_ if r.strip()]
    return list(dict.fromkeys(refs))


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    store: StoreDep,
    ids: str = "",
    id_: Annotated[list[str], Query(alias="id")] = [],  # noqa: B006
) -> HTMLResponse:
    records: list[RunRecord] = []
    errors = []
    for ref in _refs(ids, id_):
        try:
            records.append(store.get_run(ref))
        except NotFoundError as exc:
            errors.append(str(exc))
    charts = []
    typed = [(r, correction_metrics(r)) for r in records]  # None for a flow or prompt run
    sides = [
        (r.label, m.base.recorded(), m.corrected.recorded() if m.corrected else {}) for r, m in typed if m and m.base
    ]
    for key, label in METRIC_NAMES.items():
        bars = [(run, base.get(key), corrected.get(key)) for run, base, corrected in sides]
        bars = [b for b in bars if b[1] is not None or b[2] is not None]
        if bars:
            charts.append(metric_bars(bars, key, f"{label}: base vs corrected"))
    series = [(r.label, request_times(store.spans(r.id))) for r in records]
    if any(times for _, times in series):
        charts.append(requests_over_time(series))
    metric_labels = [row.label for _, m in typed for row in metric_rows(m)]
    flip_labels = [f for _, m in typed for f, _ in flip_rows(m)]
    return page(
        request,
        "compare.html",
        runs=[
            {
                "record": r,
                "summary": run_summary(r),
                "endpoints": endpoints(r),
                "metrics": {row.label: row for row in metric_rows(m)},
                "flips": dict(flip_rows(m)),
            }
            for r, m in typed
        ],
        metric_labels=list(dict.fromkeys(metric_labels)),
        flip_labels=list(dict.fromkeys(flip_labels)),
        charts=charts,
        errors=errors,
        recent=[run_summary(r) for r in store.list_runs(limit=30)] if len(records) < 2 else [],
    )


# -- preview ---------------------------------------------------------------------------------------------------------


@dataclass
class PreviewOutcome:
    shown: PromptPreview | None = None
    error: str | None = None
    sample: dict[str, Any] | None = None  # the file's sample inputs, offered when none were typed
    declared: list[str] | None = None  # the inputs the file declares


def _endpoint(config: Config, name: str) -> EndpointConfig:
    """The endpoint to count tokens for: the one named, else the default (its key need not be set to count)."""
    if name:
        return config.endpoint(name)
    return config.endpoint(config.default[0]) if config.default else config.provider


def preview_outcome(config: Config, path: str, template: str, inputs: str, endpoint: str) -> PreviewOutcome:
    """Render a prompt file (or typed template) with JSON inputs; any user error is the outcome's one line."""
    outcome = PreviewOutcome()
    try:
        if path.strip():
            if not path.strip().endswith(".prompty"):
                raise UserError(f"{path.strip()}: expected a .prompty file")
            prompty = load_prompty(Path(path.strip()).expanduser(), env=NO_ENV)
        else:
            prompty = prompty_from_text(template, env=NO_ENV)  # the preview never reads the server's environment
        outcome.sample, outcome.declared = prompty.sample or None, list(prompty.inputs)
        values = parse_inputs(inputs, "inputs") if inputs.strip() else dict(prompty.sample)
        outcome.shown = preview(prompty, values, _endpoint(config, endpoint))
    except LlmcorrError as exc:  # a template error (file:line), bad JSON, an endpoint that cannot count
        outcome.error = str(exc)
    return outcome


def _endpoint_names(config: Config) -> list[str]:
    return [e.name for e in config.endpoints]


@router.get("/preview", response_class=HTMLResponse)
def preview_page(
    request: Request, path: str = "", template: str = "", inputs: str = "", endpoint: str = ""
) -> HTMLResponse:
    config = config_of(request)
    outcome = preview_outcome(config, path, template, inputs, endpoint) if (path or template) else None
    if outcome is not None and not inputs.strip() and outcome.sample:
        inputs = json.dumps(outcome.sample, indent=2, ensure_ascii=False)
    values = {"path": path, "template": template, "inputs": inputs, "endpoint": endpoint}
    return page(
        request,
        "preview.html",
        outcome=outcome,
        values=values,
        endpoints=_endpoint_names(config),
        default=config.default,
    )


@router.post("/api/preview")
async def preview_json(request: Request) -> JSONResponse:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return JSONResponse({"error": "expected a JSON object"}, status_code=400)
    fields = {k: str(body.get(k) or "") for k in ("path", "template", "inputs", "endpoint")}
    outcome = await run_in_threadpool(preview_outcome, config_of(request), **fields)
    shown = outcome.shown
    return JSONResponse(
        {
            "ok": outcome.error is None,
            "error": outcome.error,
            "prompt_tokens": shown.prompt_tokens if shown else None,
            "messages": [m.to_dict() for m in shown.messages] if shown else [],
            "sample": outcome.sample,
            "declared": outcome.declared,
            "html": fragment("_preview_result.html", outcome=outcome),
        }
    )


# -- start a run -----------------------------------------------------------------------------------------------------


@router.get("/new", response_class=HTMLResponse)
def new_page(request: Request, prompt: str = "", data: str = "") -> HTMLResponse:
    config = config_of(request)
    values = {"prompt": prompt, "data": data, "endpoint": "", "name": "", "limit": ""}
    return page(request, "new.html", values=values, endpoints=_endpoint_names(config), default=config.default)


@router.post("/new", response_model=None)
def new_run(request: Request, form: FormDep) -> HTMLResponse | RedirectResponse:
    config = config_of(request)
    values = {k: form.get(k, "") for k in ("prompt", "data", "endpoint", "name", "limit")}
    try:
        run_id = start_run(check_request(**values, config=config), config)
    except UserError as exc:
        context = {"values": values, "endpoints": _endpoint_names(config), "default": config.default}
        return page(request, "new.html", status_code=400, error=str(exc), **context)
    return back_to(f"/runs/{run_id}", message="started")
