"""Read the corrected prediction out of an LLM answer of the form `Prediction: <value>; Explanation: <text>`: a
True/False label (classification), one of the known classes (multiclass), or a number (regression)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .classes import class_key

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
_LABELLED_VALUE = re.compile(rf"prediction{_SEP}(.*?)\s*(?:;|\n|explanation|$)", re.IGNORECASE | re.DOTALL)
_QUOTES = "*\"'`“”‘’«»[](). "  # around a class name: markdown, quotes, brackets, a full stop


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


def _named_class(value: str, keys: dict[str, int]) -> int | None:
    """The class `value` names: exactly (after `class_key`), or as its first words (`Setosa, clearly`)."""
    text = class_key(value.strip(_QUOTES))
    if text in keys:
        return keys[text]
    # the longest class name the value starts with, ending at a word boundary
    for key in sorted(keys, key=len, reverse=True):
        after = text[len(key) : len(key) + 2]
        if text.startswith(key) and not after[:1].isalnum() and not (after[:1] == "." and after[1:].isdigit()):
            return keys[key]
    return None


def parse_class(text: str, classes: Sequence[str]) -> Parsed:
    """One of `classes` (case- and whitespace-insensitive); `Prediction: <class>` wins, an answer that starts
    with a class name is accepted. The value is the class's index; any other answer is a format error."""
    keys = {class_key(c): i for i, c in enumerate(classes)}
    match = _LABELLED_VALUE.search(text)
    candidates = [match.group(1)] if match else []
    if not match:
        candidates.append(re.split(r"[;\n]", text.strip(), maxsplit=1)[0])
    for candidate in candidates:
        index = _named_class(candidate, keys)
        if index is not None:
            return Parsed(index, _explanation(text), None)
    said = f" ({candidates[0].strip()[:40]!r})" if candidates and candidates[0].strip() else ""
    return Parsed(None, None, f"no 'Prediction: <class>' naming one of the classes in the answer{said}")
