"""One view of a run for the CLI, the dashboard and the report: what they show, computed once from the store's
records as plain typed data (no rich markup, no HTML): they only format it.

    run.py      run_summary, endpoints, usage_rows
    metrics.py  correction_metrics (typed), metric_rows (with 95% intervals), flip_rows, confusion_view
                (multiclass), headline, other_metrics, METRIC_NAMES
    rows.py     row_view(s): a row's inputs, output, what changed
    trace.py    trace_tree: a row's spans, request_times
"""

from .metrics import (
    LOWER_IS_BETTER,
    METRIC_NAMES,
    ConfusionView,
    MetricRow,
    confusion_view,
    correction_metrics,
    flip_rows,
    headline,
    metric_name,
    metric_rows,
    other_metrics,
)
from .rows import ROW_FILTERS, RowView, row_view, row_views
from .run import endpoints, run_summary, usage_rows
from .trace import LlmCall, SpanView, llm_call, request_times, trace_tree

__all__ = [
    "LOWER_IS_BETTER",
    "METRIC_NAMES",
    "ROW_FILTERS",
    "ConfusionView",
    "LlmCall",
    "MetricRow",
    "RowView",
    "SpanView",
    "confusion_view",
    "correction_metrics",
    "endpoints",
    "flip_rows",
    "headline",
    "llm_call",
    "metric_name",
    "metric_rows",
    "other_metrics",
    "request_times",
    "row_view",
    "row_views",
    "run_summary",
    "trace_tree",
    "usage_rows",
]
