from __future__ import annotations

import math

import numpy as np
import pytest

from llmcorr.correct.metrics import _weighted_auc, calibration, classification_metrics, regression_metrics


def test_classification_flips_and_accuracy() -> None:
    labels = [1, 0, 1, 0]
    base = [0.9, 0.6, 0.4, 0.1]  # right, wrong, wrong, right
    corrected = [0.9, 0.4, 0.4, 0.9]  # right, right, wrong, wrong
    m = classification_metrics(labels, base, corrected)
    assert m["n"] == 4
    assert m["base"]["accuracy"] == 0.5 and m["corrected"]["accuracy"] == 0.5
    assert m["flips"] == {"changed": 2, "wrong_to_right": 1, "right_to_wrong": 1}
    assert m["base"]["roc_auc"] == pytest.approx(0.75)


def test_auc_undefined_for_one_class() -> None:
    m = classification_metrics([1, 1], [0.2, 0.8], [0.8, 0.8])
    assert m["base"]["roc_auc"] is None
    assert m["corrected"]["accuracy"] == 1.0


def test_regression() -> None:
    m = regression_metrics([1.0, 2.0, 3.0], [1.0, 3.0, 5.0], [1.0, 2.5, 6.0])
    assert m["base"]["mae"] == pytest.approx(1.0)
    assert m["base"]["rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert m["corrected"]["mae"] == pytest.approx((0 + 0.5 + 3) / 3)
    assert m["flips"] == {"changed": 2, "improved": 1, "worsened": 1}


def test_weighted_auc_matches_sklearn_on_a_resample() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 60)
    scores = np.round(rng.random(60), 1)  # ties on purpose
    draws = rng.integers(0, 60, 60)
    weights = np.bincount(draws, minlength=60)[None, :].astype(float)
    assert _weighted_auc(weights, y, scores)[0] == pytest.approx(roc_auc_score(y[draws], scores[draws]))
    assert math.isnan(_weighted_auc(np.ones((1, 3)), np.array([1, 1, 1]), np.array([0.1, 0.2, 0.3]))[0])


def test_confidence_intervals_mcnemar_and_calibration() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    base = np.clip(y * 0.4 + rng.random(200) * 0.6, 0, 1)
    corrected = base.copy()
    wrong = np.flatnonzero((base >= 0.5) != y)[:12]
    corrected[wrong] = 1 - corrected[wrong]  # 12 fixes, no breakage
    m = classification_metrics(y, base, corrected)
    for side in ("base", "corrected"):
        for name in ("roc_auc", "accuracy"):
            lo, hi = m["ci95"][side][name]
            assert lo <= m[side][name] <= hi and hi - lo < 0.3
    assert m["ci95"]["delta"]["accuracy"][0] > 0  # a real improvement: the change's interval excludes 0
    assert m["flips"]["wrong_to_right"] == 12 and m["flips"]["right_to_wrong"] == 0
    assert m["mcnemar"] == {"discordant": 12, "p_value": pytest.approx(2 * 0.5**12)}
    perfect = calibration(np.array([0, 1, 1]), np.array([0.0, 1.0, 1.0]))
    assert perfect["brier"] == 0 and perfect["ece"] == 0 and sum(b["n"] for b in perfect["curve"]) == 3
    assert m["calibration"]["base"]["ece"] > 0
    r = regression_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 2.5, 3.5, 4.0], [1.0, 2.0, 3.0, 4.5])
    lo, hi = r["ci95"]["base"]["mae"]
    assert lo <= r["base"]["mae"] <= hi
    assert classification_metrics([1], [0.9], [0.9])["ci95"] == {}  # one row: no interval
