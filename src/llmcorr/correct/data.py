"""Load and validate a predictions table: CSV, JSONL or Parquet file, or a pandas DataFrame.

Every problem becomes one `DataError` line naming the file, the row and the column, raised before any LLM call.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from ..errors import DataError

Problem = Literal["classification", "regression"]
COLUMNS = ("id", "input", "prediction", "label", "split")
SPLITS = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "dev": "valid", "test": "test"}
_BOOL_LABELS = {"0": 0, "1": 1, "false": 0, "true": 1, "0.0": 0, "1.0": 1}
SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass
class Predictions:
    """A validated table: canonical columns id/input/prediction/label/split plus the user's other columns."""

    frame: pd.DataFrame
    problem: Problem
    source: str
    columns: dict[str, str]  # canonical name -> the user's column name

    def split(self, name: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == name]


def _read_jsonl(path: Path) -> tuple[pd.DataFrame, list[int]]:
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    with path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: line {lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}: line {lineno}: expected a JSON object, got {type(obj).__name__}")
            records.append(obj)
            lines.append(lineno)
    return pd.DataFrame.from_records(records), lines


def read_table(path: Path) -> tuple[pd.DataFrame, Callable[[int], str]]:
    """Read a file and return it with a function that names row i (0-based) the way the user can find it."""
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown file type {path.suffix!r} (expected .csv, .tsv, .jsonl or .parquet)")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        if fmt in ("csv", "tsv"):
            frame = pd.read_csv(
                path, sep="\t" if fmt == "tsv" else ",", dtype=str, keep_default_na=False, encoding="utf-8"
            )
            return frame, lambda i: f"row {i + 1} (line {i + 2})"
        if fmt == "jsonl":
            frame, lines = _read_jsonl(path)
            return frame, lambda i: f"line {lines[i]}"
        frame = pd.read_parquet(path)
        return frame, lambda i: f"row {i + 1}"
    except DataError:
        raise
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except pd.errors.ParserError as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "malformed"
        raise DataError(f"{path}: cannot parse {fmt.upper()}: {detail}") from None
    except (OSError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read as {fmt}: {detail}") from None
    except Exception as exc:  # pyarrow raises its own types for corrupt Parquet
        raise DataError(f"{path}: cannot read as {fmt}: {type(exc).__name__}: {str(exc)[:160]}") from None


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


def load_predictions(
    data: str | Path | pd.DataFrame,
    columns: Mapping[str, str] | None = None,
    problem: Literal["auto", "classification", "regression"] = "auto",
) -> Predictions:
    """Read and validate a predictions table.

    `columns` maps canonical names (id, input, prediction, label, split) to the user's column names.
    `problem="auto"` picks classification when every label is 0/1, regression otherwise.
    """
    mapping = {c: c for c in COLUMNS}
    for key, value in (columns or {}).items():
        if key not in COLUMNS:
            raise DataError(f"unknown column role {key!r} in column mapping (expected one of {', '.join(COLUMNS)})")
        mapping[key] = value

    if isinstance(data, pd.DataFrame):
        raw, where, source = data.reset_index(drop=True), (lambda i: f"row {i + 1}"), "DataFrame"
    else:
        path = Path(data)
        raw, where = read_table(path)
        source = str(path)

    missing = [
        f"{role!r}" if col == role else f"{col!r} (for {role})"
        for role, col in mapping.items()
        if col not in raw.columns
    ]
    if missing:
        found = ", ".join(map(str, raw.columns[:12])) or "none"
        raise DataError(
            f"{source}: missing column {', '.join(missing)}; found: {found}. "
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
            raise DataError(f"{at}, column {mapping['id']!r}: duplicate id {sid!r} (first seen at {where(seen[sid])})")
        seen[sid] = i
        p = _number(pred)
        if p is None or not math.isfinite(p):
            raise DataError(f"{at}, column {mapping['prediction']!r}: expected a finite number, got {pred!r}")
        s = SPLITS.get(str(split).strip().lower())
        if s is None:
            raise DataError(
                f"{at}, column {mapping['split']!r}: unknown split {split!r} (expected train, valid or test)"
            )
        ids.append(sid)
        inputs.append(str(text))
        preds.append(p)
        labels.append(label)
        splits.append(s)

    if problem == "auto":
        problem = "classification" if all(_label01(v) is not None for v in labels) else "regression"
    parsed_labels: list[float] = []
    for i, label in enumerate(labels):
        at = f"{source}: {where(i)}"
        if problem == "classification":
            lab = _label01(label)
            if lab is None:
                raise DataError(f"{at}, column {mapping['label']!r}: expected 0 or 1 for classification, got {label!r}")
            if not 0.0 <= preds[i] <= 1.0:
                raise DataError(
                    f"{at}, column {mapping['prediction']!r}: expected a probability in [0, 1] for classification, "
                    f"got {preds[i]!r}"
                )
            parsed_labels.append(float(lab))
        else:
            num = _number(label)
            if num is None or not math.isfinite(num):
                raise DataError(f"{at}, column {mapping['label']!r}: expected a finite number, got {label!r}")
            parsed_labels.append(num)

    out = raw.copy()
    out["id"], out["input"], out["prediction"], out["label"], out["split"] = ids, inputs, preds, parsed_labels, splits
    for name in ("test", "valid"):
        if not (out["split"] == name).any():
            raise DataError(f"{source}: the {name} split is empty (column {mapping['split']!r} has no {name!r} rows)")
    return Predictions(frame=out, problem=problem, source=source, columns=mapping)


def check_output_path(path: str | Path) -> Path:
    """Fail early (before any token is spent) on an output path we cannot write."""
    path = Path(path)
    if SUFFIXES.get(path.suffix.lower()) is None:
        raise DataError(f"{path}: unknown output type {path.suffix!r} (expected .csv, .tsv, .jsonl or .parquet)")
    if path.parent and not path.parent.exists():
        raise DataError(f"{path}: folder {path.parent} does not exist")
    return path


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a table in the format its extension names, atomically (a temp file renamed into place)."""
    path = check_output_path(path)
    fmt = SUFFIXES[path.suffix.lower()]
    tmp = path.with_name(f".{path.name}.tmp")
    if fmt in ("csv", "tsv"):
        frame.to_csv(tmp, index=False, sep="\t" if fmt == "tsv" else ",")
    elif fmt == "jsonl":
        frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path
