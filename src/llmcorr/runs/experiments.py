"""Experiment management over the run store: the operations `llmcorr runs …`, the dashboard and the Python API share."""

from __future__ import annotations

from pathlib import Path

from ..store import RunRecord, Store


def delete_run(store: Store, ref: str) -> RunRecord:
    """Delete a run with its rows and spans, and the output file it wrote (when it is still there)."""
    record = store.get_run(ref)
    store.delete_run(record.id)
    if record.output_path:
        Path(record.output_path).unlink(missing_ok=True)
    return record
