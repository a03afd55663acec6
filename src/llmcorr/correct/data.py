"""Load and validate a predictions table: CSV, JSONL or Parquet file, or a DataFrame (pandas, polars).

Every problem becomes one `DataError` line naming the file, the row and the column, raised before any LLM call.
The problem is classification (0/1 labels, a probability of class 1 as the prediction), multiclass (class labels,
a class as the prediction, optionally per-class probabilities: classes.py) or regression (numbers).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from ..data import as_frame
from ..data.io import show, show_names
from ..errors import DataError
from .classes import ROLE, Classes, find_classes, is_label_list

Problem = Literal["classification", "multiclass", "regression"]
Asked = Literal["auto", "classification", "multiclass", "regression"]
COLUMNS = ("id", "input", "prediction", "label", "split")
OPTIONAL = (ROLE,)  # roles a table may have: a multiclass model's probabilities as one JSON/list column
SPLITS = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "dev": "valid", "test": "test"}
_BOOL_LABELS = {"0": 0, "1": 1, "false": 0, "true": 1, "0.0": 0, "1.0": 1}


@dataclass
class Predictions:
    """A validated table: canonical columns id/input/prediction/label/split plus the user's other columns. A
    multiclass table's label and prediction hold its classes (as `classes.names` writes them), and `classes` says
    which they are and where the model's probabilities are."""

    frame: pd.DataFrame
    problem: Problem
    source: str
    columns: dict[str, str]  # canonical name -> the user's column name
    classes: Classes | None = None  # multiclass only

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


def _infer(asked: str, labels: list[Any], preds: list[Any], at: Callable[[int], str], column: str) -> Problem:
    """The problem a label column poses: classification when every label is 0/1 (or true/false); multiclass for
    text labels, for integer labels of 3+ classes with whole-number predictions, or for class labels predicted as
    classes when classification is asked for; regression otherwise, or when asked for. Missing cells and lists are
    skipped here: the row checks name them. `at(i)` names row i."""
    if asked == "regression":
        return "regression"
    rows = [i for i, v in enumerate(labels) if not _is_missing(v) and not is_label_list(v)]
    present = [labels[i] for i in rows]
    if not present:
        return "regression"  # every label is missing: the row checks say so
    binary = all(_label01(v) is not None for v in present)
    if binary and asked in ("auto", "classification"):
        return "classification"
    classes = _classes(present)
    numbers = [_number(p) for p in preds if not _is_missing(p)]
    whole = all(n is not None and n.is_integer() for n in numbers)
    named = whole if classes and isinstance(classes[0], int) else not all(n is not None for n in numbers)
    if asked == "auto":
        if not classes or (isinstance(classes[0], int) and len(classes) < 3):
            return "regression"
        if isinstance(classes[0], int) and not whole:
            return "regression"  # integer-valued targets (counts, scores) with a regressor's predictions
    elif asked == "classification" and (classes is None or not named):
        return "classification"  # probabilities: the label check names the first label that is not 0 or 1
    elif classes is None:
        first = next(i for i in rows if (n := _number(labels[i])) is None or not n.is_integer())
        raise DataError(
            f"{at(first)}, column {column!r}: expected a class label (an integer or text) for multiclass, "
            f"got {show(labels[first])}"
        )
    if len(classes) < 2:
        raise DataError(f"{at(rows[0])}, column {column!r}: the only class is {show(classes[0])}: nothing to correct")
    return "multiclass"


def load_predictions(
    data: str | Path | Any,
    columns: Mapping[str, str] | None = None,
    problem: Asked = "auto",
) -> Predictions:
    """Read and validate a predictions table.

    `columns` maps canonical names (id, input, prediction, label, split; probabilities, optional) to the user's
    column names. `problem="auto"` picks classification when every label is 0/1, multiclass for text labels or
    integer labels of 3+ classes with whole-number predictions, regression otherwise; `"classification"` with
    labels other than 0/1 is multiclass; `"regression"` reads any labels as numbers.
    """
    mapping = {c: c for c in (*COLUMNS, *OPTIONAL)}
    for key, value in (columns or {}).items():
        if key not in mapping:
            raise DataError(
                f"unknown column role {key!r} in column mapping (expected one of {', '.join((*COLUMNS, *OPTIONAL))})"
            )
        mapping[key] = value

    raw, where, source = as_frame(data)

    missing = [
        f"{role!r}" if col == role else f"{show(col)} (for {role})"
        for role, col in mapping.items()
        if col not in raw.columns and role in COLUMNS
    ]
    if missing:
        raise DataError(
            f"{source}: missing column {', '.join(missing)}; found: {show_names(raw.columns)}. "
            "Rename it or map it with --column ROLE=NAME"
        )
    if raw.empty:
        raise DataError(f"{source}: no rows")

    frame = pd.DataFrame({role: raw[mapping[role]] for role in COLUMNS})
    at = lambda i: f"{source}: {where(i)}"  # noqa: E731 - names a row in errors
    kind = _infer(problem, frame["label"].tolist(), frame["prediction"].tolist(), at, mapping["label"])
    classes: Classes | None = None
    if kind == "multiclass":
        names = _classes([v for v in frame["label"] if not _is_missing(v) and not is_label_list(v)]) or []
        classes = find_classes(names, raw, source, mapping[ROLE], ROLE in (columns or {}))
    ids, inputs, preds, labels, splits = [], [], [], [], []
    seen: dict[str, int] = {}
    for i, (sid, text, pred, label, split) in enumerate(frame.itertuples(index=False, name=None)):
        for role, value in (("id", sid), ("input", text), ("prediction", pred), ("label", label), ("split", split)):
            if _is_missing(value):
                raise DataError(f"{at(i)}, column {mapping[role]!r}: empty value (expected {role})")
        if is_label_list(label):
            raise DataError(
                f"{at(i)}, column {mapping['label']!r}: a list of labels ({show(label)}): multi-label correction is "
                "not supported (one label per row)"
            )
        sid = str(sid)
        if sid in seen:
            raise DataError(
                f"{at(i)}, column {mapping['id']!r}: duplicate id {show(sid)} (first seen at {where(seen[sid])})"
            )
        seen[sid] = i
        if classes is not None:
            k = classes.index_of(pred)
            if k is None:
                raise DataError(
                    f"{at(i)}, column {mapping['prediction']!r}: expected one of the classes ({classes.shown()}), "
                    f"got {show(pred)}"
                )
            p: Any = classes.names[k]
        else:
            p = _number(pred)
            if p is None or not math.isfinite(p):
                raise DataError(
                    f"{at(i)}, column {mapping['prediction']!r}: expected a finite number, got {show(pred)}"
                )
        s = SPLITS.get(str(split).strip().lower())
        if s is None:
            raise DataError(
                f"{at(i)}, column {mapping['split']!r}: unknown split {show(split)} (expected train, valid or test)"
            )
        ids.append(sid)
        inputs.append(str(text))
        preds.append(p)
        labels.append(label)
        splits.append(s)

    parsed_labels: list[Any] = []
    for i, label in enumerate(labels):
        if kind == "classification":
            lab = _label01(label)
            if lab is None:
                raise DataError(
                    f"{at(i)}, column {mapping['label']!r}: expected 0 or 1 for classification, got {show(label)}"
                )
            if not 0.0 <= preds[i] <= 1.0:
                raise DataError(
                    f"{at(i)}, column {mapping['prediction']!r}: expected a probability in [0, 1] for classification, "
                    f"got {preds[i]!r}"
                )
            parsed_labels.append(float(lab))
        elif classes is not None:
            parsed_labels.append(classes.names[classes.indices([label])[0]])
        else:
            num = _number(label)
            if num is None or not math.isfinite(num):
                raise DataError(f"{at(i)}, column {mapping['label']!r}: expected a finite number, got {show(label)}")
            parsed_labels.append(num)
    if classes is not None:
        classes.probabilities(raw, source, where)  # checked now, read again where needed

    out = raw.copy()
    out["id"], out["input"], out["prediction"], out["label"], out["split"] = ids, inputs, preds, parsed_labels, splits
    for name in ("test", "valid"):
        if not (out["split"] == name).any():
            raise DataError(f"{source}: the {name} split is empty (column {mapping['split']!r} has no {name!r} rows)")
    used = {role: col for role, col in mapping.items() if role in COLUMNS or (classes and col == classes.prob_column)}
    return Predictions(frame=out, problem=kind, source=source, columns=used, classes=classes)
