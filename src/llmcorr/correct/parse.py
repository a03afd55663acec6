"""Read the corrected prediction out of an LLM answer of the form `Prediction: <value>; Explanation: <text>`."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_BOOL = {
    "true": True,
    "yes": True,
    "1": True,
    "positive": True,
    "false": False,
    "no": False,
    "0": False,
    "negative": False,
}
_SEP = r"[\s:=*\"'`]{0,8}"  # between "Prediction" and its value: colon, equals, markdown bold, quotes
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_LABELLED_BOOL = re.compile(rf"prediction{_SEP}(true|false|yes|no|positive|negative|1|0)\b", re.IGNORECASE)
_LEADING_BOOL = re.compile(r"^\W{0,4}(true|false|yes|no)\b", re.IGNORECASE)
_LABELLED_NUMBER = re.compile(rf"prediction{_SEP}({_NUMBER})", re.IGNORECASE)
_LEADING_NUMBER = re.compile(rf"^\s*({_NUMBER})\b")
_EXPLANATION = re.compile(rf"explanation{_SEP}(.*)", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Parsed:
    value: bool | float | None
    explanation: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def _explanation(text: str) -> str | None:
    match = _EXPLANATION.search(text)
    return match.group(1).strip() or None if match else None


def parse_label(text: str) -> Parsed:
    """A True/False answer; `Prediction: True` wins, a bare leading True/False/Yes/No is accepted."""
    match = _LABELLED_BOOL.search(text) or _LEADING_BOOL.search(text.strip())
    if not match:
        return Parsed(None, None, "no 'Prediction: True/False' in the answer")
    return Parsed(_BOOL[match.group(1).lower()], _explanation(text), None)


def parse_number(text: str) -> Parsed:
    """A numeric answer; `Prediction: 3.2` wins, a bare leading number is accepted."""
    match = _LABELLED_NUMBER.search(text) or _LEADING_NUMBER.search(text)
    if not match:
        return Parsed(None, None, "no 'Prediction: <number>' in the answer")
    value = float(match.group(1))
    if not math.isfinite(value):
        return Parsed(None, None, f"prediction is not a finite number: {match.group(1)}")
    return Parsed(value, _explanation(text), None)
