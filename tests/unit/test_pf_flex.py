"""flow.flex.yaml (pf/flex.py): what a flex flow's file may hold, its errors as one line naming the file, init from
`--init`, the sample and the declared defaults, environment variables put back after, `__aggregate__`'s rows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmcorr.config import Config, EndpointConfig
from llmcorr.errors import UserError
from llmcorr.pf.compat.connections import OpenAIConnection
from llmcorr.pf.compat.core import AzureOpenAIModelConfiguration
from llmcorr.pf.connections import Connections
from llmcorr.pf.flex import AttrDict, flex_file, line_result, load_flex, typed_init
from llmcorr.runs.flows import load_flow


def flow(tmp_path: Path, yaml: str, code: str = "def f(x):\n    return x\n", name: str = "flow.flex.yaml") -> Path:
    folder = tmp_path / "flow"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(yaml)
    (folder / "entry.py").write_text(code)
    return folder


@pytest.mark.parametrize(
    ("yaml", "needle"),
    [
        ("entry: entry:f\nnodes: []\n", "unknown key 'nodes' (a flex flow has: $schema, additional_includes"),
        ("inputs: {}\n", "flow.flex.yaml: entry: Field required"),
        ("entry: entry.py:f\n", "entry: 'entry.py:f' is not module:name (write entry:f)"),
        ("entry: [1\n", "flow.flex.yaml: not valid YAML"),
        ("entry: entry:f\ninputs: {x: {type: str}}\n", "inputs.x: type 'str' is not one of string, int"),
        ("entry: entry:f\nsample: {outputs: {}}\n", "sample.outputs: a sample has init and inputs only"),
        ("entry: entry:f\nlanguage: csharp\n", "language: csharp: llmcorr runs Python flows only"),
        ("- entry\n", "expected a mapping with an entry"),
    ],
)
def test_a_bad_flow_file_is_one_line_naming_it(tmp_path: Path, yaml: str, needle: str) -> None:
    with pytest.raises(UserError) as err:
        load_flex(flow(tmp_path, yaml))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_an_entry_that_does_not_import_is_one_line(tmp_path: Path) -> None:
    folder = flow(tmp_path, "entry: entry:f\n", "def f(x:\n")
    with pytest.raises(UserError, match=r"flow\.flex\.yaml: entry entry:f: .+/flow/entry\.py:1\)$"):
        load_flow(str(folder))
    (folder / "flow.flex.yaml").write_text("entry: missing_module:f\n")
    with pytest.raises(UserError, match="entry missing_module:f: No module named 'missing_module'"):
        load_flow(str(folder))


def test_which_paths_are_flex_flows(tmp_path: Path) -> None:
    folder = flow(tmp_path, "entry: entry:f\n")
    assert flex_file(folder) == folder / "flow.flex.yaml" == flex_file(folder / "flow.flex.yaml")
    assert flex_file("entry:f") is None and flex_file(str(folder / "entry.py") + ":f") is None
    (folder / "flow.dag.yaml").write_text("nodes: []\n")
    with pytest.raises(UserError, match=r"holds both flow\.dag\.yaml and flow\.flex\.yaml"):
        flex_file(folder)
    (folder / "flow.flex.yaml").unlink()
    with pytest.raises(UserError, match="is a DAG flow"):
        flex_file(folder)
    with pytest.raises(UserError, match="is a DAG flow"):
        load_flow(str(folder))
    with pytest.raises(UserError, match=r"no flow\.flex\.yaml in this folder"):
        flex_file(tmp_path)


CLASS = """\
class Greeter:
    def __init__(self, greeting: str, punctuation: str = "?", times: int = 1):
        self.text = (greeting + punctuation) * times

    def __call__(self, name: str, suffix: str = "") -> str:
        return self.text + name + suffix
"""


def test_init_is_given_else_the_sample_then_the_files_defaults(tmp_path: Path) -> None:
    yaml = """\
entry: entry:Greeter
init:
  punctuation: {type: string, default: "!"}
  times: {type: int, default: ""}
inputs:
  name: {type: string}
  suffix: {type: string, default: "."}
sample:
  init: ${file:init.json}
"""
    folder = flow(tmp_path, yaml, CLASS)
    (folder / "init.json").write_text('{"greeting": "hi"}')
    sampled = load_flow(str(folder))
    assert sampled.fn("ann") == "hi!ann" and sampled.init == {}  # the sample's init; "!" from the file
    assert sampled.defaults == {"suffix": "."} and sampled.required() == ["name"]
    given = load_flow(str(folder), {"greeting": "yo", "times": 2})
    assert given.fn("bo") == "yo!yo!bo" and given.init == {"greeting": "yo", "times": 2}
    assert given.ref == str((folder / "flow.flex.yaml").resolve()) and len(given.sha256) == 64
    (folder / "entry.py").write_text(CLASS + "\n# changed\n")
    assert load_flow(str(folder)).sha256 != sampled.sha256  # the entry's source is part of what a resume checks


def test_environment_variables_are_set_for_the_block_and_put_back(tmp_path: Path) -> None:
    yaml = (
        "entry: entry:f\nenvironment_variables:\n  PF_TEST_A: 1\n  PF_TEST_B: {k: [1]}\n  PF_TEST_KEY: ${c.api_key}\n"
    )
    spec = load_flex(flow(tmp_path, yaml))
    os.environ["PF_TEST_A"] = "before"
    os.environ["KEY_FOR_C"] = "sk-flex-test-key-000111"
    try:
        endpoint = EndpointConfig(name="c", kind="openai", model="m", base_url="http://h/v1", api_key_env="KEY_FOR_C")
        with Connections.of(Config(endpoints=[endpoint])).active(), spec.environment():
            assert (os.environ["PF_TEST_A"], os.environ["PF_TEST_B"]) == ("1", '{"k": [1]}')
            assert os.environ["PF_TEST_KEY"] == "sk-flex-test-key-000111"
        assert os.environ["PF_TEST_A"] == "before" and "PF_TEST_B" not in os.environ and "PF_TEST_KEY" not in os.environ
        unknown = pytest.raises(UserError, match="connection 'c' is not an endpoint")
        with Connections.of(Config()).active(), unknown, spec.environment():
            pass
    finally:
        os.environ.pop("PF_TEST_A", None)
        os.environ.pop("KEY_FOR_C", None)


def test_init_arguments_typed_as_connections_and_configurations(tmp_path: Path) -> None:
    class Flow:
        def __init__(self, conn: OpenAIConnection, config: AzureOpenAIModelConfiguration, n: int = 1) -> None: ...

    endpoint = EndpointConfig(name="ep", kind="openai", model="m", base_url="http://h/v1")
    with Connections.of(Config(endpoints=[endpoint])).active():
        args = typed_init(Flow, {"conn": "ep", "config": {"azure_deployment": "d", "connection": "ep"}, "n": 2}, "f")
        assert isinstance(args["conn"], OpenAIConnection) and args["conn"].base_url == "http://h/v1"
        assert args["config"] == AzureOpenAIModelConfiguration(azure_deployment="d", connection="ep") and args["n"] == 2
        with pytest.raises(UserError, match=r"f: init config: connection 'gone' is not an endpoint"):
            typed_init(Flow, {"config": {"azure_deployment": "d", "connection": "gone"}}, "f")
        with pytest.raises(UserError, match="f: init config: not a AzureOpenAIModelConfiguration"):
            typed_init(Flow, {"config": {"deployment": "d"}}, "f")


def test_aggregate_gets_rows_as_prompt_flow_hands_them() -> None:
    row = line_result({"score": 3, "reason": "ok"})
    assert isinstance(row, AttrDict) and row.score == 3 and row["reason"] == "ok"
    assert line_result({"output": "text"}) == "text"  # a flow that returned a plain value
    with pytest.raises(AttributeError):
        _ = row.missing
