"""The LLMCorr corrector: turn a test row into a prompt with contextual knowledge, and an answer into a correction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, UserError
from ..prompts import PromptTemplate, load_template
from ..providers.base import Message
from .classes import TOP
from .data import Predictions, Problem
from .knowledge import STRATEGIES, Knowledge
from .molecules import describe, require_rdkit
from .parse import Parsed, parse_class, parse_label, parse_number

DEFAULT_TASKS: dict[str, str] = {
    "classification": "belongs to the positive class",
    "multiclass": "the class",
    "regression": "the target value",
}
Class = int | str  # a multiclass problem's class, as its label column writes it


def builtin_template(problem: Problem) -> Path:
    return Path(str(resources.files("llmcorr.correct") / "templates" / f"{problem}.jinja"))


def _fmt_number(value: float) -> str:
    return f"{value:.4g}"


@dataclass
class Correction:
    """What the corrector made of one answer."""

    parsed: Parsed
    corrected: float  # corrected probability (classification), class index (multiclass) or value (regression)
    output: dict[str, Any]


def interpret(problem: str, base: float, text: str, classes: Sequence[Class] = ()) -> Correction:
    """Corrected prediction from an answer; an unparsable answer keeps the base prediction. It needs only the problem
    (and a multiclass problem's classes): a worker of a Ray run answers rows with it (runs/correction_rows.py
    `CorrectionRows`).

    Classification keeps probabilities: when the LLM agrees with the model's label the model's probability stands;
    when it overrules it, the probability is mirrored (p -> 1 - p), so the label flips and the model's confidence
    ordering is kept for ROC-AUC. Multiclass works on class indices: `base` is the model's class's index in
    `classes`, the correction the index of the class the answer names.
    """
    if problem == "multiclass":
        parsed = parse_class(text, [str(c) for c in classes])
        corrected = float(parsed.value) if parsed.ok and parsed.value is not None else base
    elif problem == "classification":
        parsed = parse_label(text)
        corrected = base
        if parsed.ok and bool(parsed.value) != (base >= 0.5):
            corrected = 1.0 - base
            if corrected == 0.5:  # 0.5 sits on the threshold: nudge it to the LLM's side
                corrected = 0.5 + (1e-6 if parsed.value else -1e-6)
    else:
        parsed = parse_number(text)
        corrected = float(parsed.value) if parsed.ok and parsed.value is not None else base
    output = correction_output(problem, corrected, parsed.explanation, classes)
    return Correction(parsed=parsed, corrected=corrected, output=output)


def correction_output(
    problem: str, corrected: float, explanation: str | None, classes: Sequence[Class] = ()
) -> dict[str, Any]:
    """A row's output columns for a corrected prediction (multiclass: the class, from its index)."""
    out: dict[str, Any] = {"corrected_prediction": classes[int(corrected)] if problem == "multiclass" else corrected}
    if problem == "classification":
        out["corrected_label"] = int(corrected >= 0.5)
    out["explanation"] = explanation
    return out


KNOWLEDGE_FROM = {"valid": ("valid",), "train": ("train",), "train+valid": ("train", "valid")}


class Corrector:
    """Builds each test row's prompt and reads its answer. Knowledge comes from the validation split by default
    (`knowledge_from`: valid, train or train+valid), chosen by `knowledge` (random, knn or stratified)."""

    def __init__(
        self,
        predictions: Predictions,
        task: str | None = None,
        shots: int | str = 3,
        seed: int = 0,
        template: str | Path | None = None,
        knowledge: str = "random",
        knowledge_from: str = "valid",
        describe_molecules: bool = False,
    ) -> None:
        self.predictions = predictions
        self.problem = predictions.problem
        self.task = task or DEFAULT_TASKS[self.problem]
        self.seed = seed
        self.template: PromptTemplate = load_template(template or builtin_template(self.problem))
        if knowledge_from not in KNOWLEDGE_FROM:
            raise UserError(f"--knowledge-from: expected one of {', '.join(KNOWLEDGE_FROM)}, got {knowledge_from!r}")
        if knowledge not in STRATEGIES:
            raise UserError(f"--knowledge: expected one of {', '.join(STRATEGIES)}, got {knowledge!r}")
        frame = predictions.frame
        self.pool = frame[frame["split"].isin(KNOWLEDGE_FROM[knowledge_from])]
        if self.pool.empty:
            raise DataError(f"{predictions.source}: no {knowledge_from} rows to take knowledge from")
        if shots == "all":
            self.shots = len(self.pool)
        elif isinstance(shots, int) and shots >= 0:
            self.shots = shots
        else:
            raise UserError(f"shots: expected a number >= 0 or 'all', got {shots!r}")
        self.knowledge = Knowledge(self.pool, self.shots, knowledge, seed, self.problem)
        self.describe_molecules = describe_molecules
        if describe_molecules:
            require_rdkit()
        self.classes: tuple[Class, ...] = tuple(predictions.classes.names) if predictions.classes else ()
        self._probabilities: dict[str, np.ndarray] = {}  # multiclass: the model's probabilities, by row id
        if predictions.classes is not None:
            probabilities = predictions.classes.probabilities(frame)
            if probabilities is not None:
                self._probabilities = dict(zip(frame["id"].astype(str), probabilities, strict=True))

    def base_values(self, rows: pd.DataFrame) -> list[float]:
        """The rows' base predictions as the loop compares them: probability or value; a class's index (multiclass)."""
        if self.problem == "multiclass":
            assert self.predictions.classes is not None
            return [float(k) for k in self.predictions.classes.indices(rows["prediction"])]
        return rows["prediction"].astype(float).tolist()

    def _class_vars(self, row: pd.Series, with_answer: bool) -> dict[str, Any]:
        """A multiclass row: its predicted class, that class's probability and the model's top classes (if the
        table has probabilities), and the true class of a knowledge row."""
        out: dict[str, Any] = {"id": row["id"], "input": row["input"], "predicted": str(row["prediction"])}
        if self.describe_molecules:
            out["description"] = describe(str(row["input"]))
        probabilities = self._probabilities.get(str(row["id"]))
        out["probability"], out["top"] = None, []
        if probabilities is not None and self.predictions.classes is not None:
            own = self.predictions.classes.index_of(row["prediction"])
            out["probability"] = float(probabilities[own]) if own is not None else None
            order = np.argsort(-probabilities, kind="stable")[:TOP]
            out["top"] = [{"name": str(self.classes[k]), "probability": float(probabilities[k])} for k in order]
        if with_answer:
            out["answer"] = str(row["label"])
        return out

    def _row_vars(self, row: pd.Series, with_answer: bool) -> dict[str, Any]:
        if self.problem == "multiclass":
            return self._class_vars(row, with_answer)
        prediction = float(row["prediction"])
        out: dict[str, Any] = {"id": row["id"], "input": row["input"], "prediction": prediction}
        if self.describe_molecules:
            out["description"] = describe(str(row["input"]))
        if self.problem == "classification":
            out["predicted"] = "True" if prediction >= 0.5 else "False"
            if with_answer:
                out["answer"] = "True" if row["label"] >= 0.5 else "False"
        else:
            out["prediction_text"] = _fmt_number(prediction)
            if with_answer:
                out["answer"] = _fmt_number(float(row["label"]))
        return out

    def knowledge_for(self, row: pd.Series) -> pd.DataFrame:
        predicted = row["prediction"] if self.problem == "multiclass" else None
        return self.knowledge.for_row(str(row["id"]), str(row["input"]), predicted)

    def messages(self, row: pd.Series, knowledge_rows: pd.DataFrame | None = None) -> list[Message]:
        """The prompt for a query row, with its knowledge (chosen here unless `knowledge_rows` is given). A
        multiclass template also gets `classes`, the class names."""
        chosen = self.knowledge_for(row) if knowledge_rows is None else knowledge_rows
        knowledge = [self._row_vars(k, with_answer=True) for _, k in chosen.iterrows()]
        shown = {"classes": [str(c) for c in self.classes]} if self.problem == "multiclass" else {}
        return self.template.render(task=self.task, knowledge=knowledge, query=self._row_vars(row, False), **shown)

    def interpret(self, base: float, text: str) -> Correction:
        """Corrected prediction from an answer (`interpret`)."""
        return interpret(self.problem, base, text, self.classes)

    def output(self, corrected: float, explanation: str | None) -> dict[str, Any]:
        """A row's output columns for a corrected prediction (`correction_output`)."""
        return correction_output(self.problem, corrected, explanation, self.classes)
