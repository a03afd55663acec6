"""Inspect AI: one task of N identical samples, solver generate(), no scorer, `max_connections` set (the CLI's
--max-connections); Inspect's own retry of 429s. One endpoint: Inspect does not route across endpoints.

Needs `inspect_ai` and `openai` (the peers virtualenv, bench/.venv-peers): imported inside `run`.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench.peers.common import API_KEY, AZURE_API_VERSION, Result, Scenario, root_url

DEFAULT_CONNECTIONS = 16


def run(base_urls: list[str], scenario: Scenario) -> Result:
    from inspect_ai import Task, eval
    from inspect_ai.dataset import Sample
    from inspect_ai.model import ChatMessageSystem, ChatMessageUser, GenerateConfig
    from inspect_ai.solver import generate

    def messages() -> list[Any]:
        kinds = {"system": ChatMessageSystem, "user": ChatMessageUser}
        return [kinds[m["role"]](content=m["content"]) for m in scenario["messages"]]

    if scenario["mode"] == "azure":
        os.environ.update(
            AZUREAI_OPENAI_API_KEY=API_KEY,
            AZUREAI_OPENAI_BASE_URL=root_url(base_urls[0]),
            AZUREAI_OPENAI_API_VERSION=AZURE_API_VERSION,
        )
        model, base_url = f"openai/azure/{scenario['model']}", None
    else:
        os.environ["OPENAI_API_KEY"] = API_KEY
        model, base_url = f"openai/{scenario['model']}", base_urls[0]
    connections = scenario["workers"] or DEFAULT_CONNECTIONS
    task = Task(
        dataset=[Sample(input=messages(), id=i) for i in range(scenario["requests"])],
        solver=generate(),
        config=GenerateConfig(max_tokens=scenario["max_tokens"]),
    )
    started = time.monotonic()
    logs = eval(
        task,
        model=model,
        model_base_url=base_url,
        model_args={"responses_api": False},  # chat completions: an unknown model name defaults to the Responses API
        max_connections=connections,
        log_dir=os.path.join(scenario["work_dir"], "inspect-logs"),
        display="none",
        fail_on_error=False,
    )
    wall = time.monotonic() - started
    samples = logs[0].samples or []
    errors: dict[str, int] = {}
    for sample in samples:
        if sample.error is not None:
            key = str(sample.error.message)[:80]
            errors[key] = errors.get(key, 0) + 1
    failed = sum(errors.values()) + scenario["requests"] - len(samples)
    note = f"--max-connections {connections}; eval status {logs[0].status}"
    return {"ok": scenario["requests"] - failed, "failed": failed, "wall_s": wall, "errors": errors, "note": note}
