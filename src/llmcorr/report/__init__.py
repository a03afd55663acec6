"""Reports: a correct run's results as one self-contained HTML file (tables and inline SVG plots, nothing fetched)."""

from .html import render_report

__all__ = ["render_report"]
