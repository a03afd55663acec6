"""A run as every view shows it: one summary (status, progress, tokens, cost, wall time, usage per endpoint, the
headline metric) computed once from its record (runs/summary.py), and its endpoints as recorded."""

from __future__ import annotations

from typing import Any

from ..providers import describe_endpoint
from ..runs.spec import shown_spec
from ..runs.summary import cost, endpoint_usage, wall_time
from ..store import RunRecord
from .metrics import correction_metrics, headline


def usage_rows(r: RunRecord) -> list[tuple[str, str]]:
    """Per endpoint: what the run's processes sent there, together (`runs.summary.endpoint_usage`)."""
    return [(name, endpoint_usage(u)) for name, u in (r.usage or {}).items()]


def run_summary(r: RunRecord) -> dict[str, Any]:
    """One run as the runs table and the JSON endpoints show it."""
    wall = wall_time(r)
    return {
        "id": r.id,
        "name": r.name,
        "label": r.label,
        "kind": r.kind,
        "status": r.status,
        "rows_total": r.rows_total,
        "rows_done": r.rows_done,
        "rows_failed": r.rows_failed,
        "progress_pct": round(100 * r.rows_done / r.rows_total, 1) if r.rows_total else 0.0,
        "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens,
        "tokens": r.input_tokens + r.output_tokens,
        "cost": cost(r),
        "rate_limited": r.rate_limited,
        "tags": r.tags,
        "archived": r.archived,
        "created_utc": r.created_utc,
        "finished_utc": r.finished_utc,
        "wall_time_s": wall.busy_s,  # busy time, as runs/experiments.py names it: see runs.summary.WallTime
        "span_s": wall.span_s,  # first to last
        "wall": str(wall),  # as shown: "51.8 s", or "busy 51.8 s (first to last 3.5 min)" for a resumed run
        "usage_lines": usage_rows(r),  # (endpoint, "16 requests, 1,234 tokens, 0 429s, $0.0012")
        "headline": headline(correction_metrics(r)),
        "error": r.error,
    }


def endpoints(r: RunRecord) -> list[dict[str, Any]]:
    """The run's endpoints as recorded (name, kind, URL, model) with their quotas (rpm, tpm) from the recorded configs,
    each with its `label` as `runs show` prints it."""
    spec = shown_spec(r)
    if spec is None:
        return []
    configs = {c.get("name"): c for c in spec.options.endpoint_configs}
    out = []
    for e in spec.endpoints:
        info = configs.get(e.get("name"), {}) | {k: v for k, v in e.items() if v is not None}
        quota = [f"{info[k]:g} {k}" for k in ("rpm", "tpm") if info.get(k)]
        out.append(info | {"label": describe_endpoint(info, *quota)})
    return out
