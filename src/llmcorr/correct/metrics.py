"""Metrics before and after correction, and the flips between them."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    if len(set(labels.tolist())) < 2:
        return None  # undefined with one class
    from sklearn.metrics import roc_auc_score  # imported here: sklearn.metrics adds ~2 s to every CLI start

    return float(roc_auc_score(labels, scores))


def classification_metrics(
    labels: Iterable[float], base: Iterable[float], corrected: Iterable[float]
) -> dict[str, Any]:
    """ROC-AUC and accuracy (threshold 0.5) before and after, plus flips of the predicted label."""
    y = np.asarray(labels, dtype=float).astype(int)
    b, c = np.asarray(base, dtype=float), np.asarray(corrected, dtype=float)
    b_hat, c_hat = (b >= 0.5).astype(int), (c >= 0.5).astype(int)
    b_right, c_right = b_hat == y, c_hat == y
    return {
        "n": len(y),
        "base": {"roc_auc": _auc(y, b), "accuracy": float(np.mean(b_right))},
        "corrected": {"roc_auc": _auc(y, c), "accuracy": float(np.mean(c_right))},
        "flips": {
            "changed": int((b_hat != c_hat).sum()),
            "wrong_to_right": int((~b_right & c_right).sum()),
            "right_to_wrong": int((b_right & ~c_right).sum()),
        },
    }


def regression_metrics(labels: Iterable[float], base: Iterable[float], corrected: Iterable[float]) -> dict[str, Any]:
    """RMSE and MAE before and after; flips are rows whose absolute error shrank (improved) or grew (worsened)."""
    y = np.asarray(labels, dtype=float)
    b, c = np.asarray(base, dtype=float), np.asarray(corrected, dtype=float)
    b_err, c_err = np.abs(b - y), np.abs(c - y)
    return {
        "n": len(y),
        "base": {"rmse": math.sqrt(float(np.mean(b_err**2))), "mae": float(np.mean(b_err))},
        "corrected": {"rmse": math.sqrt(float(np.mean(c_err**2))), "mae": float(np.mean(c_err))},
        "flips": {
            "changed": int((b != c).sum()),
            "improved": int((c_err < b_err).sum()),
            "worsened": int((c_err > b_err).sum()),
        },
    }
