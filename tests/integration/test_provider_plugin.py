"""Providers as plugins (issue 15, item 3): the built-in kinds are entry points of the group `llmcorr.providers`, and
a plugin package installed with pip (tests/plugins/llmcorr_echo, built and installed into a folder of its own) adds
the kind "echo": llmcorr.toml names it, its own options are checked when the config loads (a wrong one is one line,
exit 2), and `llmcorr run` runs a prompt file on it, recording its kind and options in the run.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.quota_server import DEFINE_PROMPTY
from llmcorr.providers import registry

from .conftest import run_cli, store_path

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "llmcorr_echo"
ECHO_TOML = """
default = "echo"

[[endpoints]]
name = "echo"
kind = "echo"
prefix = "ECHO "
upper = true
{extra}
"""


def test_every_built_in_kind_is_an_entry_point_of_the_group() -> None:
    points = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=registry.GROUP)}
    assert {name: points.get(name) for name in registry.BUILTIN} == registry.BUILTIN
    for name in registry.BUILTIN:
        kind = registry.get(name)
        assert kind.name == name and callable(kind.build)
    assert registry.get("azure").enforcement_window_s == 10.0 and not registry.get("local").remote


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin, installed by pip into a folder of its own (put on PYTHONPATH by the runs that use it)."""
    target, source = tmp_path_factory.mktemp("plugin-site"), tmp_path_factory.mktemp("plugin-src") / PLUGIN.name
    shutil.copytree(PLUGIN, source)  # built from a copy: the build leaves nothing in the repository
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr
    return target


def test_an_installed_plugin_kind_runs_a_prompt_file(tmp_path: Path, llmcorr_home: Path, site: Path) -> None:
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    (tmp_path / "define.prompty").write_text(DEFINE_PROMPTY)
    pd.DataFrame({"word": ["alpha", "beta"]}).to_csv(tmp_path / "words.csv", index=False)
    (tmp_path / "llmcorr.toml").write_text(ECHO_TOML.format(extra=""))
    args = ["run", tmp_path / "define.prompty", "--data", tmp_path / "words.csv", "--config", tmp_path / "llmcorr.toml"]

    result = run_cli(*args, "-o", tmp_path / "out.csv", "--name", "echoed", "-q", env=env)
    assert result.returncode == 0, result.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    assert out["output"].tolist() == ["ECHO DEFINE ALPHA.", "ECHO DEFINE BETA."]
    with sqlite3.connect(store_path(llmcorr_home)) as conn:
        (spec,) = conn.execute("SELECT spec_json FROM runs WHERE name = 'echoed'").fetchone()
    (endpoint,) = json.loads(spec)["options"]["endpoint_configs"]
    assert endpoint["kind"] == "echo" and endpoint["options"] == {"prefix": "ECHO ", "upper": True}

    (tmp_path / "llmcorr.toml").unlink()  # a rerun needs only the record: the kind and its options
    again = run_cli("runs", "rerun", "echoed", "--name", "again", "-q", env=env)
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(store_path(llmcorr_home)) as conn:
        rows = conn.execute(
            "SELECT response FROM rows_with_response JOIN runs ON runs.id = run_id"
            " WHERE name = 'again' ORDER BY row_index"
        ).fetchall()
    assert [r[0] for r in rows] == out["output"].tolist()

    (tmp_path / "llmcorr.toml").write_text(ECHO_TOML.format(extra="colour = 1"))
    bad = run_cli(*args, "-q", env=env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
    assert "colour is not an endpoint setting, nor an option of kind echo (its options: prefix, upper)" in bad.stderr

    missing = run_cli(*args, "-q")  # not installed here: one line naming the kinds there are
    assert missing.returncode == 2 and "kind 'echo': no such provider; kinds: local, openai" in missing.stderr
