"""The LLMCorr authors' loop: one request at a time, `time.sleep(60 / rpm)` after each (httpx, synchronous).

`rpm` is what the quota allows for this request size (the configured rpm, or tpm / tokens per request when tokens
bind), as a user of that script would set it; told no quota, it does not sleep (one request in flight is its only
limit). A 429 or error is retried after the same sleep, at most 5 times. The
loop stops starting requests after `scenario["seconds"]` (the time the work takes at the full quota), so its row
shows what it got done in that time.
"""

from __future__ import annotations

import time

import httpx

from bench.peers.common import API_KEY, Result, Scenario, chat_url, paced_rpm, summarize

MAX_TRIES = 5


def run(base_urls: list[str], scenario: Scenario) -> Result:
    url = chat_url(base_urls[0], scenario)  # one endpoint: the loop has no routing
    rpm = paced_rpm(scenario["endpoints"][0], scenario["charge"])
    pause = 60 / rpm if rpm else 0.0  # told no quota: the loop without its sleep
    body = {"model": scenario["model"], "messages": scenario["messages"], "max_tokens": scenario["max_tokens"]}
    headers = {"authorization": f"Bearer {API_KEY}", "api-key": API_KEY}
    outcomes: list[object] = []
    started = time.monotonic()
    with httpx.Client(timeout=60) as client:
        for _ in range(scenario["requests"]):
            if time.monotonic() - started >= scenario["seconds"]:
                break
            outcome: object = "not sent"
            for _ in range(MAX_TRIES):
                try:
                    response = client.post(url, json=body, headers=headers)
                    outcome = None if response.status_code == 200 else f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    outcome = exc
                time.sleep(pause)
                if outcome is None:
                    break
            outcomes.append(outcome)
    note = f"sleep {pause:.2f}s between calls; stopped after {scenario['seconds']:.0f}s with {len(outcomes)} sent"
    return summarize(outcomes, started, note=note)
