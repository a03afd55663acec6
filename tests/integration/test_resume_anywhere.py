"""Runs you can trust after the fact: a run made with relative paths (`-d words.jsonl -o out.jsonl`) is resumed and
rerun from another directory; a moved data or prompt file is one line naming it, where it was expected and the
option that points at its new place (exit 2), then that option works; `runs resume` of a correct run writes its
output file as the run would have; the report's "reproduce with" command works from anywhere.

Each run is stopped part way by the quota server's daily quota (one request at a time, so exactly that many rows
finish), then the quota is lifted and the run resumed: no kill, no timing.
"""

from __future__ import annotations

import html
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from bench.quota_server import DEFINE_PROMPTY as PROMPTY
from bench.quota_server import QuotaServer, QuotaServerConfig
from llmcorr.store import Store
from tests.conftest import LLMCORR

from .conftest import store_path

ROWS, DAILY = 6, 3


FLOW = """
import llmcorr

def define(word: str) -> dict:
    return {"definition": llmcorr.chat(f"Define {word}", max_tokens=3)}
"""

TOML = """
default = "q"

[[endpoints]]
name = "q"
kind = "openai"
base_url = "{url}"
model = "m"
max_concurrency = 1
"""


@pytest.fixture
def server() -> Iterator[QuotaServer]:
    with QuotaServer(QuotaServerConfig(rpm=60_000, tpm=10_000_000, daily_requests=DAILY)) as srv:
        yield srv


@pytest.fixture
def project(tmp_path: Path, server: QuotaServer, cancer_table: pd.DataFrame) -> Path:
    """The folder runs are started in: llmcorr.toml, a prompt file, a flow module, a words table, predictions."""
    path = tmp_path / "project"
    path.mkdir()
    (path / "llmcorr.toml").write_text(TOML.format(url=server.base_url))
    (path / "define.prompty").write_text(PROMPTY)
    (path / "myflow.py").write_text(FLOW)
    pd.DataFrame({"word": [f"w{i}" for i in range(ROWS)]}).to_json(path / "words.jsonl", orient="records", lines=True)
    cancer_table.to_csv(path / "preds.csv", index=False)
    return path


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


def cli(cwd: Path, *args: object) -> subprocess.CompletedProcess:
    """`llmcorr ARGS` as a user would type it in `cwd` (stdin not a terminal)."""
    return subprocess.run(
        [LLMCORR, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "160"},
        stdin=subprocess.DEVNULL,
    )


def stopped_by_quota(server: QuotaServer, cwd: Path, *args: object) -> None:
    """Run `llmcorr ARGS` until the daily quota stops it, then lift the quota (the next day)."""
    r = cli(cwd, *args)
    assert r.returncode == 1 and "exceeded your current quota" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    server.config.daily_requests = None
    server.reset()


def one_error_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def record(name: str, home: Path) -> dict:
    with Store(store_path(home)) as store:
        return store.get_run(name).__dict__


def test_a_prompt_run_resumes_and_reruns_from_another_directory(
    project: Path, elsewhere: Path, server: QuotaServer, llmcorr_home: Path
) -> None:
    stopped_by_quota(server, project, "run", "define.prompty", "-d", "words.jsonl", "-o", "out.jsonl", "--name", "p")
    r = cli(elsewhere, "runs", "resume", "p", "-q")
    assert r.returncode == 0, r.stderr
    assert server.stats()["received"] == ROWS - DAILY  # only the rows that never ran
    written = [json.loads(line) for line in (project / "out.jsonl").read_text().splitlines()]
    assert [w["word"] for w in written] == [f"w{i}" for i in range(ROWS)] and all(w["output"] for w in written)

    r = cli(elsewhere, "runs", "rerun", "p", "--name", "p2", "-o", "again.csv", "-q")
    assert r.returncode == 0, r.stderr
    assert server.stats()["received"] == ROWS - DAILY  # every answer from the cache
    assert list(pd.read_csv(elsewhere / "again.csv")["word"]) == [f"w{i}" for i in range(ROWS)]
    spec = record("p", llmcorr_home)["spec"]  # every file recorded by its absolute path
    assert spec["data"] == str((project / "words.jsonl").resolve())
    assert spec["template"] == str((project / "define.prompty").resolve())
    assert spec["options"]["config"] == str((project / "llmcorr.toml").resolve())


def test_a_module_flow_resumes_and_reruns_from_another_directory(
    project: Path, elsewhere: Path, server: QuotaServer, llmcorr_home: Path
) -> None:
    stopped_by_quota(server, project, "run", "myflow:define", "-d", "words.jsonl", "-o", "flow.csv", "--name", "f")
    r = cli(elsewhere, "runs", "resume", "f", "-q")
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(project / "flow.csv")
    assert list(table["word"]) == [f"w{i}" for i in range(ROWS)] and table["definition"].notna().all()

    r = cli(elsewhere, "runs", "rerun", "f", "--name", "f2", "-q")
    assert r.returncode == 0, r.stderr
    assert server.stats()["received"] == ROWS - DAILY
    options = record("f", llmcorr_home)["spec"]["options"]  # where the module was found, to import it again
    assert options["flow_file"] == str((project / "myflow.py").resolve())
    assert options["flow_path"] == str(project.resolve())


def test_a_file_flow_reruns_from_another_directory(
    project: Path, elsewhere: Path, server: QuotaServer, llmcorr_home: Path
) -> None:
    (project / "flows").mkdir()
    shutil.move(project / "myflow.py", project / "flows" / "defs.py")
    r = cli(project, "run", "flows/defs.py:define", "-d", "words.jsonl", "--limit", 2, "--name", "ff", "-q")
    assert r.returncode == 0, r.stderr
    r = cli(elsewhere, "runs", "rerun", "ff", "--name", "ff2", "-q")
    assert r.returncode == 0, r.stderr
    assert record("ff2", llmcorr_home)["rows_done"] == 2 and server.stats()["received"] == 2
    assert record("ff", llmcorr_home)["spec"]["template"] == f"{(project / 'flows' / 'defs.py').resolve()}:define"


def test_moved_files_are_named_in_one_line_then_found_with_data_and_flow(
    project: Path, elsewhere: Path, server: QuotaServer, llmcorr_home: Path
) -> None:
    stopped_by_quota(server, project, "run", "define.prompty", "-d", "words.jsonl", "--name", "m")
    moved = elsewhere / "moved"
    moved.mkdir()
    shutil.move(project / "words.jsonl", moved / "words.jsonl")
    shutil.move(project / "define.prompty", moved / "define.prompty")

    line = one_error_line(cli(elsewhere, "runs", "resume", "m"))
    assert str((project / "words.jsonl").resolve()) in line and "data file" in line and "--data" in line
    line = one_error_line(cli(elsewhere, "runs", "rerun", "m", "--data", "moved/words.jsonl"))
    assert str((project / "define.prompty").resolve()) in line and "prompt file" in line and "--flow" in line
    line = one_error_line(cli(elsewhere, "runs", "resume", "m", "--data", "nowhere.jsonl"))
    assert "nowhere.jsonl" in line and "no such file" in line
    assert server.stats()["received"] == 0  # nothing spent on any of it

    r = cli(elsewhere, "runs", "resume", "m", "--data", "moved/words.jsonl", "--flow", "moved/define.prompty", "-q")
    assert r.returncode == 0, r.stderr
    assert record("m", llmcorr_home)["rows_done"] == ROWS and server.stats()["received"] == ROWS - DAILY


def test_a_record_with_relative_paths_still_resumes_from_its_own_directory(
    project: Path, elsewhere: Path, server: QuotaServer, llmcorr_home: Path
) -> None:
    stopped_by_quota(server, project, "run", "define.prompty", "-d", "words.jsonl", "--name", "old")
    with sqlite3.connect(store_path(llmcorr_home)) as db:  # as runs were recorded before paths were absolute
        (spec_json,) = db.execute("SELECT spec_json FROM runs WHERE name = 'old'").fetchone()
        spec = json.loads(spec_json) | {"data": "words.jsonl", "template": "define.prompty"}
        db.execute("UPDATE runs SET spec_json = ? WHERE name = 'old'", (json.dumps(spec),))
    line = one_error_line(cli(elsewhere, "runs", "resume", "old"))
    assert "words.jsonl" in line and "--data" in line
    r = cli(project, "runs", "resume", "old", "-q")
    assert r.returncode == 0, r.stderr
    assert record("old", llmcorr_home)["rows_done"] == ROWS


CORRECT = ("correct", "-p", "preds.csv", "--limit", 4, "--gate-rows", 4, "--no-cache")


def test_resume_of_a_correct_run_writes_its_output_as_the_run_would_have(
    project: Path, elsewhere: Path, server: QuotaServer, llmcorr_home: Path
) -> None:
    stopped_by_quota(server, project, *CORRECT, "-o", "out.csv", "--name", "c")
    assert len(pd.read_csv(project / "out.csv")) == 4  # the stopped run wrote what it had (the rest: not processed)
    (project / "out.csv").unlink()  # the resume writes it whole again, from another directory
    r = cli(elsewhere, "runs", "resume", "c", "-q")
    assert r.returncode == 0, r.stderr
    assert record("c", llmcorr_home)["output_path"] == str((project / "out.csv").resolve())

    r = cli(project, *CORRECT, "-o", "whole.csv", "--name", "whole", "-q")  # the same run, never stopped
    assert r.returncode == 0, r.stderr
    resumed, whole = pd.read_csv(project / "out.csv"), pd.read_csv(project / "whole.csv")
    assert len(resumed) == 4
    pd.testing.assert_frame_equal(resumed, whole)


def test_resume_of_a_correct_run_in_its_own_directory_writes_the_output(
    project: Path, server: QuotaServer, llmcorr_home: Path
) -> None:
    stopped_by_quota(server, project, *CORRECT, "--send-all", "-o", "out.jsonl", "--name", "c")
    r = cli(project, "runs", "resume", "c", "-q")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (project / "out.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(row["parsed"] and row["sent"] == "sent" for row in rows)


def test_the_reports_reproduce_command_works_from_anywhere(
    project: Path, elsewhere: Path, server: QuotaServer, llmcorr_home: Path
) -> None:
    server.config.daily_requests = None
    r = cli(project, *CORRECT[:-1], "--name", "c", "-q")
    assert r.returncode == 0, r.stderr
    assert cli(project, "report", "c", "-o", "report.html").returncode == 0
    page = (project / "report.html").read_text()
    found = re.search(r"reproduce with <code>(.*?)</code>", page)
    assert found, page[-500:]
    command = shlex.split(html.unescape(found.group(1)))
    assert command[:3] == ["llmcorr", "runs", "rerun"]
    r = cli(elsewhere, *command[1:], "--name", "again", "-q")
    assert r.returncode == 0, r.stderr
    assert record("again", llmcorr_home)["spec"]["data"] == str((project / "preds.csv").resolve())
