"""What the benchmark hands a runner and what a runner hands back; standard library only (runs in either venv)."""

from __future__ import annotations

import collections
import time
from typing import Any, TypedDict

AZURE_API_VERSION = "2024-10-21"
API_KEY = "sk-bench-not-a-secret"  # the emulator checks no key; clients that insist on one get this


class EndpointSpec(TypedDict):
    name: str
    rpm: int | None  # None: the tool is told no quota (it uses its defaults)
    tpm: int | None
    window_s: float | None  # Azure's enforcement window; None in OpenAI mode


class Scenario(TypedDict):
    name: str
    mode: str  # "openai" | "azure"
    model: str
    endpoints: list[EndpointSpec]
    messages: list[dict[str, str]]
    max_tokens: int
    charge: int  # prompt tokens + max_tokens, as the server charges one request
    requests: int  # how many requests to complete
    seconds: float  # how long the work takes at the full quota; sequential tools stop starting requests here
    workers: int | None  # the tool's concurrency knob, where the benchmark sets it
    work_dir: str  # a scratch directory for files the tool needs


class Result(TypedDict):
    ok: int
    failed: int
    wall_s: float  # first request sent to last answer (for a CLI: the command's wall time)
    errors: dict[str, int]  # error kind -> count (first 80 characters of the message)
    note: str


def root_url(base_url: str) -> str:
    """http://127.0.0.1:PORT from http://127.0.0.1:PORT/v1."""
    return base_url.rstrip("/").removesuffix("/v1")


def azure_deployment_url(base_url: str, model: str) -> str:
    return f"{root_url(base_url)}/openai/deployments/{model}"


def chat_url(base_url: str, scenario: Scenario) -> str:
    """The full chat-completions URL of an endpoint, OpenAI or Azure style."""
    if scenario["mode"] == "azure":
        return f"{azure_deployment_url(base_url, scenario['model'])}/chat/completions?api-version={AZURE_API_VERSION}"
    return f"{base_url.rstrip('/')}/chat/completions"


def paced_rpm(spec: EndpointSpec, charge: int) -> float | None:
    """The request rate an endpoint's quota allows for requests of `charge` tokens; None if no quota was given."""
    rpm, tpm = spec["rpm"], spec["tpm"]
    rates = [float(rpm)] if rpm else []
    rates += [tpm / charge] if tpm else []
    return min(rates) if rates else None


def summarize(outcomes: list[Any], started: float, note: str = "") -> Result:
    """A result from a list of outcomes, where an exception (or an error string) is a failure."""
    errors: collections.Counter[str] = collections.Counter()
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            errors[f"{type(outcome).__name__}: {outcome}"[:80]] += 1
        elif isinstance(outcome, str):
            errors[outcome[:80]] += 1
    failed = sum(errors.values())
    return {
        "ok": len(outcomes) - failed,
        "failed": failed,
        "wall_s": time.monotonic() - started,
        "errors": dict(errors.most_common(5)),
        "note": note,
    }
