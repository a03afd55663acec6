"""The gate: apply the LLM's corrections only where the validation split says they help.

The corrector also runs on validation rows (answers cached, knowledge never including the row itself). For
classification the gate is a confidence threshold t: a correction is applied where the base model's confidence
|2p - 1| is below t; t is chosen on validation among 0 (never correct), the validation rows' own confidences, and 1.01
(always), maximising validation accuracy, ties going to the smaller t (fewer corrections); unless it fixes at least
MIN_NET_GAIN more validation rows than it breaks, nothing is applied (one lucky row is noise). For regression it is
all-or-nothing, by validation RMSE. With no gain on validation, nothing is applied: the correction cannot hurt by
more than validation misjudges it.

Multiclass works the same on class indices, with the confidence given by the caller (`confidences`): the margin
between the model's probabilities of its predicted class and of the next most probable one (`Classes.confidence`:
for two classes that is |2p - 1| again), or 1 for every row without probabilities (the gate is then all or nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

ALWAYS = 1.01  # a threshold above every confidence
MIN_NET_GAIN = 2  # validation rows a gate must fix beyond those it breaks


def confidence(base: npt.ArrayLike) -> np.ndarray:
    """How sure a classifier is: 0 at p = 0.5, 1 at p = 0 or 1."""
    return np.abs(2 * np.asarray(base, dtype=float) - 1)


@dataclass(frozen=True)
class Gate:
    problem: str
    threshold: float  # classification: apply where confidence < threshold; regression: 0 never, ALWAYS always
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def policy(self) -> str:
        if self.threshold <= 0:
            return "never"
        if self.threshold >= ALWAYS:
            return "always"
        return f"where the model's confidence < {self.threshold:.3f}"

    def applies(self, base: npt.ArrayLike, confidences: npt.ArrayLike | None = None) -> np.ndarray:
        """Where the gate lets a correction through; `confidences` (multiclass, required there) replace the ones
        computed from binary probabilities."""
        base = np.asarray(base, dtype=float)
        if self.problem == "regression" or self.threshold >= ALWAYS or self.threshold <= 0:
            return np.full(len(base), self.threshold >= ALWAYS)
        return _confidences(self.problem, base, confidences) < self.threshold

    def apply(
        self, base: npt.ArrayLike, corrected: npt.ArrayLike, confidences: npt.ArrayLike | None = None
    ) -> np.ndarray:
        mask = self.applies(base, confidences)
        return np.where(mask, np.asarray(corrected, dtype=float), np.asarray(base, dtype=float))

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "threshold": self.threshold, **self.evidence}


def _confidences(problem: str, base: np.ndarray, confidences: npt.ArrayLike | None) -> np.ndarray:
    if confidences is not None:
        return np.asarray(confidences, dtype=float)
    if problem == "multiclass":
        raise ValueError("a multiclass gate needs the model's confidences (Classes.confidence)")
    return confidence(base)


def choose_gate(
    problem: str,
    labels: npt.ArrayLike,
    base: npt.ArrayLike,
    corrected: npt.ArrayLike,
    confidences: npt.ArrayLike | None = None,
) -> Gate:
    """The gate that does best on validation (see the module docstring). Multiclass: labels, base and corrected are
    class indices, and `confidences` the model's (required)."""
    y, b, c = (np.asarray(a, dtype=float) for a in (labels, base, corrected))
    n = len(y)
    if n == 0:
        return Gate(problem, 0.0, {"validation_rows": 0, "why": "no validation rows were corrected"})
    if problem == "regression":
        rmse_base = float(np.sqrt(np.mean((b - y) ** 2)))
        rmse_corr = float(np.sqrt(np.mean((c - y) ** 2)))
        chosen = ALWAYS if rmse_corr < rmse_base else 0.0
        evidence = {"validation_rows": n, "validation_rmse": {"base": rmse_base, "corrected": rmse_corr}}
        return Gate(problem, chosen, evidence)
    conf = _confidences(problem, b, confidences)
    candidates = sorted({0.0, ALWAYS, *conf.tolist()})

    def right(pred: np.ndarray) -> np.ndarray:
        return pred == y if problem == "multiclass" else (pred >= 0.5) == (y >= 0.5)

    scores = []
    for t in candidates:
        gated = np.where(conf < t, c, b)
        scores.append((float(np.mean(right(gated))), -t))
    best_acc, neg_t = max(scores)
    base_acc = float(np.mean(right(b)))
    threshold = -neg_t if round((best_acc - base_acc) * n) >= MIN_NET_GAIN else 0.0
    best_acc = best_acc if threshold > 0 else base_acc
    evidence = {
        "validation_rows": n,
        "validation_accuracy": {
            "base": base_acc,
            "corrected": float(np.mean(right(c))),
            "gated": best_acc,
        },
        "applied_on_validation": int((conf < threshold).sum()),
    }
    return Gate(problem, threshold, evidence)
