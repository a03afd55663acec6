"""Multiclass metrics against scikit-learn's own, on a seeded random problem: accuracy, macro-F1, log-loss, recall
per class, the confusion matrices; the paired bootstrap intervals, McNemar's test and calibration as the binary
metrics have them; and the corrected side's probabilities (swapped where the class changed)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss, recall_score

from llmcorr.correct.metrics import classification_metrics, mcnemar
from llmcorr.correct.metrics_model import CorrectionMetrics
from llmcorr.correct.metrics_multiclass import multiclass_metrics, swap_probabilities

CLASSES = ["a", "b", "c", "d"]


def problem(n: int = 80, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    base = np.where(rng.random(n) < 0.7, y, rng.integers(0, 4, n))
    corrected = np.where(rng.random(n) < 0.3, y, base)
    probabilities = rng.dirichlet(np.ones(4), n)
    return y, base, corrected, probabilities


def test_the_metrics_are_scikit_learns() -> None:
    y, base, corrected, probabilities = problem()
    m = multiclass_metrics(y, base, corrected, CLASSES, probabilities)
    swapped = swap_probabilities(probabilities, base, corrected)
    for side, predicted, probs in (("base", base, probabilities), ("corrected", corrected, swapped)):
        assert m[side]["accuracy"] == pytest.approx(accuracy_score(y, predicted))
        assert m[side]["macro_f1"] == pytest.approx(f1_score(y, predicted, average="macro"))
        assert m[side]["log_loss"] == pytest.approx(log_loss(y, probs, labels=range(4)))
        recall = recall_score(y, predicted, average=None, labels=range(4))
        assert [c[side] for c in m["per_class"]] == pytest.approx(list(recall))
        assert m["confusion"][side] == confusion_matrix(y, predicted, labels=range(4)).tolist()
    assert [c["n"] for c in m["per_class"]] == np.bincount(y, minlength=4).tolist()
    assert m["confusion"]["classes"] == CLASSES and m["n"] == len(y)


def test_flips_intervals_and_mcnemar_as_the_binary_case_has_them() -> None:
    y, base, corrected, probabilities = problem()
    m = multiclass_metrics(y, base, corrected, CLASSES, probabilities)
    fixed = int(((base != y) & (corrected == y)).sum())
    broke = int(((base == y) & (corrected != y)).sum())
    assert m["flips"] == {"changed": int((base != corrected).sum()), "wrong_to_right": fixed, "right_to_wrong": broke}
    assert m["mcnemar"] == mcnemar(fixed, broke)
    for key in ("accuracy", "macro_f1", "log_loss"):
        for side in ("base", "corrected"):
            low, high = m["ci95"][side][key]
            assert low <= m[side][key] <= high and low < high
        low, high = m["ci95"]["delta"][key]
        assert low <= m["corrected"][key] - m["base"][key] <= high
    for c in m["per_class"]:  # each class's recall: intervals from the same resamples, around the estimates
        for side in ("base", "corrected"):
            low, high = c["ci95"][side]
            assert low <= c[side] <= high
        low, high = c["ci95"]["delta"]
        assert low <= c["corrected"] - c["base"] <= high
    typed = CorrectionMetrics.model_validate(m)  # the typed form gives back what was stored
    assert typed.to_dict() == CorrectionMetrics.model_validate(typed.to_dict()).to_dict()
    assert typed.confusion is not None and typed.per_class is not None and typed.ci95.delta.interval("macro_f1")
    assert typed.per_class[0].ci95.delta == tuple(m["per_class"][0]["ci95"]["delta"])


def test_a_class_without_test_rows_has_no_recall_interval() -> None:
    y, base, corrected, _ = problem()
    keep = y != 3  # no row of the last class is labelled so
    m = multiclass_metrics(y[keep], base[keep], corrected[keep], CLASSES)
    last = m["per_class"][3]
    assert last["n"] == 0 and last["base"] is None and last["ci95"] == {}
    assert CorrectionMetrics.model_validate(m).per_class[3].ci95.delta is None  # type: ignore[index]


def test_without_probabilities_there_is_no_log_loss_or_calibration() -> None:
    y, base, corrected, _ = problem(30)
    m = multiclass_metrics(y, base, corrected, CLASSES)
    assert set(m["base"]) == {"accuracy", "macro_f1"} and "calibration" not in m and "log_loss" not in m["ci95"]["base"]


def test_two_classes_agree_with_the_binary_metrics() -> None:
    """For two classes the swap is the binary corrector's p -> 1 - p, and the margin-free metrics agree."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    p = rng.random(60)
    base = (p >= 0.5).astype(int)
    corrected = np.where(rng.random(60) < 0.3, 1 - base, base)
    probabilities = np.column_stack([1 - p, p])
    multi = multiclass_metrics(y, base, corrected, ["0", "1"], probabilities)
    binary = classification_metrics(y, p, np.where(corrected != base, 1 - p, p))
    assert multi["base"]["accuracy"] == binary["base"]["accuracy"]
    assert multi["corrected"]["accuracy"] == binary["corrected"]["accuracy"]
    assert multi["flips"] == binary["flips"] and multi["mcnemar"] == binary["mcnemar"]
    # the binary Brier score is of one probability; the multiclass one sums both classes: twice it
    for side in ("base", "corrected"):
        assert multi["calibration"][side]["brier"] == pytest.approx(2 * binary["calibration"][side]["brier"])


def test_swapped_probabilities_give_the_new_class_the_models_confidence() -> None:
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]])
    swapped = swap_probabilities(probabilities, np.array([0, 1]), np.array([2, 1]))
    assert swapped.tolist() == [[0.1, 0.2, 0.7], [0.1, 0.6, 0.3]]
    assert swapped.sum(axis=1).tolist() == pytest.approx([1.0, 1.0])
