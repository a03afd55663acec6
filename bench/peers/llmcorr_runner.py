"""llmcorr: one Scheduler over every endpoint, told each endpoint's quota (or, where the scenario tells none, rpm and
tpm left out, as an llmcorr.toml without them); all requests at once (asyncio.gather)."""

from __future__ import annotations

import asyncio
import time

from bench.peers.common import Result, Scenario, azure_deployment_url, summarize
from llmcorr.config import EndpointConfig
from llmcorr.providers.base import GenParams, Message
from llmcorr.scheduler import Scheduler, build_endpoints


def run(base_urls: list[str], scenario: Scenario) -> Result:
    return asyncio.run(_run(base_urls, scenario))


def _config(i: int, base_url: str, scenario: Scenario) -> EndpointConfig:
    spec = scenario["endpoints"][i]
    azure = scenario["mode"] == "azure"
    return EndpointConfig(
        name=spec["name"],
        kind="azure" if azure else "openai",
        base_url=azure_deployment_url(base_url, scenario["model"]) if azure else base_url,
        model=scenario["model"],
        rpm=spec["rpm"],
        tpm=spec["tpm"],
        window_s=spec["window_s"],
    )


async def _run(base_urls: list[str], scenario: Scenario) -> Result:
    configs = [_config(i, url, scenario) for i, url in enumerate(base_urls)]
    scheduler = Scheduler(build_endpoints(configs))
    messages = [Message(m["role"], m["content"]) for m in scenario["messages"]]  # type: ignore[arg-type]
    params = GenParams(max_tokens=scenario["max_tokens"])
    started = time.monotonic()
    try:
        jobs = (scheduler.complete(messages, params) for _ in range(scenario["requests"]))
        outcomes = list(await asyncio.gather(*jobs, return_exceptions=True))
    finally:
        await scheduler.aclose()
    used = ", ".join(f"{name}: {s['ok']}" for name, s in scheduler.stats().items())
    return summarize(outcomes, started, note=f"retried {scheduler.retried}; completions per endpoint {used}")
