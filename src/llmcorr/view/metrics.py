"""A run's metrics as every view shows them (`llmcorr runs show`, the dashboard, the report, the runs list): the
one place that names metrics, knows which direction is better and lays out the rows under them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

METRIC_NAMES = {"roc_auc": "ROC-AUC", "accuracy": "accuracy", "rmse": "RMSE", "mae": "MAE"}
LOWER_IS_BETTER = {"rmse", "mae"}


def metric_name(key: str) -> str:
    """`roc_auc` → `ROC-AUC`; another key with its underscores as spaces."""
    return METRIC_NAMES.get(key, key.replace("_", " "))


def headline(metrics: dict[str, Any] | None) -> str:
    """A correct run's main metric, base → corrected, for one cell of a runs list."""
    if not metrics or "base" not in metrics:
        return ""
    for key, short in (("accuracy", "acc"), ("rmse", "RMSE")):
        if key in metrics["base"] and metrics["base"][key] is not None:
            return f"{short} {metrics['base'][key]:.3f}→{metrics['corrected'][key]:.3f}"
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


def metric_rows(metrics: dict[str, Any] | None) -> list[MetricRow]:
    """Base vs corrected for each metric a correct run recorded, with their 95% intervals."""
    if not metrics or "base" not in metrics:
        return []
    base, corrected, ci = metrics.get("base") or {}, metrics.get("corrected") or {}, metrics.get("ci95") or {}
    out = []
    for key, label in METRIC_NAMES.items():
        if key not in base:
            continue
        b, c = base.get(key), corrected.get(key)
        change = c - b if isinstance(b, int | float) and isinstance(c, int | float) else None
        better = None
        if change:
            better = change < 0 if key in LOWER_IS_BETTER else change > 0
        intervals = [_interval((ci.get(side) or {}).get(key)) for side in ("base", "corrected", "delta")]
        out.append(MetricRow(label, b, c, change, better, *intervals))
    return out


def _interval(value: Any) -> tuple[float, float] | None:
    return (float(value[0]), float(value[1])) if isinstance(value, list | tuple) and len(value) == 2 else None


def flip_rows(metrics: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """The rows under the metrics: flips, McNemar's test, calibration, parsing, and the gate with its evidence."""
    if not metrics:
        return []
    rows: list[tuple[str, Any]] = [
        (f"flips: {k.replace('_', ' ')}", v) for k, v in (metrics.get("flips") or {}).items()
    ]
    if (metrics.get("mcnemar") or {}).get("discordant"):
        rows.append(("flips: McNemar p", f"{metrics['mcnemar']['p_value']:.3g}"))
    if metrics.get("calibration"):
        cal = metrics["calibration"]
        rows.append(("calibration ECE, base → corrected", f"{cal['base']['ece']:.4f} → {cal['corrected']['ece']:.4f}"))
    if "parsed" in metrics:
        rows.append(("answers parsed", f"{metrics['parsed']}/{metrics.get('n', '?')}"))
    gate = metrics.get("gate")
    if gate:
        rows.append(("gate (chosen on validation)", f"{gate['policy']}; {gate.get('applied_on_test', 0)} applied"))
        for key, label in METRIC_NAMES.items():
            value = (metrics.get("ungated") or {}).get("corrected", {}).get(key)
            if isinstance(value, float):
                rows.append((f"without the gate: {label}", f"{value:.4f}"))
    return rows


def other_metrics(metrics: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Metrics of a prompt or flow run (a flow's `aggregate`), as key and JSON value."""
    if not metrics or "base" in metrics:
        return []
    return [(str(k), json.dumps(v, default=str) if not isinstance(v, str) else v) for k, v in metrics.items()]
