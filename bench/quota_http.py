"""Just enough HTTP/1.1 for the quota server: read one request from an asyncio stream (Content-Length or chunked
bodies), render one response, keep-alive rules. Standard library only."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MAX_HEADERS = 100


class HttpError(Exception):
    """A request that cannot be read: answered with `status` and the connection is closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    version: str
    headers: dict[str, str]  # names lower-cased
    body: bytes = b""

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"

    def render(self, keep_alive: bool) -> bytes:
        reason = HTTPStatus(self.status).phrase
        lines = [
            f"HTTP/1.1 {self.status} {reason}",
            f"content-type: {self.content_type}",
            f"content-length: {len(self.body)}",
            f"connection: {'keep-alive' if keep_alive else 'close'}",
            *(f"{k}: {v}" for k, v in self.headers),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def json_response(status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, json.dumps(payload).encode(), headers or [])


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readline()
    except ValueError as exc:  # the line is longer than the stream's limit
        raise HttpError(431, "request line or header too long") from exc


async def _read_chunked(reader: asyncio.StreamReader, max_body: int) -> bytes:
    body = bytearray()
    while True:
        size_line = (await _read_line(reader)).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError as exc:
            raise HttpError(400, "malformed chunk size") from exc
        if size == 0:
            while (await _read_line(reader)) not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return bytes(body)
        if len(body) + size > max_body:
            raise HttpError(413, "request body too large")
        body += await reader.readexactly(size)
        await reader.readexactly(2)  # CRLF after each chunk


async def read_request(reader: asyncio.StreamReader, max_body: int) -> Request | None:
    """The next request on the connection, or None when the client closed it between requests."""
    line = await _read_line(reader)
    if not line:
        return None
    parts = line.decode("latin-1").strip().split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        raw = await _read_line(reader)
        if raw in (b"\r\n", b"\n"):
            break
        if not raw:
            raise asyncio.IncompleteReadError(b"", None)
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep or not name.strip():
            raise HttpError(400, "malformed header line")
        headers[name.strip().lower()] = value.strip()
    else:
        raise HttpError(431, "too many headers")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader, max_body)
    else:
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError as exc:
            raise HttpError(400, "malformed content-length") from exc
        if length < 0:
            raise HttpError(400, "malformed content-length")
        if length > max_body:
            raise HttpError(413, "request body too large")
        body = await reader.readexactly(length) if length else b""
    url = urlsplit(target)
    return Request(method.upper(), url.path, dict(parse_qsl(url.query)), version, headers, body)
