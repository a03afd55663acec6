"""The spans of a run: a light tracer that records OpenTelemetry-shaped spans (ids, parent, times, status,
attributes) into the store, the helpers the engine (`row_span`), the LLM client (`llm_span`) and user code
(`@llmcorr.trace`) open spans with, and — when a collector is configured — OTLP/HTTP export through the
OpenTelemetry SDK's own exporter.

Why not the SDK's TracerProvider for every span: a row's two spans cost ~0.3 ms of CPU through it (attribute
validation, sampling, context objects), a third of what a whole row may cost at 1,000 rows/s. The spans here are
plain objects; they become SDK `ReadableSpan`s only on their way to a collector, and only then is the
OpenTelemetry context set, so that a flow's own OpenTelemetry spans nest beneath llmcorr's in that collector.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from opentelemetry.trace import Status, StatusCode

from ..keys import scrub
from ..store import Store
from .otlp import OtlpForwarder

F = TypeVar("F", bound=Callable[..., Any])
MAX_TEXT = 4000  # characters of a step's arguments / result kept on its span
FLUSH_SPANS = 2048  # a row's end writes the buffer out once it holds this many spans (else the engine's commit does)
_ATTRIBUTES_JSON = json.JSONEncoder(default=str).encode  # one encoder for every span, not one made for each
_TEXT_JSON = json.JSONEncoder(default=repr).encode


class Span:
    """One span: what OpenTelemetry records, in plain attributes. `set_attribute(s)`, `set_status` and `end` are the
    OpenTelemetry `Span` methods of the same names."""

    __slots__ = ("_tracer", "attributes", "end_ns", "error", "name", "parent_id", "span_id", "start_ns", "status")

    def __init__(
        self, tracer: Tracer, name: str, attributes: dict[str, Any], parent_id: int | None, start_ns: int
    ) -> None:
        self._tracer = tracer
        self.name = name
        self.attributes = attributes
        self.parent_id = parent_id
        self.span_id = next(tracer.span_ids)
        self.start_ns = start_ns
        self.end_ns = 0
        self.status = "ok"
        self.error: str | None = None

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        self.attributes.update(attributes)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        code = status.status_code if isinstance(status, Status) else status
        if code is StatusCode.ERROR:
            self.status = "error"
            self.error = status.description if isinstance(status, Status) else description
        elif code is StatusCode.OK:
            self.status, self.error = "ok", None

    def is_recording(self) -> bool:
        return self.end_ns == 0

    def end(self, end_time: int | None = None) -> None:
        if self.end_ns:
            return
        self.end_ns = end_time or time.time_ns()
        self._tracer.finished(self)


class StoreSpanProcessor:
    """Buffers finished spans; writes them to the store with the engine's row commits (`flush_spans`), when the
    buffer grows large, and when the run ends — always on the thread that commits rows, so the store's connection
    is never used from two threads at once."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self._buffer: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self._owner = threading.get_ident()

    def on_end(self, span: Span, trace_id: int) -> None:
        attrs = span.attributes
        record = (
            f"{span.span_id:016x}",
            f"{trace_id:032x}",
            f"{span.parent_id:016x}" if span.parent_id is not None else None,
            self.run_id,
            attrs.get("llmcorr.row_index"),
            str(attrs.get("llmcorr.span", "step")),
            span.name,
            span.start_ns,
            span.end_ns,
            span.status,
            scrub(span.error) if span.error else span.error,  # values read via --allow-env, as keys are
            scrub(_ATTRIBUTES_JSON(attrs)),
        )
        with self._lock:
            self._buffer.append(record)
        kind = attrs.get("llmcorr.span")
        if (kind == "run" or (kind == "row" and len(self._buffer) >= FLUSH_SPANS)) and (
            threading.get_ident() == self._owner
        ):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._buffer = self._buffer, []
        if pending:
            self.store.add_spans(pending)


class Tracer:
    """A run's tracer: one trace per execution of the run; `start_span` and `start_as_current_span` as in
    OpenTelemetry (the current span travels in a context variable, through asyncio tasks and `asyncio.to_thread`)."""

    def __init__(self, processor: StoreSpanProcessor, otlp: OtlpForwarder | None = None) -> None:
        self.trace_id = random.getrandbits(128) or 1
        # A trace's span ids count up from a random start: unique in the trace (the store's key is trace and span),
        # and each span's row lands at the end of the key's index, not at a random page of it (half a span's cost)
        self.span_ids = itertools.count(random.getrandbits(62) + 1)
        self.processor = processor
        self.otlp = otlp

    def start_span(self, name: str, attributes: dict[str, Any] | None = None, start_time: int | None = None) -> Span:
        parent = _current_span.get()
        return Span(
            self, name, dict(attributes or {}), parent.span_id if parent else None, start_time or time.time_ns()
        )

    @contextmanager
    def start_as_current_span(self, name: str, attributes: dict[str, Any] | None = None) -> Iterator[Span]:
        """A span that is the parent of the spans opened inside the block; an exception (Ctrl-C and cancellation
        too) is its error."""
        span = self.start_span(name, attributes)
        token = _current_span.set(span)
        otel = self._attach_otel(span) if self.otlp is not None else None
        try:
            yield span
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            if otel is not None:
                from opentelemetry import context

                context.detach(otel)
            _current_span.reset(token)
            span.end()

    def _attach_otel(self, span: Span) -> Any:
        from opentelemetry import context, trace
        from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

        ctx = SpanContext(self.trace_id, span.span_id, False, TraceFlags(TraceFlags.SAMPLED))
        return context.attach(trace.set_span_in_context(NonRecordingSpan(ctx)))

    def finished(self, span: Span) -> None:
        self.processor.on_end(span, self.trace_id)
        if self.otlp is not None:
            self.otlp.on_end(span, self.trace_id)


class RunTracer:
    """The tracing of one execution of a run: its tracer and the processor that stores its spans."""

    def __init__(self, run_id: str, tracer: Tracer) -> None:
        self.run_id = run_id
        self.tracer = tracer
        self.processor = tracer.processor


_current: contextvars.ContextVar[RunTracer | None] = contextvars.ContextVar("llmcorr_tracer", default=None)
_current_span: contextvars.ContextVar[Span | None] = contextvars.ContextVar("llmcorr_span", default=None)
_row: contextvars.ContextVar[int | None] = contextvars.ContextVar("llmcorr_trace_row", default=None)


def current_tracer() -> RunTracer | None:
    return _current.get()


def flush_spans() -> None:
    """Write the current run's finished spans to the store (the engine calls it when it commits rows)."""
    rt = _current.get()
    if rt is not None and threading.get_ident() == rt.processor._owner:
        rt.processor.flush()


@contextmanager
def run_tracing(
    store: Store, run_id: str, kind: str, *, enabled: bool = True, otlp: str | None = None
) -> Iterator[RunTracer | None]:
    """Trace one execution of a run: its root span, and everything opened inside this block beneath it."""
    if not enabled:
        yield None
        return
    forwarder = OtlpForwarder(otlp) if otlp else None
    rt = RunTracer(run_id, Tracer(StoreSpanProcessor(store, run_id), forwarder))
    token = _current.set(rt)
    outer = _current_span.set(None)  # the run's span is a root, whatever encloses this block
    try:
        attrs = {"llmcorr.span": "run", "llmcorr.run_id": run_id, "llmcorr.run_kind": kind}
        with rt.tracer.start_as_current_span(f"run {kind}", attrs):
            yield rt
    finally:
        _current_span.reset(outer)
        _current.reset(token)
        rt.processor.flush()
        if forwarder is not None:
            forwarder.shutdown()


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
        with rt.tracer.start_as_current_span(f"row {index + 1}", attrs) as span:
            yield span
    finally:
        _row.reset(token)


def _row_attrs(kind: str) -> dict[str, Any]:
    row = _row.get()
    return {"llmcorr.span": kind} if row is None else {"llmcorr.span": kind, "llmcorr.row_index": row}


@contextmanager
def llm_span(model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> Iterator[Span | None]:
    """The span of one LLM call, with GenAI semantic-convention attributes; the caller adds the outcome."""
    rt = _current.get()
    if rt is None:
        yield None
        return
    attrs = _row_attrs("llm")
    attrs["gen_ai.operation.name"] = "chat"
    attrs["gen_ai.request.model"] = model
    attrs["gen_ai.request.max_tokens"] = params.get("max_tokens") or 0
    attrs["gen_ai.request.temperature"] = params.get("temperature") or 0.0
    attrs["gen_ai.input.messages"] = json.dumps(messages)
    with rt.tracer.start_as_current_span(f"chat {model}", attrs) as span:
        yield span


@contextmanager
def step_span(name: str, attributes: dict[str, Any] | None = None) -> Iterator[Span | None]:
    """A step of llmcorr's own inside a row (a correction round, a vote), beneath the current span."""
    rt = _current.get()
    if rt is None:
        yield None
        return
    with rt.tracer.start_as_current_span(name, _row_attrs("step") | {"llmcorr.step": name} | (attributes or {})) as s:
        yield s


def text_attribute(value: Any) -> str:
    """A step's arguments or result as a span attribute: JSON (repr for what is not), at most MAX_TEXT characters."""
    try:
        text = _TEXT_JSON(value)
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
            return _row_attrs("step") | {"llmcorr.step": step, "llmcorr.input": text_attribute(bound)}

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_step(*args: Any, **kwargs: Any) -> Any:
                rt = _current.get()
                if rt is None:
                    return await func(*args, **kwargs)
                with rt.tracer.start_as_current_span(step, attrs(args, kwargs)) as span:
                    result = await func(*args, **kwargs)
                    span.set_attribute("llmcorr.output", text_attribute(result))
                    return result

            return async_step  # type: ignore[return-value]

        @functools.wraps(func)
        def sync_step(*args: Any, **kwargs: Any) -> Any:
            rt = _current.get()
            if rt is None:
                return func(*args, **kwargs)
            with rt.tracer.start_as_current_span(step, attrs(args, kwargs)) as span:
                result = func(*args, **kwargs)
                span.set_attribute("llmcorr.output", text_attribute(result))
                return result

        return sync_step  # type: ignore[return-value]

    return wrap(fn) if fn is not None else wrap
