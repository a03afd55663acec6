"""The openai provider against a real OpenAI-compatible server: llama.cpp's own (llama_cpp.server) on 127.0.0.1,
serving the embedded model and checking the API key. The key must reach the server and nowhere else."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pandas as pd
import pytest

from llmcorr.providers import embedded_model_path

from .conftest import run_cli, store_path

pytestmark = pytest.mark.model
KEY = "sk-llmcorr-test-0123456789-SECRET"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def llama_cpp_server(log: Path, api_key: str | None = None) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on a free 127.0.0.1 port, serving the embedded model as
    "smollm2" (and requiring `api_key` when given); yields its base URL."""
    port = free_port()
    key_args = ["--api_key", api_key] if api_key else []
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(embedded_model_path()),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "4096",
                "--model_alias",
                "smollm2",
                *key_args,
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    base = f"http://127.0.0.1:{port}/v1"
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                if httpx.get(f"{base}/models", headers=headers, timeout=2).is_success:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "llama_cpp.server did not start"
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with llama_cpp_server(tmp_path_factory.mktemp("server") / "server.log", api_key=KEY) as base:
        yield base


def test_correct_through_an_openai_compatible_server(
    llama_server: str, cancer_csv: Path, tmp_path: Path, llmcorr_home: Path
) -> None:
    out = tmp_path / "out.jsonl"
    args = (
        "correct",
        "-p",
        cancer_csv,
        "--limit",
        3,
        "--shots",
        2,
        "--provider",
        "openai",
        "--base-url",
        llama_server,
        "--model",
        "smollm2",
        "--api-key-env",
        "SERVER_KEY",
        "--output",
        out,
        "--send-all",  # every test row answered, whatever the gate chooses
    )
    r = run_cli(*args, env={"SERVER_KEY": KEY})
    assert r.returncode == 0, r.stderr
    table = pd.read_json(out, lines=True)
    assert len(table) == 3 and (table["tokens"] > 0).all()

    # the key reached the server (it rejects requests without it) …
    denied = run_cli(*args, "--no-cache", env={"SERVER_KEY": "sk-wrong"})
    assert denied.returncode == 1 and "HTTP 401" in denied.stderr
    # … and nothing else: not the store (db + WAL), the output, the console, the error messages
    for path in [out, *llmcorr_home.glob("llmcorr.db*")]:
        assert KEY.encode() not in path.read_bytes(), path
    for text in (r.stdout, r.stderr, denied.stdout, denied.stderr):
        assert KEY not in text
    assert store_path(llmcorr_home).exists()
