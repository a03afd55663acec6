"""The slim install (issue 15, item 5): llama-cpp-python is the `local` extra, so `pip install llmcorr` installs in
seconds for users of OpenAI-compatible endpoints only. There, a prompt run against such an endpoint works, and the
embedded model (`llmcorr demo`, a `local` endpoint) is one line naming the extra, exit 2, nothing recorded.

The install without the extra is met by hiding llama_cpp from real `llmcorr` processes (`sys.modules["llama_cpp"] =
None` in a sitecustomize on PYTHONPATH: the module cannot be found or imported, as in a venv that lacks it).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bench.quota_server import DEFINE_PROMPTY, QuotaServer, QuotaServerConfig

from .conftest import quota_toml, run_cli, store_path


def test_llama_cpp_python_is_only_in_the_local_extra() -> None:
    requirements = importlib.metadata.requires("llmcorr") or []
    llama = [r for r in requirements if r.startswith("llama-cpp-python")]
    assert llama and all(re.search(r"""extra\s*==\s*["']local["']""", r) for r in llama), llama


@pytest.fixture
def without_llama_cpp(tmp_path: Path) -> dict[str, str]:
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text('import sys\nsys.modules["llama_cpp"] = None\n')
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(hide), os.environ.get("PYTHONPATH")]))}


def one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_without_the_extra_remote_runs_work_and_the_embedded_model_is_one_line(
    tmp_path: Path, llmcorr_home: Path, without_llama_cpp: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no llmcorr.toml here: the embedded model is the default endpoint
    probe = subprocess.run(
        [sys.executable, "-c", "import importlib.util; assert importlib.util.find_spec('llama_cpp') is None"],
        env={**os.environ, **without_llama_cpp},
    )
    assert probe.returncode == 0  # the hiding works: as in an install without the extra

    line = one_line(run_cli("demo", "-q", "--yes", env=without_llama_cpp))
    assert "the embedded model needs llama-cpp-python" in line and "pip install 'llmcorr[local]'" in line, line
    assert runs(llmcorr_home) == 0  # nothing recorded

    (tmp_path / "define.prompty").write_text(DEFINE_PROMPTY)
    (tmp_path / "words.csv").write_text("word\nalpha\nbeta\n")
    local = run_cli("run", "define.prompty", "--data", "words.csv", "-q", env=without_llama_cpp)
    assert "pip install 'llmcorr[local]'" in one_line(local)
    assert runs(llmcorr_home) == 0

    with QuotaServer(QuotaServerConfig(rpm=6000, tpm=10_000_000, base_latency_s=0.01)) as server:
        (tmp_path / "remote.toml").write_text(quota_toml(server.base_url))
        remote = run_cli(
            "run", "define.prompty", "--data", "words.csv", "--config", "remote.toml", "-o", "out.csv", "-q",
            env=without_llama_cpp,
        )  # fmt: skip
        asked = server.stats()["received"]
    assert remote.returncode == 0, remote.stderr
    assert asked == 2 and len((tmp_path / "out.csv").read_text().splitlines()) == 3


def runs(home: Path) -> int:
    if not store_path(home).exists():
        return 0
    with sqlite3.connect(store_path(home)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
