"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1, for what a real server won't do on demand
(429s with Retry-After, 5xx bursts, malformed bodies). It answers each request with the next scripted reply and
records what it received; with `delay_s` each answer takes that long, and `peak_in_flight` is the most requests it
held at once. `route`, when set, answers from the request's body first (None: the script goes on as usual)."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict -> JSON; str -> raw text
    headers: dict[str, str] = field(default_factory=dict)


def ok(text: str, prompt_tokens: int = 12, completion_tokens: int = 4) -> Reply:
    return Reply(
        body={
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": "scripted",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


class ScriptedServer:
    def __init__(self, default: Reply | None = None, delay_s: float = 0.0) -> None:
        self.script: deque[Reply] = deque()
        self.delay_s = delay_s
        self.in_flight = self.peak_in_flight = 0
        self._count = threading.Lock()
        self.default = default or ok("Prediction: True; Explanation: scripted")
        self.requests: list[dict[str, Any]] = []
        self.route: Callable[[dict[str, Any]], Reply | None] | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                with server._count:
                    server.in_flight += 1
                    server.peak_in_flight = max(server.peak_in_flight, server.in_flight)
                time.sleep(server.delay_s)
                with server._count:  # before answering: the client's next request may follow the answer at once
                    server.in_flight -= 1
                reply = server.route(body) if server.route is not None else None
                if reply is None:
                    reply = server.script.popleft() if server.script else server.default
                raw = reply.body if isinstance(reply.body, str) else json.dumps(reply.body or {})
                data = raw.encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                if reply.headers.get("connection") == "close":  # a body that ends where the connection does
                    self.close_connection = True
                else:
                    self.send_header("content-length", str(len(data)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
