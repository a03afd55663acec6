"""Prompt flow run files (`pf run create --file run.yml`) read as `llmcorr run` options: paths beside the file, the
keys pf writes that llmcorr leaves alone, and one line for a key it does not know."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmcorr.cli.run_file import read_run_file
from llmcorr.errors import UserError


def write(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "runs"
    folder.mkdir(exist_ok=True)
    (folder / "flow").mkdir(exist_ok=True)
    path = folder / "run.yml"
    path.write_text(text)
    return path


def test_paths_are_read_beside_the_file_and_pf_only_keys_are_left_alone(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "$schema: https://azuremlschemas.azureedge.net/promptflow/latest/Run.schema.json\n"
        "flow: flow\ndata: ../data.jsonl\ncolumn_mapping:\n  url: ${data.url}\n  n: 3\n"
        "variant: ${summarize.variant_1}\nrun: base\ninit: {model: m}\ndisplay_name: nice\n"
        "environment_variables: {A: b}\ntags: {x: y}\ndescription: what it is\n",
    )
    found = read_run_file(path)
    assert found.flow == str(tmp_path / "runs" / "flow") and found.data == str(tmp_path / "runs" / "../data.jsonl")
    assert found.column_mapping == {"url": "${data.url}", "n": "3"}
    assert (found.variant, found.run, found.init, found.display_name) == (
        "${summarize.variant_1}",
        "base",
        {"model": "m"},
        "nice",
    )


def test_a_module_flow_stays_a_module_and_a_file_flow_is_found_beside_the_file(tmp_path: Path) -> None:
    assert read_run_file(write(tmp_path, "flow: mypkg.flows:answer\n")).flow == "mypkg.flows:answer"
    found = read_run_file(write(tmp_path, "flow: flows.py:Judge\n")).flow
    assert found == f"{tmp_path / 'runs' / 'flows.py'}:Judge"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("flow: f\ncolum_mapping: {}\n", "unknown key 'colum_mapping'"),
        ("- flow\n", "expected a mapping of run options"),
        ("flow: [unclosed\n", "not valid YAML"),
        ("flow: f\ncolumn_mapping: [a, b]\n", "column_mapping"),
        ("flow: f\nconnections: {node: c}\n", "connections.node"),
    ],
)
def test_a_bad_run_file_is_one_line_naming_it(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UserError, match=r"--file .*run\.yml: ") as caught:
        read_run_file(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_connections_become_node_overrides(tmp_path: Path) -> None:
    text = "flow: f\nconnections: {a: {connection: c, deployment_name: d}, b: {k: 1}}\n"
    found = read_run_file(write(tmp_path, text))
    assert found.overrides() == {"a.connection": "c", "a.deployment_name": "d", "b.k": 1}
