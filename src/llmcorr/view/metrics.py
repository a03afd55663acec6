"""A run's metrics as every view shows them (`llmcorr runs show`, the dashboard, the report, the runs list): the
one place that names metrics, knows which direction is better and lays out the rows under them. A correct run's
metrics are read typed (`correction_metrics(record)`, a `CorrectionMetrics`); any other run's are its own dict."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..correct.metrics_model import CorrectionMetrics
from ..store import RunRecord

METRIC_NAMES = {
    "roc_auc": "ROC-AUC",
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
    "log_loss": "log-loss",
    "rmse": "RMSE",
    "mae": "MAE",
}
LOWER_IS_BETTER = {"rmse", "mae", "log_loss"}


def metric_name(key: str) -> str:
    """`roc_auc` → `ROC-AUC`; another key with its underscores as spaces."""
    return METRIC_NAMES.get(key, key.replace("_", " "))


def correction_metrics(record: RunRecord) -> CorrectionMetrics | None:
    """A correct run's metrics, typed; None for a run of another kind (a flow's or prompt's metrics are its own
    free-form dict: `other_metrics`) and for a run that recorded none yet."""
    if record.kind != "correct" or not record.metrics:
        return None
    return CorrectionMetrics.model_validate(record.metrics)


def headline(metrics: CorrectionMetrics | None) -> str:
    """A correct run's main metric, base → corrected, for one cell of a runs list."""
    if metrics is None or metrics.base is None or metrics.corrected is None:
        return ""
    base, corrected = metrics.base, metrics.corrected
    if base.accuracy is not None and corrected.accuracy is not None:
        return f"acc {base.accuracy:.3f}→{corrected.accuracy:.3f}"
    if base.rmse is not None and corrected.rmse is not None:
        return f"RMSE {base.rmse:.3f}→{corrected.rmse:.3f}"
    return ""


@dataclass(frozen=True)
class MetricRow:
    label: str
    base: float | None
    corrected: float | None
    change: float | None
    better: bool | None  # None: no change, or not comparable
    base_ci: tuple[float, float] | None = None  # 95% bootstrap intervals, where the run computed them
    corrected_ci: tuple[float, float] | None = None
    change_ci: tuple[float, float] | None = None


def metric_rows(metrics: CorrectionMetrics | None) -> list[MetricRow]:
    """Base vs corrected for each metric a correct run recorded, with their 95% intervals."""
    if metrics is None or metrics.base is None:
        return []
    base = metrics.base.recorded()
    corrected = metrics.corrected.recorded() if metrics.corrected else {}
    ci = metrics.ci95
    out = []
    for key, label in METRIC_NAMES.items():
        if key not in base:
            continue
        b, c = base[key], corrected.get(key)
        change = c - b if b is not None and c is not None else None
        better = None
        if change:
            better = change < 0 if key in LOWER_IS_BETTER else change > 0
        intervals = [side.interval(key) for side in (ci.base, ci.corrected, ci.delta)]
        out.append(MetricRow(label, b, c, change, better, *intervals))
    return out


def _recall(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def flip_rows(metrics: CorrectionMetrics | None) -> list[tuple[str, Any]]:
    """The rows under the metrics: flips, McNemar's test, calibration, each class's recall (multiclass), parsing,
    and the gate with its evidence."""
    if metrics is None:
        return []
    flips = metrics.flips.counts() if metrics.flips else {}
    rows: list[tuple[str, Any]] = [(f"flips: {k.replace('_', ' ')}", v) for k, v in flips.items()]
    if metrics.mcnemar and metrics.mcnemar.discordant:
        rows.append(("flips: McNemar p", f"{metrics.mcnemar.p_value:.3g}"))
    cal = metrics.calibration
    if cal:
        rows.append(("calibration ECE, base → corrected", f"{cal.base.ece:.4f} → {cal.corrected.ece:.4f}"))
        if metrics.confusion is not None:  # multiclass: Brier is not in the metric rows
            rows.append(("Brier score, base → corrected", f"{cal.base.brier:.4f} → {cal.corrected.brier:.4f}"))
    for c in metrics.per_class or []:
        change = c.ci95.delta
        interval = f" (change 95% CI [{change[0]:+.3f}, {change[1]:+.3f}])" if change else ""
        rows.append((f"recall: {c.name} (n={c.n})", f"{_recall(c.base)} → {_recall(c.corrected)}{interval}"))
    chosen = metrics.selection
    if chosen:
        rows.append(("requests saved", f"{chosen.requests_saved:,}"))
        not_sent = f"{chosen.not_sent_gate} by the gate, {chosen.not_sent_budget} by the budget"
        rows.append(("test rows sent", f"{chosen.sent} of {metrics.n} (not sent: {not_sent})"))
    if metrics.parsed is not None:
        rows.append(("answers parsed", f"{metrics.parsed}/{chosen.sent if chosen else metrics.n}"))
    gate = metrics.gate
    if gate:
        rows.append(("gate (chosen on validation)", f"{gate.policy}; {gate.applied_on_test or 0} applied"))
        ungated = metrics.ungated.corrected.recorded() if metrics.ungated and metrics.ungated.corrected else {}
        for key, label in METRIC_NAMES.items():
            value = ungated.get(key)
            if isinstance(value, float):
                rows.append((f"without the gate: {label}", f"{value:.4f}"))
    return rows


def other_metrics(record: RunRecord) -> list[tuple[str, str]]:
    """Metrics of a prompt or flow run (a flow's `aggregate`), as key and JSON value; none for a correct run."""
    if record.kind == "correct" or not record.metrics:
        return []
    return [(str(k), json.dumps(v, default=str) if not isinstance(v, str) else v) for k, v in record.metrics.items()]


@dataclass(frozen=True)
class ConfusionView:
    """A multiclass run's confusion matrices, as tables show them: `cells[side][i][j]` test rows of class
    `classes[i]` predicted as `classes[j]`; `changed[i][j]`: whether the correction changed that cell."""

    classes: list[str]
    cells: dict[str, list[list[int]]]  # "base", "corrected"
    changed: list[list[bool]]


def confusion_view(metrics: CorrectionMetrics | None) -> ConfusionView | None:
    """The confusion matrices before and after correction (multiclass runs; None for others)."""
    if metrics is None or metrics.confusion is None:
        return None
    c = metrics.confusion
    changed = [[b != a for b, a in zip(rb, ra, strict=True)] for rb, ra in zip(c.base, c.corrected, strict=True)]
    return ConfusionView(list(c.classes), {"base": c.base, "corrected": c.corrected}, changed)
