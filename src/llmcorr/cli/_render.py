"""Tables people read: metrics before/after, a run's summary, the runs list."""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import typer
from rich import box
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from ..config import Config
from ..correct.metrics_model import CorrectionMetrics
from ..runs.batch import RunResult
from ..runs.correction import CorrectionResult
from ..runs.estimate import Estimate, describe_sources
from ..runs.spec import shown_spec
from ..runs.status import has_failures, status_text
from ..runs.summary import endpoint_usage, wall_time
from ..store import RunRecord, Store
from ..view import METRIC_NAMES, confusion_view, correction_metrics, endpoints, flip_rows, headline, metric_rows
from ._common import console, err_console


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def metrics_table(metrics: CorrectionMetrics, title: str = "base vs corrected (test split)") -> Table:
    """The metrics of a correct run (view/metrics.py), coloured: green where the correction helped."""
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("base", justify="right")
    table.add_column("corrected", justify="right")
    table.add_column("change", justify="right")
    table.add_column("change, 95% CI", justify="right")
    for m in metric_rows(metrics):
        change = "n/a" if m.change is None else f"{m.change:+.4f}"
        if m.better is not None:
            change = f"[{'green' if m.better else 'red'}]{change}[/]"
        ci = f"[{m.change_ci[0]:+.3f}, {m.change_ci[1]:+.3f}]" if m.change_ci else ""
        table.add_row(m.label, _fmt(m.base), _fmt(m.corrected), change, ci)
    for label, value in flip_rows(metrics):
        table.add_row(escape(label), "", escape(str(value)), "", "")
    return table


def confusion_table(metrics: CorrectionMetrics) -> Table | None:
    """A multiclass run's confusion matrices side by side, `base → corrected` in each cell (rows: the label;
    columns: the predicted class); None for other runs."""
    view = confusion_view(metrics)
    if view is None:
        return None
    table = Table(title="confusion, base → corrected", title_justify="left")
    table.add_column("label \\ predicted")
    for c in view.classes:
        table.add_column(escape(c), justify="right")
    for i, c in enumerate(view.classes):
        cells = []
        for j in range(len(view.classes)):
            before, after = view.cells["base"][i][j], view.cells["corrected"][i][j]
            cells.append(f"[bold]{before} → {after}[/]" if view.changed[i][j] else str(before))
        table.add_row(escape(c), *cells)
    return table


def print_metrics(metrics: CorrectionMetrics, title: str = "base vs corrected (test split)") -> None:
    """The metrics table and, for a multiclass run, its confusion matrices."""
    console.print(metrics_table(metrics, title=title))
    confusion = confusion_table(metrics)
    if confusion is not None:
        console.print(confusion)


def run_table(record: RunRecord) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("run", f"{record.id}" + (f" ({record.name})" if record.name else ""))
    table.add_row("status", _status(record))
    table.add_row("kind", record.kind)
    for e in endpoints(record):  # as the dashboard names them (view/run.py)
        table.add_row("endpoint", escape(e["label"]))
    spec = shown_spec(record)
    table.add_row("data", spec.data if spec is not None else "?")
    if spec is not None and spec.options.executor:
        table.add_row("executor", spec.options.executor)
    table.add_row("rows", f"{record.rows_done}/{record.rows_total} done, {record.rows_failed} failed")
    table.add_row(
        "tokens",
        f"{record.input_tokens + record.output_tokens:,} ({record.input_tokens:,} in, {record.output_tokens:,} out)",
    )
    if record.rate_limited:
        table.add_row("429s", str(record.rate_limited))
    for name, u in (record.usage or {}).items():  # every process that worked on the run, together
        if len(record.usage or {}) > 1 or u.get("cost") is not None:
            table.add_row(f"  {name}", endpoint_usage(u))
    wall = wall_time(record)
    if wall.busy_s is not None:
        table.add_row("wall time", str(wall))
    table.add_row("created", record.created_utc)
    if record.finished_utc:
        table.add_row("finished", record.finished_utc)
    if record.tags or record.archived:
        table.add_row("tags", escape(", ".join(record.tags)) + (" (archived)" if record.archived else ""))
    if record.output_path:
        table.add_row("output", escape(record.output_path))
    if record.error:
        table.add_row("error", record.error)
    return table


_COLOURS = {"completed": "green", "running": "cyan", "failed": "red", "interrupted": "yellow", "cancelled": "yellow"}


def _status(record: RunRecord) -> str:
    """The run's status as people read it (`completed, 3 failed`), coloured."""
    colour = "red" if has_failures(record) else _COLOURS.get(record.status, "")
    text = escape(status_text(record))
    return f"[{colour}]{text}[/]" if colour else text


# the runs list's columns, most important first: on a narrow terminal the less important go before a name is folded
_RUN_COLUMNS: list[tuple[str, dict[str, Any], Callable[[RunRecord], str]]] = [
    ("name", {"overflow": "fold", "min_width": 4}, lambda r: escape(r.name or "")),
    ("status", {"no_wrap": True}, _status),
    ("id", {"no_wrap": True, "min_width": 12}, lambda r: escape(r.id)),
    ("rows", {"justify": "right", "no_wrap": True}, lambda r: f"{r.rows_done}/{r.rows_total}"),
    ("created", {"no_wrap": True}, lambda r: r.created_utc[5:16].replace("T", " ")),
    ("kind", {"no_wrap": True}, lambda r: r.kind),
    ("result", {"no_wrap": True}, lambda r: headline(correction_metrics(r))),
    ("tokens", {"justify": "right", "no_wrap": True}, lambda r: f"{r.input_tokens + r.output_tokens:,}"),
    (
        "tags",
        {"overflow": "fold"},
        lambda r: (escape(", ".join(r.tags)) + (" [dim](archived)[/]" if r.archived else "")).strip(),
    ),
]
_UNBOUNDED = 100_000  # a width to measure a table's natural width in
_RUN_ORDER = ["id", "name", "kind", "status", "rows", "tokens", "result", "tags", "created"]  # left to right


def _runs_table(records: list[RunRecord], names: list[str]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    columns = {name: (style, cell) for name, style, cell in _RUN_COLUMNS if name in names}
    if "id" not in columns:  # the name column names every run: by its name, else by its id
        columns["name"] = (columns["name"][0], lambda r: escape(r.label))
    shown = [name for name in _RUN_ORDER if name in columns]
    for name in shown:
        table.add_column("run" if name == "name" and "id" not in columns else name, **columns[name][0])
    for r in records:
        table.add_row(*(columns[name][1](r) for name in shown))
    return table


def runs_table(records: list[RunRecord], width: int | None = None) -> Table:
    """The runs list. Within `width` columns (the console's), whole names come first: beside the name and the
    status, each other column (id, rows, created, kind, result, tokens, tags: the more important first) is shown
    only if every name still fits on its line (and some run has something in it)."""
    width = width or console.width
    names = [name for name, _, _ in _RUN_COLUMNS[:2]]
    for name, _, cell in _RUN_COLUMNS[2:]:
        if not any(cell(r) for r in records):
            continue  # no run has tags, or a result
        table = _runs_table(records, [*names, name])
        if Measurement.get(console, console.options.update_width(_UNBOUNDED), table).maximum <= width:
            names.append(name)
    return _runs_table(records, names)


# a correct run's own metric keys (runs/experiments.py `metric_values`), as people read them
_CORRECT_LABELS = {
    "n": "test rows",
    "parsed": "answers parsed",
    "mcnemar.p_value": "flips: McNemar p",
    "mcnemar.discordant": "flips: discordant (McNemar)",
    "gate.policy": "gate: policy",
    "gate.threshold": "gate: threshold",
    "gate.applied_on_test": "gate: applied on test",
    "gate.validation_rows": "gate: validation rows",
    "selection.sent": "test rows sent",
    "selection.not_sent_gate": "test rows not sent (gate)",
    "selection.not_sent_budget": "test rows not sent (budget)",
    "selection.requests_saved": "requests saved",
}
_CORRECT_PREFIXES = {
    "flips.": "flips: ",
    "ungated.corrected.": "without the gate: ",
    "ungated.flips.": "without the gate: flips ",
    "gate.validation_accuracy.": "gate: validation accuracy ",
    "gate.validation_rmse.": "gate: validation RMSE ",
    "gate.": "gate: ",
    "calibration ": "calibration: ",
}


def _metric_label(key: str) -> str:
    """ "roc_auc base" → "ROC-AUC base", "flips.wrong_to_right" → "flips: wrong to right", "gate.policy" → "gate:
    policy"; other keys (a flow's own metrics) as they are."""
    if key in _CORRECT_LABELS:
        return _CORRECT_LABELS[key]
    first, sep, rest = key.partition(" ")
    if first in METRIC_NAMES and sep:
        return f"{METRIC_NAMES[first]} {rest}"
    for prefix, label in _CORRECT_PREFIXES.items():
        if key.startswith(prefix):
            rest = key.removeprefix(prefix)
            name = METRIC_NAMES.get(rest) or rest.replace("_", " ").replace("ece", "ECE")
            return label + name
    return key


def _missing(value: Any) -> bool:
    """None, or the NaN pandas puts in its place when a run has no such metric."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def compare_table(frame: pd.DataFrame) -> Table:
    """`experiments.compare_runs`' DataFrame: one row per metric, one column per run."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("metric", style="bold")
    for label in frame.columns:
        table.add_column(escape(str(label)), justify="right")
    for metric, values in frame.iterrows():
        cells = []
        for v in values:
            if _missing(v):
                cells.append("")
            elif metric == "wall time (s)":
                cells.append(f"{v:.2f}")
            elif isinstance(v, int) and not isinstance(v, bool):
                cells.append(f"{v:,}")
            else:
                cells.append(escape(_fmt(v)))
        table.add_row(escape(_metric_label(str(metric))), *cells)
    return table


def _duration(ns: int) -> str:
    ms = ns / 1e6
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def span_line(span: dict[str, Any]) -> str:
    """One span as a log line: start time, row (from 1), what, duration, status, tokens, cache hit, 429s, error."""
    a = span["attributes"]
    start = datetime.fromtimestamp(span["start_ns"] / 1e9).strftime("%H:%M:%S.%f")[:-3]
    row = f"row {span['row_index'] + 1}" if span["row_index"] is not None else ""
    kind = span["kind"]
    what = {"run": span["name"], "row": "row", "step": f"step {a.get('llmcorr.step', span['name'])}"}.get(
        kind, f"{kind} {span['name']}"
    )
    extras = []
    if kind in ("llm", "row") and "gen_ai.usage.input_tokens" in a:
        extras.append(f"tokens {a['gen_ai.usage.input_tokens']} in {a.get('gen_ai.usage.output_tokens', 0)} out")
    if a.get("llmcorr.cache_hit"):
        extras.append("cache hit")
    elif a.get("llmcorr.endpoint"):
        extras.append(f"via {a['llmcorr.endpoint']}")
    if kind == "row" and a.get("llmcorr.status") not in (None, "ok", "error"):
        extras.append(str(a["llmcorr.status"]))
    if (a.get("llmcorr.attempts") or 0) > 1:
        extras.append(f"{a['llmcorr.attempts']} attempts")
    if a.get("llmcorr.rate_limited"):
        extras.append(f"429s {a['llmcorr.rate_limited']}")
    if span["error"]:
        extras.append(f"error: {span['error']}")
    duration = _duration(span["end_ns"] - span["start_ns"])
    return f"{start}  {row:>8}  {what:<24}  {duration:>8}  {span['status']:<5}  {'  '.join(extras)}".rstrip()


def _indented(text: str, indent: str) -> list[str]:
    return [indent + line for line in (text.splitlines() or [""])]


def _messages(raw: Any) -> list[dict[str, Any]]:
    try:
        messages = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return [{"role": "text", "content": str(raw)}]
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def span_details(span: dict[str, Any]) -> list[str]:
    """What `runs logs --row N` shows beneath a span: an LLM call's prompt and answer, a step's input and output."""
    a, lines = span["attributes"], []
    sections = {
        "llm": ("prompt", "gen_ai.input.messages", "answer", "gen_ai.output.messages"),
        "step": ("input", "llmcorr.input", "output", "llmcorr.output"),
    }.get(span["kind"])
    if sections is None:
        return []
    for title, key in (sections[:2], sections[2:]):
        if key not in a:
            continue
        lines.append(f"    {title}:")
        if span["kind"] == "step":
            lines.extend(_indented(str(a[key]), "      "))
            continue
        for m in _messages(a[key]):
            content = str(m.get("content", ""))
            role = "" if title == "answer" else f"{m.get('role', '?')}: "
            first, *rest = content.splitlines() or [""]
            lines.append(f"      {role}{first}")
            lines.extend(_indented("\n".join(rest), "      " + " " * len(role)) if rest else [])
    return lines


def estimate_table(e: Estimate) -> Table:
    table = Table(title="estimate (nothing spent yet)", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("endpoints", ", ".join(e.endpoints))
    table.add_row("requests", f"{e.requests:,}")
    table.add_row("prompt tokens", f"{e.prompt_tokens:,}")
    table.add_row("completion tokens (max)", f"{e.max_completion_tokens:,}")
    table.add_row("cost (max)", f"${e.cost_max:.4f}" if e.cost_max is not None else "n/a (no prices configured)")
    eta = f"{e.eta_s:,.0f} s ({e.binding} quota binds)" if e.eta_s is not None else "n/a (no quota configured)"
    table.add_row("ETA at quota", eta)
    table.add_row("quota from", describe_sources(e.quota_sources) or "n/a")
    if e.budget is not None:
        table.add_row("budget", e.budget)
    if e.validation is not None:
        v = e.validation
        table.add_row("validation (for the gate)", f"{v.rows} of {v.of} rows, {v.requests:,} requests")
    if e.test is not None:
        t = e.test
        fit = " fit the budget" if e.budget is not None else ""
        table.add_row("test", f"at most {t.rows} of {t.of} rows{fit}, {t.requests:,} requests")
        if e.selective:
            table.add_row("", "rows the gate would not change are not sent")
    return table


def print_correction(config: Config, result: CorrectionResult, title: str = "base vs corrected (test split)") -> None:
    """A finished correction run: its record, then its metrics."""
    with Store(config.store_path) as store:
        console.print(run_table(store.get_run(result.run_id)))
    metrics = CorrectionMetrics.model_validate(result.metrics)  # typed already, or the dict the store keeps
    print_metrics(metrics, title=title)


def _first_failed(store: Store, record: RunRecord) -> int | None:
    """The index of the run's first failed row (None when none failed)."""
    if not record.rows_failed:
        return None
    return next((r.row_index for r in store.iter_rows(record.id, "status") if r.status == "error"), None)


def print_result(config: Config, result: CorrectionResult | RunResult, output: Path | None = None) -> None:
    """A finished run of any kind: its record, its metrics, where its rows went. When rows failed, a line says how
    many, where to see why and how to retry them, and the command exits with code 1."""
    if isinstance(result, CorrectionResult):
        print_correction(config, result)
    else:
        with Store(config.store_path) as store:
            console.print(run_table(store.get_run(result.run_id)))
        if result.reused:
            console.print(f"{result.reused} rows reused from another run (no tokens spent on them)")
        if result.metrics:
            console.print_json(json.dumps(result.metrics))
    if output is not None:
        console.print(f"wrote {result.rows if isinstance(result, RunResult) else len(result.table)} rows to {output}")
    with Store(config.store_path) as store:
        record = store.get_run(result.run_id)
        failed = _first_failed(store, record)
    if failed is not None:
        label = shlex.quote(record.label)
        err_console.print(
            f"{record.rows_failed} of {record.rows_total} rows failed (row {failed + 1}: "
            f"`llmcorr runs logs {label} --row {failed + 1}` shows why); `llmcorr runs resume {label}` retries them",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
