"""The scheduler against quota-enforcing OpenAI-compatible servers on 127.0.0.1 (bench/quota_server.py):
quota reached without 429s, token charges, header adaptation, Retry-After, routing, shared quota groups,
a daily quota stopping a run cleanly, `llmcorr estimate`, and a key that never lands anywhere."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from bench.quota_server import QuotaServer, QuotaServerConfig
from llmcorr.config import EndpointConfig
from llmcorr.providers.base import GenParams, Message
from llmcorr.scheduler import RetryPolicy, Scheduler, build_endpoints
from llmcorr.scheduler.tokens import tiktoken_counter
from llmcorr.store import Store

from .conftest import run_cli, store_path

PROMPT = [Message("system", "You correct predictions."), Message("user", "Sample: mean radius=17.99. " * 8)]


def server(**knobs: Any) -> QuotaServer:
    # the server counts prompt tokens with the same tokenizer the client uses (cl100k_base, bundled)
    return QuotaServer(QuotaServerConfig(count_tokens=tiktoken_counter(), **knobs))


def endpoint(srv: QuotaServer, name: str, **quota: Any) -> EndpointConfig:
    return EndpointConfig(name=name, kind="openai", base_url=srv.base_url, model="m", **quota)


def run_requests(scheduler: Scheduler, n: int, max_tokens: int = 16) -> list[Any]:
    async def go() -> list[Any]:
        try:
            params = GenParams(max_tokens=max_tokens)
            return list(await asyncio.gather(*(scheduler.complete(PROMPT, params) for _ in range(n))))
        finally:
            await scheduler.aclose()

    return asyncio.run(go())


def steady_rate(stats: dict[str, Any], skip_s: float = 2.0) -> float:
    """Admitted requests per second after the opening burst, from the server's own time series."""
    series = [s for s in stats["series"] if s["second"] >= skip_s]
    full = series[:-1]  # the last second is partial
    return sum(s["admitted"] for s in full) / len(full)


def test_rpm_bound_reaches_the_quota_with_no_429() -> None:
    # the server's bucket holds only two seconds of quota: an unpaced client would be refused at once
    with server(rpm=1200, tpm=10_000_000, request_capacity=40, base_latency_s=0.05) as srv:
        results = run_requests(Scheduler(build_endpoints([endpoint(srv, "a", rpm=1200)])), 200)
        stats = srv.stats()
    assert len(results) == 200 and stats["rate_limited_total"] == 0
    assert steady_rate(stats) >= 0.95 * 20


def test_tpm_bound_charges_prompt_plus_max_tokens() -> None:
    prompt = tiktoken_counter()
    expected_charge = sum(4 + prompt(m.content) for m in PROMPT) + 3 + 50
    with server(rpm=100_000, tpm=60_000, token_capacity=2_000, base_latency_s=0.02) as srv:
        scheduler = Scheduler(build_endpoints([endpoint(srv, "a", tpm=60_000)]))
        results = run_requests(scheduler, 80, max_tokens=50)
        stats = srv.stats(include_log=True)
    assert stats["rate_limited_total"] == 0 and len(results) == 80
    assert {e["charged"] for e in stats["log"]} == {expected_charge}
    tokens_per_s = [s["charged"] for s in stats["series"] if s["second"] >= 2][:-1]
    assert sum(tokens_per_s) / len(tokens_per_s) >= 0.93 * 1000


def test_routing_spreads_by_quota_and_quota_groups_share_buckets() -> None:
    with server(rpm=600, request_capacity=20) as small, server(rpm=1800, request_capacity=60) as big:
        configs = [endpoint(small, "small", rpm=600), endpoint(big, "big", rpm=1800)]
        results = run_requests(Scheduler(build_endpoints(configs)), 160)
        s, b = small.stats(), big.stats()
    used = Counter(r.endpoint for r in results)
    assert s["rate_limited_total"] == b["rate_limited_total"] == 0
    assert 2.0 <= used["big"] / used["small"] <= 4.5, used

    # two endpoints on one server and one quota: declared as a group they never exceed it together
    with server(rpm=1200, request_capacity=40) as shared:
        configs = [endpoint(shared, n, rpm=1200, quota_group="g") for n in ("one", "two")]
        results = run_requests(Scheduler(build_endpoints(configs)), 120)
        stats = shared.stats()
    assert stats["rate_limited_total"] == 0
    assert set(Counter(r.endpoint for r in results)) == {"one", "two"}


def test_headers_adapt_to_a_hidden_client_spending_30_percent() -> None:
    with server(rpm=1200, request_capacity=40, hidden_client_fraction=0.3, base_latency_s=0.05) as srv:
        results = run_requests(Scheduler(build_endpoints([endpoint(srv, "a", rpm=1200)])), 150)
        stats = srv.stats()
    assert len(results) == 150
    # a few 429s teach the scheduler the quota it really has (bench/quota.py measures the steady state)
    assert stats["rate_limited_total"] <= 0.05 * stats["received"], stats["rate_limited"]


def test_a_wrong_quota_is_survived_by_pausing_on_retry_after() -> None:
    # we believe in 2400 rpm; the server enforces 600: 429s teach us, the pause and the rate cut bound them
    with server(rpm=600, request_capacity=10) as srv:
        scheduler = Scheduler(build_endpoints([endpoint(srv, "a", rpm=2400)]), retry=RetryPolicy(max_attempts=20))
        results = run_requests(scheduler, 60)
        stats = srv.stats()
    assert len(results) == 60 and stats["admitted"] == 60
    assert 0 < stats["rate_limited_total"] <= 60
    assert scheduler.endpoints[0].quota.factor < 1.0  # the rate was cut


TOML = """
[[endpoints]]
name = "a"
kind = "openai"
base_url = "{a}"
model = "m"
api_key = "${{env:QUOTA_KEY}}"
rpm = 1200
price_in = 0.15
price_out = 0.6

[[endpoints]]
name = "b"
kind = "openai"
base_url = "{b}"
model = "m"
api_key = "${{env:QUOTA_KEY}}"
rpm = 1200
"""
KEY = "sk-quota-test-0123456789-SECRET"


def write_toml(path: Path, a: QuotaServer, b: QuotaServer) -> Path:
    path.write_text(TOML.format(a=a.base_url, b=b.base_url))
    return path


def test_estimate_then_correct_across_two_endpoints(cancer_csv: Path, tmp_path: Path, llmcorr_home: Path) -> None:
    with server(rpm=1200, api_key=KEY) as a, server(rpm=1200, api_key=KEY) as b:
        toml = write_toml(tmp_path / "llmcorr.toml", a, b)
        common = ("-p", cancer_csv, "--limit", 40, "--no-gate", "--config", toml, "--endpoint", "a", "--endpoint", "b")
        est = run_cli("estimate", *common, env={"QUOTA_KEY": KEY})
        assert est.returncode == 0, est.stderr
        assert "requests" in est.stdout and "40" in est.stdout and "requests quota binds" in est.stdout
        assert a.stats()["received"] == b.stats()["received"] == 0  # an estimate sends nothing

        r = run_cli("correct", *common, "--yes", "--name", "two", "-o", tmp_path / "out.csv", env={"QUOTA_KEY": KEY})
        assert r.returncode == 0, r.stderr
        served = a.stats()["admitted"] + b.stats()["admitted"]
    shown = json.loads(run_cli("runs", "show", "two", "--json").stdout)
    assert shown["status"] == "completed" and shown["rows_done"] == 40 and served == 40
    assert set(shown["usage"]) == {"a", "b"} and sum(u["ok"] for u in shown["usage"].values()) == 40
    assert shown["usage"]["a"]["cost"] > 0 and shown["estimate"]["requests"] == 40
    assert shown["rate_limited"] == 0
    for path in [tmp_path / "out.csv", *llmcorr_home.glob("llmcorr.db*")]:
        assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in r.stdout + r.stderr + est.stdout + est.stderr


def test_a_daily_quota_stops_the_run_cleanly(cancer_csv: Path, tmp_path: Path, llmcorr_home: Path) -> None:
    with server(rpm=6000, daily_requests=5, api_key=KEY) as a, server(rpm=6000) as b:
        toml = write_toml(tmp_path / "llmcorr.toml", a, b)
        r = run_cli(
            "correct",
            "-p",
            cancer_csv,
            "--limit",
            30,
            "--config",
            toml,
            "--endpoint",
            "a",
            "--name",
            "daily",
            env={"QUOTA_KEY": KEY},
        )
        received = a.stats()["received"]
    assert r.returncode == 1, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("error")]
    assert len(lines) == 1 and "exceeded your current quota" in lines[0] and "Traceback" not in r.stderr
    assert received <= 30  # no row was retried against an exhausted quota
    with Store(store_path(llmcorr_home)) as store:
        run = store.get_run("daily")
    assert run.status == "failed" and "quota" in (run.error or "")
    assert run.rows_done >= 5 - 1  # the rows that were answered are kept
    assert KEY not in r.stderr and os.environ.get("QUOTA_KEY") is None


def test_azure_fixed_windows_through_the_azure_provider() -> None:
    # Azure counts per 10-second window: 200 requests per window at 1200 rpm; a continuous-refill client with a
    # burst on top would overflow a window
    with server(rpm=1200, tpm=10_000_000, mode="azure", window_s=10, api_key=KEY) as srv:
        config = EndpointConfig(
            name="az",
            kind="azure",
            base_url=f"{srv.root_url}/openai/deployments/gpt4o",
            model="gpt-4o",
            rpm=1200,
            api_key_env="AZ_KEY",
        )
        os.environ["AZ_KEY"] = KEY
        try:
            results = run_requests(Scheduler(build_endpoints([config])), 220)
        finally:
            del os.environ["AZ_KEY"]
        stats = srv.stats()
    assert len(results) == 220 and stats["rate_limited_total"] == 0 and stats["unauthorized"] == 0
    per_window = Counter(s["second"] // 10 for s in stats["series"] for _ in range(int(s["admitted"])))
    assert max(per_window.values()) <= 200
    assert per_window[0] >= 0.95 * 200  # the first window is used nearly to the brim
