"""bench/quota.py's scenarios, tools and workload: what each (scenario, tool) run sends, to which emulator, told what.

The workload is one LLMCorr-style chat request (a system message and a few-shot user message, max_tokens 64); a
scenario is the emulator's style (mode, bucket or window, how it counts prompt tokens, which rate-limit headers it
sends) and the quota of each endpoint; a tool is a runner in bench/peers/.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

from bench.peers.common import EndpointSpec, Scenario
from bench.quota_server import QuotaServerConfig
from bench.quota_tokens import chars4_prompt_tokens, count_prompt_tokens
from llmcorr.scheduler.tokens import tiktoken_counter

MODEL = "m"
MAX_TOKENS = 64
SYSTEM = (
    "You are an expert medicinal chemist. You are shown molecules with a trained model's prediction of whether they "
    "penetrate the blood-brain barrier, and the true label. Correct the model's prediction for the last molecule."
)
SHOT = (
    "Molecule: CC(C)Cc1ccc(cc1)[C@@H](C)C(=O)O. Model prediction: True (probability 0.71). Label: {label}.\n"
    "Molecule: CN1CCC[C@H]1c2cccnc2. Model prediction: False (probability 0.38). Label: {label}.\n"
)
USER = "".join(SHOT.format(label=label) for label in ("True", "False", "True")) + (
    "Molecule: COc1ccc2[nH]cc(CCN(C)C)c2c1. Model prediction: True (probability 0.64).\n"
    "Answer as 'Prediction: <True or False>; Explanation: <one sentence>'."
)
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]
RESPONSE = (
    "Prediction: True; Explanation: the molecule is small, lipophilic and has few hydrogen-bond donors, like the "
    "labelled examples that cross the barrier, so the model's prediction stands."
)
LATENCY_S, PER_TOKEN_S = 0.2, 0.004  # the emulator's reply time: 0.2 s + 4 ms per completion token
LONG_S = 120.0  # the long scenarios' length: 120 s of work at the quota, all of it queued at once


@dataclass(frozen=True)
class Setup:
    """A scenario: the emulator's style and the quota of each endpoint (rpm, tpm), told to every tool (unless
    `told` is False: then no tool is told any quota)."""

    name: str
    about: str
    mode: str
    quotas: tuple[tuple[int, int], ...]
    window_s: float | None = None
    hidden: float = 0.0
    bucket_s: float | None = None  # OpenAI mode: this scenario's server bucket in seconds of quota (else --bucket-s)
    seconds: float | None = None  # this scenario's length (else --seconds, default 30)
    # the server's prompt-token count, "tiktoken" (as llmcorr's) or "chars4", and its x-ratelimit-* header style
    prompt_count: Literal["tiktoken", "chars4"] = "tiktoken"
    limit_headers: Literal["openai", "azure", "none"] = "openai"
    told: bool = True  # the tools are told the quota (llmcorr: rpm/tpm in its config; LiteLLM: the deployment's)


SETUPS = (
    Setup("tpm-bound", "OpenAI mode, rpm 60,000, tpm 120,000", "openai", ((60_000, 120_000),)),
    Setup("rpm-bound", "OpenAI mode, rpm 600, tpm 10,000,000", "openai", ((600, 10_000_000),)),
    Setup("azure-10s", "Azure mode, 10 s windows, rpm 720, tpm 120,000", "azure", ((720, 120_000),), window_s=10.0),
    Setup(
        "three-endpoints",
        "3 OpenAI-mode servers, tpm 30k : 60k : 120k (1:2:4), rpm 60,000 each",
        "openai",
        ((60_000, 30_000), (60_000, 60_000), (60_000, 120_000)),
    ),
    Setup(
        "hidden-30pct",
        "OpenAI mode, rpm 600, 1 s bucket; an unseen client spends 30%",
        "openai",
        ((600, 10_000_000),),
        hidden=0.3,
        bucket_s=1.0,  # a 10 s bucket pays for ~30 s of both clients at once: the run would end before it empties
    ),
    # issue 14's long runs: 120 s of work at the quota (>= 1,500 requests), all queued at once, TPM-bound
    Setup(
        "tokenizer-mismatch",
        "OpenAI mode, 10 s bucket, rpm 60,000, tpm 240,000; the server counts prompt tokens as chars/4 (usage too)",
        "openai",
        ((60_000, 240_000),),
        bucket_s=10.0,
        seconds=LONG_S,
        prompt_count="chars4",
    ),
    Setup(
        "no-quota-config",
        "OpenAI mode, 10 s bucket, rpm 60,000, tpm 300,000, OpenAI's headers; no tool is told the quota",
        "openai",
        ((60_000, 300_000),),
        bucket_s=10.0,
        seconds=LONG_S,
        told=False,
    ),
    Setup(
        "no-quota-config-no-headers",
        "as no-quota-config, but the server sends no x-ratelimit-* headers (vLLM, Ollama, llama.cpp)",
        "openai",
        ((60_000, 300_000),),
        bucket_s=10.0,
        seconds=LONG_S,
        limit_headers="none",
        told=False,
    ),
    Setup(
        "azure-10s-long",  # azure-10s's shape (rpm:tpm 0.006, TPM-bound) scaled x2.5 so 120 s hold >= 1,500 requests
        "Azure mode, 10 s windows, rpm 1,800, tpm 300,000, Azure's headers (remaining-* only)",
        "azure",
        ((1_800, 300_000),),
        window_s=10.0,
        seconds=LONG_S,
        limit_headers="azure",
    ),
)

QUICK = ["tpm-bound", "three-endpoints"]


@dataclass(frozen=True)
class Tool:
    key: str  # the --tools name
    label: str
    runner: str  # module in bench.peers
    venv: str | None = None  # a key of bench/peers/venvs.py: its packages live there; None: the dev venv
    workers: int | None = None
    routes: bool = False  # spreads work across several endpoints; else it gets the largest one only
    multi_ok: bool = True  # worth running on the three-endpoint scenario with one endpoint


TOOLS = (
    Tool("llmcorr", "llmcorr Scheduler", "llmcorr_runner", routes=True),
    Tool("paper", "paper loop (sleep 60/rpm)", "paper_loop"),
    Tool("promptflow", "pf run, default workers (4)", "promptflow_runner", "promptflow", multi_ok=False),
    Tool("promptflow", "pf run, 16 workers", "promptflow_runner", "promptflow", workers=16, multi_ok=False),
    Tool("litellm", "LiteLLM Router usage-based-v2", "litellm_runner", "litellm", routes=True),
    Tool("inspect", "Inspect AI --max-connections 16", "inspect_runner", "inspect", 16, multi_ok=False),
)


@dataclass(frozen=True)
class Knobs:
    seconds: float | None  # the work takes this long at the full quota; None: each scenario's own (else 30 s)
    skip_s: float  # steady state starts this long after the first admission
    bucket_s: float  # OpenAI mode: the server's bucket capacity in seconds of quota
    azure_window_s: float | None = None  # overrides the Azure scenario's window (--quick)


DEFAULT_S = 30.0


def seconds_for(setup: Setup, knobs: Knobs) -> float:
    return knobs.seconds or setup.seconds or DEFAULT_S


@functools.cache
def prompt_tokens(prompt_count: Literal["tiktoken", "chars4"] = "tiktoken") -> int:
    """The workload's prompt tokens as a server of this style counts them."""
    if prompt_count == "chars4":
        return chars4_prompt_tokens(MESSAGES)
    return count_prompt_tokens(MESSAGES, tiktoken_counter())  # cl100k_base, OpenAI's chat framing


def charge(setup: Setup | None = None) -> int:
    """Tokens the server charges one request: its prompt count + max_tokens."""
    return prompt_tokens(setup.prompt_count if setup else "tiktoken") + MAX_TOKENS


def binding(setup: Setup) -> str:
    rpm, tpm = setup.quotas[0]
    return "requests" if rpm <= tpm / charge(setup) else "tokens"


def requests_for(setup: Setup, seconds: float) -> int:
    per_min = sum(min(rpm, tpm / charge(setup)) for rpm, tpm in setup.quotas) * (1 - setup.hidden)
    return math.ceil(per_min / 60 * seconds)


def window_s(setup: Setup, knobs: Knobs) -> float | None:
    return setup.window_s and (knobs.azure_window_s or setup.window_s)


def server_config(setup: Setup, rpm: int, tpm: int, knobs: Knobs) -> QuotaServerConfig:
    openai = setup.mode == "openai"
    bucket_s = min(setup.bucket_s or knobs.bucket_s, knobs.bucket_s)
    return QuotaServerConfig(
        rpm=rpm,
        tpm=tpm,
        mode="openai" if openai else "azure",
        request_capacity=rpm * bucket_s / 60 if openai else None,
        token_capacity=tpm * bucket_s / 60 if openai else None,
        window_s=window_s(setup, knobs) or 10.0,
        hidden_client_fraction=setup.hidden,
        base_latency_s=LATENCY_S,
        per_output_token_s=PER_TOKEN_S,
        response_text=RESPONSE,
        model=MODEL,
        count_tokens=tiktoken_counter(),  # the server counts as llmcorr's scheduler does (cl100k_base, bundled)
        prompt_count=setup.prompt_count,
        limit_headers=setup.limit_headers,
    )


def endpoints_for(setup: Setup, tool: Tool) -> list[int]:
    """Which of the scenario's endpoints the tool is given: all of them, or the largest if it cannot route."""
    every = range(len(setup.quotas))
    size = charge(setup)
    return (
        list(every) if tool.routes else [max(every, key=lambda i: min(setup.quotas[i][0], setup.quotas[i][1] / size))]
    )


def scenario_for(setup: Setup, tool: Tool, knobs: Knobs, work_dir: str) -> Scenario:
    endpoints: list[EndpointSpec] = []
    for i in endpoints_for(setup, tool):
        rpm, tpm = setup.quotas[i] if setup.told else (None, None)
        endpoints.append({"name": f"e{i}", "rpm": rpm, "tpm": tpm, "window_s": window_s(setup, knobs)})
    seconds = seconds_for(setup, knobs)
    return {
        "name": setup.name,
        "mode": setup.mode,
        "model": MODEL,
        "endpoints": endpoints,
        "messages": MESSAGES,
        "max_tokens": MAX_TOKENS,
        "charge": charge(setup),
        "requests": requests_for(setup, seconds),
        "seconds": seconds,
        "workers": tool.workers,
        "work_dir": work_dir,
    }
