"""A row's trace as every view shows it: its spans in tree order with their bars on the row's timeline, each LLM
call's messages, answer, tokens and cache hit."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


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
