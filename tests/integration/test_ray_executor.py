"""`llmcorr run --executor ray` on a local Ray instance against the quota server (bench/quota_server.py): the same
rows as the local executor, each once in the store, the quota kept by one keeper for every worker (no 429 storm),
the work done by several worker processes, usage and the executor in the run's record, and the key read by the
workers from their environment, never stored."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import llmcorr
from bench.quota_server import QuotaServer, QuotaServerConfig
from llmcorr.config import Config, EndpointConfig
from llmcorr.errors import RunCancelled, UserError
from llmcorr.providers.base import Completion, GenParams, Message, Provider
from llmcorr.runs.batch import RunResult, run_batch_async
from llmcorr.scheduler.tokens import tiktoken_counter
from llmcorr.store import RowRecord, Store
from tests.conftest import LLMCORR

from .conftest import run_cli, store_path, wait_for_rows

pytest.importorskip("ray")
pytestmark = pytest.mark.timeout(240)  # a hang (a worker that never answers) fails in minutes, not ten

ROWS = 48
KEY = "sk-ray-test-0123456789-SECRET"
PROMPTY = """---
name: Describe
model:
    api: chat
    parameters:
        max_tokens: 16
---
system:
You describe items in a few words.

user:
Describe item {{ n }}: {{ word }}
"""
TOML = """
default = "q"

[[endpoints]]
name = "q"
kind = "openai"
base_url = "{url}"
model = "m"
api_key = "${{env:RAY_TEST_KEY}}"
rpm = 480
tpm = 30000
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "describe.prompty").write_text(PROMPTY)
    pd.DataFrame({"n": range(ROWS), "word": [f"thing-{i}" for i in range(ROWS)]}).to_csv(tmp_path / "d.csv")
    return tmp_path


def run(workdir: Path, name: str, *extra: str) -> None:
    r = run_cli(
        "run",
        workdir / "describe.prompty",
        "--data",
        workdir / "d.csv",
        "--config",
        workdir / "llmcorr.toml",
        "--name",
        name,
        "--no-cache",  # both runs send every request: the quota, not the cache, decides
        "-o",
        workdir / f"{name}.csv",
        *extra,
        env={"RAY_TEST_KEY": KEY},
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert KEY not in r.stdout + r.stderr


def rows(store: Store, name: str) -> list[RowRecord]:
    return store.rows(store.get_run(name).id)


def test_a_prompt_run_on_ray_matches_the_local_run_within_one_quota(workdir: Path, llmcorr_home: Path) -> None:
    # 8 requests/s and ~6.5 requests' worth of tokens/s, with a 1-second burst: binding for 48 rows
    quota = QuotaServerConfig(
        rpm=480, tpm=30_000, request_capacity=8, token_capacity=1_000, base_latency_s=0.05, api_key=KEY
    )
    with QuotaServer(quota, count_tokens=tiktoken_counter()) as srv:
        (workdir / "llmcorr.toml").write_text(TOML.format(url=srv.base_url))
        run(workdir, "local")
        srv.reset()
        run(workdir, "ray", "--executor", "ray")
        stats = srv.stats(include_log=True)

    # every row once, with the local run's prompt and output
    with Store(store_path(llmcorr_home)) as store:
        local, spread = rows(store, "local"), rows(store, "ray")
        record = store.get_run("ray")
        spans = [s for s in store.spans(record.id) if s["kind"] == "row"]
    assert [r.row_index for r in spread] == list(range(ROWS))
    for a, b in zip(local, spread, strict=True):
        assert (a.inputs, a.prompt, a.output, a.status) == (b.inputs, b.prompt, b.output, "ok")
    assert pd.read_csv(workdir / "ray.csv").equals(pd.read_csv(workdir / "local.csv"))

    # one quota for every worker: all answered, hardly a 429, paced over the time the quota needs
    assert stats["admitted"] == ROWS and stats["rate_limited_total"] <= 2, stats["rate_limited"]
    assert stats["received"] == ROWS + stats["rate_limited_total"]
    assert stats["last_admitted_s"] - stats["first_admitted_s"] >= 0.8 * (ROWS - 8) / 8

    # the rows were processed by several worker processes; each has its row span, timed by its worker
    workers = {s["attributes"]["llmcorr.worker"] for s in spans}
    assert len(workers) >= 2, workers
    assert sorted(s["row_index"] for s in spans) == list(range(ROWS))
    assert all(s["end_ns"] >= s["start_ns"] for s in spans)

    # the run's record: the workers' usage, how it ran, and no key anywhere in the store
    assert record.status == "completed" and record.rows_done == ROWS
    assert record.usage is not None and record.usage["q"]["ok"] == ROWS
    assert record.usage["q"]["rate_limited"] == stats["rate_limited_total"]
    shown = run_cli("runs", "show", "ray")
    assert shown.returncode == 0 and "executor" in shown.stdout and "ray" in shown.stdout
    assert json.loads(run_cli("runs", "show", "ray", "--json").stdout)["spec"]["options"]["executor"] == "ray"
    for path in [workdir / "ray.csv", *llmcorr_home.glob("llmcorr.db*")]:
        assert KEY.encode() not in path.read_bytes(), path


FLOW_ROWS = 60
FLOW = """
import os
import time

import llmcorr


class Ask:
    def __init__(self, style: str, pause: float = 0.0) -> None:
        self.style = style
        self.pause = pause

    def __call__(self, word: str) -> dict:  # sync: llmcorr.chat waits for the worker's event loop
        time.sleep(self.pause)
        return {"answer": llmcorr.chat(f"Say {word} {self.style}"), "pid": os.getpid()}

    def aggregate(self, rows: list) -> dict:
        return {"processes": len({r["pid"] for r in rows})}
"""


async def cancel_when(name: str, rows_done: int, home: Path, run: asyncio.Task[Any]) -> None:
    """`llmcorr runs cancel NAME` once the run has committed `rows_done` rows."""
    with Store(store_path(home)) as store:
        while not run.done():
            await asyncio.sleep(0.2)
            found = [r for r in store.list_runs() if r.name == name]
            if found and found[0].rows_done >= rows_done:
                store.request_cancel(found[0].id)
                return


def test_a_flow_file_on_ray_reads_the_cache_stops_on_cancel_and_resumes(tmp_path: Path, llmcorr_home: Path) -> None:
    (tmp_path / "askflow.py").write_text(FLOW)  # not importable by the workers: its code travels with the run
    data = pd.DataFrame({"word": [f"w{i}" for i in range(FLOW_ROWS)]})
    flow = f"{tmp_path / 'askflow.py'}:Ask"
    with QuotaServer(QuotaServerConfig(rpm=6000), count_tokens=tiktoken_counter()) as srv:
        endpoint = EndpointConfig(name="q", kind="openai", base_url=srv.base_url, model="m", rpm=6000)
        config = Config(endpoints=[endpoint], default=["q"])
        local = llmcorr.run(flow, data, init={"style": "loudly"}, config=config, name="local")
        sent = srv.stats()["received"]

        async def spread() -> None:
            # two rows at a time per worker, 0.4 s each: long enough to be cancelled midway
            options = {"init": {"style": "loudly", "pause": 0.4}, "concurrency": 2, "executor": "ray"}
            run = asyncio.create_task(run_batch_async(flow, data, config=config, name="ray", **options))
            await cancel_when("ray", 8, llmcorr_home, run)
            with pytest.raises(RunCancelled):
                await run

        asyncio.run(spread())
        with Store(store_path(llmcorr_home)) as store:
            stopped = store.get_run("ray")
        resumed = llmcorr.resume("ray", data=data, config=config)  # on the local executor
        assert srv.stats()["received"] == sent == FLOW_ROWS  # every answer came from the cache, the workers' reads too

    assert stopped.status == "cancelled" and 8 <= stopped.rows_done < FLOW_ROWS
    assert isinstance(resumed, RunResult) and resumed.rows == FLOW_ROWS
    table = resumed.table
    assert table["answer"].tolist() == local.table["answer"].tolist()
    workers = set(table["pid"]) - {os.getpid()}
    assert len(workers) >= 2 and (table["pid"] == os.getpid()).sum() == FLOW_ROWS - stopped.rows_done
    assert resumed.metrics == {"processes": len(workers) + 1}
    with Store(store_path(llmcorr_home)) as store:
        done = rows(store, "ray")
    assert [r.row_index for r in done] == list(range(FLOW_ROWS))
    assert all(r.cached and r.status == "ok" for r in done)


DAG = """
inputs:
  word: {type: string}
outputs:
  answer: {type: object, reference: "${shape.output}"}
nodes:
- name: prepare
  type: python
  source: {type: code, path: prepare.py}
  inputs: {word: "${inputs.word}"}
- name: define
  type: llm
  source: {type: code, path: define.jinja2}
  api: chat
  connection: q
  inputs: {max_tokens: 8, word: "${prepare.output}"}
- name: shape
  type: python
  source: {type: code, path: shape.py}
  inputs: {text: "${define.output}"}
- name: count
  type: python
  source: {type: code, path: count.py}
  inputs: {answers: "${shape.output}"}
  aggregation: true
"""
DAG_FILES = {
    "prepare.py": "from promptflow.core import tool\n\n\n@tool\ndef prepare(word: str) -> str:\n"
    "    return word.upper()\n",
    "define.jinja2": "# system:\nYou define words.\n\n# user:\nDefine {{word}}.\n",
    "shape.py": (
        "import os\n\nfrom promptflow.core import tool\n\n\n@tool\n"
        "def shape(text: str) -> dict:\n    return {'text': text, 'pid': os.getpid()}\n"
    ),
    "count.py": (
        "from promptflow.core import log_metric, tool\n\n\n@tool\n"
        "def count(answers: list) -> int:\n    log_metric('answered', len(answers))\n    return len(answers)\n"
    ),
}


def test_a_dag_flow_on_ray_gives_what_the_local_executor_gives(tmp_path: Path, llmcorr_home: Path) -> None:
    """A Prompt flow DAG flow's nodes load again in each worker (their tools imported with Prompt flow's names,
    their templates compiled, their connection routed); the aggregation runs once, in the driver, over every row."""
    flow = tmp_path / "define"
    flow.mkdir()
    (flow / "flow.dag.yaml").write_text(DAG)
    for name, text in DAG_FILES.items():
        (flow / name).write_text(text)
    data = pd.DataFrame({"word": [f"w{i}" for i in range(FLOW_ROWS)]})
    with QuotaServer(QuotaServerConfig(rpm=6000)) as srv:
        endpoint = EndpointConfig(name="q", kind="openai", base_url=srv.base_url, model="m", rpm=6000)
        config = Config(endpoints=[endpoint], default=["q"])
        local = llmcorr.run(flow, data, config=config, name="local", cache=False)
        spread = llmcorr.run(flow, data, config=config, name="ray", cache=False, executor="ray", concurrency=4)
        assert srv.stats()["received"] == 2 * FLOW_ROWS
    assert [a["text"] for a in spread.table["answer"]] == [a["text"] for a in local.table["answer"]]
    workers = {a["pid"] for a in spread.table["answer"]}
    assert len(workers) >= 2 and os.getpid() not in workers
    assert spread.metrics == local.metrics == {"answered": FLOW_ROWS}


class Echo(Provider):
    kind = "echo"

    @property
    def model(self) -> str:
        return "echo"

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        return Completion(messages[-1].content, 1, 1, 0.0, "echo")


def test_a_provider_object_cannot_travel_to_the_workers(llmcorr_home: Path) -> None:
    with pytest.raises(UserError, match="cannot rebuild endpoint 'echo', given as a Provider object"):
        llmcorr.run(lambda word: word, pd.DataFrame({"word": ["a"]}), provider=Echo(), executor="ray")
    with Store(store_path(llmcorr_home)) as store:
        assert store.list_runs() == []  # refused before a run was recorded


def test_a_correct_run_on_ray_matches_the_local_run(tmp_path: Path, cancer_csv: Path, llmcorr_home: Path) -> None:
    """`llmcorr correct --executor ray`: the driver builds the prompts, the workers answer them through the LLMCorr
    loop (format retries included); the rows, outputs, metrics and output file are the local run's."""
    answers = "Prediction: False; Explanation: emulated"  # overrules every positive prediction
    quota = QuotaServerConfig(rpm=6000, tpm=1_000_000, base_latency_s=0.02, api_key=KEY, response_text=answers)
    args = ["--task", "is a benign tumour", "--shots", "2", "--limit", "12", "--no-gate", "--no-cache", "-q"]
    with QuotaServer(quota) as srv:
        (tmp_path / "llmcorr.toml").write_text(TOML.format(url=srv.base_url))
        for name, extra in (("local", []), ("ray", ["--executor", "ray"])):
            r = run_cli(
                "correct", "-p", cancer_csv, "--config", tmp_path / "llmcorr.toml", "--name", name,
                "-o", tmp_path / f"{name}.csv", *args, *extra, env={"RAY_TEST_KEY": KEY}, timeout=300,
            )  # fmt: skip
            assert r.returncode == 0, r.stderr
            assert KEY not in r.stdout + r.stderr
    with Store(store_path(llmcorr_home)) as store:
        local, spread = rows(store, "local"), rows(store, "ray")
        record, first = store.get_run("ray"), store.get_run("local")
        workers = {s["attributes"].get("llmcorr.worker") for s in store.spans(record.id) if s["kind"] == "row"}
    assert [r.row_index for r in spread] == [r.row_index for r in local] and len(spread) == 12
    for a, b in zip(local, spread, strict=True):
        assert (a.prompt, a.output, a.status) == (b.prompt, b.output, b.status)
    assert record.status == "completed" and record.metrics == first.metrics
    assert record.spec["options"]["executor"] == "ray" and None not in workers and len(workers) >= 1
    assert pd.read_csv(tmp_path / "ray.csv").equals(pd.read_csv(tmp_path / "local.csv"))


def test_sigterm_drains_a_ray_run_like_a_local_one(workdir: Path, llmcorr_home: Path) -> None:
    """The first SIGTERM (or Ctrl-C) stops a Ray run the way `runs cancel` does: no new chunk, the workers finish the
    rows they started, every answer paid for is kept; one line, exit 130, and the run resumes."""
    quota = QuotaServerConfig(rpm=240, tpm=1_000_000, base_latency_s=0.05, api_key=KEY)  # 4 rows a second
    with QuotaServer(quota, count_tokens=tiktoken_counter()) as srv:
        (workdir / "llmcorr.toml").write_text(TOML.format(url=srv.base_url).replace("rpm = 480", "rpm = 240"))
        proc = subprocess.Popen(
            [LLMCORR, "run", workdir / "describe.prompty", "--data", workdir / "d.csv", "--config",
             workdir / "llmcorr.toml", "--name", "term", "--executor", "ray", "-q"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "RAY_TEST_KEY": KEY},
        )  # fmt: skip
        try:
            wait_for_rows(llmcorr_home, "term", 4, proc)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
        answered = srv.stats()["admitted"]
        with Store(store_path(llmcorr_home)) as store:
            stopped = store.get_run("term")
        resumed = run_cli("runs", "resume", "term", "-q", env={"RAY_TEST_KEY": KEY}, timeout=300)
        total = srv.stats()["admitted"]
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "cancelled: run term stopped (SIGTERM)" in err and "rows kept; resume with `llmcorr runs resume term" in err
    assert stopped.status == "cancelled" and 4 <= stopped.rows_done < ROWS
    assert stopped.rows_done == answered  # every answer paid for before the stop was kept
    assert resumed.returncode == 0, resumed.stderr
    assert total == ROWS  # the resume asked only for the rows the stop left: none paid twice
