"""`promptflow.tracing` as llmcorr supplies it: `trace` is llmcorr's (a span beneath the row that called it),
`start_trace` does nothing (a run is traced already; `--otlp` sends its spans on), and `ThreadPoolExecutorWithContext`
runs each task in the context of the thread that submitted it, so its spans and LLM calls count for that row."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ...tracing import trace

log = logging.getLogger("llmcorr")


def start_trace(
    *, resource_attributes: dict[str, Any] | None = None, collection: str | None = None, **kwargs: Any
) -> None:
    """Prompt flow's `start_trace`: nothing to start, llmcorr traces every run (see `llmcorr runs show`, `--otlp`)."""
    log.debug("start_trace(): llmcorr traces every run already; nothing to start")


class ThreadPoolExecutorWithContext(ThreadPoolExecutor):
    """A thread pool whose tasks run in a copy of the submitting thread's context."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        context = contextvars.copy_context()
        return super().submit(context.run, fn, *args, **kwargs)


__all__ = ["ThreadPoolExecutorWithContext", "start_trace", "trace"]
