from __future__ import annotations

import pytest

from llmcorr.correct.parse import parse_label, parse_number


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
