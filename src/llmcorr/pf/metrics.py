"""Prompt flow's `log_metric(key, value)`: a flow's metric, recorded into its run's metrics.

    with collecting() as metrics:      # the run (or its aggregate) around the flow's code
        log_metric("accuracy", 0.9)    # anywhere beneath it: its tasks and the threads they start
    metrics == {"accuracy": 0.9}

Each `collecting()` block collects on its own: a block inside another gets the calls made inside it, the outer one
does not see them. Outside any block (a flow's code called as plain Python) a call is a no-op, as Prompt flow's is
outside a run, with a debug line. Prompt flow 1.18.5 drops `variant_id` (the one logger it registers takes only
key and value), so the key is `key` whatever the variant; a later value of a key replaces an earlier one.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("llmcorr")

_collector: contextvars.ContextVar[_Collector | None] = contextvars.ContextVar("llmcorr_pf_metrics", default=None)


class _Collector:
    """One block's metrics; rows running in threads log into it at once."""

    def __init__(self) -> None:
        self.metrics: dict[str, Any] = {}
        self.lock = threading.Lock()


@contextmanager
def collecting() -> Iterator[dict[str, Any]]:
    """Collect the `log_metric` calls made within this block (its tasks and threads included) into the dict it
    gives; the dict keeps them after the block ends."""
    collector = _Collector()
    token = _collector.set(collector)
    try:
        yield collector.metrics
    finally:
        _collector.reset(token)


def log_metric(key: str, value: Any, variant_id: str | None = None) -> None:
    """Record metric `key` for the current run (Prompt flow's `promptflow.log_metric`). `variant_id` is accepted
    and, as in Prompt flow 1.18.5, not part of the key. Any value is kept (made JSON-able with the run's metrics),
    as Prompt flow's local runs keep it."""
    collector = _collector.get()
    if collector is None:
        log.debug("log_metric(%r) outside a run: not recorded", key)
        return
    with collector.lock:
        collector.metrics[str(key)] = value
