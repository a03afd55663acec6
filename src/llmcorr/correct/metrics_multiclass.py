"""Multiclass metrics before and after correction, in the shape the binary ones have (metrics.py): accuracy,
macro-F1 and, where the model gave probabilities, log-loss, each with a paired bootstrap 95% interval; the flips
and McNemar's exact test on them; per-class recall, with its intervals from the same resamples; the confusion
matrices; and calibration of the predicted class (multiclass Brier score; ECE and a reliability curve of the
predicted class's probability against how often it is right).

Probabilities after correction: where the LLM names another class, the model's probabilities of its class and of
the new one are swapped, so the new class gets the model's confidence (for two classes this is the binary
corrector's p -> 1 - p).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .metrics import bootstrap_ci, calibration, mcnemar

EPS = 1e-15  # probabilities are clipped to [EPS, 1] for the log-loss, as scikit-learn does


def swap_probabilities(probabilities: np.ndarray, base: np.ndarray, corrected: np.ndarray) -> np.ndarray:
    """The model's probabilities with, on each row whose class changed, its class's and the new class's swapped."""
    out = probabilities.copy()
    rows = np.arange(len(base))
    out[rows, base], out[rows, corrected] = probabilities[rows, corrected], probabilities[rows, base]
    return out


def _onehot(values: np.ndarray, k: int) -> np.ndarray:
    return (values[:, None] == np.arange(k)[None, :]).astype(float)


def _macro_f1(weights: np.ndarray, truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Macro-F1 for each row of `weights` (how often each sample was drawn), over the classes that occur among the
    labels or the predictions of that resample (as scikit-learn's `f1_score(average="macro")`)."""
    hits = weights @ (truth * predicted)  # resample x class: true positives
    occurs = weights @ truth + weights @ predicted  # 2 TP + FP + FN
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(occurs > 0, 2 * hits / occurs, 0.0)
    present = (occurs > 0).sum(axis=1)
    return np.where(present > 0, f1.sum(axis=1) / np.maximum(present, 1), np.nan)


def _confusion(labels: np.ndarray, predicted: np.ndarray, k: int) -> list[list[int]]:
    matrix = np.zeros((k, k), dtype=int)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix.tolist()


def _calibration(labels: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """The predicted class's calibration (`metrics.calibration` of its probability against being right), with the
    multiclass Brier score (the squared distance of the probabilities from the one-hot label, summed over
    classes)."""
    rows = np.arange(len(labels))
    out = calibration((predicted == labels).astype(float), probabilities[rows, predicted])
    out["brier"] = float(np.mean(((probabilities - _onehot(labels, probabilities.shape[1])) ** 2).sum(axis=1)))
    return out


def multiclass_metrics(
    labels: Sequence[int] | np.ndarray,
    base: Sequence[int] | np.ndarray,
    corrected: Sequence[int] | np.ndarray,
    classes: Sequence[str],
    probabilities: np.ndarray | None = None,
) -> dict[str, Any]:
    """Base vs corrected on class indices into `classes`; `probabilities` (rows x classes) are the model's, if it
    gave any (the corrected side's are swapped, see the module docstring)."""
    y, b, c = (np.asarray(a, dtype=int) for a in (labels, base, corrected))
    k, n = len(classes), len(y)
    b_right, c_right = b == y, c == y
    flips = {
        "changed": int((b != c).sum()),
        "wrong_to_right": int((~b_right & c_right).sum()),
        "right_to_wrong": int((b_right & ~c_right).sum()),
    }
    truth, b_hot, c_hot = _onehot(y, k), _onehot(b, k), _onehot(c, k)
    b_loss = c_loss = c_probs = None
    if probabilities is not None:
        c_probs = swap_probabilities(probabilities, b, c)
        rows = np.arange(n)
        b_loss = -np.log(np.clip(probabilities[rows, y], EPS, 1.0))
        c_loss = -np.log(np.clip(c_probs[rows, y], EPS, 1.0))

    def values(w: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        sides = {
            "accuracy": (w @ b_right / n, w @ c_right / n),
            "macro_f1": (_macro_f1(w, truth, b_hot), _macro_f1(w, truth, c_hot)),
        }
        if b_loss is not None and c_loss is not None:
            sides["log_loss"] = (w @ b_loss / n, w @ c_loss / n)
        for name, (before, after) in sides.items():
            out |= {f"base.{name}": before, f"corrected.{name}": after, f"delta.{name}": after - before}
        return out

    once = {key: float(v[0]) for key, v in values(np.ones((1, n))).items()}
    sides = {
        s: {key.split(".", 1)[1]: v for key, v in once.items() if key.startswith(s + ".")}
        for s in ("base", "corrected")
    }
    support = truth.sum(axis=0)
    recall = {
        name: [float(hot[y == j, j].mean()) if support[j] else None for j in range(k)]
        for name, hot in (("base", b_hot), ("corrected", c_hot))
    }

    def recalls(w: np.ndarray) -> dict[str, np.ndarray]:
        """Each class's recall in each resample (NaN where the resample drew no row of the class)."""
        drawn = w @ truth
        with np.errstate(invalid="ignore", divide="ignore"):
            before, after = (np.where(drawn > 0, (w @ (truth * hot)) / drawn, np.nan) for hot in (b_hot, c_hot))
        out: dict[str, np.ndarray] = {}
        for j in range(k):
            out |= {f"base.{j}": before[:, j], f"corrected.{j}": after[:, j], f"delta.{j}": after[:, j] - before[:, j]}
        return out

    class_ci = bootstrap_ci(recalls, n)  # the same seed, so the same resamples as the metrics' intervals
    out: dict[str, Any] = {
        "n": n,
        "base": sides["base"],
        "corrected": sides["corrected"],
        "flips": flips,
        "ci95": bootstrap_ci(values, n),
        "mcnemar": mcnemar(flips["wrong_to_right"], flips["right_to_wrong"]),
        "per_class": [
            {
                "name": name,
                "n": int(support[j]),
                "base": recall["base"][j],
                "corrected": recall["corrected"][j],
                "ci95": {side: class_ci[side].get(str(j)) for side in class_ci} if support[j] else {},
            }
            for j, name in enumerate(classes)
        ],
        "confusion": {"classes": list(classes), "base": _confusion(y, b, k), "corrected": _confusion(y, c, k)},
    }
    if probabilities is not None and c_probs is not None:
        out["calibration"] = {"base": _calibration(y, b, probabilities), "corrected": _calibration(y, c, c_probs)}
    return out
