"""Selective correction: which rows to send to the LLM before spending on them.

- `gain_order`: the rows most likely to gain from a correction first. A classifier's least confident predictions
  (|2p - 1| smallest, `gate.confidence`) are the ones a correction can fix; a regression has no confidence, so its
  rows keep their input order. Ties keep input order: the order is the same on every run over the same data. A
  multiclass model's confidence (the top-two margin, `Classes.confidence`) comes from the caller (`confidences`).
- `stratified`: `m` rows spread evenly over the confidence range (every k-th row in confidence order), for the
  validation rows the gate learns from: a fixed number of them tells the gate as much as a whole validation split
  about where corrections help.
- `fitting`: the longest prefix of an order whose costs fit an amount.

Pure functions over arrays; runs/correction_select.py applies them to a run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from .gate import confidence

GATE_ROWS_MIN = 20  # validation rows the gate learns from by default: as many as test rows, at least this …
GATE_ROWS_MAX = 100  # … and at most this (the gate's threshold does not need more)


def default_gate_rows(test_rows: int) -> int:
    """The validation rows the gate learns from when not told: as many as test rows, within [20, 100]."""
    return min(max(test_rows, GATE_ROWS_MIN), GATE_ROWS_MAX)


def row_confidence(problem: str, base: npt.ArrayLike, confidences: npt.ArrayLike | None = None) -> np.ndarray:
    """How sure the base model is of each row (0: a coin flip); 0 for every regression row (no confidence);
    `confidences` when given (multiclass, where they are required: the base predictions are class names)."""
    if confidences is not None:
        return np.asarray(confidences, dtype=float)
    if problem == "multiclass":
        raise ValueError("a multiclass row's confidence needs the model's probabilities (Classes.confidence)")
    values = np.asarray(base, dtype=float)
    return confidence(values) if problem == "classification" else np.zeros(len(values))


def gain_order(problem: str, base: npt.ArrayLike, confidences: npt.ArrayLike | None = None) -> list[int]:
    """Row positions, the least confident first (a stable sort: ties in input order)."""
    return [int(i) for i in np.argsort(row_confidence(problem, base, confidences), kind="stable")]


def stratified(problem: str, base: npt.ArrayLike, m: int, confidences: npt.ArrayLike | None = None) -> list[int]:
    """`m` row positions spread evenly over the confidence order (all rows when there are no more than `m`),
    returned in input order."""
    n = len(np.asarray(base))
    if m >= n:
        return list(range(n))
    if m <= 0:
        return []
    order = gain_order(problem, base, confidences)
    picks = np.floor((np.arange(m) + 0.5) * n / m).astype(int)  # the middle of each of m equal strata
    return sorted(order[int(p)] for p in picks)


def fitting(order: Sequence[int], costs: Sequence[float], amount: float) -> list[int]:
    """The longest prefix of `order` whose `costs` (indexed by row position) add up to at most `amount`."""
    taken, total = [], 0.0
    for i in order:
        total += costs[i]
        if total > amount + 1e-9:
            break
        taken.append(i)
    return taken
