"""Prompt flow DAG flows (flow.dag.yaml), written in pf's own format with pf's imports, run unchanged by `llmcorr run`
against quota servers on 127.0.0.1 without the promptflow package: python, prompt and llm nodes, activate and
bypass, node variants, aggregation with log_metric, additional_includes, connections routed to their endpoints,
traces node by node, resume after SIGKILL, run files, and the errors a flow can hold (one line, exit 2)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
from pathlib import Path

import pandas as pd
import pytest

from bench.quota_server import QuotaServer, QuotaServerConfig

from .conftest import run_cli, start_cli, wait_for_rows

FLOW = """\
$schema: https://azuremlschemas.azureedge.net/promptflow/latest/Flow.schema.json
inputs:
  question:
    type: string
  style:
    type: string
    default: briefly
outputs:
  answer:
    type: string
    reference: ${finish.output.answer}
  route:
    type: string
    reference: ${classify.output}
  polished:
    type: string
    reference: ${polish.output}
nodes:
- name: classify
  type: python
  source:
    type: code
    path: classify.py
  inputs:
    question: ${inputs.question}
- name: framing
  type: prompt
  source:
    type: code
    path: framing.jinja2
  inputs:
    question: ${inputs.question}
    style: ${inputs.style}
- name: ask_math
  type: llm
  source:
    type: code
    path: ask.jinja2
  api: chat
  connection: mathbox
  inputs:
    deployment_name: gpt-4o
    max_tokens: 2
    text: ${framing.output}
  activate:
    when: ${classify.output}
    is: math
- name: ask_chat
  use_variants: true
- name: finish
  type: python
  source:
    type: code
    path: finish.py
  inputs:
    math: ${ask_math.output}
    chat: ${ask_chat.output}
- name: polish
  type: python
  source:
    type: code
    path: finish.py
  inputs:
    math: ${finish.output.answer}
  activate:
    when: ${classify.output}
    is: never
- name: grade
  type: python
  source:
    type: code
    path: grade.py
  aggregation: true
  inputs:
    routes: ${classify.output}
    answers: ${finish.output.answer}
node_variants:
  ask_chat:
    default_variant_id: variant_0
    variants:
      variant_0:
        node:
          type: llm
          source:
            type: code
            path: ask.jinja2
          api: chat
          connection: chatbox
          inputs:
            max_tokens: 3
            text: ${framing.output}
          activate:
            when: ${classify.output}
            is: chat
      variant_1:
        node:
          type: llm
          source:
            type: code
            path: ask.jinja2
          api: chat
          connection: chatbox
          inputs:
            max_tokens: 6
            text: ${framing.output}
          activate:
            when: ${classify.output}
            is: chat
additional_includes:
- ../shared/wording.py
"""

FILES = {
    "classify.py": """\
from promptflow.core import tool


@tool
def classify(question: str) -> str:
    if question == "boom":
        raise ValueError("cannot classify a bomb")
    return "math" if any(c.isdigit() for c in question) else "chat"
""",
    "framing.jinja2": "Answer {{ style }}: {{ question }}",
    "ask.jinja2": "# system:\nYou answer questions.\n\n# user:\n{{ text }}\n",
    "finish.py": """\
from promptflow import tool

from wording import tidy


@tool
def finish(math: str = "", chat: str = "") -> dict:
    return {"answer": tidy(math or chat)}
""",
    "grade.py": """\
from promptflow.core import log_metric, tool


@tool
def grade(routes: list, answers: list) -> dict:
    log_metric("math_share", routes.count("math") / len(routes))
    log_metric("answered", sum(1 for a in answers if a))
    return {"rows": len(routes)}
""",
}
SHARED = "def tidy(text):\n    return (text or '').strip()\n"
QUESTIONS = ["what is 2+2", "say hello", "what is 10*3", "tell a joke"]

TOML = """
default = "chatbox"

[[endpoints]]
name = "chatbox"
kind = "openai"
base_url = "{chat}"
model = "m"

[[endpoints]]
name = "numbers"
kind = "openai"
base_url = "{math}"
model = "m"
"""


@pytest.fixture
def servers() -> tuple[QuotaServer, QuotaServer]:
    config = QuotaServerConfig(rpm=60_000, tpm=10_000_000, base_latency_s=0.01)
    with QuotaServer(config) as chat, QuotaServer(config) as math:
        yield chat, math


@pytest.fixture
def workdir(tmp_path: Path, servers: tuple[QuotaServer, QuotaServer], monkeypatch: pytest.MonkeyPatch) -> Path:
    with pytest.raises(importlib.metadata.PackageNotFoundError):  # the flow runs on llmcorr's stand-in names alone
        importlib.metadata.distribution("promptflow-core")
    chat, math = servers
    flow = tmp_path / "qa"
    flow.mkdir()
    (flow / "flow.dag.yaml").write_text(FLOW)
    for name, text in FILES.items():
        (flow / name).write_text(text)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "wording.py").write_text(SHARED)
    (tmp_path / "llmcorr.toml").write_text(TOML.format(chat=chat.base_url, math=math.base_url))
    pd.DataFrame({"question": QUESTIONS}).to_json(tmp_path / "q.jsonl", orient="records", lines=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def show(name: str) -> dict:
    r = run_cli("runs", "show", name, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_dag_flow_runs_unchanged_with_routing_bypass_aggregation_and_traces(
    workdir: Path, servers: tuple[QuotaServer, QuotaServer]
) -> None:
    chat, math = servers
    out = workdir / "out.jsonl"
    args = ("run", "qa", "--data", "q.jsonl", "-o", out, "--name", "qa", "--connection", "mathbox=numbers", "-q")
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["route"] for row in rows] == ["math", "chat", "math", "chat"]
    # the math questions went to the endpoint `mathbox` maps to, with 2 tokens; the others to `chatbox`, with 3
    assert math.stats()["received"] == 2 and chat.stats()["received"] == 2
    assert [row["answer"] for row in rows] == ["Prediction:", "Prediction: True", "Prediction:", "Prediction: True"]
    assert all(row["polished"] is None and row["error"] is None for row in rows)  # bypassed: None, as in pf
    assert "__aggregation_values__" not in rows[0]
    run = show("qa")
    assert run["kind"] == "dag" and run["status"] == "completed"
    assert run["metrics"] == {"math_share": 0.5, "answered": 4.0}

    logs = run_cli("runs", "logs", "qa", "--row", "1")
    assert logs.returncode == 0, logs.stderr
    steps = [line.split("step ")[1].split()[1] for line in logs.stdout.splitlines() if " step node " in line]
    assert steps[0] == "classify" and set(steps) == {"classify", "framing", "ask_math", "finish"}
    assert "You answer questions." in logs.stdout and "Answer briefly: what is 2+2" in logs.stdout


def test_a_variant_is_selected_and_recorded_and_a_run_file_gives_the_options(workdir: Path) -> None:
    (workdir / "run.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/promptflow/latest/Run.schema.json\n"
        "flow: qa\ndata: q.jsonl\ncolumn_mapping:\n  question: ${data.ask}\n"
        "variant: ${ask_chat.variant_1}\ndisplay_name: from-file\n"
    )
    pd.DataFrame({"ask": QUESTIONS[:2]}).to_json(workdir / "q.jsonl", orient="records", lines=True)
    r = run_cli("run", "--file", "run.yml", "--connection", "mathbox=numbers", "-o", "v.jsonl", "-q")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (workdir / "v.jsonl").read_text().splitlines()]
    assert rows[1]["answer"] == "Prediction: True; Explanation:"  # variant_1 asks for 6 tokens
    assert show("from-file")["spec"]["options"]["variant"] == "${ask_chat.variant_1}"


def test_a_run_files_connections_override_nodes_and_a_rerun_keeps_them(
    workdir: Path, servers: tuple[QuotaServer, QuotaServer]
) -> None:
    """pf's run-file `connections:`: the llm node's connection replaced (mathbox, which maps to no endpoint, is not
    needed any more) and another of its inputs set; --override on the command line wins over the file."""
    chat, math = servers
    (workdir / "run.yml").write_text(
        "flow: qa\ndata: q.jsonl\nname: over\n"
        "connections:\n  ask_math:\n    connection: chatbox\n    deployment_name: gpt-4o-mini\n    max_tokens: 6\n"
    )
    r = run_cli("run", "--file", "run.yml", "-o", "o.jsonl", "-q")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (workdir / "o.jsonl").read_text().splitlines()]
    assert math.stats()["received"] == 0 and chat.stats()["received"] == 4  # every question to chatbox
    assert rows[0]["answer"] == "Prediction: True; Explanation:"  # the math node's 6 tokens
    options = show("over")["spec"]["options"]
    assert options["overrides"] == {
        "ask_math.connection": "chatbox",
        "ask_math.deployment_name": "gpt-4o-mini",
        "ask_math.max_tokens": 6,
    }
    r = run_cli("runs", "rerun", "over", "--name", "again", "-q")
    assert r.returncode == 0, r.stderr
    assert show("again")["spec"]["options"]["overrides"] == options["overrides"]  # re-created as the run was
    assert math.stats()["received"] == 0 and chat.stats()["received"] == 4  # the same requests: from the cache

    r = run_cli("run", "--file", "run.yml", "--override", "ask_math.max_tokens=2", "--name", "cli", "-o", "c.jsonl")
    assert r.returncode == 0, r.stderr
    assert json.loads((workdir / "c.jsonl").read_text().splitlines()[0])["answer"] == "Prediction:"
    r = run_cli("run", "qa", "--data", "q.jsonl", "--override", "ask_maths.connection=chatbox", "-q")
    assert r.returncode == 2 and "override 'ask_maths.connection': the flow has no node 'ask_maths'" in r.stderr


def test_a_failing_node_fails_its_row_naming_the_node_and_the_rest_run(workdir: Path) -> None:
    pd.DataFrame({"question": ["say hi", "boom", "what is 1+1"]}).to_json(
        workdir / "q.jsonl", orient="records", lines=True
    )
    r = run_cli("run", "qa", "--data", "q.jsonl", "--name", "bad", "--connection", "mathbox=numbers", "-q")
    assert r.returncode == 1, r.stderr  # some rows failed
    run = show("bad")
    assert run["rows_done"] == 3 and run["rows_failed"] == 1
    assert run["metrics"] == {"math_share": 0.5, "answered": 2.0}  # aggregated over the rows that finished
    logs = run_cli("runs", "logs", "bad", "--row", "2", env={"COLUMNS": "400"}).stdout
    assert "ValueError: cannot classify a bomb (qa/classify.py:7; in node 'classify' of qa/flow.dag.yaml)" in logs


def test_a_failing_aggregation_node_is_a_warning_and_the_run_completes_as_in_pf(workdir: Path) -> None:
    grade = workdir / "qa" / "grade.py"
    grade.write_text(
        FILES["grade.py"].replace('    log_metric("answered"', '    raise KeyError("no grades")\n    log_metric("x"')
    )
    r = run_cli("run", "qa", "--data", "q.jsonl", "--name", "agg", "--connection", "mathbox=numbers", "-q")
    assert r.returncode == 0, r.stderr
    assert "aggregation failed: KeyError: 'no grades' (qa/grade.py:7; in node 'grade' of qa/flow.dag.yaml)" in r.stderr
    run = show("agg")
    assert run["status"] == "completed" and run["rows_done"] == 4
    assert run["metrics"] == {"math_share": 0.5}  # what it logged before it failed, as pf keeps it
    logs = run_cli("runs", "logs", "agg", env={"COLUMNS": "400"}).stdout
    assert "step node grade" in logs and "KeyError" in logs


def test_a_dag_run_killed_mid_way_resumes_paying_only_for_the_rest(workdir: Path, llmcorr_home: Path) -> None:
    with QuotaServer(QuotaServerConfig(rpm=600)) as slow:  # 10 requests a second: slow enough to be killed mid-run
        toml = TOML.format(chat=slow.base_url, math=slow.base_url)
        (workdir / "llmcorr.toml").write_text(toml)
        questions = [f"say {'x' * (i + 1)}" for i in range(40)]  # no digits: every row asks chatbox
        pd.DataFrame({"question": questions}).to_json(workdir / "q.jsonl", orient="records", lines=True)
        args = ("run", "qa", "-d", "q.jsonl", "--name", "killed", "--no-cache", "--connection", "mathbox=numbers")
        proc = start_cli(*args, "-q")
        wait_for_rows(llmcorr_home, "killed", 15, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        at_kill = show("killed")
        before = slow.stats()["received"]
        r = run_cli("runs", "resume", "killed", "-q")
        assert r.returncode == 0, r.stderr
        sent = slow.stats()["received"] - before
    assert at_kill["status"] == "interrupted" and 15 <= at_kill["rows_done"] < 40
    assert sent == 40 - at_kill["rows_done"]  # finished rows cost nothing again
    done = show("killed")
    assert done["status"] == "completed" and done["rows_done"] == 40
    assert done["metrics"] == {"math_share": 0.0, "answered": 40.0}  # aggregation over every row, the kept ones too


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("flow.dag.yaml", "- name: classify\n", "- name: classify\n  activte: {}\n"),
            "qa/flow.dag.yaml: node 'classify': unknown key 'activte'",
        ),
        (
            (
                "flow.dag.yaml",
                "question: ${inputs.question}\n- name: framing",
                "question: ${nowhere.output}\n- name: framing",
            ),
            "node 'classify': input 'question' reads ${nowhere.output}, but the flow has no node 'nowhere'",
        ),
        (
            (
                "flow.dag.yaml",
                "question: ${inputs.question}\n- name: framing",
                "question: ${finish.output}\n- name: framing",
            ),
            "its references form a cycle: ",
        ),
        (
            ("flow.dag.yaml", "    max_tokens: 2\n", "    max_tokens: 2\n    extra: ${inputs.nope}\n"),
            "node 'ask_math': input 'extra' reads ${inputs.nope}, but the flow declares no input 'nope'",
        ),
        (
            (
                "classify.py",
                "from promptflow.core import tool",
                "from promptflow.core import tool\nimport no_such_module",
            ),
            "qa/flow.dag.yaml: node 'classify': qa/classify.py does not import (ModuleNotFoundError",
        ),
    ],
    ids=["unknown-key", "missing-node", "cycle", "missing-input", "tool-does-not-import"],
)
def test_a_broken_flow_is_one_line_naming_file_and_node_before_any_request(
    workdir: Path, servers: tuple[QuotaServer, QuotaServer], change: tuple[str, str, str], expected: str
) -> None:
    file, old, new = change
    path = workdir / "qa" / file
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    r = run_cli("run", "qa", "--data", "q.jsonl", "--connection", "mathbox=numbers", "-q")
    assert r.returncode == 2, r.stderr
    assert expected in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert sum(s.stats()["received"] for s in servers) == 0


def test_an_unknown_connection_is_named_with_the_endpoints_there_are(
    workdir: Path, servers: tuple[QuotaServer, QuotaServer]
) -> None:
    r = run_cli("run", "qa", "--data", "q.jsonl", "-q")  # `mathbox` is no endpoint, and nothing maps it
    assert r.returncode == 2
    assert (
        "node 'ask_math': connection 'mathbox' is not an endpoint in llmcorr.toml (endpoints: chatbox, numbers)"
        in r.stderr
    )
    assert "--connection mathbox=ENDPOINT" in r.stderr
    r = run_cli("run", "qa", "--data", "q.jsonl", "--connection", "mathbox=nowhere", "-q")
    assert r.returncode == 2 and "--connection mathbox=nowhere: no endpoint 'nowhere'" in r.stderr
    assert sum(s.stats()["received"] for s in servers) == 0
