"""The spans of a run: one TracerProvider per run, a processor that writes finished spans to the store, and the
helpers the engine (`row_span`), the LLM client (`llm_span`) and user code (`@llmcorr.trace`) open spans with."""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from .._version import __version__
from ..store import Store

F = TypeVar("F", bound=Callable[..., Any])
MAX_TEXT = 4000  # characters of a step's arguments / result kept on its span


class StoreSpanProcessor(SpanProcessor):
    """Buffers finished spans; writes them to the store when a row or the run ends (always on the thread that
    commits rows, so the store's connection is never used from two threads at once)."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self._buffer: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self._owner = threading.get_ident()

    def on_end(self, span: ReadableSpan) -> None:
        attrs = dict(span.attributes or {})
        ctx = span.context
        parent = span.parent
        record = (
            f"{ctx.span_id:016x}",
            f"{ctx.trace_id:032x}",
            f"{parent.span_id:016x}" if parent is not None else None,
            self.run_id,
            attrs.get("llmcorr.row_index"),
            str(attrs.get("llmcorr.span", "step")),
            span.name,
            span.start_time,
            span.end_time,
            "error" if span.status.status_code is StatusCode.ERROR else "ok",
            span.status.description,
            json.dumps(attrs, default=str),
        )
        with self._lock:
            self._buffer.append(record)
        if attrs.get("llmcorr.span") in ("row", "run") and threading.get_ident() == self._owner:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._buffer = self._buffer, []
        if pending:
            self.store.add_spans(pending)

    def shutdown(self) -> None:
        self.flush()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self.flush()
        return True


@dataclass
class RunTracer:
    run_id: str
    provider: TracerProvider
    tracer: Tracer
    processor: StoreSpanProcessor


_current: contextvars.ContextVar[RunTracer | None] = contextvars.ContextVar("llmcorr_tracer", default=None)
_row: contextvars.ContextVar[int | None] = contextvars.ContextVar("llmcorr_trace_row", default=None)


def current_tracer() -> RunTracer | None:
    return _current.get()


def _otlp_processor(url: str) -> SpanProcessor:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    endpoint = url.rstrip("/")
    if not endpoint.endswith("/v1/traces"):
        endpoint += "/v1/traces"
    return BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=5))


@contextmanager
def run_tracing(
    store: Store, run_id: str, kind: str, *, enabled: bool = True, otlp: str | None = None
) -> Iterator[RunTracer | None]:
    """Trace one execution of a run: its root span, and everything opened inside this block beneath it."""
    if not enabled:
        yield None
        return
    provider = TracerProvider(resource=Resource({"service.name": "llmcorr", "service.version": __version__}))
    processor = StoreSpanProcessor(store, run_id)
    provider.add_span_processor(processor)
    if otlp:
        provider.add_span_processor(_otlp_processor(otlp))
    rt = RunTracer(run_id, provider, provider.get_tracer("llmcorr", __version__), processor)
    token = _current.set(rt)
    try:
        attrs = {"llmcorr.span": "run", "llmcorr.run_id": run_id, "llmcorr.run_kind": kind}
        with _span(rt, f"run {kind}", attrs):
            yield rt
    finally:
        _current.reset(token)
        provider.shutdown()  # flushes the store processor and any OTLP exporter


@contextmanager
def _span(rt: RunTracer, name: str, attrs: dict[str, Any]) -> Iterator[Span]:
    """A current span that records how the block ended: an exception (Ctrl-C and cancellation too) is its error."""
    with rt.tracer.start_as_current_span(
        name, attributes=attrs, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield span
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise


@contextmanager
def row_span(index: int, sample_id: str | None) -> Iterator[Span | None]:
    """The span of one row (inside an asyncio task, so the row's LLM calls and steps nest beneath it)."""
    rt = _current.get()
    if rt is None:
        yield None
        return
    token = _row.set(index)
    attrs: dict[str, Any] = {"llmcorr.span": "row", "llmcorr.row_index": index, "llmcorr.sample_id": sample_id or ""}
    try:
        with _span(rt, f"row {index + 1}", attrs) as span:
            yield span
    finally:
        _row.reset(token)


def _row_attrs(kind: str) -> dict[str, Any]:
    row = _row.get()
    return {"llmcorr.span": kind} | ({"llmcorr.row_index": row} if row is not None else {})


@contextmanager
def llm_span(model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> Iterator[Span | None]:
    """The span of one LLM call, with GenAI semantic-convention attributes; the caller adds the outcome."""
    rt = _current.get()
    if rt is None:
        yield None
        return
    attrs = _row_attrs("llm") | {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "gen_ai.request.max_tokens": params.get("max_tokens") or 0,
        "gen_ai.request.temperature": params.get("temperature") or 0.0,
        "gen_ai.input.messages": json.dumps(messages),
    }
    with _span(rt, f"chat {model}", attrs) as span:
        yield span


@contextmanager
def step_span(name: str, attributes: dict[str, Any] | None = None) -> Iterator[Span | None]:
    """A step of llmcorr's own inside a row (a correction round, a vote), beneath the current span."""
    rt = _current.get()
    if rt is None:
        yield None
        return
    with _span(rt, name, _row_attrs("step") | {"llmcorr.step": name} | (attributes or {})) as span:
        yield span


def _text(value: Any) -> str:
    try:
        text = json.dumps(value, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"


def trace(fn: F | None = None, *, name: str | None = None) -> Any:
    """Mark a function (sync or async) as a step of a flow: each call is a span beneath the row (or the step) that
    made it, with its arguments, result, duration and any exception. Outside a run it is a plain call.

        @llmcorr.trace
        def retrieve(query: str) -> list[str]: ...
    """

    def wrap(func: F) -> F:
        step = name or func.__qualname__
        signature = inspect.signature(func)

        def attrs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            try:
                bound = signature.bind_partial(*args, **kwargs).arguments
            except TypeError:
                bound = {"args": args, "kwargs": kwargs}
            bound = {k: v for k, v in bound.items() if k != "self"}
            return _row_attrs("step") | {"llmcorr.step": step, "llmcorr.input": _text(bound)}

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_step(*args: Any, **kwargs: Any) -> Any:
                rt = _current.get()
                if rt is None:
                    return await func(*args, **kwargs)
                with rt.tracer.start_as_current_span(step, attributes=attrs(args, kwargs)) as span:
                    result = await func(*args, **kwargs)
                    span.set_attribute("llmcorr.output", _text(result))
                    return result

            return async_step  # type: ignore[return-value]

        @functools.wraps(func)
        def sync_step(*args: Any, **kwargs: Any) -> Any:
            rt = _current.get()
            if rt is None:
                return func(*args, **kwargs)
            with rt.tracer.start_as_current_span(step, attributes=attrs(args, kwargs)) as span:
                result = func(*args, **kwargs)
                span.set_attribute("llmcorr.output", _text(result))
                return result

        return sync_step  # type: ignore[return-value]

    return wrap(fn) if fn is not None else wrap
