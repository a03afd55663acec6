"""Metrics before and after correction, the flips between them, and how far to trust them.

Every metric comes with a paired bootstrap 95% confidence interval (test rows resampled with replacement, the same
resample for base and corrected, so the interval of the *change* is meaningful too). Classification adds McNemar's
exact test on the flips and calibration (Brier score, expected calibration error, a reliability curve) before/after.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

BOOTSTRAP = 1000  # resamples for the confidence intervals
BINS = 10  # calibration bins


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC-AUC as the Mann-Whitney statistic (ties count half); None with one class."""
    positives = labels == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return None  # undefined with one class
    from scipy.stats import rankdata  # imported here: scipy adds ~1 s to every CLI start

    ranks = rankdata(scores)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _weighted_auc(weights: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC-AUC of each row of `weights` (how often each sample was drawn), ties counting half; NaN with one class."""
    values, group = np.unique(scores, return_inverse=True)
    positive = (labels == 1)[:, None] & (group[:, None] == np.arange(len(values)))  # sample -> its score's group
    negative = (labels != 1)[:, None] & (group[:, None] == np.arange(len(values)))
    w_pos, w_neg = weights @ positive, weights @ negative  # resample x score group
    below = np.cumsum(w_neg, axis=1) - w_neg  # negatives scored strictly lower
    pairs = w_pos.sum(axis=1) * w_neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (w_pos * (below + 0.5 * w_neg)).sum(axis=1) / pairs
    return np.where(pairs > 0, auc, np.nan)


def _interval(values: np.ndarray) -> list[float] | None:
    clean = values[np.isfinite(values)]
    if len(clean) < len(values) // 2:
        return None  # too few resamples where the metric is defined
    lo, hi = np.percentile(clean, [2.5, 97.5])
    return [float(lo), float(hi)]


def bootstrap_ci(
    metric: Callable[[np.ndarray], dict[str, np.ndarray]], n: int, seed: int = 0
) -> dict[str, dict[str, list[float] | None]]:
    """95% intervals of each value `metric(weights)` returns ({"base.accuracy": array, "delta.accuracy": …}, one
    value per resample), over BOOTSTRAP paired resamples of the n rows (weights[r, i] = draws of row i)."""
    if n < 2:
        return {}
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=BOOTSTRAP).astype(float)
    out: dict[str, dict[str, list[float] | None]] = {}
    for key, values in metric(weights).items():
        side, name = key.split(".", 1)
        out.setdefault(side, {})[name] = _interval(values)
    return out


def mcnemar(wrong_to_right: int, right_to_wrong: int) -> dict[str, Any]:
    """McNemar's exact test: do corrections fix more than they break? (two-sided binomial on the discordant pairs)"""
    discordant = wrong_to_right + right_to_wrong
    if discordant == 0:
        return {"discordant": 0, "p_value": 1.0}
    from scipy.stats import binomtest

    return {"discordant": discordant, "p_value": float(binomtest(wrong_to_right, discordant, 0.5).pvalue)}


def calibration(labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Brier score, expected calibration error over equal-width bins, and the reliability curve (per non-empty bin:
    mean predicted probability, observed positive rate, rows)."""
    p = np.clip(probs, 0.0, 1.0)
    bins = np.minimum((p * BINS).astype(int), BINS - 1)
    curve, ece = [], 0.0
    for b in range(BINS):
        mask = bins == b
        if mask.any():
            confidence, observed = float(p[mask].mean()), float(labels[mask].mean())
            curve.append({"predicted": confidence, "observed": observed, "n": int(mask.sum())})
            ece += mask.sum() / len(p) * abs(confidence - observed)
    return {"brier": float(np.mean((p - labels) ** 2)), "ece": float(ece), "curve": curve}


def classification_metrics(
    labels: Iterable[float], base: Iterable[float], corrected: Iterable[float]
) -> dict[str, Any]:
    """ROC-AUC and accuracy (threshold 0.5) before and after, plus flips of the predicted label."""
    y = np.asarray(labels, dtype=float).astype(int)
    b, c = np.asarray(base, dtype=float), np.asarray(corrected, dtype=float)
    b_hat, c_hat = (b >= 0.5).astype(int), (c >= 0.5).astype(int)
    b_right, c_right = b_hat == y, c_hat == y
    flips = {
        "changed": int((b_hat != c_hat).sum()),
        "wrong_to_right": int((~b_right & c_right).sum()),
        "right_to_wrong": int((b_right & ~c_right).sum()),
    }

    def values(w: np.ndarray) -> dict[str, np.ndarray]:
        auc_b, auc_c = _weighted_auc(w, y, b), _weighted_auc(w, y, c)
        acc_b, acc_c = w @ b_right / len(y), w @ c_right / len(y)
        return {
            "base.roc_auc": auc_b,
            "corrected.roc_auc": auc_c,
            "delta.roc_auc": auc_c - auc_b,
            "base.accuracy": acc_b,
            "corrected.accuracy": acc_c,
            "delta.accuracy": acc_c - acc_b,
        }

    return {
        "n": len(y),
        "base": {"roc_auc": _auc(y, b), "accuracy": float(np.mean(b_right))},
        "corrected": {"roc_auc": _auc(y, c), "accuracy": float(np.mean(c_right))},
        "flips": flips,
        "ci95": bootstrap_ci(values, len(y)),
        "mcnemar": mcnemar(flips["wrong_to_right"], flips["right_to_wrong"]),
        "calibration": {"base": calibration(y, b), "corrected": calibration(y, c)},
    }


def regression_metrics(labels: Iterable[float], base: Iterable[float], corrected: Iterable[float]) -> dict[str, Any]:
    """RMSE and MAE before and after; flips are rows whose absolute error shrank (improved) or grew (worsened)."""
    y = np.asarray(labels, dtype=float)
    b, c = np.asarray(base, dtype=float), np.asarray(corrected, dtype=float)
    b_err, c_err = np.abs(b - y), np.abs(c - y)

    def values(w: np.ndarray) -> dict[str, np.ndarray]:
        n = len(y)
        rmse_b, rmse_c = np.sqrt(w @ b_err**2 / n), np.sqrt(w @ c_err**2 / n)
        mae_b, mae_c = w @ b_err / n, w @ c_err / n
        return {
            "base.rmse": rmse_b,
            "corrected.rmse": rmse_c,
            "delta.rmse": rmse_c - rmse_b,
            "base.mae": mae_b,
            "corrected.mae": mae_c,
            "delta.mae": mae_c - mae_b,
        }

    return {
        "n": len(y),
        "base": {"rmse": math.sqrt(float(np.mean(b_err**2))), "mae": float(np.mean(b_err))},
        "corrected": {"rmse": math.sqrt(float(np.mean(c_err**2))), "mae": float(np.mean(c_err))},
        "ci95": bootstrap_ci(values, len(y)),
        "flips": {
            "changed": int((b != c).sum()),
            "improved": int((c_err < b_err).sum()),
            "worsened": int((c_err > b_err).sum()),
        },
    }
