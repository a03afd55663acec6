from __future__ import annotations

import pytest

from llmcorr.correct.parse import parse_class, parse_label, parse_number


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Prediction: True; Explanation: large radius.", True),
        ("prediction: false; explanation: small", False),
        ("**Prediction:** True", True),
        ("Prediction = No", False),
        ("True. The sample looks benign.", True),
        ("  no, because", False),
        ("Prediction: 1", True),
    ],
)
def test_labels(text: str, value: bool) -> None:
    parsed = parse_label(text)
    assert parsed.ok and parsed.value is value


def test_label_explanation_and_failure() -> None:
    assert parse_label("Prediction: True; Explanation: big nuclei").explanation == "big nuclei"
    bad = parse_label("I am not sure about this sample.")
    assert not bad.ok and bad.value is None and "Prediction" in (bad.error or "")
    assert not parse_label("Truely ambiguous").ok


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Prediction: 151.5; Explanation: close to model", 151.5),
        ("Prediction: -2e3", -2000.0),
        ("prediction: .5", 0.5),
        ("42 because", 42.0),
    ],
)
def test_numbers(text: str, value: float) -> None:
    parsed = parse_number(text)
    assert parsed.ok and parsed.value == pytest.approx(value)


def test_number_failure() -> None:
    assert not parse_number("Prediction: unknown").ok
    assert not parse_number("about a hundred").ok


CLASSES = ["setosa", "versicolor", "virginica", "Iris setosa"]


@pytest.mark.parametrize(
    ("text", "index"),
    [
        ("Prediction: versicolor; Explanation: medium petals", 1),
        ("prediction:  VIRGINICA ", 2),
        ('**Prediction:** "Setosa".', 0),
        ("Prediction = iris   SETOSA; Explanation: x", 3),  # the longest class name that fits
        ("Prediction: virginica (0.9)", 2),
        ("Virginica. Long petals.", 2),  # a bare leading class
    ],
)
def test_classes_case_and_whitespace_insensitive(text: str, index: int) -> None:
    parsed = parse_class(text, CLASSES)
    assert parsed.ok and parsed.value == index


def test_class_explanation_and_failures() -> None:
    assert parse_class("Prediction: setosa; Explanation: short petals", CLASSES).explanation == "short petals"
    for text in ("Prediction: rose", "Prediction: setosas", "I think it is setosa", "Prediction: True"):
        bad = parse_class(text, CLASSES)
        assert not bad.ok and bad.value is None and "Prediction: <class>" in (bad.error or ""), text
    numbered = ["0", "1", "2"]
    assert parse_class("Prediction: 2; Explanation: e", numbered).value == 2
    assert parse_class("Prediction: 2.0", numbered).value == 2
    assert not parse_class("Prediction: 2.5", numbered).ok and not parse_class("Prediction: 3", numbered).ok
