"""The dashboard, `llmcorr ui`: the runs table, each run with its rows and every row's trace, comparisons, a prompt
preview and a form to start runs; live while runs go. Served by FastAPI from the run store; pages are rendered on
the server, with a little JavaScript from the package (no CDN: it works offline)."""

from .app import create_app

__all__ = ["create_app"]
