"""Load and validate a predictions table: CSV, JSONL or Parquet file, or a DataFrame (pandas, polars).

Every problem becomes one `DataError` line naming the file, the row and the column, raised before any LLM call.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from ..data import as_frame
from ..data.io import show, show_names
from ..errors import DataError

Problem = Literal["classification", "regression"]
COLUMNS = ("id", "input", "prediction", "label", "split")
SPLITS = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "dev": "valid", "test": "test"}
_BOOL_LABELS = {"0": 0, "1": 1, "false": 0, "true": 1, "0.0": 0, "1.0": 1}


@dataclass
class Predictions:
    """A validated table: canonical columns id/input/prediction/label/split plus the user's other columns."""

    frame: pd.DataFrame
    problem: Problem
    source: str
    columns: dict[str, str]  # canonical name -> the user's column name

    def split(self, name: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == name]


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _label01(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    return _BOOL_LABELS.get(str(value).strip().lower())


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def _classes(labels: list[Any]) -> list[Any] | None:
    """The distinct values of a label column that reads as classes (every label an integer, or every label text),
    else None (a measured quantity)."""
    numbers = [_number(v) for v in labels]
    if all(n is None for n in numbers):
        return sorted({str(v).strip() for v in labels})
    if all(n is not None and math.isfinite(n) and n.is_integer() for n in numbers):
        return sorted({int(n) for n in numbers if n is not None})
    return None


def _refuse_multiclass(labels: list[Any], preds: list[float], at: str, column: str, got: Any, explicit: bool) -> None:
    """Three or more classes are a multiclass problem (integer labels with integer predictions, or text labels;
    any class-like labels when classification was asked for), which llmcorr does not correct yet: one line saying
    what it does correct, rather than a silent regression run. `got` is the first label that is not 0 or 1, at `at`."""
    classes = _classes(labels)
    if classes is None or len(classes) < 3:
        return
    if isinstance(classes[0], int) and not explicit and not all(p.is_integer() for p in preds):
        return  # integer-valued targets (counts, scores) with a regressor's predictions: regression
    shown = ", ".join(show(c, 20) if isinstance(c, str) else str(c) for c in classes[:5])
    numbers = "; pass --problem regression if these labels are numbers" if isinstance(classes[0], int) else ""
    raise DataError(
        f"{at}, column {column!r}: expected 0 or 1 for classification, got {show(got)}, one of {len(classes)} "
        f"classes ({shown}{', …' if len(classes) > 5 else ''}): multiclass correction is not supported yet (llmcorr "
        f"corrects binary classification and regression{numbers})"
    )


def load_predictions(
    data: str | Path | Any,
    columns: Mapping[str, str] | None = None,
    problem: Literal["auto", "classification", "regression"] = "auto",
) -> Predictions:
    """Read and validate a predictions table.

    `columns` maps canonical names (id, input, prediction, label, split) to the user's column names.
    `problem="auto"` picks classification when every label is 0/1, regression otherwise; 3+ classes (integer labels
    with integer predictions, or text labels) are refused as multiclass unless `problem="regression"`.
    """
    mapping = {c: c for c in COLUMNS}
    for key, value in (columns or {}).items():
        if key not in COLUMNS:
            raise DataError(f"unknown column role {key!r} in column mapping (expected one of {', '.join(COLUMNS)})")
        mapping[key] = value

    raw, where, source = as_frame(data)

    missing = [
        f"{role!r}" if col == role else f"{show(col)} (for {role})"
        for role, col in mapping.items()
        if col not in raw.columns
    ]
    if missing:
        raise DataError(
            f"{source}: missing column {', '.join(missing)}; found: {show_names(raw.columns)}. "
            "Rename it or map it with --column ROLE=NAME"
        )
    if raw.empty:
        raise DataError(f"{source}: no rows")

    frame = pd.DataFrame({role: raw[col] for role, col in mapping.items()})
    ids, inputs, preds, labels, splits = [], [], [], [], []
    seen: dict[str, int] = {}
    for i, (sid, text, pred, label, split) in enumerate(frame.itertuples(index=False, name=None)):
        at = f"{source}: {where(i)}"
        for role, value in (("id", sid), ("input", text), ("prediction", pred), ("label", label), ("split", split)):
            if _is_missing(value):
                raise DataError(f"{at}, column {mapping[role]!r}: empty value (expected {role})")
        sid = str(sid)
        if sid in seen:
            raise DataError(
                f"{at}, column {mapping['id']!r}: duplicate id {show(sid)} (first seen at {where(seen[sid])})"
            )
        seen[sid] = i
        p = _number(pred)
        if p is None or not math.isfinite(p):
            raise DataError(f"{at}, column {mapping['prediction']!r}: expected a finite number, got {show(pred)}")
        s = SPLITS.get(str(split).strip().lower())
        if s is None:
            raise DataError(
                f"{at}, column {mapping['split']!r}: unknown split {show(split)} (expected train, valid or test)"
            )
        ids.append(sid)
        inputs.append(str(text))
        preds.append(p)
        labels.append(label)
        splits.append(s)

    first = next((i for i, v in enumerate(labels) if _label01(v) is None), None)
    if first is not None and problem != "regression":
        at = f"{source}: {where(first)}"
        _refuse_multiclass(labels, preds, at, mapping["label"], labels[first], explicit=problem != "auto")
    if problem == "auto":
        problem = "classification" if first is None else "regression"
    parsed_labels: list[float] = []
    for i, label in enumerate(labels):
        at = f"{source}: {where(i)}"
        if problem == "classification":
            lab = _label01(label)
            if lab is None:
                raise DataError(
                    f"{at}, column {mapping['label']!r}: expected 0 or 1 for classification, got {show(label)}"
                )
            if not 0.0 <= preds[i] <= 1.0:
                raise DataError(
                    f"{at}, column {mapping['prediction']!r}: expected a probability in [0, 1] for classification, "
                    f"got {preds[i]!r}"
                )
            parsed_labels.append(float(lab))
        else:
            num = _number(label)
            if num is None or not math.isfinite(num):
                raise DataError(f"{at}, column {mapping['label']!r}: expected a finite number, got {show(label)}")
            parsed_labels.append(num)

    out = raw.copy()
    out["id"], out["input"], out["prediction"], out["label"], out["split"] = ids, inputs, preds, parsed_labels, splits
    for name in ("test", "valid"):
        if not (out["split"] == name).any():
            raise DataError(f"{source}: the {name} split is empty (column {mapping['split']!r} has no {name!r} rows)")
    return Predictions(frame=out, problem=problem, source=source, columns=mapping)
