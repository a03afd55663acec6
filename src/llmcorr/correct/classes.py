"""The classes of a multiclass problem: which they are, which class a cell names, and the model's per-class
probabilities.

A multiclass predictions table has a class in `prediction` (written as the label column writes its classes:
integers or text) and, optionally, the model's probability of every class, either as

    one `prob_<class>` column per class         prob_setosa, prob_versicolor, prob_virginica (or prob_0, prob_1, …)
    one column (role `probabilities`)           a JSON object {"setosa": 0.9, …} (a class left out has 0) or a list
                                                in class order, as JSON text or a JSONL/Parquet list

The classes are the label column's distinct values, sorted (integers by value, text alphabetically); a cell names a
class whatever its case and spacing (` Setosa ` is `setosa`; `2`, `"2"` and `2.0` are the integer class 2). Every
problem is one `DataError` line naming the file, the row and the column.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from ..data.io import show
from ..errors import DataError

PREFIX = "prob_"  # a per-class probability column: prob_<class>
ROLE = "probabilities"  # the role (and default name) of a JSON/list column of probabilities
SUM_TOLERANCE = 0.01  # how far a row's probabilities may sum from 1 (they are then normalised)
TOP = 3  # the model's top classes a prompt shows


def class_key(value: Any) -> str:
    """How a cell names a class: case-folded, whitespace collapsed; a whole number as its digits (`2.0` → `2`)."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | float | np.integer | np.floating) and math.isfinite(value) and value == int(value):
        return str(int(value))
    text = " ".join(str(value).split()).casefold()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if math.isfinite(number) and number.is_integer() else text


def is_label_list(value: Any) -> bool:
    """A cell holding several labels: a list (JSONL, Parquet) or list text (`["a", "b"]`, `['a', 'b']`)."""
    if isinstance(value, list | tuple | set | np.ndarray):
        return True
    return isinstance(value, str) and value.strip().startswith("[") and value.strip().endswith("]")


class Classes(BaseModel):
    """A multiclass problem's classes, in order, and where the model's probabilities are (if anywhere): what a run's
    spec records of them (`CorrectSpecOptions.classes`), so that a recorded run reads its rows again."""

    model_config = ConfigDict(frozen=True)

    names: list[int | str]  # the classes, sorted: integers, or the label column's text
    prob_columns: list[str] | None = None  # one column per class, in class order
    prob_column: str | None = None  # one JSON/list column

    @property
    def texts(self) -> tuple[str, ...]:
        """The classes as the prompt shows them and the answer names them."""
        return tuple(str(n) for n in self.names)

    def shown(self, limit: int = 5) -> str:
        """`setosa, versicolor, virginica` (the first `limit`, then `…`)."""
        parts = [show(t, 20) if isinstance(n, str) else t for n, t in zip(self.names, self.texts, strict=True)]
        return ", ".join(parts[:limit]) + (", …" if len(parts) > limit else "")

    def index_of(self, value: Any) -> int | None:
        """The index of the class a cell names; None if it names none."""
        return _keys(tuple(self.names)).get(class_key(value))

    def indices(self, values: Iterable[Any]) -> np.ndarray:
        """Class indices of cells that name known classes (the table was checked when loaded); -1 for any other."""
        keys = _keys(tuple(self.names))
        return np.array([keys.get(class_key(v), -1) for v in values], dtype=int)

    def probabilities(
        self, frame: pd.DataFrame, source: str = "", where: Callable[[int], str] | None = None
    ) -> np.ndarray | None:
        """The model's probabilities, one row per table row and one column per class (normalised to sum to 1), or
        None when the table has none. `where(i)` names row i in errors."""
        name = where or (lambda i: f"row {i + 1}")
        at = f"{source}: " if source else ""
        if self.prob_columns is not None:
            out = np.empty((len(frame), len(self.names)))
            for k, column in enumerate(self.prob_columns):
                out[:, k] = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
                bad = np.flatnonzero(~((out[:, k] >= 0.0) & (out[:, k] <= 1.0)))  # NaN included
                if len(bad):
                    i = int(bad[0])
                    _probability(frame[column].iloc[i], f"{at}{name(i)}, column {column!r}")  # raises: names it
        elif self.prob_column is not None:
            cells = frame[self.prob_column].tolist()
            out = (
                np.stack([self._vector(c, f"{at}{name(i)}, column {self.prob_column!r}") for i, c in enumerate(cells)])
                if cells
                else np.empty((0, len(self.names)))
            )
        else:
            return None
        sums = out.sum(axis=1)
        bad = np.flatnonzero(np.abs(sums - 1.0) > SUM_TOLERANCE)
        if len(bad):
            i = int(bad[0])
            where_ = f"column {self.prob_column!r}" if self.prob_column is not None else f"{PREFIX}<class> columns"
            raise DataError(f"{at}{name(i)}, {where_}: the class probabilities sum to {sums[i]:.4g} (expected 1)")
        return out / sums[:, None] if len(out) else out

    def _vector(self, cell: Any, at: str) -> np.ndarray:
        """One JSON/list cell as a probability per class."""
        value = cell
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                value = None
        if isinstance(value, np.ndarray):
            value = value.tolist()
        expected = f"a JSON object {{class: probability}} or a list of {len(self.names)} probabilities"
        if isinstance(value, dict):
            out = np.zeros(len(self.names))
            for key, p in value.items():
                k = self.index_of(key)
                if k is None:
                    raise DataError(f"{at}: {show(key)} is not a class (classes: {self.shown()})")
                out[k] = _probability(p, at)
            return out
        if isinstance(value, list | tuple):
            if len(value) != len(self.names):
                raise DataError(f"{at}: {len(value)} probabilities for {len(self.names)} classes ({self.shown()})")
            return np.array([_probability(p, at) for p in value])
        raise DataError(f"{at}: expected {expected}, got {show(cell)}")

    def confidence(self, probabilities: np.ndarray | None, predicted: Sequence[int] | np.ndarray) -> np.ndarray:
        """How sure the model is of each predicted class: its probability minus the next most probable class's
        (the top-two margin: for two classes, |2p - 1| as the binary gate has it), at least 0; 1 without
        probabilities (then the gate is all or nothing)."""
        predicted = np.asarray(predicted, dtype=int)
        if probabilities is None:
            return np.ones(len(predicted))
        rows = np.arange(len(predicted))
        own = probabilities[rows, predicted]
        others = probabilities.copy()
        others[rows, predicted] = -np.inf
        return np.clip(own - others.max(axis=1), 0.0, 1.0)  # one class: no other, so fully sure


@functools.lru_cache(maxsize=64)
def _keys(names: tuple[int | str, ...]) -> dict[str, int]:
    return {class_key(n): i for i, n in enumerate(names)}


def _probability(cell: Any, at: str) -> float:
    try:
        p = float(cell) if cell is not None and str(cell).strip() != "" else math.nan
    except (TypeError, ValueError):
        p = math.nan
    if not 0.0 <= p <= 1.0:  # NaN included
        raise DataError(f"{at}: expected a probability in [0, 1], got {show(cell)}")
    return p


def find_classes(names: list[int | str], raw: pd.DataFrame, source: str, column: str | None, mapped: bool) -> Classes:
    """The classes of a label column (`names`, sorted) and where the probabilities are: the JSON/list column
    `column` (the role `probabilities`; `mapped`: the user named it, so it must exist), else `prob_<class>`
    columns (all of them), else none."""
    keys: dict[str, int | str] = {}
    for n in names:
        other = keys.setdefault(class_key(n), n)
        if other != n:
            raise DataError(
                f"{source}: the labels {show(other)} and {show(n)} differ only in case or spacing: name each class "
                "one way"
            )
    per_class = [c for c in raw.columns if isinstance(c, str) and c.startswith(PREFIX)]
    if column is not None and column in raw.columns:
        if per_class:
            raise DataError(
                f"{source}: both a {column!r} column and {PREFIX}<class> columns ({show(per_class[0])}…) hold "
                "probabilities: keep one"
            )
        return Classes(names=names, prob_column=column)
    if column is not None and mapped:
        raise DataError(f"{source}: missing column {show(column)} (for probabilities)")
    if not per_class:
        return Classes(names=names)
    classes = Classes(names=names)
    found: dict[int, str] = {}
    for c in per_class:
        k = classes.index_of(c[len(PREFIX) :])
        if k is None:
            raise DataError(f"{source}: column {c!r} names no class (the label column's classes: {classes.shown()})")
        found[k] = c
    missing = [f"{PREFIX}{t}" for k, t in enumerate(classes.texts) if k not in found]
    if missing:
        raise DataError(
            f"{source}: missing column {', '.join(repr(m) for m in missing[:3])}{', …' if len(missing) > 3 else ''}"
            f" (a {PREFIX}<class> column for each class, or none)"
        )
    return Classes(names=names, prob_columns=[found[k] for k in range(len(names))])
