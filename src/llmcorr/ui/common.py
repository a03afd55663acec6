"""What every page shares: the templates and their filters, a store per request, form fields, redirects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from ..config import Config
from ..store import Store

HERE = Path(__file__).parent
MAX_FORM_BYTES = 1 << 20


def _int(value: Any) -> str:
    return f"{value:,.0f}" if isinstance(value, int | float) else "—"


def _cost(value: Any) -> str:
    if value is None:
        return "—"
    return f"${value:.4f}" if value >= 0.01 else f"${value:.6f}"


def _ms(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.0f} ms" if value < 1000 else f"{value / 1000:.2f} s"


def _seconds(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def _when(stamp: str | None) -> str:
    """An ISO timestamp as `YYYY-MM-DD HH:MM:SS` (UTC)."""
    if not stamp:
        return "—"
    return datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M:%S")


def _metric(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("n/a" if value is None else str(value))


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters.update(
        int=_int, cost=_cost, ms=_ms, seconds=_seconds, when=_when, metric=_metric, pretty=_pretty
    )
    templates.env.globals["STATUSES"] = ("running", "completed", "failed", "interrupted", "cancelled")
    return templates


templates = make_templates()


def config_of(request: Request) -> Config:
    config: Config = request.app.state.config
    return config


def open_store(request: Request) -> Iterator[Store]:
    """A store for this request (runs in other processes write to the same file: WAL lets both go on)."""
    with Store(config_of(request).store_path) as store:
        yield store


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def fragment(name: str, **context: Any) -> str:
    """A partial template rendered to text, for the JSON endpoints the pages poll."""
    return templates.get_template(name).render(**context)


async def form_fields(request: Request) -> dict[str, str]:
    """An HTML form's fields (application/x-www-form-urlencoded; no multipart parser needed)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


def back_to(path: str, **query: str | None) -> RedirectResponse:
    """A 303 to `path` (after a POST), with a message to show, if any."""
    params = {k: v for k, v in query.items() if v}
    return RedirectResponse(path + ("?" + urlencode(params) if params else ""), status_code=303)
