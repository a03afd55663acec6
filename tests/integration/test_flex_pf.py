"""Prompt flow flex flows (flow.flex.yaml) run unchanged by the `llmcorr` CLI, without promptflow installed, against a
real OpenAI-compatible server on 127.0.0.1: a function entry, a class entry built from `--init` (JSON or a JSON file)
with `__aggregate__`, `log_metric` and a Prompty whose model configuration names a connection — an llmcorr.toml
endpoint of that name — and the one-line errors a flow's connections and imports can give."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.servers import ScriptedServer, ok

from .conftest import run_cli

TOML = """
default = "my_conn"

[[endpoints]]
name = "my_conn"
kind = "openai"
base_url = "{url}"
model = "m"
"""

FUNCTION_YAML = """\
$schema: https://azuremlschemas.azureedge.net/promptflow/latest/Flow.schema.json
entry: answer:ask
inputs:
  question:
    type: string
  style:
    type: string
    default: briefly
environment_variables:
  ANSWER_PREFIX: "A:"
  ENDPOINT_BASE: ${my_conn.api_base}
"""

FUNCTION_PY = """\
import os

from promptflow.core import tool
from promptflow.tracing import trace


@trace
def shout(text: str) -> str:
    return text.upper()


@tool
def ask(question: str, style: str) -> dict:
    return {"answer": f"{os.environ['ANSWER_PREFIX']} {shout(question)}", "style": style,
            "base": os.environ["ENDPOINT_BASE"]}
"""

CLASS_YAML = """\
$schema: https://azuremlschemas.azureedge.net/promptflow/latest/Flow.schema.json
entry: evaluator:{entry}
init:
  threshold:
    type: int
    default: 100
inputs:
  answer:
    type: string
"""

EVALUATOR_PY = """\
from dataclasses import dataclass

from promptflow.core import AzureOpenAIModelConfiguration, Prompty, log_metric


@dataclass
class Result:
    score: int
    reason: str
    long: bool


class Judge:
    def __init__(self, connection: str = "my_conn", threshold: int = 0):
        self.threshold = threshold
        config = AzureOpenAIModelConfiguration(connection=connection, azure_deployment="x")
        self.prompty = Prompty.load(source="judge.prompty", model={"configuration": config})

    def __call__(self, answer: str) -> Result:
        if answer == "boom":
            raise ValueError("no verdict for boom")
        verdict = self.prompty(answer=answer)
        log_metric("row_metric", 1.0)
        return Result(score=verdict["score"], reason=verdict["reason"], long=len(answer) > self.threshold)

    def __aggregate__(self, line_results: list) -> dict:
        log_metric("lines", len(line_results))
        log_metric("mean_score", -1)  # the returned dict wins
        return {"mean_score": sum(r.score for r in line_results) / len(line_results),
                "long": sum(r["long"] for r in line_results)}


class SummaryJudge(Judge):
    def __init__(self, threshold: int = 0):
        super().__init__(connection="judges", threshold=threshold)  # a connection --connection maps

    def __call__(self, answer: str) -> dict:
        return {"answer": answer}

    def __aggregate__(self, line_results: list) -> dict:
        verdict = self.prompty(answer=" / ".join(r["answer"] for r in line_results))  # the LLM, once, at the end
        return {"overall": verdict["score"]}


class ConfiguredJudge(Judge):
    def __init__(self, model_config: AzureOpenAIModelConfiguration, threshold: int = 0):
        self.threshold = threshold
        self.prompty = Prompty.load(source="judge.prompty", model={"configuration": model_config,
                                                                    "parameters": {"max_tokens": 48}})
"""

ASYNC_PY = """\
from promptflow.core import AsyncPrompty


async def judge(answer: str) -> dict:
    prompty = AsyncPrompty.load(source="judge.prompty", model={"response": "all"})  # the file's inline configuration
    completion = await prompty(answer=answer)
    return {"content": completion.choices[0].message.content, "role": completion["choices"][0]["message"]["role"]}
"""

JUDGE_PROMPTY = """---
name: Judge
model:
  api: chat
  configuration:
    type: azure_openai
    azure_deployment: gpt-35-turbo
    api_key: ${env:AZURE_OPENAI_API_KEY}
    azure_endpoint: ${env:AZURE_OPENAI_ENDPOINT}
  parameters:
    max_tokens: 32
    response_format:
      type: json_object
inputs:
  answer:
    type: string
---
system:
Score the answer from 1 to 5; reply as JSON with score and reason.

user:
{{ answer }}
"""


@pytest.fixture
def server() -> ScriptedServer:
    with ScriptedServer(default=ok('{"score": 4, "reason": "fine"}')) as s:
        yield s


@pytest.fixture
def project(tmp_path: Path, server: ScriptedServer) -> Path:
    (tmp_path / "llmcorr.toml").write_text(TOML.format(url=server.base_url))
    asker = tmp_path / "asker"
    asker.mkdir()
    (asker / "flow.flex.yaml").write_text(FUNCTION_YAML)
    (asker / "answer.py").write_text(FUNCTION_PY)
    judge = tmp_path / "judge"
    judge.mkdir()
    (judge / "flow.flex.yaml").write_text(CLASS_YAML.format(entry="Judge"))
    (judge / "configured.flex.yaml").write_text(CLASS_YAML.format(entry="ConfiguredJudge"))
    (judge / "summary.flex.yaml").write_text(CLASS_YAML.format(entry="SummaryJudge"))
    (judge / "evaluator.py").write_text(EVALUATOR_PY)
    (judge / "async.flex.yaml").write_text("entry: asyncjudge:judge\n")
    (judge / "asyncjudge.py").write_text(ASYNC_PY)
    (judge / "judge.prompty").write_text(JUDGE_PROMPTY)
    pd.DataFrame({"question": ["what is a flow", "why"]}).to_json(
        tmp_path / "questions.jsonl", orient="records", lines=True
    )
    answers = ["a short one", "boom", "a much longer answer"]
    pd.DataFrame({"answer": answers}).to_json(tmp_path / "answers.jsonl", orient="records", lines=True)
    return tmp_path


def cli(project: Path, *args: object) -> object:
    return run_cli(*args, "--config", project / "llmcorr.toml")


def listed(project: Path) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads(run_cli("runs", "list", "--json").stdout)}


def test_a_function_entry_runs_with_its_input_defaults_and_environment(project: Path, server: ScriptedServer) -> None:
    out = project / "asked.jsonl"
    r = cli(
        project, "run", project / "asker", "--data", project / "questions.jsonl", "-o", out, "--name", "asked", "-q"
    )
    assert r.returncode == 0, r.stderr
    table = pd.read_json(out, lines=True)
    assert list(table["answer"]) == ["A: WHAT IS A FLOW", "A: WHY"]
    assert list(table["style"]) == ["briefly", "briefly"]  # the file's default for a column the data lacks
    assert list(table["base"]) == [server.base_url] * 2  # ${my_conn.api_base}: the endpoint's base_url
    record = listed(project)["asked"]
    assert record["kind"] == "flow" and record["rows_done"] == 2
    assert record["spec"]["template"] == str((project / "asker" / "flow.flex.yaml").resolve())  # the flow, as recorded
    again = run_cli("runs", "rerun", "asked", "--name", "again", "--config", project / "llmcorr.toml")
    assert again.returncode == 0, again.stderr
    assert listed(project)["again"]["rows_done"] == 2


def test_a_class_entry_with_init_aggregate_log_metric_and_a_prompty(project: Path, server: ScriptedServer) -> None:
    data = project / "answers.jsonl"
    r = cli(project, "run", project / "judge", "--data", data, "--init", '{"threshold": 12}', "--name", "judged")
    assert r.returncode == 1, r.stderr  # the run goes on past the failing row; its exit code says one failed
    judged = listed(project)["judged"]
    # __aggregate__ got the two finished rows' outputs (dataclass fields, by attribute and by key); its log_metric
    # calls and the rows' are merged under its returned dict
    assert judged["metrics"] == {"row_metric": 1.0, "lines": 2, "mean_score": 4.0, "long": 1}
    assert judged["rows_failed"] == 1
    bodies = [q["body"] for q in server.requests]
    assert len(bodies) == 2 and all(q["path"].endswith("/chat/completions") for q in server.requests)
    assert {b["messages"][-1]["content"] for b in bodies} == {"a short one", "a much longer answer"}
    assert all(b["max_tokens"] == 32 and b["messages"][0]["role"] == "system" for b in bodies)

    (project / "init.json").write_text(json.dumps({"model_config": {"connection": "my_conn", "azure_deployment": "x"}}))
    out = project / "configured.csv"
    r = cli(
        project,
        "run",
        project / "judge" / "configured.flex.yaml",
        "--data",
        data,
        "--init",
        project / "init.json",
        "-o",
        out,
        "--name",
        "configured",
        "--no-cache",
    )
    assert r.returncode == 1, r.stderr
    table = pd.read_csv(out)
    assert list(table["score"].fillna(0)) == [4, 0, 4] and list(table["reason"].fillna("")) == ["fine", "", "fine"]
    assert listed(project)["configured"]["metrics"]["long"] == 0  # threshold: the file's init default, 100
    assert len(server.requests) == 4 and server.requests[-1]["body"]["max_tokens"] == 48  # model= merged over


def test_an_async_entry_awaits_an_async_prompty(project: Path, server: ScriptedServer) -> None:
    out = project / "async.jsonl"
    r = cli(project, "run", project / "judge" / "async.flex.yaml", "--data", project / "answers.jsonl", "-o", out, "-q")
    assert r.returncode == 0, r.stderr
    table = pd.read_json(out, lines=True)
    assert list(table["content"]) == ['{"score": 4, "reason": "fine"}'] * 3 and set(table["role"]) == {"assistant"}
    assert len(server.requests) == 3  # answered by the run's endpoint, not the file's azure_endpoint


def test_an_unknown_connection_fails_at_load_naming_it_and_the_endpoints(project: Path, server: ScriptedServer) -> None:
    data = project / "answers.jsonl"
    r = cli(project, "run", project / "judge", "--data", data, "--init", '{"connection": "nope"}')
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "judge.prompty: model.configuration: connection 'nope' is not an endpoint" in line
    assert "(endpoints: my_conn)" in line and "--connection nope=ENDPOINT" in line
    (project / "bad.json").write_text("{nope")
    r = cli(project, "run", project / "judge", "--data", data, "--init", project / "bad.json")
    assert r.returncode == 2 and f"--init {project / 'bad.json'}: not valid JSON" in r.stderr, r.stderr
    (project / "asker" / "answer.py").write_text("from promptflow.tools.aoai import chat\n")
    r = cli(project, "run", project / "asker", "--data", project / "questions.jsonl")
    assert r.returncode == 2 and "llmcorr does not supply promptflow.tools" in r.stderr, r.stderr
    assert server.requests == [] and listed(project) == {}  # nothing ran, nothing was recorded


def test_an_aggregate_asks_the_llm_through_a_mapped_connection(project: Path, server: ScriptedServer) -> None:
    flow, data = project / "judge" / "summary.flex.yaml", project / "answers.jsonl"
    r = cli(project, "run", flow, "--data", data, "--name", "summary", "-q")
    assert r.returncode == 2 and "connection 'judges' is not an endpoint" in r.stderr, r.stderr
    r = cli(project, "run", flow, "--data", data, "--name", "summary", "--connection", "judges=my_conn", "-q")
    assert r.returncode == 0, r.stderr
    summary = listed(project)["summary"]
    assert summary["metrics"] == {"overall": 4}
    assert summary["spec"]["options"]["connections"] == {"judges": "my_conn"}
    assert [q["body"]["messages"][-1]["content"] for q in server.requests] == [
        "a short one / boom / a much longer answer"
    ]


def test_an_aggregate_that_raises_is_a_warning_and_the_run_completes(project: Path, server: ScriptedServer) -> None:
    data = project / "booms.jsonl"
    pd.DataFrame({"answer": ["boom", "boom"]}).to_json(data, orient="records", lines=True)
    r = cli(project, "run", project / "judge", "--data", data, "--name", "booms", "-q")
    assert r.returncode == 1, r.stderr  # its rows failed; the run itself did not
    assert "the aggregate failed: ZeroDivisionError: division by zero" in r.stderr and "Traceback" not in r.stderr
    booms = listed(project)["booms"]
    assert booms["status"] == "completed" and booms["rows_failed"] == 2
    assert booms["metrics"] == {"lines": 0, "mean_score": -1}  # what __aggregate__ logged before it raised (pf too)
