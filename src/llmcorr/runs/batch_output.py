"""A prompt or flow run's output: each row's input columns joined with its outputs, streamed to the output file as
rows finish and rewritten in input order when the run ends; the flow's aggregate metrics; the `RunResult`."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..data import RowWriter
from ..pf.flex import line_result
from ..pf.metrics import collecting
from ..store import RowRecord, RunRecord, Store
from ..tracing import step_span
from .flow_errors import describe_error
from .flows import AGGREGATION_VALUES, jsonable

if TYPE_CHECKING:
    from .batch_plan import BatchPlan

log = logging.getLogger("llmcorr")


@dataclass
class RunResult:
    """The outcome of `llmcorr.run`: the run's id, its row count, the flow's metrics, tokens; `table` (the input rows
    joined with their outputs) is read from the store when first asked for."""

    run_id: str
    rows: int
    metrics: dict[str, Any] | None
    input_tokens: int
    output_tokens: int
    wall_s: float
    reused: int = 0  # rows taken from another run (`resume_from`), no token spent
    _load: Callable[[], pd.DataFrame] | None = field(default=None, repr=False)
    _table: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def table(self) -> pd.DataFrame:
        if self._table is None:
            assert self._load is not None
            self._table = self._load()
        return self._table


async def _aggregate(aggregate: Callable[[list[Any]], Any], lines: list[Any]) -> Any:
    """Call a flow's aggregate inside the run, as its rows are called: an async one on the run's loop, a sync one in a
    worker thread carrying this context (so `llmcorr.chat` and `log_metric` work in either)."""
    if inspect.iscoroutinefunction(aggregate):
        return await aggregate(lines)
    return await asyncio.to_thread(aggregate, lines)


def by_index(rows: Iterator[RowRecord]) -> Callable[[int], RowRecord | None]:
    """Look up rows (read in index order) by ascending index, reading each once."""
    pending = next(rows, None)

    def at(i: int) -> RowRecord | None:
        nonlocal pending
        while pending is not None and pending.row_index < i:
            pending = next(rows, None)
        return pending if pending is not None and pending.row_index == i else None

    return at


def _record(columns: list[str], cells: Mapping[str, Any], row: RowRecord | None) -> dict[str, Any]:
    """A row of the output: its input columns, then its outputs (`output.KEY` where a name is taken), error, tokens."""
    out = {c: jsonable(cells.get(c)) for c in columns}
    for key, value in ((row.output if row is not None else None) or {}).items():
        if key != AGGREGATION_VALUES:
            out[key if key not in out else f"output.{key}"] = value
    out["error"] = row.error if row is not None else "not processed"
    out["tokens"] = (row.input_tokens or 0) + (row.output_tokens or 0) if row is not None else 0
    return out


OUTPUT_COLUMNS = "output_json, error, input_tokens, output_tokens"  # what `_record` reads of a stored row


def records(plan: BatchPlan, store: Store, run_id: str, only_stored: bool = False) -> Iterator[dict[str, Any]]:
    """The output's rows in input order, read from the table and the store together (nothing held in memory);
    `only_stored`: just the rows the store has, with their `row` index."""
    at = by_index(store.iter_rows(run_id, OUTPUT_COLUMNS))
    for i, cells in enumerate(plan.cells()):
        row = at(i)
        if row is not None or not only_stored:
            yield {"row": i, **_record(plan.columns, cells, row)} if only_stored else _record(plan.columns, cells, row)


class BatchOutput:
    """The `RunOutput` of a prompt or flow run (kinds.py)."""

    def __init__(self, plan: BatchPlan, store: Store, run_id: str, path: str | Path | None, reused: int) -> None:
        self.plan, self.store, self.run_id, self.reused = plan, store, run_id, reused
        self.writer = RowWriter(path)

    def columns(self) -> list[str]:
        """The inputs, every output key the run's rows have (in order of appearance), error, tokens."""
        keys: dict[str, None] = {}
        for row in self.store.iter_rows(self.run_id, "output_json"):
            keys.update(dict.fromkeys(row.output or {}))
        keys.pop(AGGREGATION_VALUES, None)
        inputs = set(self.plan.columns)
        return [*self.plan.columns, *(k if k not in inputs else f"output.{k}" for k in keys), "error", "tokens"]

    def open(self) -> None:
        for record in records(self.plan, self.store, self.run_id, only_stored=True):
            self.writer.write(record.pop("row"), record)
        self.writer.flush()  # every kept row in the file before the first new one

    def row(self, row: RowRecord) -> None:
        cells = self.plan.in_flight.pop(row.row_index, {})
        self.writer.write(row.row_index, _record(self.plan.columns, cells, row))

    def kept(self) -> None:
        """The file holds every row the store holds, in input order with its `row` number, whatever part of the
        streamed lines had reached the file. A store that can no longer be read leaves the file as it was."""
        try:
            columns = ["row", *self.columns()]
            kept = records(self.plan, self.store, self.run_id, only_stored=True)
            self.writer.finish_rows(({**r, "row": r["row"] + 1} for r in kept), columns)
        except Exception as exc:  # never hide the error that ended the run
            log.warning("could not rewrite %s with the run's kept rows: %s", self.writer.path, exc)

    async def finish(self) -> tuple[dict[str, Any] | None, Callable[[], object]]:
        self._columns = self.columns()
        rows = records(self.plan, self.store, self.run_id)
        flow = self.plan.flow
        if flow is not None and flow.aggregate_rows is not None:
            metrics = await flow.aggregate_rows(
                list(self.store.iter_rows(self.run_id, "status, inputs_json, output_json"))
            )
        else:
            metrics = await self._metrics()
        return metrics, functools.partial(self.writer.finish_rows, rows, self._columns)

    async def _metrics(self) -> dict[str, Any] | None:
        """The flow's metrics: its aggregate over every row's outputs (in input order; {} for a row without one) —
        Prompt flow's `__aggregate__` gets the finished rows' outputs as pf hands them (pf/flex.py `line_result`) —
        merged over the `log_metric` calls made while the rows ran and during the aggregate (the aggregate's own
        dict wins a clash). None when there are none."""
        flow = self.plan.flow
        if flow is None:
            return None
        metrics: dict[str, Any] = dict(flow.logged)
        if flow.aggregate is not None:
            at = by_index(self.store.iter_rows(self.run_id, "status, output_json"))
            rows = [at(i) for i in range(self.plan.rows)]
            if flow.pf_aggregate:
                lines: list[Any] = [line_result(r.output or {}) for r in rows if r is not None and r.status != "error"]
            else:
                lines = [(r.output or {}) if r is not None else {} for r in rows]
            value = None
            with collecting() as logged:
                try:
                    with step_span("aggregate"):  # a step of the run: `runs logs` shows it, its failure too
                        value = jsonable(await _aggregate(flow.aggregate, lines))
                except Exception as err:  # the rows stand: the run completes with the metrics logged so far, as pf's
                    log.warning("%s: the aggregate failed: %s", flow.ref, describe_error(err, flow))
            metrics.update(logged)
            metrics.update(value if isinstance(value, dict) else ({"value": value} if value is not None else {}))
        return jsonable(metrics) or None

    def result(self, record: RunRecord, wall_s: float) -> RunResult:
        plan, run_id, columns = self.plan, self.run_id, self._columns

        def load() -> pd.DataFrame:
            with Store(plan.config.store_path) as again:
                return pd.DataFrame.from_records(list(records(plan, again, run_id)), columns=columns)

        tokens = record.input_tokens, record.output_tokens
        return RunResult(run_id, plan.rows, record.metrics, *tokens, wall_s, self.reused, _load=load)
