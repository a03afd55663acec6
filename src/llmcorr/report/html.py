"""`render_report`: a correct run as a self-contained HTML page — the metrics with 95% intervals, the flips and
McNemar's test, the gate and its validation evidence, the confusion matrices before and after (every class's, for
multiclass), calibration (classification; multiclass with probabilities) or a scatter of predictions (regression),
and examples of flips with the LLM's explanation."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jinja2
import pandas as pd

from ..correct.metrics_model import CorrectionMetrics
from ..runs.correct_options import CorrectSpecOptions
from ..runs.spec import shown_spec
from ..runs.status import status_text
from ..runs.summary import cost, endpoint_usage, wall_time
from ..store import RunRecord
from ..view import ConfusionView, confusion_view, metric_name, metric_rows
from .charts import reliability, scatter

EXAMPLES = 5  # flips shown of each kind


def _env() -> jinja2.Environment:
    loader = jinja2.FileSystemLoader(str(resources.files("llmcorr.report") / "templates"))
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.ChainableUndefined)
    env.filters.update(when=_when, metric_name=metric_name)
    return env


def _when(stamp: str | None) -> str:
    """A stored ISO timestamp as people read it: `2025-03-01 14:05 UTC`."""
    if not stamp:
        return ""
    return datetime.fromisoformat(stamp).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _confusion(table: pd.DataFrame, column: str) -> list[list[int]]:
    y = table["label"].astype(float) >= 0.5
    p = table[column].astype(float) >= 0.5
    return [[int((~y & ~p).sum()), int((~y & p).sum())], [int((y & ~p).sum()), int((y & p).sum())]]


def _binary_confusion(table: pd.DataFrame) -> ConfusionView:
    cells = {"base": _confusion(table, "prediction"), "corrected": _confusion(table, "corrected_prediction")}
    changed = [[b != a for b, a in zip(rb, ra, strict=True)] for rb, ra in zip(*cells.values(), strict=True)]
    return ConfusionView(["0", "1"], cells, changed)


def _shown(value: Any) -> str:
    """A prediction, label or class as an example shows it: a number to 3 significant digits, a class as it is."""
    return f"{value:.3g}" if isinstance(value, int | float) else str(value)


def _examples(table: pd.DataFrame, problem: str) -> dict[str, list[dict[str, Any]]]:
    if problem == "multiclass":
        truth, before, after = (table[c].astype(str) for c in ("label", "prediction", "corrected_prediction"))
        was_right, is_right = before == truth, after == truth
        kinds = {
            "wrong → right": ~was_right & is_right,
            "right → wrong": was_right & ~is_right,
            "wrong → another wrong": ~was_right & ~is_right & (before != after),
        }
    elif problem == "classification":
        base, corrected, label = (table[c].astype(float) for c in ("prediction", "corrected_prediction", "label"))
        base_right, corr_right = (base >= 0.5) == (label >= 0.5), (corrected >= 0.5) == (label >= 0.5)
        kinds = {"wrong → right": ~base_right & corr_right, "right → wrong": base_right & ~corr_right}
    else:
        base, corrected, label = (table[c].astype(float) for c in ("prediction", "corrected_prediction", "label"))
        improved = (corrected - label).abs() < (base - label).abs()
        worsened = (corrected - label).abs() > (base - label).abs()
        kinds = {"improved": improved, "worsened": worsened}
    out = {}
    for name, mask in kinds.items():
        out[name] = [
            {
                "id": row["id"],
                "input": str(row["input"])[:300],
                "base": _shown(row["prediction"]),
                "corrected": _shown(row["corrected_prediction"]),
                "label": _shown(row["label"]),
                "explanation": row.get("explanation") or "",
            }
            for _, row in table[mask].head(EXAMPLES).iterrows()
        ]
    return out


def _problem(metrics: CorrectionMetrics) -> str:
    """The problem a run's metrics are of, for a run whose spec does not say."""
    if metrics.confusion is not None:
        return "multiclass"
    return "regression" if metrics.base is not None and metrics.base.rmse is not None else "classification"


def render_report(record: RunRecord, table: pd.DataFrame, metrics: CorrectionMetrics) -> str:
    """The report of a correct run: `table` is its test rows as `llmcorr correct --output` writes them, `metrics`
    its metrics (both from `recorded_table`); the template reads the typed metrics' attributes."""
    options = CorrectSpecOptions.of(record)
    problem = options.problem if options else _problem(metrics)
    plot = None
    if problem in ("classification", "multiclass") and metrics.calibration:
        cal = metrics.calibration
        observed = "observed positive rate" if problem == "classification" else "predicted class right"
        plot = reliability([("base", cal.base.curve), ("corrected", cal.corrected.curve)], y_label=observed)
    elif problem == "regression" and len(table):
        labels = table["label"].astype(float).tolist()
        series = [("base", table["prediction"].astype(float).tolist())]
        series.append(("corrected", table["corrected_prediction"].astype(float).tolist()))
        plot = scatter(labels, series)
    examples = _examples(table, problem) if len(table) else {}
    confusion = confusion_view(metrics)
    if problem == "classification" and len(table):
        confusion = _binary_confusion(table)
    return (
        _env()
        .get_template("report.html")
        .render(
            record=record,
            wall=str(wall_time(record)),
            cost=cost(record),
            usage={name: endpoint_usage(u) for name, u in (record.usage or {}).items()},
            spec=shown_spec(record),
            options=options,
            problem=problem,
            metrics=metrics,
            metric_rows=metric_rows(metrics),
            confusion=confusion,
            per_class=metrics.per_class or [],
            plot=plot,
            examples=examples,
            flipped=any(examples.values()),  # flips to show (without any, there is nothing to explain)
            explained=any(r["explanation"] for rows in examples.values() for r in rows),
            status=status_text(record),
        )
    )
