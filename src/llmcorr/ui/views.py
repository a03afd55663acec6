"""What the pages show, computed from the store's records: plain data, no HTML (the templates lay it out)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..correct.gate import Gate
from ..providers import describe_endpoint
from ..runs.summary import cost, endpoint_usage, wall_time
from ..store import RunRecord

METRIC_NAMES = {"roc_auc": "ROC-AUC", "accuracy": "accuracy", "rmse": "RMSE", "mae": "MAE"}
LOWER_IS_BETTER = {"rmse", "mae"}
ROW_FILTERS = {
    "all": "all rows",
    "errors": "errors only",
    "changed": "changed predictions only",
    "gate": "validation rows (for the gate)",
}


def wall_s(r: RunRecord) -> float | None:
    """Seconds the run's processes spent on it, to now while it runs (`runs.summary.wall_time`)."""
    return wall_time(r).busy_s


def run_cost(r: RunRecord) -> float | None:
    """Dollars spent, over every process that worked on the run (`runs.summary.cost`)."""
    return cost(r)


def usage_rows(r: RunRecord) -> list[tuple[str, str]]:
    """Per endpoint: what the run's processes sent there, together (`runs.summary.endpoint_usage`)."""
    return [(name, endpoint_usage(u)) for name, u in (r.usage or {}).items()]


def headline(metrics: dict[str, Any] | None) -> str:
    """A correct run's main metric, base → corrected."""
    if not metrics or "base" not in metrics:
        return ""
    for key, short in (("accuracy", "acc"), ("rmse", "RMSE")):
        if key in metrics["base"] and metrics["base"][key] is not None:
            return f"{short} {metrics['base'][key]:.3f}→{metrics['corrected'][key]:.3f}"
    return ""


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
        "cost": run_cost(r),
        "rate_limited": r.rate_limited,
        "tags": r.tags,
        "archived": r.archived,
        "created_utc": r.created_utc,
        "finished_utc": r.finished_utc,
        "wall_s": wall.busy_s,  # busy time: see runs.summary.WallTime
        "span_s": wall.span_s,  # first to last
        "wall": str(wall),  # as shown: "51.8 s", or "busy 51.8 s (first to last 3.5 min)" for a resumed run
        "usage_lines": usage_rows(r),  # (endpoint, "16 requests, 1,234 tokens, 0 429s, $0.0012")
        "headline": headline(r.metrics),
        "error": r.error,
    }


def endpoints(r: RunRecord) -> list[dict[str, Any]]:
    """The run's endpoints as recorded (name, kind, URL, model) with their quotas (rpm, tpm) from the recorded configs,
    each with its `label` as `runs show` prints it."""
    configs = {c.get("name"): c for c in (r.spec.get("options") or {}).get("endpoint_configs") or []}
    out = []
    for e in r.spec.get("endpoints") or []:
        info = configs.get(e.get("name"), {}) | {k: v for k, v in e.items() if v is not None}
        quota = [f"{info[k]:g} {k}" for k in ("rpm", "tpm") if info.get(k)]
        out.append(info | {"label": describe_endpoint(info, *quota)})
    return out


@dataclass(frozen=True)
class MetricRow:
    label: str
    base: float | None
    corrected: float | None
    change: float | None
    better: bool | None  # None: no change, or not comparable


def metric_rows(metrics: dict[str, Any] | None) -> list[MetricRow]:
    """Base vs corrected for each metric a correct run recorded."""
    if not metrics or "base" not in metrics:
        return []
    base, corrected = metrics.get("base", {}), metrics.get("corrected", {})
    out = []
    for key, label in METRIC_NAMES.items():
        if key not in base:
            continue
        b, c = base.get(key), corrected.get(key)
        change = c - b if isinstance(b, int | float) and isinstance(c, int | float) else None
        better = None
        if change:
            better = change < 0 if key in LOWER_IS_BETTER else change > 0
        out.append(MetricRow(label, b, c, change, better))
    return out


def flip_rows(metrics: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """The rows under the metrics: flips, McNemar's test, calibration, parsing, and the gate with its evidence."""
    if not metrics:
        return []
    rows: list[tuple[str, Any]] = [
        (f"flips: {k.replace('_', ' ')}", v) for k, v in (metrics.get("flips") or {}).items()
    ]
    if (metrics.get("mcnemar") or {}).get("discordant"):
        rows.append(("flips: McNemar p", f"{metrics['mcnemar']['p_value']:.3g}"))
    if metrics.get("calibration"):
        cal = metrics["calibration"]
        rows.append(("calibration ECE, base → corrected", f"{cal['base']['ece']:.4f} → {cal['corrected']['ece']:.4f}"))
    if "parsed" in metrics:
        rows.append(("answers parsed", f"{metrics['parsed']}/{metrics.get('n', '?')}"))
    gate = metrics.get("gate")
    if gate:
        rows.append(("gate (chosen on validation)", f"{gate['policy']}; {gate.get('applied_on_test', 0)} applied"))
        for key, label in METRIC_NAMES.items():
            value = (metrics.get("ungated") or {}).get("corrected", {}).get(key)
            if isinstance(value, float):
                rows.append((f"without the gate: {label}", f"{value:.4f}"))
    return rows


def other_metrics(metrics: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Metrics of a prompt or flow run (a flow's `aggregate`), as key and JSON value."""
    if not metrics or "base" in metrics:
        return []
    return [(str(k), json.dumps(v, default=str) if not isinstance(v, str) else v) for k, v in metrics.items()]


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class RowView:
    n: int  # 1-based, as the trace names it ("row 1")
    sample_id: str | None
    status: str
    error: str | None
    inputs: str
    output: str
    changed: bool | None  # correct runs: did the LLM change the prediction?
    tokens: int
    duration_ms: float | None
    endpoint: str | None
    cached: bool
    attempts: int


def _correction(
    problem: str, inputs: dict[str, Any], output: dict[str, Any], gate: Gate | None
) -> tuple[str, bool | None]:
    """What the LLM did to the row's prediction; on a gated run, whether the gate let it through. Validation rows
    (the gate's evidence) are marked and never count as changed predictions."""
    base = _number(inputs.get("prediction"))
    corrected = _number(output.get("corrected_prediction"))
    if base is None or corrected is None:
        return "", None
    if problem == "classification":
        before, after = int(base >= 0.5), int(output.get("corrected_label", corrected >= 0.5))
        shown, changed = f"{before} (p={base:.3g}) → {after}", before != after
    else:
        shown, changed = f"{base:.4g} → {corrected:.4g}", corrected != base
    if inputs.get("split") == "valid":
        return shown + " (validation, for the gate)", None
    if gate is not None and changed and not bool(gate.applies([base])[0]):
        return shown + " (held back by the gate)", False
    return shown, changed


def row_view(kind: str, problem: str | None, row: dict[str, Any], gate: Gate | None = None) -> RowView:
    inputs, output = row.get("inputs") or {}, row.get("output") or {}
    changed: bool | None = None
    if kind == "correct":
        shown_in = _short(inputs.get("input", inputs))
        problem = problem or "classification"
        shown_out, changed = _correction(problem, inputs, output, gate) if output else ("", None)
    else:
        shown_in = _short(inputs)
        shown_out = _short(output.get("output") if set(output) == {"output"} else output) if output else ""
    return RowView(
        n=row["row_index"] + 1,
        sample_id=row.get("sample_id"),
        status=row["status"],
        error=row.get("error"),
        inputs=shown_in,
        output=shown_out,
        changed=changed,
        tokens=(row.get("input_tokens") or 0) + (row.get("output_tokens") or 0),
        duration_ms=row.get("duration_ms"),
        endpoint=row.get("endpoint"),
        cached=bool(row.get("cached")),
        attempts=row.get("attempts") or 0,
    )


def row_views(record: RunRecord, rows: list[dict[str, Any]], show: str = "all") -> list[RowView]:
    """The run's rows as the table shows them; `show` is one of ROW_FILTERS."""
    problem = (record.spec.get("options") or {}).get("problem")
    chosen = (record.metrics or {}).get("gate")
    gate = Gate(problem or "classification", float(chosen["threshold"])) if chosen else None
    views = [row_view(record.kind, problem, r, gate) for r in rows]
    if show == "errors":
        return [v for v in views if v.status != "ok"]
    if show == "changed":
        return [v for v in views if v.changed]
    if show == "gate":
        return [v for v in views if v.output.endswith("(validation, for the gate)")]
    return views


# -- the trace of a row ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LlmCall:
    model: str
    messages: list[dict[str, Any]]
    response: str | None
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: float | None
    endpoint: str | None
    cache_hit: bool
    attempts: int | None
    rate_limited: int | None
    max_tokens: int | None
    temperature: float | None


@dataclass
class SpanView:
    span_id: str
    name: str
    kind: str
    depth: int
    offset_ms: float  # from the start of the row's first span
    duration_ms: float
    left_pct: float  # the span's bar on the row's timeline
    width_pct: float
    status: str
    error: str | None
    llm: LlmCall | None = None
    step_input: str | None = None
    step_output: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


def _messages(raw: Any) -> list[dict[str, Any]]:
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        return [{"role": "?", "content": str(raw)}]
    return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else []


def llm_call(attrs: dict[str, Any]) -> LlmCall:
    answer = _messages(attrs.get("gen_ai.output.messages"))
    return LlmCall(
        model=str(attrs.get("gen_ai.request.model", "")),
        messages=_messages(attrs.get("gen_ai.input.messages")),
        response="\n".join(str(m.get("content", "")) for m in answer) if answer else None,
        input_tokens=attrs.get("gen_ai.usage.input_tokens"),
        output_tokens=attrs.get("gen_ai.usage.output_tokens"),
        latency_ms=attrs.get("llmcorr.latency_ms"),
        endpoint=attrs.get("llmcorr.endpoint") or None,
        cache_hit=bool(attrs.get("llmcorr.cache_hit")),
        attempts=attrs.get("llmcorr.attempts"),
        rate_limited=attrs.get("llmcorr.rate_limited"),
        max_tokens=attrs.get("gen_ai.request.max_tokens"),
        temperature=attrs.get("gen_ai.request.temperature"),
    )


def trace_tree(spans: list[dict[str, Any]]) -> list[SpanView]:
    """A row's spans in tree order (each followed by its children), with each one's bar on the row's timeline."""
    if not spans:
        return []
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for s in spans:
        children.setdefault(s["parent_id"] if s["parent_id"] in ids else None, []).append(s)
    t0 = min(s["start_ns"] for s in spans)
    total = max(max(s["end_ns"] for s in spans) - t0, 1)
    out: list[SpanView] = []

    def visit(span: dict[str, Any], depth: int) -> None:
        attrs = span["attributes"]
        start, duration = span["start_ns"] - t0, span["end_ns"] - span["start_ns"]
        view = SpanView(
            span_id=span["span_id"],
            name=span["name"],
            kind=span["kind"],
            depth=depth,
            offset_ms=start / 1e6,
            duration_ms=duration / 1e6,
            left_pct=round(100 * start / total, 2),
            width_pct=max(round(100 * duration / total, 2), 0.3),
            status=span["status"],
            error=span["error"],
            attributes=attrs,
        )
        if span["kind"] == "llm":
            view.llm = llm_call(attrs)
        elif span["kind"] == "step":
            view.step_input, view.step_output = attrs.get("llmcorr.input"), attrs.get("llmcorr.output")
        out.append(view)
        for child in sorted(children.get(span["span_id"], []), key=lambda s: s["start_ns"]):
            visit(child, depth + 1)

    for root in sorted(children.get(None, []), key=lambda s: s["start_ns"]):
        visit(root, 0)
    return out


def request_times(spans: list[dict[str, Any]]) -> list[float]:
    """Seconds from a run's first LLM request to each request it sent (cache hits sent nothing)."""
    starts = sorted(s["start_ns"] for s in spans if s["kind"] == "llm" and not s["attributes"].get("llmcorr.cache_hit"))
    return [(t - starts[0]) / 1e9 for t in starts] if starts else []
