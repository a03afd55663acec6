"""An instant, unlimited OpenAI-compatible chat-completions server: a client's own overhead is all a benchmark sees.

A raw `asyncio.Protocol` on 127.0.0.1 (no framework, no JSON decoding of requests): HTTP/1.1 keep-alive, pipelining,
Content-Length or chunked bodies. Every request is answered at once:

    POST .../chat/completions   a fixed completion ("ok"); usage.prompt_tokens = len(body) // 4, completion_tokens 1
                                (matches /v1/chat/completions, /chat/completions, /openai/deployments/*/chat/...)
    GET  /v1/models             one model, "m"
    GET  /stats                 {"requests": all requests, "completions": chat completions answered}

    .venv/bin/python -m bench.instant_server [--port 0]   # prints `listening on http://127.0.0.1:PORT/v1`
    .venv/bin/python -m bench.instant_server --load-test  # its ceiling in requests/s, from a client in this process

`start_instant_server()` spawns it in its own process for a benchmark; `completions_seen(base_url)` reads its count.
Standard library only (uvloop when it happens to be installed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = "m"
MAX_HEAD = 64 * 1024  # a request head larger than this is refused (431)

_CREATED = int(time.time())
# The completion, split where the per-request numbers go (id, prompt_tokens, total_tokens)
_COMPLETION = (
    '{"id":"chatcmpl-%d","object":"chat.completion","created":' + str(_CREATED) + ',"model":"' + MODEL + '",'
    '"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"logprobs":null,"finish_reason":"stop"}],'
    '"usage":{"prompt_tokens":%d,"completion_tokens":1,"total_tokens":%d}}'
).encode()
_MODELS = json.dumps(
    {"object": "list", "data": [{"id": MODEL, "object": "model", "created": _CREATED, "owned_by": "bench"}]}
).encode()
_HEAD = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
_KEEP = b""
_CLOSE = b"Connection: close\r\n"
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 431: b"Request Header Fields Too Large"}


class Counts:
    """What the server has answered since it started."""

    requests = 0
    completions = 0


def _response(status: int, body: bytes, close: bool) -> bytes:
    return _HEAD % (status, _REASONS[status], len(body), _CLOSE if close else _KEEP) + body


def _error(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()


class InstantProtocol(asyncio.Protocol):
    """One connection: parse every whole request the buffer holds, answer them all in one write."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        out: list[bytes] = []
        close = False
        while not close:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    out.append(_response(431, _error("request head too large"), True))
                    close = True
                break
            head = bytes(buffer[:end]).lower()  # methods and paths are compared in lower case too
            try:
                parsed = self._body(head, end + 4)
            except ValueError:
                out.append(_response(400, _error("bad Content-Length or chunk size"), True))
                close = True
                break
            if parsed is None:  # the body has not all arrived yet
                break
            body, consumed = parsed
            del buffer[:consumed]
            line_end = head.find(b"\r\n")
            request_line = head if line_end < 0 else head[:line_end]
            if request_line.endswith(b"http/1.0"):
                close = b"\r\nconnection: keep-alive" not in head
            else:
                close = b"\r\nconnection: close" in head
            out.append(self._answer(request_line, body, close))
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
            if close:
                self.transport.close()

    def _body(self, head: bytes, start: int) -> tuple[bytes, int] | None:
        """The request body and the bytes the whole request takes in the buffer; None while incomplete."""
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            line_end = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : line_end if line_end >= 0 else len(head)])
            if len(self.buffer) < start + length:
                return None
            return bytes(self.buffer[start : start + length]), start + length
        if b"\r\ntransfer-encoding: chunked" in head:
            return self._chunked(start)
        return b"", start

    def _chunked(self, start: int) -> tuple[bytes, int] | None:
        buffer, at = self.buffer, start
        parts: list[bytes] = []
        while True:
            line_end = buffer.find(b"\r\n", at)
            if line_end < 0:
                return None
            size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
            if size == 0:  # the last chunk, then trailers (usually none) and an empty line
                end = buffer.find(b"\r\n\r\n", line_end)
                return None if end < 0 else (b"".join(parts), end + 4)
            if len(buffer) < line_end + 2 + size + 2:
                return None
            parts.append(bytes(buffer[line_end + 2 : line_end + 2 + size]))
            at = line_end + 2 + size + 2

    def _answer(self, request_line: bytes, body: bytes, close: bool) -> bytes:
        Counts.requests += 1
        parts = request_line.split(b" ")
        if len(parts) != 3:
            return _response(400, _error("bad request line"), True)
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method == b"post" and target.endswith(b"/chat/completions"):
            Counts.completions += 1
            prompt_tokens = len(body) // 4
            return _response(200, _COMPLETION % (Counts.completions, prompt_tokens, prompt_tokens + 1), close)
        if method == b"get" and target in (b"/v1/models", b"/models"):
            return _response(200, _MODELS, close)
        if method == b"get" and target == b"/stats":
            stats = json.dumps({"requests": Counts.requests, "completions": Counts.completions}).encode()
            return _response(200, stats, close)
        return _response(404, _error(f"no route for {method.decode().upper()} {target.decode()}"), close)


async def serve(port: int = 0) -> None:
    """Serve on 127.0.0.1:`port` (0: any free port) until cancelled; prints the base URL once it listens."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(InstantProtocol, "127.0.0.1", port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"listening on http://127.0.0.1:{bound}/v1", flush=True)
    async with server:
        await server.serve_forever()


def start_instant_server() -> tuple[subprocess.Popen[str], str]:
    """The server in its own process; returns it and its base URL (http://127.0.0.1:PORT/v1). Terminate it after."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.instant_server"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+/v1", line)
    if match is None:
        proc.kill()
        raise RuntimeError(f"the instant server did not start: {line!r}")
    return proc, match.group(0)


def stats(base_url: str) -> dict[str, int]:
    """The server's counts; `base_url` as start_instant_server returned it."""
    root = base_url.removesuffix("/").removesuffix("/v1")
    with urllib.request.urlopen(f"{root}/stats", timeout=10) as response:
        counts: dict[str, int] = json.load(response)
    return counts


def completions_seen(base_url: str) -> int:
    return stats(base_url)["completions"]


async def load(base_url: str, connections: int = 64, depth: int = 1, seconds: float = 5.0) -> float:
    """Requests/s the server answers: `connections` keep-alive connections, `depth` requests pipelined on each."""
    host, port = base_url.split("//")[1].split("/")[0].split(":")
    body = b'{"model":"m","messages":[{"role":"user","content":"Define word123."}],"max_tokens":8}'
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n" % host.encode()
    request = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    answered = 0

    async def client(deadline: float) -> None:
        nonlocal answered
        reader, writer = await asyncio.open_connection(host, int(port))
        while time.perf_counter() < deadline:
            writer.write(request * depth)
            for _ in range(depth):
                response_head = await reader.readuntil(b"\r\n\r\n")
                at = response_head.find(b"Content-Length: ") + 16
                await reader.readexactly(int(response_head[at : response_head.find(b"\r\n", at)]))
                answered += 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(started + seconds) for _ in range(connections)))
    return answered / (time.perf_counter() - started)


def load_test() -> None:
    """The server in its own process, this process as the client: one request in flight per connection, then 8."""
    proc, base_url = start_instant_server()
    try:
        for depth in (1, 8):
            rate = asyncio.run(load(base_url, depth=depth))
            print(f"64 keep-alive connections, {depth} request(s) in flight on each: {rate:,.0f} requests/s")
        print(f"server counted {completions_seen(base_url):,} completions")
    finally:
        proc.terminate()
        proc.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="0 (default): any free port")
    parser.add_argument("--load-test", action="store_true", help="measure the server's ceiling (5 s x 2) and exit")
    args = parser.parse_args(argv)
    if args.load_test:
        load_test()
        return
    try:
        import uvloop  # optional: only when already installed

        uvloop.install()
    except ImportError:
        pass
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
