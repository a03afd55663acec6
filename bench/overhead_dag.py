"""The DAG-flow case of bench/overhead.py: a Prompt flow flow.dag.yaml of three nodes, python → llm → python.

    prepare  (python, prepare.py)    ${inputs.word} stripped and lowercased
    define   (llm, define.jinja2)    api: chat, connection: instant, model: m, max_tokens: 8
    shape    (python, shape.py)      {"definition": text, "chars": len(text)}
    outputs: answer = ${shape.output}

llmcorr maps `connection: instant` to the llmcorr.toml endpoint of that name; Prompt flow needs the connection in
its store first: `pf connection create --file conn.yaml` (type open_ai, base_url = the instant server) in the run's
PF_HOME_DIRECTORY, untimed. Prompt flow keeps a connection's secrets encrypted with a key from the system keyring: on
a machine without one, keyrings.alt's plain-file backend (installed in bench/.venv-peers), kept in PF_HOME_DIRECTORY.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

FLOW_DIR = "dagflow"
FLOW_DAG = """$schema: https://azuremlschemas.azureedge.net/promptflow/latest/Flow.schema.json
inputs:
  word:
    type: string
outputs:
  answer:
    type: object
    reference: ${shape.output}
nodes:
- name: prepare
  type: python
  source:
    type: code
    path: prepare.py
  inputs:
    word: ${inputs.word}
- name: define
  type: llm
  source:
    type: code
    path: define.jinja2
  api: chat
  connection: instant
  inputs:
    model: m
    max_tokens: 8
    word: ${prepare.output}
- name: shape
  type: python
  source:
    type: code
    path: shape.py
  inputs:
    text: ${define.output}
"""
PREPARE_PY = """from promptflow.core import tool


@tool
def prepare(word: str) -> str:
    return word.strip().lower()
"""
DEFINE_JINJA2 = """# system:
You define words in one sentence.

# user:
Define {{word}}.
"""
SHAPE_PY = """from promptflow.core import tool


@tool
def shape(text: str) -> dict:
    return {"definition": text, "chars": len(text)}
"""
CONNECTION = """name: instant
type: open_ai
api_key: {api_key}
base_url: {base_url}
"""
# Where Prompt flow's keyring keeps the connection store's encryption key: a file under XDG_DATA_HOME
KEYRING_ENV = {"PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring"}


def write_flow(work: Path) -> None:
    """The flow folder, holding only the flow's files: pf snapshots the whole folder into each run."""
    folder = work / FLOW_DIR
    folder.mkdir(exist_ok=True)
    for name, text in (
        ("flow.dag.yaml", FLOW_DAG),
        ("prepare.py", PREPARE_PY),
        ("define.jinja2", DEFINE_JINJA2),
        ("shape.py", SHAPE_PY),
    ):
        (folder / name).write_text(text)


def pf_connection(pf: Path, work: Path, env: dict[str, str]) -> str:
    """Create the `instant` connection in env's PF_HOME_DIRECTORY: "" when done, else why not."""
    conn = work / "conn.yaml"
    conn.write_text(CONNECTION.format(api_key=env["BENCH_API_KEY"], base_url=env["BENCH_BASE_URL"]))
    command = [str(pf), "connection", "create", "--file", str(conn)]
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return ""
    tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
    return f"pf connection create: exit {done.returncode}: {tail[0][:160]}"


def answered(row: dict[str, Any]) -> bool:
    """An output row with a non-empty `answer` and no error: llmcorr's `output` mapping, or pf's flat row."""
    if row.get("error"):
        return False
    output = row.get("output")
    outputs = output if isinstance(output, dict) else row
    return bool(outputs.get("answer"))
