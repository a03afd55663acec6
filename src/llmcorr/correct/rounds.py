"""The conversation around one correction, as the paper runs it: ask; if the answer is malformed, remind the LLM of
the format and ask again; if its correction departs strongly from the model (a label flip, or a relative change above
a threshold for regression), ask it to double-check; optionally draw several answers and vote (self-consistency).

These are pure functions of the texts; `runs/correction.py` drives the LLM calls and traces each round as a step.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..providers.base import Message

FORMATS = {
    "classification": "Prediction: <True or False>; Explanation: <one short sentence>",
    "multiclass": "Prediction: <one of: {classes}>; Explanation: <one short sentence>",
    "regression": "Prediction: <a number>; Explanation: <one short sentence>",
}


def answer_format(problem: str, classes: Sequence[str] = ()) -> str:
    """The answer format the LLM is reminded of (a multiclass one names the classes)."""
    return FORMATS[problem].format(classes=", ".join(classes))


@dataclass(frozen=True)
class LoopOptions:
    """How hard to work on each row. The defaults are the paper's simplest variant plus one format retry."""

    format_retries: int = 1  # re-asks after a malformed answer
    double_check: int = 0  # rounds of "are you sure?" after a strong change
    change_threshold: float = 0.5  # regression: relative change that counts as strong
    samples: int = 1  # self-consistency: answers drawn per row (majority vote / mean)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_retries": self.format_retries,
            "double_check": self.double_check,
            "change_threshold": self.change_threshold,
            "samples": self.samples,
        }


@dataclass
class Round:
    kind: str  # answer | format_retry | double_check
    text: str
    parsed: bool
    corrected: float | None  # the correction this answer implies (None when unparsed)
    key: str | None = None  # the response cache's key holding `text` (None: not cached)


@dataclass
class Sample:
    rounds: list[Round] = field(default_factory=list)

    @property
    def final(self) -> Round:
        return self.rounds[-1]


def format_reminder(problem: str, text: str, classes: Sequence[str] = ()) -> list[Message]:
    """The follow-up turns after an answer that could not be read (`classes`: a multiclass problem's)."""
    return [
        Message("assistant", text),
        Message(
            "user", f"I could not read that answer. Reply exactly in the format: {answer_format(problem, classes)}"
        ),
    ]


def double_check_request(problem: str, text: str, base: float, classes: Sequence[str] = ()) -> list[Message]:
    """The follow-up turns asking the LLM to reconsider a correction that overrules the model (multiclass: `base`
    is the index of the model's class in `classes`)."""
    if problem == "classification":
        model = f"the model predicted {'True' if base >= 0.5 else 'False'} with probability {base:.3f}"
    elif problem == "multiclass":
        model = f"the model predicted {classes[int(base)]}"
    else:
        model = f"the model predicted {base:.4g}"
    return [
        Message("assistant", text),
        Message(
            "user",
            f"Your answer differs strongly from the model's: {model}. The model is usually right. Double-check "
            f"your reasoning against the examples, then answer again in the format: {answer_format(problem, classes)}",
        ),
    ]


def strong_change(problem: str, base: float, corrected: float, threshold: float) -> bool:
    """A label flip (classification), another class (multiclass), or |corrected - base| / |base| above `threshold`
    (regression)."""
    if problem == "classification":
        return (corrected >= 0.5) != (base >= 0.5)
    if problem == "multiclass":
        return corrected != base
    return abs(corrected - base) > threshold * max(abs(base), 1e-9)


def combine(problem: str, base: float, samples: list[Sample]) -> tuple[float, dict[str, Any]]:
    """One corrected prediction from the samples' final answers: the majority label (ties keep the model's) or the
    mean value; unparsed samples do not vote, and with no vote at all the base prediction stands. Multiclass: the
    class most samples name, unless the model's class ties with it or no class leads alone (then the model's)."""
    votes = [s.final.corrected for s in samples if s.final.corrected is not None]
    if not votes:
        return base, {"votes": 0}
    if problem == "regression":
        return float(sum(votes) / len(votes)), {"votes": len(votes)}
    if problem == "multiclass":
        counts = Counter(votes)
        top = max(counts.values())
        leaders = [c for c, n in counts.items() if n == top]
        corrected = leaders[0] if len(leaders) == 1 and counts[base] < top else base
        return corrected, {"votes": len(votes), "for_flip": len(votes) - counts[base], "for_model": counts[base]}
    labels = Counter(v >= 0.5 for v in votes)
    flip = labels[base < 0.5] > labels[base >= 0.5]
    corrected = (1.0 - base) if flip else base
    if flip and corrected == 0.5:
        corrected = 0.5 + (1e-6 if base < 0.5 else -1e-6)
    return corrected, {"votes": len(votes), "for_flip": labels[base < 0.5], "for_model": labels[base >= 0.5]}
