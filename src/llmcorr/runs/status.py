"""A run's status as people read it: the stored status, and for a run that finished with failed rows, how many
(`completed, 3 failed`). The CLI (`runs list`, `runs show`, `--json`), the dashboard and the report all show this one.

The store keeps `completed` (the run went through every row; `runs resume` retries the failed ones) and the count of
failed rows; the text is derived from both. `--status failed` finds the runs that failed and those with failed rows.
"""

from __future__ import annotations

from typing import Any

from ..store import RunRecord, Store
from . import experiments

_WITH_COUNT = ("completed", "cancelled", "interrupted")  # finished or stopped: its failed rows are part of its state


def describe(status: str, rows_failed: int) -> str:
    """`completed`, `completed, 3 failed`, `cancelled, 1 failed`, `running`, `failed`…"""
    if rows_failed and status in _WITH_COUNT:
        return f"{status}, {rows_failed} failed"
    return status


def failing(status: str, rows_failed: int) -> bool:
    """The run failed, or finished (or stopped) with failed rows: what `--status failed` lists."""
    return status == "failed" or (status in _WITH_COUNT and rows_failed > 0)


def status_text(record: RunRecord) -> str:
    return describe(record.status, record.rows_failed)


def has_failures(record: RunRecord) -> bool:
    return failing(record.status, record.rows_failed)


def list_runs(store: Store, *, status: str | None = None, limit: int = 50, **filters: Any) -> list[RunRecord]:
    """`experiments.list_runs`, where `status="failed"` also lists the runs with failed rows."""
    if status != "failed":
        return experiments.list_runs(store, status=status, limit=limit, **filters)
    records = [r for r in experiments.list_runs(store, limit=0, **filters) if has_failures(r)]
    return records[:limit] if limit else records
