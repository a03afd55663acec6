"""Experiment management over the run store: the operations `llmcorr runs …`, the dashboard and the Python API share.

Each function takes an open `Store` first (the CLI and the dashboard pass theirs). In Python, `llmcorr.experiments`
does the same on the default store (`$LLMCORR_HOME/llmcorr.db`), one method per `llmcorr runs` command:

>>> import llmcorr
>>> llmcorr.experiments.list_runs(tag="baseline", sort="tokens")       # `llmcorr runs list --tag baseline …`
>>> llmcorr.experiments.tag_run("try1", add=["baseline"])               # `llmcorr runs tag try1 baseline`
>>> llmcorr.experiments.compare_runs(["try1", "try2"])                  # a DataFrame: one column per run
>>> llmcorr.experiments.run_logs("try1", row=3)                         # row 3's spans (rows count from 1)

`llmcorr.Experiments(path)` does the same on another store file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import Config
from ..errors import NotFoundError, UserError
from ..store import RunRecord, Store
from ..store.runs import STATUSES
from .summary import WallTime, cost, endpoint_usage, seconds, wall_time, wall_time_s

FOLLOW_POLL_S = 0.5  # how often `follow_logs` looks for new spans


def list_runs(
    store: Store,
    *,
    limit: int | None = None,
    status: str | None = None,
    tag: str | None = None,
    name: str | None = None,
    archived: bool | None = False,
    sort: str = "created",
    descending: bool = True,
) -> list[RunRecord]:
    """Runs, newest first by default. `name` matches part of a name (or the start of an id); `archived`: False hides
    archived runs, True lists only them, None lists both; `sort`: created, name, status, tokens, rows or kind."""
    if status is not None and status not in STATUSES:
        raise UserError(f"--status: expected one of {', '.join(STATUSES)}, got {status!r}")
    return store.list_runs(limit, status, tag=tag, name=name, archived=archived, sort=sort, descending=descending)


def get_run(store: Store, ref: str) -> RunRecord:
    """A run by id, name or unique id prefix."""
    return store.get_run(ref)


def rename_run(store: Store, ref: str, new_name: str) -> RunRecord:
    """Give a run a new (unique) name; returns the renamed run."""
    record = store.get_run(ref)
    new_name = new_name.strip()
    try:
        other: RunRecord | None = store.get_run(new_name)
    except NotFoundError:
        other = None
    if other is not None and other.id == new_name != record.id:  # `runs show NAME` would find the other run
        raise UserError(f"{new_name!r} is another run's id; choose another name")
    store.rename_run(record.id, new_name)
    return store.get_run(record.id)


def tag_run(store: Store, ref: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> list[str]:
    """Add and remove tags; returns the run's tags, sorted. Removing a tag the run does not have is an error."""
    record = store.get_run(ref)
    add, remove = list(add), list(remove)
    if not add and not remove:
        raise UserError("no tag given: name a tag to add or one to remove")
    missing = [t for t in remove if t not in record.tags]
    if missing:
        has = ", ".join(record.tags) if record.tags else "none"
        raise UserError(f"run {record.label} has no tag {missing[0]!r} (its tags: {has})")
    return store.tag_run(record.id, add, remove)


def archive_run(store: Store, ref: str) -> RunRecord:
    """Hide a run from `list_runs` (and `llmcorr runs list`) without deleting anything."""
    record = store.get_run(ref)
    store.set_archived(record.id, True)
    return store.get_run(record.id)


def restore_run(store: Store, ref: str) -> RunRecord:
    """Bring an archived run back into the runs list."""
    record = store.get_run(ref)
    store.set_archived(record.id, False)
    return store.get_run(record.id)


def output_to_delete(store: Store, record: RunRecord) -> Path | None:
    """The output file that deleting `record` removes: its own, if it is still there and no other run wrote it."""
    if not record.output_path:
        return None
    path = Path(record.output_path)
    if not path.is_file() or set(store.runs_with_output(path)) - {record.id}:
        return None
    return path


def prepare_delete(store: Store, ref: str) -> tuple[RunRecord, Path | None]:
    """The run `delete_run` would delete and the output file it would remove (to ask first); a running run must be
    cancelled first."""
    record = store.get_run(ref)
    if record.status == "running":
        raise UserError(f"run {record.label} is running; cancel it first (`llmcorr runs cancel {record.label}`)")
    return record, output_to_delete(store, record)


def delete_run(store: Store, ref: str) -> RunRecord:
    """Delete a run with its rows and spans, and the output file it wrote (when it is still there and no other run
    wrote the same file). A running run must be cancelled first."""
    record, output = prepare_delete(store, ref)
    store.delete_run(record.id)
    if output is not None:
        output.unlink(missing_ok=True)
    return record


# -- compare ----------------------------------------------------------------------------------------------------


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(inner, f"{prefix}.{key}" if prefix else str(key), out)
    elif value is None or isinstance(value, bool | int | float | str):
        out[prefix] = value
    else:
        out[prefix] = json.dumps(value, default=str)


def metric_values(metrics: dict[str, Any] | None) -> dict[str, Any]:
    """A run's metrics as flat rows: a correct run's `base`/`corrected` pairs side by side ("accuracy base",
    "accuracy corrected"; a multiclass run's recall of each class too), then its flips; any other dict (a flow's
    `aggregate`) flattened with dots."""
    out: dict[str, Any] = {}
    metrics = dict(metrics or {})
    base, corrected = metrics.pop("base", None), metrics.pop("corrected", None)
    intervals = metrics.pop("ci95", None) or {}
    if isinstance(base, dict) and isinstance(corrected, dict):
        for key in dict.fromkeys([*base, *corrected]):
            out[f"{key} base"] = base.get(key)
            out[f"{key} corrected"] = corrected.get(key)
            ci = intervals.get("delta", {}).get(key)
            if ci:
                out[f"{key} change, 95% CI"] = f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"
    elif base is not None or corrected is not None:
        metrics |= {"base": base, "corrected": corrected}
    if isinstance(metrics.get("confusion"), dict) and isinstance(metrics.get("per_class"), list):  # multiclass
        del metrics["confusion"]  # the matrices: its report and run page show them
        for c in metrics.pop("per_class"):  # each class's recall
            out |= {f"recall {c.get('name')} {side}": c.get(side) for side in ("base", "corrected")}
            ci = (c.get("ci95") or {}).get("delta")
            if ci:
                out[f"recall {c.get('name')} change, 95% CI"] = f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"
    calibration = metrics.pop("calibration", None)
    if isinstance(calibration, dict):  # the scores, not the reliability curves
        for side, values in calibration.items():
            out |= {f"calibration {side} {k}": v for k, v in values.items() if k != "curve"}
    _flatten(metrics, "", out)
    return out


def compare_runs(store: Store, refs: Iterable[str]) -> pd.DataFrame:
    """Runs side by side: one column per run (its name, or id), one row per metric — kind and status, the metrics
    (`metric_values`), then rows, failed rows, tokens, wall time (busy; and first to last, when any run was resumed
    after a pause: `wall_time`), 429s and cost (when any run has a price)."""
    records: list[RunRecord] = []
    for ref in refs:
        record = store.get_run(ref)
        if record.id not in {r.id for r in records}:
            records.append(record)
    if len(records) < 2:
        raise UserError("compare needs at least two different runs")
    columns: dict[str, dict[str, Any]] = {}
    for r in records:
        wall = wall_time(r)
        column: dict[str, Any] = {"kind": r.kind, "status": r.status}
        column |= metric_values(r.metrics)
        column |= {
            "rows": r.rows_done,
            "rows failed": r.rows_failed,
            "tokens": r.input_tokens + r.output_tokens,
            "input tokens": r.input_tokens,
            "output tokens": r.output_tokens,
            "wall time (s)": wall.busy_s,
            "first to last (s)": wall.span_s,
            "429s": r.rate_limited,
            "cost ($)": cost(r),
        }
        columns[r.label if r.label not in columns else r.id] = column
    order = list(dict.fromkeys(k for column in columns.values() for k in column))
    if all(column["cost ($)"] is None for column in columns.values()):
        order.remove("cost ($)")
    if not any(wall_time(r).paused for r in records):  # the span says something only where a run was resumed
        order.remove("first to last (s)")
    # metrics in the order the runs give them, after kind and status and before the resource rows
    tail = ["rows", "rows failed", "tokens", "input tokens", "output tokens", "wall time (s)", "first to last (s)"]
    tail += ["429s", "cost ($)"]
    order = [k for k in order if k not in tail] + [k for k in tail if k in order]
    frame = pd.DataFrame({label: [column.get(k) for k in order] for label, column in columns.items()}, index=order)
    frame.index.name = "metric"
    return frame


# -- logs -------------------------------------------------------------------------------------------------------


def _row_index(record: RunRecord, row: int | None) -> int | None:
    """A 1-based row number (as users count rows, and as spans name them: "row 3") → the stored 0-based index."""
    if row is None:
        return None
    if not 1 <= row <= max(record.rows_total, 1):
        raise UserError(f"--row {row}: run {record.label} has rows 1 to {record.rows_total}")
    return row - 1


def run_logs(store: Store, ref: str, row: int | None = None) -> list[dict[str, Any]]:
    """A run's spans (or row `row`'s, counting from 1) in time order: dicts with span_id, trace_id, parent_id,
    run_id, row_index (from 0), kind (run | row | step | llm), name, start_ns, end_ns, status, error, attributes."""
    record = store.get_run(ref)
    return store.spans(record.id, row_index=_row_index(record, row))


def follow_logs(
    store: Store, ref: str, row: int | None = None, poll_s: float = FOLLOW_POLL_S
) -> Iterator[list[dict[str, Any]]]:
    """Batches of spans as they reach the store — first every span so far — until the run is no longer running
    (its last spans are written before its status changes, so the last batch holds them)."""
    record = store.get_run(ref)
    index = _row_index(record, row)
    cursor = 0
    while True:
        store.recover_interrupted()  # a run whose process was killed stops "running" here too
        running = store.get_run(record.id).status == "running"
        spans, cursor = store.spans_written_after(record.id, cursor, index)
        if spans:
            yield spans
        if not running:
            return
        time.sleep(poll_s)


# -- the Python API ---------------------------------------------------------------------------------------------


class Experiments:
    """`llmcorr runs …` in Python: `llmcorr.experiments` works on the default store (`$LLMCORR_HOME/llmcorr.db`,
    looked up at each call); `Experiments(path)` on another store file, `Experiments(store)` on an open Store."""

    def __init__(self, store: Store | str | Path | None = None) -> None:
        self._store = store

    def __repr__(self) -> str:
        where = self._store.path if isinstance(self._store, Store) else self._store
        return f"Experiments({str(where) if where is not None else 'the default store: $LLMCORR_HOME/llmcorr.db'})"

    @contextmanager
    def _opened(self) -> Iterator[Store]:
        if isinstance(self._store, Store):
            yield self._store
            return
        with Store(self._store if self._store is not None else Config.load().store_path) as store:
            yield store

    def list_runs(
        self,
        *,
        limit: int | None = None,
        status: str | None = None,
        tag: str | None = None,
        name: str | None = None,
        archived: bool | None = False,
        sort: str = "created",
        descending: bool = True,
    ) -> list[RunRecord]:
        """Runs, newest first; `archived=None` lists archived runs too. See `llmcorr runs list --help`."""
        with self._opened() as store:
            return list_runs(
                store,
                limit=limit,
                status=status,
                tag=tag,
                name=name,
                archived=archived,
                sort=sort,
                descending=descending,
            )

    def get_run(self, ref: str) -> RunRecord:
        """A run by id, name or unique id prefix."""
        with self._opened() as store:
            return get_run(store, ref)

    def rename_run(self, ref: str, new_name: str) -> RunRecord:
        """Give a run a new, unique name."""
        with self._opened() as store:
            return rename_run(store, ref, new_name)

    def tag_run(self, ref: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> list[str]:
        """Add and remove tags; returns the run's tags."""
        with self._opened() as store:
            return tag_run(store, ref, add, remove)

    def archive_run(self, ref: str) -> RunRecord:
        """Hide a run from the runs list (nothing is deleted)."""
        with self._opened() as store:
            return archive_run(store, ref)

    def restore_run(self, ref: str) -> RunRecord:
        """Bring an archived run back into the runs list."""
        with self._opened() as store:
            return restore_run(store, ref)

    def delete_run(self, ref: str) -> RunRecord:
        """Delete a run, its rows and spans, and its output file."""
        with self._opened() as store:
            return delete_run(store, ref)

    def compare_runs(self, refs: Iterable[str]) -> pd.DataFrame:
        """Runs side by side: one column per run, one row per metric."""
        with self._opened() as store:
            return compare_runs(store, refs)

    def run_logs(self, ref: str, row: int | None = None) -> list[dict[str, Any]]:
        """A run's spans (or one row's, counting from 1), in time order."""
        with self._opened() as store:
            return run_logs(store, ref, row)

    def follow_logs(self, ref: str, row: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """Batches of new spans, about every half second, until the run stops running."""
        with self._opened() as store:
            yield from follow_logs(store, ref, row)


experiments = Experiments()

__all__ = [
    "Experiments",
    "WallTime",
    "archive_run",
    "compare_runs",
    "cost",
    "delete_run",
    "endpoint_usage",
    "experiments",
    "follow_logs",
    "get_run",
    "list_runs",
    "output_to_delete",
    "prepare_delete",
    "rename_run",
    "restore_run",
    "run_logs",
    "seconds",
    "tag_run",
    "wall_time",
    "wall_time_s",
]
