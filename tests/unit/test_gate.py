from __future__ import annotations

import numpy as np
import pytest

from llmcorr.correct.gate import ALWAYS, choose_gate


def test_threshold_is_the_smallest_that_does_best_and_one_lucky_row_is_not_enough() -> None:
    labels = np.array([1, 1, 1, 0, 0, 1])
    base = np.array([0.45, 0.40, 0.9, 0.1, 0.2, 0.95])  # the two unsure ones are wrong
    corrected = np.array([0.55, 0.60, 0.1, 0.9, 0.8, 0.05])  # the LLM flips everything
    gate = choose_gate("classification", labels, base, corrected)
    assert gate.policy.startswith("where") and 0.2 < gate.threshold <= 0.6  # the unsure rows only
    assert list(gate.apply(base, corrected)) == [0.55, 0.60, 0.9, 0.1, 0.2, 0.95]
    one = choose_gate("classification", labels[1:], base[1:], corrected[1:])  # a single fixable row
    assert one.policy == "never" and list(one.apply(base[1:], corrected[1:])) == list(base[1:])


def test_regression_is_all_or_nothing_by_validation_rmse() -> None:
    y = np.array([1.0, 2.0, 3.0])
    better = choose_gate("regression", y, y + 1, y + 0.1)
    worse = choose_gate("regression", y, y + 0.1, y + 1)
    assert better.threshold == ALWAYS and better.policy == "always"
    assert worse.policy == "never" and list(worse.apply(y + 0.1, y + 1)) == list(y + 0.1)
    assert choose_gate("regression", [], [], []).policy == "never"


def test_multiclass_gate_works_on_the_confidences_it_is_given() -> None:
    labels = np.array([0, 1, 2, 2, 0, 1, 2, 1])
    base = np.array([0, 1, 1, 0, 0, 1, 2, 2])  # rows 2, 3 and 7 (0-based) are wrong, and unsure
    margins = np.array([0.9, 0.8, 0.1, 0.05, 0.7, 0.6, 0.9, 0.2])
    corrected = np.array([1, 0, 2, 2, 1, 0, 0, 1])  # the LLM fixes the unsure rows, breaks the sure ones
    gate = choose_gate("multiclass", labels, base, corrected, confidences=margins)
    assert gate.policy.startswith("where") and 0.2 < gate.threshold <= 0.6
    assert gate.evidence["validation_accuracy"] == {"base": 5 / 8, "corrected": 3 / 8, "gated": 1.0}
    assert list(gate.apply(base, corrected, margins)) == list(labels)
    assert list(gate.applies(base, margins)) == [m < gate.threshold for m in margins]
    without = choose_gate("multiclass", labels, base, corrected, confidences=np.ones(8))  # no probabilities
    assert without.policy == "never"  # all or nothing, and all would lose
    with pytest.raises(ValueError, match="confidences"):
        choose_gate("multiclass", labels, base, corrected)
