"""A run's rows as every view shows them: inputs and outputs shortened, what the LLM did to a correct run's
prediction (and whether the gate let it through), the filters of the dashboard's rows table."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..correct.classes import Classes
from ..correct.gate import Gate
from ..runs.correct_options import CorrectSpecOptions
from ..runs.flows import AGGREGATION_VALUES
from ..store import NOT_SENT, RowRecord, RunRecord
from .metrics import correction_metrics

ROW_FILTERS = {
    "all": "all rows",
    "errors": "errors only",
    "changed": "changed predictions only",
    "gate": "validation rows (for the gate)",
    "unsent": "test rows not sent",
}


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class RowView:
    n: int  # 1-based, as the trace names it ("row 1")
    sample_id: str | None
    status: str
    error: str | None
    inputs: str
    output: str
    changed: bool | None  # correct runs: did the LLM change the prediction?
    tokens: int
    duration_ms: float | None
    endpoint: str | None
    cached: bool
    attempts: int


def _class_change(
    inputs: dict[str, Any], output: dict[str, Any], gate: Gate | None, classes: Classes | None
) -> tuple[str, bool, bool]:
    """A multiclass row: `before → after`, whether the class changed, whether a gate holds the change back."""
    before, after = inputs.get("prediction"), output.get("corrected_prediction")
    changed = classes.index_of(before) != classes.index_of(after) if classes else str(before) != str(after)
    held = False
    if gate is not None and classes is not None and changed:
        base = classes.indices([before])
        held = not bool(gate.applies(base, classes.confidence(classes.probabilities(pd.DataFrame([inputs])), base))[0])
    return f"{before} → {after}", changed, held


def _correction(
    problem: str, inputs: dict[str, Any], output: dict[str, Any], gate: Gate | None, classes: Classes | None = None
) -> tuple[str, bool | None]:
    """What the LLM did to the row's prediction; on a gated run, whether the gate let it through. Validation rows
    (the gate's evidence) are marked and never count as changed predictions."""
    if problem == "multiclass":
        if "corrected_prediction" not in output:
            return "", None
        shown, changed, held = _class_change(inputs, output, gate, classes)
        if inputs.get("split") == "valid":
            return shown + " (validation, for the gate)", None
        return (shown + " (held back by the gate)", False) if held else (shown, changed)
    base = _number(inputs.get("prediction"))
    corrected = _number(output.get("corrected_prediction"))
    if base is not None and "not_sent" in output:  # the base prediction kept, nothing sent
        kept = f"{int(base >= 0.5)} (p={base:.3g})" if problem == "classification" else f"{base:.4g}"
        return f"{kept} kept: not sent ({output['not_sent']})", False
    if base is None or corrected is None:
        return "", None
    if problem == "classification":
        before, after = int(base >= 0.5), int(output.get("corrected_label", corrected >= 0.5))
        shown, changed = f"{before} (p={base:.3g}) → {after}", before != after
    else:
        shown, changed = f"{base:.4g} → {corrected:.4g}", corrected != base
    if inputs.get("split") == "valid":
        return shown + " (validation, for the gate)", None
    if gate is not None and changed and not bool(gate.applies([base])[0]):
        return shown + " (held back by the gate)", False
    return shown, changed


def row_view(
    kind: str, problem: str | None, row: RowRecord, gate: Gate | None = None, classes: Classes | None = None
) -> RowView:
    """One stored row as the views show it (`classes`: a multiclass run's)."""
    inputs, output = row.inputs or {}, {k: v for k, v in (row.output or {}).items() if k != AGGREGATION_VALUES}
    changed: bool | None = None
    if kind == "correct":
        shown_in = _short(inputs.get("input", inputs))
        problem = problem or "classification"
        shown_out, changed = _correction(problem, inputs, output, gate, classes) if output else ("", None)
    else:
        shown_in = _short(inputs)
        shown_out = _short(output.get("output") if set(output) == {"output"} else output) if output else ""
    return RowView(
        n=row.row_index + 1,
        sample_id=row.sample_id,
        status=row.status,
        error=row.error,
        inputs=shown_in,
        output=shown_out,
        changed=changed,
        tokens=row.input_tokens + row.output_tokens,
        duration_ms=row.duration_ms,
        endpoint=row.endpoint,
        cached=row.cached,
        attempts=row.attempts,
    )


def row_views(record: RunRecord, rows: list[RowRecord], show: str = "all") -> list[RowView]:
    """The run's rows as the table shows them; `show` is one of ROW_FILTERS."""
    options = CorrectSpecOptions.of(record)
    problem = options.problem if options else None
    metrics = correction_metrics(record)
    chosen = metrics.gate if metrics else None
    gate = Gate(problem or "classification", chosen.threshold) if chosen else None
    classes = options.classes if options else None
    views = [row_view(record.kind, problem, r, gate, classes) for r in rows]
    if show == "errors":
        return [v for v in views if v.status != "ok" and not v.status.startswith(NOT_SENT)]
    if show == "unsent":
        return [v for v in views if v.status.startswith(NOT_SENT)]
    if show == "changed":
        return [v for v in views if v.changed]
    if show == "gate":
        return [v for v in views if v.output.endswith("(validation, for the gate)")]
    return views
