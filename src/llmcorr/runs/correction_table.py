"""A correct run's output table: the test rows joined with their corrections, the gate applied, the metrics; the
same from a live run (`--output`, `CorrectionResult.table`) and from the store alone (reports, the dashboard).

Columns keep the type they came in with: a label or prediction given as whole numbers (`0`, `151`) is written so,
not as `0.0` (the predictions table holds them as floats for the arithmetic)."""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..correct import classification_metrics, multiclass_metrics, regression_metrics
from ..correct.classes import Classes
from ..correct.gate import choose_gate
from ..correct.metrics_model import CorrectionMetrics, GateChoice, Selection, Ungated
from ..data import as_frame
from ..errors import UserError
from ..store import NOT_SENT, RowRecord, RunRecord, Store
from .correct_options import CorrectSpecOptions

_WHOLE = re.compile(r"^\s*[+-]?\d+\s*$")
KEPT_INTEGER = ("label", "prediction")  # the roles load_predictions turns into floats


def integer_columns(predictions: str | Path | Any, columns: Mapping[str, str]) -> list[str]:
    """The roles among label and prediction whose input values are all whole numbers written as such (`1`, `"1"`
    in a CSV; not `1.0`): the output writes them back as integers. `columns` maps role → the user's column."""
    raw = as_frame(predictions)[0]
    found = []
    for role in KEPT_INTEGER:
        values = raw[columns.get(role, role)]
        if pd.api.types.is_float_dtype(values):
            continue
        whole = pd.api.types.is_integer_dtype(values) or pd.api.types.is_bool_dtype(values)
        if not whole:  # object columns: a CSV's text, a JSONL column of mixed types
            cells = values.dropna().tolist()
            whole = bool(cells) and all(
                isinstance(v, numbers.Integral) or (isinstance(v, str) and _WHOLE.match(v) is not None) for v in cells
            )
        if whole:
            found.append(role)
    return found


def keep_integers(table: pd.DataFrame, roles: list[str]) -> pd.DataFrame:
    """`table` with the given roles' columns as integers again (see `integer_columns`)."""
    for role in roles:
        if role in table.columns and len(table) and table[role].notna().all():
            table[role] = table[role].astype(float).round().astype("int64")
    return table


def result_table(test: pd.DataFrame, rows: list[RowRecord], problem: str, offset: int = 0) -> pd.DataFrame:
    """The test rows (or, from `offset`, the validation rows) joined with what the store holds for them:
    corrections (a multiclass row's corrected class), responses, tokens."""
    table = test.reset_index(drop=True).copy()
    by_index = {r.row_index: r for r in rows}
    corrected, labels, responses, parsed, errors, explanations, tokens, sent = [], [], [], [], [], [], [], []
    bases = table["prediction"] if problem == "multiclass" else table["prediction"].astype(float)  # class or number
    for i, base in enumerate(bases):
        r = by_index.get(i + offset)
        out = (r.output if r is not None else None) or {}
        # a row not sent (correction_select.py) keeps the base prediction: its output holds no correction
        sent.append(None if r is None else r.status if r.status.startswith(NOT_SENT) else "sent")
        corrected.append(out.get("corrected_prediction", base))
        if problem == "classification":
            labels.append(int(out.get("corrected_label", int(base >= 0.5))))
        responses.append(r.response if r is not None else None)
        parsed.append(r is not None and r.status == "ok")
        errors.append(r.error if r is not None else "not processed")
        explanations.append(out.get("explanation"))
        tokens.append(r.input_tokens + r.output_tokens if r is not None else 0)
    table["corrected_prediction"] = corrected
    if problem == "classification":
        table["corrected_label"] = labels
    table["llm_response"] = responses
    table["parsed"] = parsed
    table["parse_error"] = errors
    table["explanation"] = explanations
    table["tokens"] = tokens
    table["sent"] = sent
    return table


def compute_metrics(table: pd.DataFrame, problem: str, classes: Classes | None = None) -> CorrectionMetrics:
    """Base vs corrected on `table` (a non-empty result table): the metrics, intervals and flips of `problem`, and
    how many answers parsed (`classes`: a multiclass problem's)."""
    if problem == "multiclass":
        assert classes is not None
        label, base, corrected = (classes.indices(table[c]) for c in ("label", "prediction", "corrected_prediction"))
        metrics = multiclass_metrics(label, base, corrected, classes.texts, classes.probabilities(table))
    else:
        fn = classification_metrics if problem == "classification" else regression_metrics
        metrics = fn(table["label"], table["prediction"], table["corrected_prediction"])
    return CorrectionMetrics.model_validate(metrics | {"parsed": int(table["parsed"].sum())})


def gate_inputs(table: pd.DataFrame, classes: Classes | None) -> tuple[pd.Series | np.ndarray, np.ndarray | None]:
    """The base predictions as the gate reads them, and the model's confidences (multiclass: class indices and
    the top-two margins; otherwise the probabilities or values, and None: the gate computes them)."""
    if classes is None:
        return table["prediction"], None
    base = classes.indices(table["prediction"])
    return base, classes.confidence(classes.probabilities(table), base)


def selection(table: pd.DataFrame, samples: int) -> Selection | None:
    """Which test rows were sent and why the others were not, and the requests that saved (their first answers);
    None when every row was sent."""
    counts = table["sent"].value_counts().to_dict() if "sent" in table.columns and len(table) else {}
    gate, budget = counts.get(f"{NOT_SENT} (gate)", 0), counts.get(f"{NOT_SENT} (budget)", 0)
    if not gate and not budget:
        return None
    saved = (gate + budget) * samples
    return Selection(sent=counts.get("sent", 0), not_sent_gate=gate, not_sent_budget=budget, requests_saved=saved)


def gated(
    test: pd.DataFrame, valid: pd.DataFrame | None, problem: str, classes: Classes | None = None, samples: int = 1
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The test table with the gate chosen on the validation rows applied, and the metrics over every test row (a
    row not sent keeps the base prediction): the gated correction's, plus the gate (policy and validation evidence),
    which rows were sent (when some were not) and what the correction would have done ungated (when all were;
    `classes`: a multiclass problem's; `samples`: answers per row, for the requests saved).

    The metrics come as the store keeps them (`CorrectionMetrics.to_dict()`, JSON), for the run's record; read them
    typed with `CorrectionMetrics.model_validate`."""
    chosen = selection(test, samples)
    if valid is None:
        if not len(test):
            return test, CorrectionMetrics(n=0).to_dict()
        shown = {"selection": chosen} if chosen is not None else {}
        return test, compute_metrics(test, problem, classes).model_copy(update=shown).to_dict()
    valid_base, valid_confidences = gate_inputs(valid, classes)
    llm = classes.indices(valid["corrected_prediction"]) if classes else valid["corrected_prediction"]
    label = classes.indices(valid["label"]) if classes else valid["label"]
    gate = choose_gate(problem, label, valid_base, llm, valid_confidences)
    table = test.copy()
    table["llm_prediction"] = table["corrected_prediction"]
    base, confidences = gate_inputs(table, classes)
    lets = gate.applies(base, confidences)
    applied = lets & (table["llm_prediction"] != table["prediction"])
    if classes is not None:
        kept = table["prediction"].to_numpy(dtype=object)
        table["corrected_prediction"] = np.where(lets, table["llm_prediction"].to_numpy(dtype=object), kept)
    else:
        table["corrected_prediction"] = gate.apply(table["prediction"], table["llm_prediction"])
    table["gate_applied"] = applied
    if problem == "classification":
        table["corrected_label"] = (table["corrected_prediction"] >= 0.5).astype(int)
    if not len(table):
        return table, CorrectionMetrics(n=0, gate=GateChoice.model_validate(gate.to_dict())).to_dict()
    metrics = compute_metrics(table, problem, classes)
    choice = GateChoice.model_validate(gate.to_dict() | {"applied_on_test": int(applied.sum())})
    update: dict[str, Any] = {"gate": choice}
    if chosen is not None:  # with rows not sent, no one knows what every correction would have done ungated
        update["selection"] = chosen
    else:
        ungated = compute_metrics(test, problem, classes)
        update["ungated"] = Ungated(corrected=ungated.corrected, flips=ungated.flips)
    return table, metrics.model_copy(update=update).to_dict()


def recorded_table(store: Store, record: RunRecord) -> tuple[pd.DataFrame, CorrectionMetrics]:
    """A recorded correct run's test rows as `--output` writes them (the gate applied) and its metrics (typed),
    rebuilt from the store alone (for reports)."""
    if record.kind != "correct":
        raise UserError(f"run {record.label} is a {record.kind} run; reports are for correct runs")
    options = CorrectSpecOptions.of(record)
    assert options is not None
    rows = store.rows(record.id)
    problem = options.problem
    frames = {
        split: pd.DataFrame([r.inputs for r in rows if r.inputs.get("split") == split]) for split in ("test", "valid")
    }
    test = result_table(frames["test"], rows, problem) if len(frames["test"]) else frames["test"]
    valid = None
    if options.gate and len(frames["valid"]):
        valid = result_table(frames["valid"], rows, problem, offset=len(frames["test"]))
    if not len(test):
        return test, CorrectionMetrics.model_validate(record.metrics or {"n": 0})
    table, metrics = gated(test, valid, problem, options.classes, options.samples)
    return keep_integers(table, options.int_columns), CorrectionMetrics.model_validate(metrics)
