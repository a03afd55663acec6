"""Plots drawn on the server as inline SVG: no plotting library in the browser, nothing fetched."""

from __future__ import annotations

import math

from markupsafe import Markup, escape

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777")
BASE_COLOUR = "#9ca3af"
UNIT_METRICS = {"accuracy", "roc_auc"}  # metrics between 0 and 1


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
