"""LiteLLM Router, routing_strategy="usage-based-routing-v2", one deployment per endpoint with its rpm and tpm
(told no quota: none, LiteLLM's default, i.e. no limit of its own); all requests at once (asyncio.gather over
`router.acompletion`). Router defaults otherwise (its retries included).

Needs `litellm` (the peers virtualenv, bench/.venv-peers): imported inside `run`.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from bench.peers.common import API_KEY, AZURE_API_VERSION, Result, Scenario, root_url, summarize


def _deployment(base_url: str, i: int, scenario: Scenario) -> dict[str, Any]:
    spec = scenario["endpoints"][i]
    params: dict[str, Any] = {"api_key": API_KEY}
    params.update({k: spec[k] for k in ("rpm", "tpm") if spec[k] is not None})  # none given: LiteLLM's default
    if scenario["mode"] == "azure":
        params.update(model=f"azure/{scenario['model']}", api_base=root_url(base_url), api_version=AZURE_API_VERSION)
    else:
        params.update(model=f"openai/{scenario['model']}", api_base=base_url)
    return {"model_name": "bench", "litellm_params": params, "model_info": {"id": spec["name"]}}


def run(base_urls: list[str], scenario: Scenario) -> Result:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download of the price list at import
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    return asyncio.run(_run(base_urls, scenario))


async def _run(base_urls: list[str], scenario: Scenario) -> Result:
    import litellm

    litellm.telemetry = False
    model_list = [_deployment(url, i, scenario) for i, url in enumerate(base_urls)]
    router = litellm.Router(model_list=model_list, routing_strategy="usage-based-routing-v2")
    started = time.monotonic()

    async def one() -> str:
        response = await router.acompletion(
            model="bench", messages=scenario["messages"], max_tokens=scenario["max_tokens"]
        )
        return str(response._hidden_params.get("model_id", "?"))

    outcomes = list(await asyncio.gather(*(one() for _ in range(scenario["requests"])), return_exceptions=True))
    result = summarize([o if isinstance(o, BaseException) else None for o in outcomes], started)
    used: dict[str, int] = {}
    for o in outcomes:
        if isinstance(o, str):
            used[o] = used.get(o, 0) + 1
    result["note"] = f"num_retries={router.num_retries}; completions per deployment {used}"
    return result
