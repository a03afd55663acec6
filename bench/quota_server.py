"""A quota-enforcing, OpenAI-compatible chat-completions server on 127.0.0.1, for testing and benchmarking
llmcorr's scheduler against rate limits that behave like OpenAI's and Azure OpenAI's.

    with QuotaServer(QuotaServerConfig(rpm=600, tpm=60_000)) as srv:
        httpx.post(f"{srv.base_url}/chat/completions", json={"model": "m", "messages": [...]})
        srv.stats()

    python -m bench.quota_server --port 8101 --rpm 600 --tpm 60000 --mode openai

Endpoints: POST /v1/chat/completions (also /chat/completions and Azure's
/openai/deployments/{name}/chat/completions?api-version=...), GET /v1/models, GET /stats (?log=1 adds the request
log), POST /reset. Standard library only: asyncio, HTTP/1.1 with keep-alive.

How a chat request is charged and answered:

- prompt_tokens = ``count_prompt_tokens(messages)`` (bench/quota_tokens.py: 3 + per message 4 + tokens(content));
  the charge at admission is prompt_tokens + max_tokens (``max_completion_tokens`` is read too; absent, the
  config's ``default_max_tokens``, 16). Unused max_tokens are never refunded, as at OpenAI.
- Order: auth (401) → body (400) → daily quota (429 insufficient_quota) → rate limit (429 with Retry-After) →
  admitted and charged → fault knobs (a fault's charge stands) → sleep the latency → 200.
- Every response to a chat request after auth carries x-ratelimit-{limit,remaining,reset}-{requests,tokens}
  (``limit_headers="openai"``), only x-ratelimit-remaining-{requests,tokens} (``"azure"``, as Azure OpenAI) or none
  (``"none"``, as vLLM, Ollama and llama.cpp's server); a 429 always carries Retry-After.
- ``prompt_count="chars4"``: prompt_tokens = ceil(characters of the messages' contents / 4) instead, in the charge
  and in ``usage.prompt_tokens`` (a server whose tokenizer is not tiktoken's).
- The reply is ``response_text`` truncated to max_tokens (finish_reason "length"); completion_tokens =
  min(tokens(response_text), max_tokens).
- ``stream: true`` and ``n > 1`` are refused with 400: the emulator does neither.
- Answer-shape faults (content as a list of parts, a number, empty or null; empty with finish_reason "length";
  usage past 64 bits or negative): the ``*_rate`` knobs of bench/quota_shapes.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from dataclasses import fields, replace
from typing import Any, TypeVar

from bench.quota_emulator import Emulator, Outcome, QuotaServerConfig, error_body
from bench.quota_http import HttpError, json_response, read_request
from bench.quota_stats import utilization
from bench.quota_tokens import count_prompt_tokens, tokenizer_name

# a prompt file the benches and the tests run against this server: one short answer per word
DEFINE_PROMPTY = """---
name: Define
model:
  api: chat
  parameters:
    max_tokens: 4
inputs:
  word:
    type: string
---
user:
Define {{ word }}.
"""

__all__ = ["QuotaServer", "QuotaServerConfig", "count_prompt_tokens", "main", "utilization"]

log = logging.getLogger("bench.quota_server")
T = TypeVar("T")
HOST = "127.0.0.1"


class QuotaServer:
    """One quota server on 127.0.0.1, running its own event loop in a background thread.

    ``with QuotaServer(config) as srv: srv.base_url, srv.stats()``; several may run at once, each on its port."""

    def __init__(self, config: QuotaServerConfig | None = None, **overrides: Any) -> None:
        self.config = replace(config or QuotaServerConfig(), **overrides)
        self.emulator = Emulator(self.config)
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def root_url(self) -> str:
        """http://127.0.0.1:PORT (Azure clients: the endpoint)."""
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT/v1 (OpenAI clients: the base URL)."""
        return f"{self.root_url}/v1"

    def __enter__(self) -> QuotaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> QuotaServer:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
                loop.run_until_complete(self._close())
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=f"quota-server-{id(self):x}", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        self._loop = self._thread = None

    def _call(self, fn: Callable[[], T]) -> T:
        loop = self._loop
        if loop is None:
            return fn()

        async def call() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=30)

    def stats(self, include_log: bool = False) -> dict[str, Any]:
        """Counters, time series and (with include_log) the request log; see bench/quota_stats.py."""
        return self._call(lambda: self.emulator.snapshot(include_log))

    def request_log(self) -> list[dict[str, Any]]:
        return list(self._call(lambda: list(self.emulator.stats.log)))

    def reset(self) -> None:
        """Counters, log, RNG and buckets back to their starting state."""
        self._call(self.emulator.reset)

    def utilization(self, start_s: float | None = None, end_s: float | None = None) -> dict[str, Any]:
        return utilization(self.stats(), start_s, end_s)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open(self) -> None:
        self._server = await asyncio.start_server(self._connection, HOST, self.config.port, limit=1 << 16)
        self.port = self._server.sockets[0].getsockname()[1]
        self.emulator.reset()
        if self.config.hidden_client_fraction > 0:
            self._spawn(self._hidden_client())

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _hidden_client(self) -> None:
        while True:
            await asyncio.sleep(self.config.hidden_tick_s)
            self.emulator.hidden_tick()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.emulator.stats.counts["connections"] += 1
        try:
            await self._converse(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except Exception:
            log.exception("quota server: connection failed")
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cfg = self.config
        while True:
            try:
                req = await asyncio.wait_for(read_request(reader, cfg.max_body_bytes), cfg.idle_timeout_s)
            except HttpError as exc:
                self.emulator.stats.counts["bad_request"] += 1
                body = error_body(exc.message, "invalid_request_error", None)
                writer.write(json_response(exc.status, body).render(keep_alive=False))
                await writer.drain()
                return
            if req is None:
                return
            try:
                outcome = await self.emulator.handle(req)
            except Exception:
                log.exception("quota server: request failed")
                self.emulator.stats.counts["errors_5xx"] += 1
                outcome = Outcome(json_response(500, error_body("emulator bug", "server_error", None)))
            if outcome.action == "reset":
                sock = writer.get_extra_info("socket")
                if sock is not None:  # SO_LINGER 0: close() sends RST, the client sees a connection reset
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            if outcome.action == "hang":
                await asyncio.sleep(cfg.hang_s)
                return
            assert outcome.response is not None
            writer.write(outcome.response.render(req.keep_alive))
            await writer.drain()
            if not req.keep_alive:
                return


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.quota_server",
        description="A quota-enforcing OpenAI-compatible server on 127.0.0.1 (see QuotaServerConfig for each knob).",
    )
    for f in fields(QuotaServerConfig):
        if f.name == "count_tokens":
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type)
        if kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
            continue
        convert: Callable[[str], Any] = float if "float" in kind else int if "int" in kind else str
        choices = re.findall(r"[\"']([^\"']+)[\"']", kind) if kind.startswith("Literal[") else None
        parser.add_argument(flag, type=convert, default=f.default, choices=choices, help=f"default: {f.default}")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        config = QuotaServerConfig(**vars(args))
    except ValueError as exc:
        _parser().error(str(exc))
    with QuotaServer(config) as srv:
        print(srv.base_url, flush=True)
        tokenizer = "chars/4" if config.prompt_count == "chars4" else tokenizer_name()
        print(f"mode={config.mode} rpm={config.rpm} tpm={config.tpm} tokenizer={tokenizer}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
