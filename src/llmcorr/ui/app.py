"""The dashboard's web application: pages rendered on the server from the run store, a little JavaScript that polls
JSON to keep them live, static files from the package (nothing is fetched from elsewhere: it works offline)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from .._version import __version__
from ..config import Config
from ..errors import NotFoundError, UserError
from . import runs_pages, tools_pages
from .auth import LocalOnly, SameOrigin, TokenAuth
from .common import HERE, page


def create_app(config: Config | None = None, token: str | None = None) -> FastAPI:
    """The dashboard over `config`'s run store. With a token every request must carry it (see `auth.TokenAuth`);
    without one it answers only to loopback addresses, for `llmcorr ui` on 127.0.0.1."""
    app = FastAPI(title="llmcorr", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config = config or Config.load()
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(runs_pages.router)
    app.include_router(tools_pages.router)

    async def user_error(request: Request, exc: Exception) -> Response:
        """A run that does not exist, a bad value: one line, on the page or in the JSON; never a traceback."""
        status = 404 if isinstance(exc, NotFoundError) else 400
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc)}, status_code=status)
        return page(request, "error.html", status_code=status, status=status, problem=str(exc))

    app.add_exception_handler(UserError, user_error)
    app.add_middleware(SameOrigin)
    if token:
        app.add_middleware(TokenAuth, token=token)
    else:
        app.add_middleware(LocalOnly)
    return app
