"""The dashboard's guard, route by route, over real HTTP: it listens on 127.0.0.1 unless told otherwise; off loopback
every page, API and static file needs the token (401 without); every state-changing route refuses a request sent by
another site's page (403), token cookie or not; no route that takes a run id, a row, a file name or a path serves a
file outside its place, whatever the spelling (`../`, `%2e%2e%2f`, absolute, NUL); pages never go in another site's
frame. The browser flows are in test_dashboard.py; this file sends what a browser would not."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

import llmcorr
from llmcorr.config import Config
from llmcorr.store import Store
from llmcorr.ui import create_app
from tests.servers import ScriptedServer

from .conftest import quota_toml, start_cli
from .test_dashboard import PROMPTY, _read_line, serve

TOKEN = "t0ken-for-the-security-tests"
CANARY = "canary-4f9a1c-must-never-be-served"
# every route that changes something, with a form that would make the change
CHANGES = {
    "/runs/{ref}/rename": {"name": "hijacked"},
    "/runs/{ref}/tags": {"add": "hijacked"},
    "/runs/{ref}/archive": {"archived": "1"},
    "/runs/{ref}/cancel": {},
    "/runs/{ref}/delete": {},
    "/new": {"prompt": "x.prompty", "data": "x.jsonl"},
    "/api/preview": {},  # changes nothing, but takes a body: guarded like the rest
}


@dataclass
class Site:
    dir: Path
    home: Path
    config: Config
    canary: Path
    run_id: str

    def state(self) -> tuple[object, ...]:
        """What a change would touch: the run's name, tags, archived flag, status; and how many runs exist."""
        with Store(self.config.store_path) as store:
            record = store.get_run(self.run_id)
            return record.name, record.tags, record.archived, record.status, len(store.list_runs(archived=None))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A store with one finished prompt run, `defs`, and a canary file beside the store."""
    root = tmp_path_factory.mktemp("dashboard-security")
    home = root / "home"
    (root / "define.prompty").write_text(PROMPTY)
    (root / "words.jsonl").write_text("".join(json.dumps({"word": w}) + "\n" for w in ("a", "b")))
    with ScriptedServer() as server, pytest.MonkeyPatch.context() as env:
        env.setenv("LLMCORR_HOME", str(home))
        (root / "llmcorr.toml").write_text(quota_toml(server.base_url))
        config = Config.load(root / "llmcorr.toml", home=home)
        result = llmcorr.run(str(root / "define.prompty"), data=str(root / "words.jsonl"), config=config, name="defs")
    canary = home / "canary.txt"
    canary.write_text(CANARY)
    yield Site(root, home, config, canary, result.run_id)


def api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """The app's routes, through the routers it includes."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)  # an included router
        if inner is not None:
            yield from api_routes(inner.routes)


def page_urls(app: FastAPI, ref: str) -> list[str]:
    """A URL for every GET route of the app (path parameters filled in) and for its static files."""
    urls = ["/static/app.js", "/static/app.css", "/no-such-page"]
    for route in api_routes(app.routes):
        if "GET" in route.methods:
            urls.append(route.path.replace("{ref}", ref).replace("{n}", "1"))
    return urls


def change_routes(app: FastAPI) -> set[str]:
    unsafe = {"POST", "PUT", "PATCH", "DELETE"}
    return {r.path for r in api_routes(app.routes) if r.methods & unsafe}


def test_the_ui_command_listens_on_loopback_by_default(llmcorr_home: Path) -> None:
    proc = start_cli("ui", "--port", "0")
    try:
        port = int(_read_line(proc, r"llmcorr dashboard: http://127\.0\.0\.1:(\d+)/\s*$").group(1))
        assert listening_on(port) == {ipaddress.ip_address("127.0.0.1")}
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200  # no token on this machine
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=30)


def listening_on(port: int) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The local addresses of the sockets listening on `port` (Linux: /proc/net/tcp and tcp6)."""
    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]  # each 32-bit word is little-endian
            found.add(ipaddress.ip_address(b"".join(words)))
    return found


def test_off_loopback_every_page_api_and_static_file_needs_the_token(site: Site) -> None:
    app = create_app(site.config, token=TOKEN)
    urls = page_urls(app, "defs")
    assert {"/", "/api/runs", "/runs/defs/report", "/runs/defs/rows/1", "/preview", "/new"} <= set(urls)
    with serve(app) as base, httpx.Client(base_url=base) as client:
        for url in urls:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
                response = client.get(url, headers=headers)
                assert response.status_code == 401, (url, headers)
                assert CANARY not in response.text and "defs" not in response.text
            good = client.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
            assert good.status_code in (200, 400, 404), url  # past the guard (a report of a prompt run is a 400)
        for path in change_routes(app):
            assert client.post(path.replace("{ref}", "defs"), data={}).status_code == 401, path


def test_a_dashboard_without_a_token_answers_no_other_machine(site: Site) -> None:
    """Should a token-less dashboard ever listen beyond loopback, a client elsewhere still gets 401 (its Host header
    proves nothing: anyone can send `Host: 127.0.0.1`)."""
    app = create_app(site.config)

    async def statuses(client_ip: str) -> list[int]:
        transport = httpx.ASGITransport(app=app, client=(client_ip, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8765") as client:
            return [(await client.get(url)).status_code for url in page_urls(app, "defs")]

    assert set(asyncio.run(statuses("192.168.1.20"))) == {401}
    assert set(asyncio.run(statuses("::ffff:10.0.0.5"))) == {401}
    assert 200 in asyncio.run(statuses("127.0.0.1"))


@pytest.mark.parametrize("with_token", [True, False], ids=["token", "loopback"])
def test_every_change_refuses_another_sites_page(site: Site, with_token: bool) -> None:
    app = create_app(site.config, token=TOKEN if with_token else None)
    assert change_routes(app) == set(CHANGES)  # a new state-changing route needs a line here
    cookies = {"llmcorr_ui_token": TOKEN} if with_token else {}
    before = site.state()
    with serve(app) as base, httpx.Client(base_url=base, cookies=cookies) as client:
        host = urlsplit(base).netloc
        foreign = [
            {"Origin": "http://evil.example"},
            {"Origin": "null"},  # a sandboxed frame or a file: page
            {"Origin": f"http://{host.split(':')[0]}:1"},  # another port of this machine is another site
            {"Referer": "http://evil.example/page"},  # no Origin: the Referer decides
            {"Sec-Fetch-Site": "cross-site"},  # neither: the browser's own word
        ]
        for path, form in CHANGES.items():
            url = path.replace("{ref}", "defs")
            for headers in foreign:
                if path == "/api/preview":
                    response = client.post(url, json={"template": "user:\nhi"}, headers=headers)
                else:
                    response = client.post(url, data=form, headers=headers)
                assert response.status_code == 403, (path, headers)
                assert response.text == "403 Forbidden: a change sent from another site's page\n"
        assert site.state() == before  # nothing changed

        # the same requests from the dashboard's own pages go through
        own = {"Origin": base, "Referer": base + "/runs/defs", "Sec-Fetch-Site": "same-origin"}
        reached = client.post("/runs/nope/delete", headers=own)
        assert reached.status_code == 404  # past the guard, to the route: no such run
        renamed = client.post("/runs/defs/rename", data={"name": "renamed"}, headers=own)
        assert renamed.status_code == 303 and site.state()[0] == "renamed"
        client.post("/runs/renamed/rename", data={"name": "defs"}, headers=own)
        preview = client.post("/api/preview", json={"template": "user:\nhi"}, headers=own)
        assert preview.status_code == 200 and preview.json()["messages"] == [{"role": "user", "content": "hi"}]
    assert site.state() == before


def test_pages_stay_out_of_other_sites_frames(site: Site) -> None:
    with serve(create_app(site.config)) as base, httpx.Client(base_url=base) as client:
        for url in ("/", "/runs/defs", "/static/app.js"):
            headers = client.get(url).headers
            assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
            assert headers["content-security-policy"] == "frame-ancestors 'none'"


def raw_get(base: str, target: str) -> tuple[int, bytes]:
    """GET `target` exactly as written (an HTTP client would resolve `../` before sending it)."""
    parts = urlsplit(base)
    assert parts.hostname and parts.port
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def traversals(canary: Path) -> list[str]:
    """Ways to spell "the canary file" in a URL path segment, from anywhere."""
    absolute = str(canary).lstrip("/")
    ups = [
        "../",
        "..%2f",
        "..%2F",
        "%2e%2e%2f",
        "%2e%2e/",
        "..%5c",
        "%252e%252e%252f",
        "....//",
        "..;/",
    ]
    spelled = [up * 16 + absolute for up in ups]
    spelled += [quote(str(canary), safe=""), "/" + absolute, "%2f" + quote(absolute), "canary.txt", "..", "%2e%2e"]
    spelled += ["canary.txt%00", "%00" + quote(absolute), "app.js%00.png", "%00"]
    return spelled


def test_no_route_serves_a_file_outside_its_place(site: Site) -> None:
    app = create_app(site.config)
    shapes = ["/static/{}", "/runs/{}", "/api/runs/{}", "/runs/{}/report", "/runs/{}/rows/1", "/runs/{}/delete"]
    shapes += ["/runs/defs/rows/{}", "/compare?ids={}", "/preview?path={}"]
    served = 0
    with serve(app) as base, httpx.Client(base_url=base) as client:
        for shape in shapes:
            for spelled in traversals(site.canary):
                status, data = raw_get(base, shape.format(spelled))
                served += 1
                assert CANARY.encode() not in data, (shape, spelled)
                assert status < 500, (shape, spelled, data[:300])
                if not shape.startswith(("/compare", "/preview")):  # those answer with a page naming the problem
                    allowed = (400, 404, 422) if shape == "/runs/defs/rows/{}" else (400, 404)  # 422: not a number
                    assert status in allowed, (shape, spelled, status)
        # the prompt preview reads .prompty files by path (by design, as the CLI does); nothing else
        for path in (str(site.canary), f"{site.home}/../home/canary.txt", "canary.txt\x00.prompty"):
            shown = client.post("/api/preview", json={"path": path}).json()
            assert shown["ok"] is False and CANARY not in json.dumps(shown), path
        for prompt, data in (
            (f"{site.dir}/define.prompty\x00", str(site.canary)),
            (str(site.canary), str(site.canary)),
        ):
            refused = client.post("/new", data={"prompt": prompt, "data": data})  # nothing starts
            assert refused.status_code == 400 and CANARY not in refused.text
        escape = "user:\n{% include '../home/canary.txt' %}" + "{% include '" + str(site.canary) + "' %}"
        shown = client.post("/api/preview", json={"template": escape}).json()
        assert shown["ok"] is False and CANARY not in json.dumps(shown)
        assert client.get("/static/app.js").status_code == 200  # the place itself still serves
    assert served > 100


def test_a_run_id_is_never_markup_on_an_error_page(site: Site) -> None:
    with serve(create_app(site.config)) as base:
        response = httpx.get(base + "/runs/" + quote("<img src=x onerror=alert(1)>", safe=""))
    assert response.status_code == 404
    assert "<img src=x" not in response.text and "&lt;img src=x onerror=alert(1)&gt;" in response.text


def test_a_sandbox_escape_from_the_preview_is_one_line(site: Site) -> None:
    template = "user:\n{{ cycler.__init__.__globals__.os.popen('id').read() }}"
    with serve(create_app(site.config)) as base:
        shown = httpx.post(base + "/api/preview", json={"template": template}).json()
    assert shown["ok"] is False and "\n" not in shown["error"]
    assert shown["error"].endswith("pasted.prompty:2: access to attribute '__init__' of 'type' object is unsafe")


def test_a_post_authenticated_by_the_token_in_its_address_has_one_content_length(site: Site) -> None:
    """`?token=` on a POST sets the cookie on the answer: one Set-Cookie added, never a second Content-Length (which
    a strict client or proxy refuses as a smuggling attempt)."""
    app = create_app(site.config, token=TOKEN)
    with serve(app) as base:
        host, port = urlsplit(base).hostname, urlsplit(base).port
        body = json.dumps({"template": "user:\nhello"}).encode()
        request = (
            f"POST /api/preview?token={TOKEN} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body
        with socket.create_connection((str(host), int(port or 0)), timeout=10) as sock:
            sock.sendall(request)
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
    head, _, payload = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 200"), lines[0]
    lengths = [line for line in lines[1:] if line.lower().startswith("content-length:")]
    assert len(lengths) == 1 and int(lengths[0].split(":")[1]) == len(payload), lines
    assert any(line.lower().startswith("set-cookie: llmcorr_ui_token=") for line in lines[1:]), lines
    assert json.loads(payload)["ok"] is True
