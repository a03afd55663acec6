from __future__ import annotations

import numpy as np

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
