"""`CorrectionMetrics`: a correct run's metrics as one typed object, so that the CLI, the dashboard and the report
read attributes instead of re-parsing a nested dict each in its own way.

The store keeps a correct run's metrics as JSON (`runs.metrics_json`) in the shape `classification_metrics` /
`multiclass_metrics` / `regression_metrics` make, with `parsed` and, for a gated run, `gate` and `ungated` added
(runs/correction_table.py):

    n, parsed                        test rows, answers parsed
    base, corrected                  SideMetrics: roc_auc + accuracy (classification), accuracy + macro_f1 (+ log_loss
                                     with probabilities; multiclass) or rmse + mae (regression)
    flips                            Flips: changed + wrong_to_right/right_to_wrong, or improved/worsened
    ci95                             Intervals: base / corrected / delta → metric → [low, high] (absent under 2 rows)
    mcnemar, calibration             classification and multiclass (calibration: where there are probabilities)
    per_class, confusion             multiclass only: recall of each class, the confusion matrices
    gate, ungated                    gated runs only; an empty test split stores {"n": 0} (and the gate, if any)
    selection                        runs that left test rows unsent (the gate's choice, a budget): ungated absent

Every part is optional, because runs recorded before the intervals, McNemar, calibration or the gate lack them
(what a part has always held when present, such as a calibration's Brier score, is required within it);
unknown keys are kept (`extra="allow"`), so a store written by a newer version still loads, and `to_dict()` gives
back exactly what was stored: a field that was stored is "set" (`exclude_unset`), even when its value is null (the
ROC-AUC of one class), and a field that was not stays absent. Flow runs' metrics are the flow's own free-form dict
and are not modelled here.

`CorrectionResult.metrics` was a dict, indexed as `result.metrics["corrected"]["accuracy"]`: `__getitem__`, `get`,
`keys` and `in` keep that working, each giving the stored (JSON) form of a field.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

Interval = tuple[float, float]  # a 95% bootstrap interval, (low, high)


class _Part(BaseModel):
    """Any part of the metrics: immutable, tolerant of keys it does not know (kept, not dropped)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    def to_dict(self) -> dict[str, Any]:
        """This part as the store keeps it: JSON types, only the keys that were given."""
        return self.model_dump(mode="json", exclude_unset=True)


class SideMetrics(_Part):
    """One side's metric values: base, corrected, or (in `ungated`) what the correction would have done ungated.
    Classification records roc_auc (None with one class) and accuracy; multiclass accuracy, macro_f1 and, with the
    model's probabilities, log_loss; regression rmse and mae."""

    roc_auc: float | None = None
    accuracy: float | None = None
    macro_f1: float | None = None
    log_loss: float | None = None
    rmse: float | None = None
    mae: float | None = None

    def recorded(self) -> dict[str, float | None]:
        """The metrics this side recorded, by key, in the stored order; None where a metric was recorded as undefined
        (ROC-AUC with one class). The keys tell a classification run from a regression one."""
        return {k: v for k, v in self.to_dict().items() if v is None or isinstance(v, int | float)}


class SideIntervals(_Part):
    """95% bootstrap intervals of one side's metrics (or of their change, `delta`); None where too few resamples
    defined the metric."""

    roc_auc: Interval | None = None
    accuracy: Interval | None = None
    macro_f1: Interval | None = None
    log_loss: Interval | None = None
    rmse: Interval | None = None
    mae: Interval | None = None

    def interval(self, key: str) -> Interval | None:
        """The interval of metric `key`, if recorded."""
        value = getattr(self, key, None)
        if isinstance(value, tuple | list) and len(value) == 2:
            return (float(value[0]), float(value[1]))
        return None


class Intervals(_Part):
    """The paired bootstrap's 95% intervals: of base, corrected, and the change between them. Empty with fewer
    than two test rows."""

    base: SideIntervals = Field(default_factory=SideIntervals)
    corrected: SideIntervals = Field(default_factory=SideIntervals)
    delta: SideIntervals = Field(default_factory=SideIntervals)


class Flips(_Part):
    """Rows the correction changed. Classification: of the predicted label, and whether it went wrong → right or
    right → wrong; regression: of the value, and whether the absolute error shrank (improved) or grew (worsened)."""

    changed: int | None = None
    wrong_to_right: int | None = None
    right_to_wrong: int | None = None
    improved: int | None = None
    worsened: int | None = None

    def counts(self) -> dict[str, int]:
        """The counts recorded, by key, in the stored order."""
        return {k: v for k, v in self.to_dict().items() if isinstance(v, int)}


class McNemar(_Part):
    """McNemar's exact test on the flips (classification): do corrections fix more than they break?"""

    discordant: int  # rows that flipped either way
    p_value: float


class ReliabilityBin(_Part):
    """One non-empty probability bin of a reliability curve."""

    predicted: float  # mean predicted probability (multiclass: of the predicted class)
    observed: float  # observed positive rate (multiclass: how often the predicted class is right)
    n: int  # rows


class CalibrationSide(_Part):
    """One side's calibration: Brier score, expected calibration error, reliability curve."""

    brier: float
    ece: float  # expected calibration error
    curve: list[ReliabilityBin] = Field(default_factory=list)


class Calibration(_Part):
    """Calibration before and after correction (classification; multiclass with probabilities: of the predicted
    class, with the multiclass Brier score)."""

    base: CalibrationSide
    corrected: CalibrationSide


class RecallIntervals(_Part):
    """95% bootstrap intervals of one class's recall, before, after and of the change (None where too few resamples
    drew the class)."""

    base: Interval | None = None
    corrected: Interval | None = None
    delta: Interval | None = None


class ClassRecall(_Part):
    """One class of a multiclass run: its test rows and the share of them predicted right, before and after (None
    without rows of the class), with their intervals (runs recorded before them have none)."""

    name: str
    n: int
    base: float | None = None
    corrected: float | None = None
    ci95: RecallIntervals = Field(default_factory=RecallIntervals)


class Confusion(_Part):
    """Confusion matrices before and after correction: `base[i][j]` test rows of class `classes[i]` predicted as
    `classes[j]`."""

    classes: list[str]
    base: list[list[int]]
    corrected: list[list[int]]


class ValidationAccuracy(_Part):
    """A classification gate's evidence: validation accuracy of the base model, every correction, the gate."""

    base: float
    corrected: float
    gated: float


class ValidationRmse(_Part):
    """A regression gate's evidence: validation RMSE of the base model and of every correction."""

    base: float
    corrected: float


class GateChoice(_Part):
    """The gate chosen on the validation rows (`correct.gate.Gate.to_dict()`), with its evidence and how many test
    predictions it changed."""

    policy: str  # "never", "always", or "where the model's confidence < t"
    threshold: float
    validation_rows: int | None = None
    why: str | None = None  # why nothing is applied, when no validation row was corrected
    validation_accuracy: ValidationAccuracy | None = None  # classification
    validation_rmse: ValidationRmse | None = None  # regression
    applied_on_validation: int | None = None  # classification
    applied_on_test: int | None = None  # absent when the test split was empty


class Ungated(_Part):
    """What the correction would have done on the test split without the gate."""

    corrected: SideMetrics | None = None
    flips: Flips | None = None


class Selection(_Part):
    """Which test rows were sent to the LLM (selective correction: runs/correction_select.py); the others kept the
    base prediction, and the metrics still cover them."""

    sent: int
    not_sent_gate: int = 0  # rows the gate would never let a correction through on
    not_sent_budget: int = 0  # rows the budget did not pay for
    requests_saved: int = 0  # the first answers those rows would have taken (every sample's)


class CorrectionMetrics(_Part):
    """A correct run's metrics on its test split (see the module docstring for the shape and why all is optional).

    Typed readers use attributes (`m.corrected.accuracy`, `m.gate.policy`); `m["corrected"]["accuracy"]` and
    `m.get("gate")` give the stored dict form, as `CorrectionResult.metrics` did when it was a dict."""

    n: int = 0  # test rows
    base: SideMetrics | None = None
    corrected: SideMetrics | None = None
    flips: Flips | None = None
    ci95: Intervals = Field(default_factory=Intervals)
    mcnemar: McNemar | None = None
    calibration: Calibration | None = None
    per_class: list[ClassRecall] | None = None  # multiclass
    confusion: Confusion | None = None  # multiclass
    parsed: int | None = None  # test rows whose answer parsed
    gate: GateChoice | None = None
    ungated: Ungated | None = None
    selection: Selection | None = None

    # the dict interface of the metrics before they were typed: each gives the stored (JSON) form

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()

    def keys(self) -> list[str]:
        """The stored keys (so `dict(metrics)` gives the stored dict too)."""
        return list(self.to_dict())
