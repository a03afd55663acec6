"""Plots drawn as inline SVG, for the dashboard and the HTML report: no plotting library, nothing fetched."""

from __future__ import annotations

import math

from markupsafe import Markup, escape

from ..correct.metrics_model import ReliabilityBin

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777")
BASE_COLOUR = "#9ca3af"
UNIT_METRICS = {"accuracy", "roc_auc", "macro_f1"}  # metrics between 0 and 1


def _nice_step(span: float, ticks: int = 5, whole: bool = False) -> float:
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return max(1.0, float(math.ceil(step))) if whole else step


def _ticks(top: float, whole: bool = False) -> list[float]:
    """Ticks from 0 to the first one at or above `top` (whole numbers only, for counts)."""
    step = _nice_step(top, whole=whole)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _fmt(value: float) -> str:
    return f"{value:g}" if value == int(value) or abs(value) >= 10 else f"{value:.3g}"


def _short(label: str, limit: int = 16) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def metric_bars(runs: list[tuple[str, float | None, float | None]], metric: str, title: str) -> Markup:
    """For each (run label, base, corrected): two bars side by side, base in grey and corrected in colour."""
    left, bottom, top_pad, group = 48, 44, 44, 96
    width, height = max(360, left + group * len(runs) + 24), 240
    plot_h = height - bottom - top_pad
    values = [v for _, b, c in runs for v in (b, c) if v is not None]
    top = 1.0 if metric in UNIT_METRICS else (max(values, default=1.0) * 1.15 or 1.0)
    ticks = _ticks(top)
    top = max(top, ticks[-1])

    def y(value: float) -> float:
        return top_pad + plot_h * (1 - value / top)

    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        f' xmlns="http://www.w3.org/2000/svg" data-chart="metric-{escape(metric)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>',
    ]
    for t in ticks:
        parts.append(f'<line x1="{left}" x2="{width - 8}" y1="{y(t):.1f}" y2="{y(t):.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end" class="tick">{_fmt(t)}</text>')
    for i, (label, base, corrected) in enumerate(runs):
        x0 = left + 12 + i * group
        colour = PALETTE[i % len(PALETTE)]
        for j, (what, value, fill) in enumerate((("base", base, BASE_COLOUR), ("corrected", corrected, colour))):
            if value is None:
                continue
            x = x0 + j * 36
            parts.append(
                f'<rect x="{x}" y="{y(value):.1f}" width="30" height="{max(y(0) - y(value), 0.5):.1f}"'
                f' fill="{fill}" data-run="{escape(label)}" data-series="{what}" data-value="{value:.6g}">'
                f"<title>{escape(label)} {what}: {value:.4f}</title></rect>"
            )
            parts.append(
                f'<text x="{x + 15}" y="{y(value) - 4:.1f}" text-anchor="middle" class="value">{value:.3f}</text>'
            )
        parts.append(
            f'<text x="{x0 + 33}" y="{height - bottom + 16}" text-anchor="middle" class="label">'
            f"{escape(_short(label))}</text>"
        )
    parts.append(f'<rect x="{left}" y="22" width="10" height="10" fill="{BASE_COLOUR}"/>')
    parts.append(f'<text x="{left + 14}" y="31" class="tick">base</text>')
    parts.append(f'<rect x="{left + 50}" y="22" width="10" height="10" fill="{PALETTE[0]}"/>')
    parts.append(f'<text x="{left + 64}" y="31" class="tick">corrected (a colour per run)</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def requests_over_time(series: list[tuple[str, list[float]]], title: str = "requests over time") -> Markup:
    """For each (run label, seconds of each request from the run's first): the running count of requests sent."""
    left, bottom, top_pad, right = 52, 40, 30, 150
    width, height = 720, 260
    plot_w, plot_h = width - left - right, height - bottom - top_pad
    x_top = max((t[-1] for _, t in series if t), default=1.0) or 1.0
    y_top = float(max((len(t) for _, t in series), default=1) or 1)
    x_ticks, y_ticks = _ticks(x_top), _ticks(y_top, whole=True)
    x_top, y_top = max(x_top, x_ticks[-1]), max(y_top, y_ticks[-1])

    def x(value: float) -> float:
        return left + plot_w * value / x_top

    def y(value: float) -> float:
        return top_pad + plot_h * (1 - value / y_top)

    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        f' xmlns="http://www.w3.org/2000/svg" data-chart="requests">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>',
    ]
    for t in y_ticks:
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(t):.1f}" y2="{y(t):.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end" class="tick">{_fmt(t)}</text>')
    for t in x_ticks:
        parts.append(
            f'<text x="{x(t):.1f}" y="{top_pad + plot_h + 16}" text-anchor="middle" class="tick">{_fmt(t)}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.0f}" y="{height - 6}" text-anchor="middle" class="label">'
        "seconds since the run's first request</text>"
    )
    for i, (label, times) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        points = [f"{x(0):.1f},{y(0):.1f}"]
        for n, t in enumerate(times):
            points += [f"{x(t):.1f},{y(n):.1f}", f"{x(t):.1f},{y(n + 1):.1f}"]
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(points)}"'
            f' data-run="{escape(label)}" data-requests="{len(times)}"/>'
        )
        ly = top_pad + 4 + i * 18
        parts.append(f'<rect x="{left + plot_w + 12}" y="{ly}" width="10" height="10" fill="{colour}"/>')
        legend = f"{escape(_short(label, 14))} ({len(times)})"
        parts.append(f'<text x="{left + plot_w + 26}" y="{ly + 9}" class="tick">{legend}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _frame(width: int, height: int, name: str, title: str) -> list[str]:
    return [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        f' xmlns="http://www.w3.org/2000/svg" data-chart="{escape(name)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="48" y="16" class="chart-title">{escape(title)}</text>',
    ]


def _axes(
    parts: list[str], lo: float, hi: float, box: tuple[float, float, float, float], x_label: str, y_label: str
) -> None:
    """Square axes from lo to hi on both sides, with grid lines, ticks and labels, inside box (left, top, w, h)."""
    left, top, w, h = box
    step = _nice_step(hi - lo)
    t = math.ceil(lo / step) * step
    while t <= hi + 1e-9:
        x = left + w * (t - lo) / (hi - lo)
        y = top + h * (1 - (t - lo) / (hi - lo))
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_fmt(t)}</text>')
        parts.append(f'<text x="{x:.1f}" y="{top + h + 14}" text-anchor="middle" class="tick">{_fmt(t)}</text>')
        t += step
    parts.append(
        f'<text x="{left + w / 2:.0f}" y="{top + h + 30}" text-anchor="middle" class="label">{escape(x_label)}</text>'
    )
    parts.append(
        f'<text x="12" y="{top + h / 2:.0f}" text-anchor="middle" class="label" '
        f'transform="rotate(-90 12 {top + h / 2:.0f})">{escape(y_label)}</text>'
    )
    parts.append(
        f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top}" stroke="#d1d5db" stroke-dasharray="4 3"/>'
    )


def reliability(
    curves: list[tuple[str, list[ReliabilityBin]]], title: str = "calibration", y_label: str = "observed positive rate"
) -> Markup:
    """Reliability curves: per probability bin, the mean predicted probability vs the observed positive rate (the
    dashed diagonal is perfect calibration); a point's size follows its bin's rows."""
    width, height, box = 380, 340, (48.0, 30.0, 300.0, 260.0)
    parts = _frame(width, height, "calibration", title)
    _axes(parts, 0.0, 1.0, box, "predicted probability", y_label)
    left, top, w, h = box
    for i, (label, curve) in enumerate(curves):
        colour = BASE_COLOUR if i == 0 else PALETTE[(i - 1) % len(PALETTE)]
        points = [(left + w * b.predicted, top + h * (1 - b.observed), b.n) for b in curve]
        if points:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"'
                f' data-series="{escape(label)}"/>'
            )
        for x, y, n in points:
            radius = 2 + min(6, math.sqrt(n))
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="{colour}"><title>{n} rows</title></circle>'
            )
        parts.append(f'<rect x="{left + 8}" y="{top + 6 + i * 16}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{left + 22}" y="{top + 15 + i * 16}" class="tick">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def scatter(labels: list[float], series: list[tuple[str, list[float]]], title: str = "prediction vs truth") -> Markup:
    """Each series' predictions against the true values (regression); on the dashed diagonal a prediction is exact."""
    width, height, box = 380, 340, (48.0, 30.0, 300.0, 260.0)
    values = [v for _, ys in series for v in ys] + list(labels)
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (hi - lo) * 0.05 or 1.0
    lo, hi = lo - pad, hi + pad
    parts = _frame(width, height, "scatter", title)
    _axes(parts, lo, hi, box, "true value", "prediction")
    left, top, w, h = box
    for i, (label, ys) in enumerate(series):
        colour = BASE_COLOUR if i == 0 else PALETTE[(i - 1) % len(PALETTE)]
        for t, p in zip(labels, ys, strict=True):
            x, y = left + w * (t - lo) / (hi - lo), top + h * (1 - (p - lo) / (hi - lo))
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}" fill-opacity="0.7"'
                f' data-series="{escape(label)}"/>'
            )
        parts.append(f'<rect x="{left + 8}" y="{top + 6 + i * 16}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{left + 22}" y="{top + 15 + i * 16}" class="tick">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
