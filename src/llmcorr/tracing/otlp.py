"""Spans to an OpenTelemetry collector over OTLP/HTTP (`--otlp URL`), through the SDK's own exporter and batch
processor. A collector that cannot be reached (or refuses the spans) costs one warning line, not the SDK's retries
and tracebacks: the spans stay in the run store either way, and the run goes on."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from opentelemetry.trace import Status, StatusCode

from .._version import __version__

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    from .spans import Span

log = logging.getLogger("llmcorr")
# what the SDK logs an export failure under: each module's own logger, for a logger's filter sees only what is
# logged on it, not what its children's records pass up to it
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",  # the exporter and its HTTP client: retries, failures
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.sdk.trace.export",
    "opentelemetry.sdk._shared_internal",  # the batch processor: "Exception while exporting"
)
_exporting = threading.local()  # set while one of ours exports, on the SDK's export thread


class _OursOnly(logging.Filter):
    """Drops what the SDK logs while one of llmcorr's exporters exports (retries, "Failed to export"), keeping the
    first message for the one warning; anything else (a host application's own exporters) passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        seen: list[str] | None = getattr(_exporting, "messages", None)
        if seen is None:
            return True
        seen.append(record.getMessage())
        return False


_FILTER = _OursOnly()


def _reason(messages: list[str]) -> str:
    """`connection refused`, `HTTP 404`… from what the SDK said."""
    for text in messages:
        errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
        if errno:
            return errno.group(1).strip().lower()
        code = re.search(r"code: (\d{3})", text)
        if code:
            return f"HTTP {code.group(1)}"
    return messages[0] if messages else "no answer"


class QuietExporter:
    """The SDK's OTLP/HTTP exporter, failing quietly: the first failure is one warning line, and after it the
    collector is given up on (no retries and waits on each later batch, and at the end of the run). A `SpanExporter`
    by its methods (the SDK, imported only when a collector is configured, is not subclassed here)."""

    def __init__(self, inner: SpanExporter, url: str) -> None:
        parts = urlsplit(url)
        self.inner, self.url = inner, parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()  # no user:pass
        self.failed = False
        for name in {*_EXPORTER_LOGGERS, type(inner).__module__}:
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from opentelemetry.sdk.trace.export import SpanExportResult

        if self.failed:
            return SpanExportResult.FAILURE
        _exporting.messages = messages = []
        try:
            result = self.inner.export(spans)
        except Exception as exc:
            messages.append(f"{type(exc).__name__}: {exc}")
            result = SpanExportResult.FAILURE
        finally:
            _exporting.messages = None
        if result is not SpanExportResult.SUCCESS:
            self.failed = True
            log.warning(
                "could not send spans to the OTLP collector at %s (%s); they are kept in the run store "
                "(`llmcorr runs logs`), and no more are sent to it",
                self.url,
                _reason(messages),
            )
        return result

    def shutdown(self) -> None:
        _exporting.messages = []
        try:
            self.inner.shutdown()
        finally:
            _exporting.messages = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class OtlpForwarder:
    """Finished spans to an OTLP/HTTP collector, as OpenTelemetry SDK spans, batched on the SDK's export thread."""

    def __init__(self, url: str) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        endpoint = url.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        self.processor = BatchSpanProcessor(
            cast("SpanExporter", QuietExporter(OTLPSpanExporter(endpoint=endpoint, timeout=5), url))
        )
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        self.resource = Resource({"service.name": "llmcorr", "service.version": __version__})
        self.scope = InstrumentationScope("llmcorr", __version__)

    def on_end(self, span: Span, trace_id: int) -> None:
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext, TraceFlags

        flags = TraceFlags(TraceFlags.SAMPLED)
        parent = SpanContext(trace_id, span.parent_id, False, flags) if span.parent_id is not None else None
        status = Status(StatusCode.ERROR, span.error) if span.status == "error" else Status(StatusCode.UNSET)
        readable = ReadableSpan(
            name=span.name,
            context=SpanContext(trace_id, span.span_id, False, flags),
            parent=parent,
            resource=self.resource,
            attributes={k: _otel_value(v) for k, v in span.attributes.items() if v is not None},
            status=status,
            start_time=span.start_ns,
            end_time=span.end_ns,
            instrumentation_scope=self.scope,
        )
        self.processor.on_end(readable)

    def shutdown(self) -> None:
        self.processor.shutdown()  # exports what is left


def _otel_value(value: Any) -> Any:
    """An attribute value OpenTelemetry accepts: a str, bool, int, float, or a list of one of them."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, str | bool | int | float) for v in value):
        return list(value)
    return json.dumps(value, default=str)
