"""A correct run's output (kinds.py `RunOutput`): nothing is streamed; when the run ends, the test rows joined with
their corrections, the gate chosen on the validation rows applied, and the metrics (correction_table.py)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..correct import CorrectionMetrics
from ..data import write_table
from ..store import RowRecord, RunRecord, Store
from .correction_table import gated, keep_integers, result_table

if TYPE_CHECKING:
    from .correction import CorrectionPlan


@dataclass
class CorrectionResult:
    """The outcome of `llmcorr.correct`: the corrected test rows, metrics before/after, and the run's id."""

    run_id: str
    name: str | None
    problem: str
    table: pd.DataFrame
    metrics: CorrectionMetrics  # `metrics["corrected"]["accuracy"]` reads it as a dict too
    input_tokens: int
    output_tokens: int
    wall_s: float

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class CorrectionOutput:
    def __init__(self, plan: CorrectionPlan, store: Store, run_id: str, path: str | Path | None) -> None:
        self.plan, self.store, self.run_id, self.path = plan, store, run_id, path
        self.table: pd.DataFrame | None = None
        self.metrics: dict[str, Any] = {}

    def open(self) -> None:
        pass  # the table is written when the run ends

    def row(self, row: RowRecord) -> None:
        pass

    def _test_table(self, rows: list[RowRecord]) -> pd.DataFrame:
        return result_table(self.plan.test, rows, self.plan.table.problem)

    def kept(self) -> None:
        """The output shows every row the store keeps (the rest unprocessed)."""
        if self.path is None:
            return
        with contextlib.suppress(Exception):  # never hide the error that ended the run
            kept = self._test_table(self.store.rows(self.run_id))
            write_table(keep_integers(kept, self.plan.options.int_columns), self.path)

    async def finish(self) -> tuple[dict[str, Any] | None, Callable[[], object]]:
        plan, rows = self.plan, self.store.rows(self.run_id)
        test = self._test_table(rows)
        valid = None
        if plan.options.gate:
            valid = result_table(plan.job.valid, rows, plan.table.problem, offset=len(plan.test))
        table, self.metrics = gated(test, valid, plan.table.problem, plan.table.classes, plan.options.samples)
        self.table = keep_integers(table, plan.options.int_columns)
        write = functools.partial(write_table, self.table, self.path) if self.path is not None else _nothing
        return self.metrics, write

    def result(self, record: RunRecord, wall_s: float) -> CorrectionResult:
        assert self.table is not None
        return CorrectionResult(
            run_id=self.run_id,
            name=record.name,
            problem=self.plan.table.problem,
            table=self.table,
            metrics=CorrectionMetrics.model_validate(self.metrics),
            input_tokens=record.input_tokens,
            output_tokens=record.output_tokens,
            wall_s=wall_s,
        )


def _nothing() -> None:
    pass
