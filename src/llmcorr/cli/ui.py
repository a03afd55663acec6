"""`llmcorr ui`: the dashboard, served on 127.0.0.1 by default; any other address needs a token."""

from __future__ import annotations

import ipaddress
import secrets
import socket
from typing import Annotated

import typer

from ..config import Config
from ..errors import UserError
from ._common import ConfigOpt, console

TOKEN_ENV = "LLMCORR_UI_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may be reachable from elsewhere


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, so that a busy port or an unknown address is one clear line before anything starts."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}; choose another --port or --host") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _shown_host(host: str) -> str:
    if host in ("0.0.0.0", "::", "[::]"):
        return socket.gethostname()
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def ui(
    host: Annotated[str, typer.Option(help="address to listen on; anything but loopback needs a token")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port to listen on (0: any free port)")] = 8765,
    token: Annotated[
        str | None,
        typer.Option(envvar=TOKEN_ENV, help="require this token (off loopback, one is generated when none is given)"),
    ] = None,
    config_path: ConfigOpt = None,
) -> None:
    """Serve the dashboard: runs live as they go, each row's trace, comparisons, prompt preview, new runs."""
    import uvicorn  # here: importing the web stack costs every other command ~0.3 s

    from ..ui import create_app

    config = Config.load(config_path)
    generated = False
    if not is_loopback(host) and not token:
        token, generated = secrets.token_urlsafe(24), True
    sock = bind(host, port)
    bound_port = sock.getsockname()[1]
    url = f"http://{_shown_host(host)}:{bound_port}/"
    app = create_app(config, token=token)
    if generated:
        console.print(f"llmcorr dashboard: {url}?token={token}", markup=False, highlight=False, soft_wrap=True)
        console.print(f"(a token was generated for {host}: anyone with this address can use the dashboard)")
    else:
        console.print(f"llmcorr dashboard: {url}", markup=False, highlight=False, soft_wrap=True)
        if token:
            console.print("(it asks for your --token: open the address with ?token=… once)")
    console.print(
        f"store: {config.store_path} · Ctrl-C stops the dashboard (runs it started go on)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    console.file.flush()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none", lifespan="off", access_log=False))
    server.run(sockets=[sock])
