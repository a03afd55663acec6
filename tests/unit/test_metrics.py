from __future__ import annotations

import math

import pytest

from llmcorr.correct.metrics import classification_metrics, regression_metrics


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
