"""A flow's `log_metric(key, value)` calls, collected into the run's metrics.

with collecting() as metrics:     # around a DAG flow's aggregation nodes, or a flex flow's aggregate
    log_metric("accuracy", 0.9)
metrics == {"accuracy": 0.9}
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("llmcorr")
_current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("llmcorr_metrics", default=None)


@contextmanager
def collecting() -> Iterator[dict[str, Any]]:
    """The metrics logged within this block (a nested block collects its own)."""
    metrics: dict[str, Any] = {}
    token = _current.set(metrics)
    try:
        yield metrics
    finally:
        _current.reset(token)


def log_metric(key: str, value: Any, variant_id: str | None = None) -> None:
    """Record a metric of the run (outside a run: nothing, as in Prompt flow)."""
    metrics = _current.get()
    if metrics is None:
        log.debug("log_metric(%r) outside a run: not recorded", key)
        return
    metrics[f"{key}.{variant_id}" if variant_id else key] = float(value)
