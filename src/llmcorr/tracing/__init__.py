"""Tracing: every run, row, flow step and LLM call is an OpenTelemetry span, stored in the run store and optionally
exported over OTLP/HTTP (Phoenix, Jaeger, Langfuse…).

    run (kind)                         one per execution of a run (a resume adds another)
      └ row N                          one per row: status, tokens
          └ step NAME                  a function marked with @llmcorr.trace (nested as they call each other)
              └ chat MODEL             one per LLM call: GenAI attributes — model, tokens, latency, endpoint,
                                       cache hit, attempts, 429s, the messages and the answer

Each run gets its own TracerProvider (nothing global is touched, so a host application's own OpenTelemetry setup is
left alone); the current one travels in a context variable, through asyncio tasks and `asyncio.to_thread`. Like the
store, this package is a sink: it calls nothing upward.
"""

from .spans import (
    RunTracer,
    current_tracer,
    flush_spans,
    llm_span,
    row_span,
    run_tracing,
    step_span,
    trace,
)

__all__ = ["RunTracer", "current_tracer", "flush_spans", "llm_span", "row_span", "run_tracing", "step_span", "trace"]
