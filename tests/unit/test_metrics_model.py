"""`CorrectionMetrics` (issue 15): every metrics dict a correct run has stored loads, gives back exactly what was
stored, reads by attribute, and still indexes like the dict `result.metrics` used to be; the views read it typed."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from markupsafe import escape

from llmcorr.correct import Classes, CorrectionMetrics, classification_metrics, regression_metrics
from llmcorr.correct.metrics_model import GateChoice, ReliabilityBin, SideMetrics
from llmcorr.report.html import render_report
from llmcorr.runs.correction_table import compute_metrics, gated
from llmcorr.store import RunRecord
from llmcorr.view import (
    confusion_view,
    correction_metrics,
    flip_rows,
    headline,
    metric_name,
    metric_rows,
    other_metrics,
)


def stored(metrics: dict[str, Any]) -> dict[str, Any]:
    """What the store hands back: the dict through JSON, as runs.metrics_json keeps it."""
    return json.loads(json.dumps(metrics))


def table(labels: list[float], base: list[float], corrected: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(len(labels))],
            "input": [f"row {i}" for i in range(len(labels))],
            "label": labels,
            "prediction": base,
            "corrected_prediction": corrected,
            "parsed": [True] * len(labels),
            "explanation": [None] * len(labels),
        }
    )


# test rows: the LLM fixes the unsure wrong ones and breaks a sure right one
CLS_TEST = table([1, 1, 0, 0, 1, 0], [0.45, 0.9, 0.55, 0.1, 0.4, 0.2], [0.7, 0.2, 0.3, 0.1, 0.8, 0.2])
CLS_VALID = table([1, 1, 1, 0, 0, 1], [0.45, 0.40, 0.9, 0.1, 0.2, 0.95], [0.55, 0.60, 0.1, 0.9, 0.8, 0.05])
REG_TEST = table([1.0, 2.0, 3.0, 4.0], [1.5, 2.5, 3.5, 4.5], [1.1, 2.2, 3.6, 4.0])
REG_VALID = table([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [1.1, 2.1, 3.1])
# multiclass: classes as text, the model's probabilities in prob_<class> columns; unsure rows are the wrong ones
CLASSES = Classes(names=["cat", "dog", "owl"], prob_columns=["prob_cat", "prob_dog", "prob_owl"])


def classes_table(labels: str, base: str, corrected: str, margins: list[float]) -> pd.DataFrame:
    """Rows of one-letter classes (c, d, o): the model gives its class 0.5 + margin / 2 and the next class the rest,
    so its top-two margin is `margin`."""
    names = {"c": "cat", "d": "dog", "o": "owl"}
    out = table([names[x] for x in labels], [names[x] for x in base], [names[x] for x in corrected])  # type: ignore[misc]
    probabilities = np.zeros((len(base), 3))
    for i, (b, m) in enumerate(zip(base, margins, strict=True)):
        k = "cdo".index(b)
        probabilities[i, k], probabilities[i, (k + 1) % 3] = 0.5 + m / 2, 0.5 - m / 2
    for k, name in enumerate(CLASSES.texts):
        out[f"prob_{name}"] = probabilities[:, k]
    return out


MC_TEST = classes_table("cdocdo", "cdodcc", "cdocdo", [0.9, 0.8, 0.1, 0.1, 0.05, 0.9])
MC_VALID = classes_table("cdocdoc", "cdoddoo", "odccdoc", [0.9, 0.8, 0.7, 0.1, 0.15, 0.9, 0.05])


def current_shapes() -> dict[str, dict[str, Any]]:
    """Every shape the current code stores for a correct run."""
    return {
        "classification": gated(CLS_TEST, None, "classification")[1],
        "regression": gated(REG_TEST, None, "regression")[1],
        "classification gated": gated(CLS_TEST, CLS_VALID, "classification")[1],
        "regression gated": gated(REG_TEST, REG_VALID, "regression")[1],
        "gated, no validation rows": gated(CLS_TEST, CLS_VALID.iloc[:0], "classification")[1],
        "empty": gated(CLS_TEST.iloc[:0], None, "classification")[1],
        "empty, gated": gated(CLS_TEST.iloc[:0], CLS_VALID, "classification")[1],
        "one row (no intervals)": gated(CLS_TEST.iloc[:1], None, "classification")[1],
        "one class (no ROC-AUC)": gated(CLS_TEST.iloc[:2], None, "classification")[1],
        "multiclass": gated(MC_TEST, None, "multiclass", CLASSES)[1],
        "multiclass gated": gated(MC_TEST, MC_VALID, "multiclass", CLASSES)[1],
        "multiclass, no probabilities": gated(
            MC_TEST.drop(columns=[f"prob_{c}" for c in CLASSES.texts]),
            MC_VALID,
            "multiclass",
            CLASSES.model_copy(update={"prob_columns": None}),
        )[1],
    }


OLD_SHAPES: dict[str, dict[str, Any]] = {
    # the walking skeleton: no intervals, McNemar or calibration
    "skeleton": {
        "n": 2,
        "base": {"roc_auc": None, "accuracy": 0.5},
        "corrected": {"roc_auc": None, "accuracy": 1.0},
        "flips": {"changed": 1, "wrong_to_right": 1, "right_to_wrong": 0},
        "parsed": 2,
    },
    "skeleton regression": {
        "n": 2,
        "base": {"rmse": 0.5, "mae": 0.5},
        "corrected": {"rmse": 0.1, "mae": 0.1},
        "flips": {"changed": 2, "improved": 2, "worsened": 0},
        "parsed": 2,
    },
    # hand-made (tests/unit/test_run_views.py): intervals of the change only, a curve left out
    "partial": {
        "n": 4,
        "base": {"roc_auc": 1.0, "accuracy": 1.0},
        "corrected": {"roc_auc": 1.0, "accuracy": 1.0},
        "ci95": {"delta": {"roc_auc": [0.0, 0.0], "accuracy": [0.0, 0.0]}},
        "calibration": {"base": {"brier": 0.01, "ece": 0.02, "curve": []}, "corrected": {"brier": 0.01, "ece": 0.02}},
        "gate": {"policy": "never", "threshold": 0.0, "validation_rows": 4},
    },
    # a newer version's keys, anywhere: kept
    "newer": {
        "n": 3,
        "base": {"accuracy": 0.5, "f1": 0.4},
        "corrected": {"accuracy": 0.75, "f1": 0.6},
        "flips": {"changed": 1, "abstained": 2},
        "gate": {"policy": "always", "threshold": 1.01, "budget": {"rows": 3}},
        "cost_per_fix": 0.01,
    },
}


def all_shapes() -> dict[str, dict[str, Any]]:
    return current_shapes() | OLD_SHAPES


@pytest.mark.parametrize("name", list(all_shapes()))
def test_every_stored_shape_loads_and_gives_back_what_was_stored(name: str) -> None:
    raw = stored(all_shapes()[name])
    metrics = CorrectionMetrics.model_validate(raw)
    assert metrics.to_dict() == raw  # nothing dropped, nothing added, nulls kept
    assert json.loads(json.dumps(metrics.to_dict())) == raw
    assert CorrectionMetrics.model_validate(metrics) is metrics  # typed already: as it is


def test_current_shapes_read_by_attribute() -> None:
    shapes = {name: CorrectionMetrics.model_validate(stored(m)) for name, m in current_shapes().items()}

    cls = shapes["classification"]
    assert cls.n == 6 and cls.parsed == 6 and cls.gate is None and cls.ungated is None
    assert cls.base is not None and cls.corrected is not None and cls.flips is not None
    assert cls.base.accuracy == pytest.approx(3 / 6) and cls.corrected.accuracy == pytest.approx(5 / 6)
    assert set(cls.base.recorded()) == {"roc_auc", "accuracy"} and cls.base.rmse is None
    assert cls.flips.counts() == {"changed": 4, "wrong_to_right": 3, "right_to_wrong": 1}
    assert cls.mcnemar is not None and cls.mcnemar.discordant == 4 and 0 < cls.mcnemar.p_value <= 1
    assert cls.calibration is not None and isinstance(cls.calibration.base.curve[0], ReliabilityBin)
    low, high = cls.ci95.delta.accuracy or (math.nan, math.nan)
    assert low <= cls.corrected.accuracy - cls.base.accuracy <= high

    reg = shapes["regression"]
    assert reg.base is not None and set(reg.base.recorded()) == {"rmse", "mae"} and reg.base.accuracy is None
    assert reg.flips is not None and reg.flips.counts() == {"changed": 4, "improved": 3, "worsened": 1}
    assert reg.mcnemar is None and reg.calibration is None and reg.ci95.base.interval("rmse") is not None

    gate = shapes["classification gated"].gate
    assert gate is not None and gate.policy.startswith("where") and gate.applied_on_test == 3
    assert gate.validation_accuracy is not None and gate.validation_accuracy.gated > gate.validation_accuracy.base
    ungated = shapes["classification gated"].ungated
    assert ungated is not None and ungated.corrected == cls.corrected and ungated.flips == cls.flips

    reg_gate = shapes["regression gated"].gate
    assert reg_gate is not None and reg_gate.policy == "always" and reg_gate.validation_rmse is not None
    assert reg_gate.validation_accuracy is None and reg_gate.applied_on_validation is None

    nothing = shapes["gated, no validation rows"].gate
    assert nothing is not None and nothing.policy == "never" and nothing.validation_rows == 0 and nothing.why

    for name in ("empty", "empty, gated"):
        empty = shapes[name]
        assert empty.n == 0 and empty.base is None and empty.flips is None and empty.parsed is None
    assert shapes["empty"].to_dict() == {"n": 0}
    empty_gate = shapes["empty, gated"].gate
    assert empty_gate is not None and empty_gate.applied_on_test is None

    assert shapes["one row (no intervals)"].ci95.delta.accuracy is None
    assert shapes["one row (no intervals)"].to_dict()["ci95"] == {}
    one_class = shapes["one class (no ROC-AUC)"]
    assert one_class.base is not None and one_class.base.roc_auc is None
    assert one_class.base.recorded() == {"roc_auc": None, "accuracy": 0.5}  # recorded as undefined, not absent


def test_compute_metrics_produces_the_model_and_gated_the_stored_dict() -> None:
    typed = compute_metrics(CLS_TEST, "classification")
    assert isinstance(typed, CorrectionMetrics) and typed.parsed == 6
    expected = classification_metrics(CLS_TEST["label"], CLS_TEST["prediction"], CLS_TEST["corrected_prediction"])
    assert typed.to_dict() == stored(expected | {"parsed": 6})
    expected = regression_metrics(REG_TEST["label"], REG_TEST["prediction"], REG_TEST["corrected_prediction"])
    assert compute_metrics(REG_TEST, "regression").to_dict() == stored(expected | {"parsed": 4})
    _, kept = gated(CLS_TEST, CLS_VALID, "classification")
    assert isinstance(kept, dict) and kept == stored(kept)  # plain JSON, as the store writes it
    assert list(kept)[-3:] == ["parsed", "gate", "ungated"] and list(kept["ungated"]) == ["corrected", "flips"]


def test_the_dict_interface_of_result_metrics_still_works() -> None:
    raw = stored(gated(CLS_TEST, CLS_VALID, "classification")[1])
    metrics = CorrectionMetrics.model_validate(raw)
    assert metrics["corrected"]["accuracy"] == raw["corrected"]["accuracy"]
    assert metrics["corrected"] == raw["corrected"] and isinstance(metrics["corrected"], dict)
    assert metrics["n"] == 6 and metrics["gate"]["policy"] == raw["gate"]["policy"]
    assert metrics["ci95"]["delta"]["accuracy"] == raw["ci95"]["delta"]["accuracy"]  # a list, as stored
    assert metrics.get("gate") == raw["gate"] and metrics.get("nope") is None and metrics.get("nope", 1) == 1
    assert "ungated" in metrics and "nope" not in metrics
    assert list(metrics.keys()) == list(raw) and dict(metrics) == raw
    with pytest.raises(KeyError):
        metrics["nope"]
    regression = CorrectionMetrics.model_validate(stored(gated(REG_TEST, None, "regression")[1]))
    assert set(regression["base"]) == {"rmse", "mae"}  # as tests/integration/test_correct_local.py reads it
    empty = CorrectionMetrics.model_validate({"n": 0})
    assert empty.get("base") is None and "base" not in empty and empty["n"] == 0
    assert OLD_SHAPES["newer"]["cost_per_fix"] == CorrectionMetrics.model_validate(OLD_SHAPES["newer"])["cost_per_fix"]


def test_multiclass_metrics_gate_and_views() -> None:
    shapes = {name: CorrectionMetrics.model_validate(stored(m)) for name, m in current_shapes().items()}
    mc = shapes["multiclass"]
    assert mc.base is not None and mc.corrected is not None and mc.base.roc_auc is None
    assert list(mc.base.recorded()) == ["accuracy", "macro_f1", "log_loss"]
    assert mc.base.accuracy == pytest.approx(3 / 6) and mc.corrected.accuracy == 1.0
    assert mc.confusion is not None and mc.confusion.classes == ["cat", "dog", "owl"]
    assert mc.confusion.corrected == [[2, 0, 0], [0, 2, 0], [0, 0, 2]] and mc.confusion.base[2] == [1, 0, 1]
    assert [(c.name, c.n, c.base, c.corrected) for c in mc.per_class or []] == [
        ("cat", 2, 0.5, 1.0),
        ("dog", 2, 0.5, 1.0),
        ("owl", 2, 0.5, 1.0),
    ]
    assert [m.label for m in metric_rows(mc)] == ["accuracy", "macro-F1", "log-loss"]
    assert all(m.better for m in metric_rows(mc))  # log-loss: lower is better, and it went down
    flips = dict(flip_rows(mc))
    assert flips["recall: dog (n=2)"].startswith("0.500 → 1.000 (change 95% CI [")
    assert "Brier score, base → corrected" in flips
    view = confusion_view(mc)
    assert view is not None and view.cells["base"] == mc.confusion.base and view.changed[2] == [True, False, True]
    assert confusion_view(shapes["classification"]) is None  # binary runs: the report draws theirs from the table

    gate = shapes["multiclass gated"].gate  # validation: the LLM fixes the unsure rows and breaks the sure ones
    assert gate is not None and gate.policy.startswith("where") and 0.1 < gate.threshold <= 0.7
    assert gate.validation_accuracy is not None and gate.validation_accuracy.gated == 1.0
    gated_table, _ = gated(MC_TEST, MC_VALID, "multiclass", CLASSES)
    assert list(gated_table["gate_applied"]) == [False, False, False, True, True, False]  # changed, unsure rows
    assert list(gated_table["corrected_prediction"]) == ["cat", "dog", "owl", "cat", "dog", "cat"]
    plain = shapes["multiclass, no probabilities"]
    assert plain.base is not None and "log_loss" not in plain.base.recorded() and plain.calibration is None
    assert plain.gate is not None and plain.gate.policy in ("always", "never")  # no confidence: all or nothing


def test_parts_are_immutable_and_gate_requires_its_policy() -> None:
    metrics = CorrectionMetrics.model_validate({"n": 1, "base": {"accuracy": 1.0}})
    with pytest.raises(ValueError):
        metrics.n = 2
    with pytest.raises(ValueError):
        GateChoice.model_validate({"threshold": 0.0})
    assert SideMetrics(accuracy=0.5).recorded() == {"accuracy": 0.5}


def record(kind: str, metrics: dict[str, Any] | None, problem: str = "classification") -> RunRecord:
    return RunRecord(
        id="0123456789ab",
        name="r",
        kind=kind,
        status="completed",
        spec={"options": {"problem": problem}, "data": "d.csv", "data_sha256": "0" * 64},
        created_utc="2026-12-06T14:48:49.123+00:00",
        finished_utc="2026-12-06T14:49:49.123+00:00",
        rows_total=6,
        rows_done=6,
        rows_failed=0,
        input_tokens=10,
        output_tokens=5,
        metrics=metrics,
        error=None,
    )


def test_views_read_correct_runs_typed_and_other_runs_as_their_dict() -> None:
    raw = stored(gated(CLS_TEST, CLS_VALID, "classification")[1])
    correct = correction_metrics(record("correct", raw))
    assert correct is not None and correct.gate is not None
    assert correction_metrics(record("flow", {"base": 1})) is None  # a flow's own "base" is not a correct run's
    assert correction_metrics(record("correct", None)) is None
    assert other_metrics(record("flow", {"base": 1, "by": {"a": 1}})) == [("base", "1"), ("by", '{"a": 1}')]
    assert other_metrics(record("correct", raw)) == [] and other_metrics(record("correct", {"n": 0})) == []

    rows = {m.label: m for m in metric_rows(correct)}
    assert list(rows) == ["ROC-AUC", "accuracy"] and rows["accuracy"].base == raw["base"]["accuracy"]
    assert rows["accuracy"].change_ci == tuple(raw["ci95"]["delta"]["accuracy"])
    flips = dict(flip_rows(correct))
    assert flips["flips: wrong to right"] == raw["flips"]["wrong_to_right"]
    assert flips["answers parsed"] == "6/6" and "flips: McNemar p" in flips
    assert flips["gate (chosen on validation)"].endswith(f"; {raw['gate']['applied_on_test']} applied")
    assert flips["without the gate: accuracy"] == f"{raw['ungated']['corrected']['accuracy']:.4f}"
    assert headline(correct) == f"acc {raw['base']['accuracy']:.3f}→{raw['corrected']['accuracy']:.3f}"

    regression = CorrectionMetrics.model_validate(stored(gated(REG_TEST, None, "regression")[1]))
    assert [m.label for m in metric_rows(regression)] == ["RMSE", "MAE"] and headline(regression).startswith("RMSE")
    assert all(m.better for m in metric_rows(regression))  # lower is better, and both went down

    for old in OLD_SHAPES.values():  # old runs show what they have
        typed = CorrectionMetrics.model_validate(old)
        metric_rows(typed), flip_rows(typed), headline(typed)
    empty = CorrectionMetrics.model_validate({"n": 0})
    assert metric_rows(empty) == [] and flip_rows(empty) == [] and headline(empty) == ""


@pytest.mark.parametrize(
    ("name", "problem", "test"),
    [
        ("classification gated", "classification", CLS_TEST),
        ("regression gated", "regression", REG_TEST),
        ("classification", "classification", CLS_TEST),
        ("empty, gated", "classification", CLS_TEST.iloc[:0]),
        ("skeleton", "classification", CLS_TEST),
        ("multiclass gated", "multiclass", MC_TEST),
        ("multiclass, no probabilities", "multiclass", MC_TEST),
    ],
)
def test_the_report_renders_typed_metrics_of_every_shape(name: str, problem: str, test: pd.DataFrame) -> None:
    raw = all_shapes()[name]
    metrics = CorrectionMetrics.model_validate(stored(raw))
    html = render_report(record("correct", raw, problem), test, metrics)
    assert f"{metrics.n} test rows" in html
    if metrics.gate:
        assert f"<strong>{escape(metrics.gate.policy)}</strong>" in html
        assert f"{metrics.gate.applied_on_test or 0} test predictions changed" in html
    if metrics.ungated and metrics.ungated.corrected:
        shown = html.split('id="ungated"')[1].split("</p>")[0]
        assert all(f"{metric_name(k)} {v:.4f}" in shown for k, v in metrics.ungated.corrected.recorded().items())
    if metrics.flips:
        assert "flips: changed" in html
    if metrics.calibration:
        assert "Brier score" in html and "<circle" in html  # the reliability curve, from the typed bins
    assert ("answers parsed" in html) == (metrics.parsed is not None)
    assert ('id="confusion-base"' in html) == (len(test) > 0 and problem != "regression")
    if metrics.confusion:  # multiclass: every class's row and column, before and after
        for side in ("base", "corrected"):
            shown = html.split(f'id="confusion-{side}"')[1].split("</table>")[0]
            cells = [int(c.split(">")[-1]) for c in shown.split("</td>")[:-1]]
            assert cells == [n for row in metrics.confusion.model_dump()[side] for n in row]
            assert all(f"predicted {c}" in shown and f"label {c}" in shown for c in metrics.confusion.classes)
        assert all(f"recall: {c.name}" in html for c in metrics.per_class or [])
