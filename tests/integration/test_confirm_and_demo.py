"""Before spending on a remote endpoint, `llmcorr run` shows its estimate and asks a person at a terminal, exactly as
`llmcorr correct` does; `--yes` skips the question, and a script (stdin not a terminal) is never asked. `llmcorr
demo` uses the embedded model whatever llmcorr.toml's `default` says, and an endpoint only when `--endpoint` names
it. The remote endpoint is the quota server on 127.0.0.1, which counts every request; the terminal is a real pty."""

from __future__ import annotations

import os
import pty
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from bench.quota_server import DEFINE_PROMPTY as PROMPTY
from bench.quota_server import QuotaServer, QuotaServerConfig
from llmcorr.store import Store
from tests.conftest import LLMCORR

from .conftest import quota_toml, store_path

ROWS = 3
RUN = ("run", "define.prompty", "-d", "words.jsonl", "-q")
CORRECT = ("correct", "-p", "preds.csv", "--limit", "2", "--gate-rows", "2", "--send-all", "-q")


@pytest.fixture
def server() -> Iterator[QuotaServer]:
    with QuotaServer(QuotaServerConfig(rpm=60_000, tpm=10_000_000)) as srv:
        yield srv


@pytest.fixture
def workdir(tmp_path: Path, server: QuotaServer, cancer_table: pd.DataFrame) -> Path:
    """llmcorr.toml whose `default` is the remote endpoint, a prompt file, a words table, a predictions file."""
    (tmp_path / "llmcorr.toml").write_text(quota_toml(server.base_url))
    (tmp_path / "define.prompty").write_text(PROMPTY)
    pd.DataFrame({"word": [f"w{i}" for i in range(ROWS)]}).to_json(
        tmp_path / "words.jsonl", orient="records", lines=True
    )
    cancer_table.to_csv(tmp_path / "preds.csv", index=False)
    return tmp_path


def at_terminal(cwd: Path, *args: str, answer: str | None = None) -> subprocess.CompletedProcess:
    """`llmcorr ARGS` with a pseudo-terminal as stdin, typing `answer` (if any) into it."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [LLMCORR, *args], cwd=cwd, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        os.close(slave)
        if answer is not None:
            os.write(master, answer.encode())
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(master)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def in_script(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`llmcorr ARGS` as a script runs it: stdin not a terminal."""
    return subprocess.run(
        [LLMCORR, *args], cwd=cwd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )


def runs(home: Path) -> list[str]:
    if not store_path(home).exists():
        return []
    with Store(store_path(home)) as store:
        return [r.name or r.id for r in store.list_runs(archived=None)]


def test_run_shows_the_estimate_and_asks_before_spending_on_a_remote_endpoint(
    workdir: Path, server: QuotaServer, llmcorr_home: Path
) -> None:
    r = at_terminal(workdir, *RUN, "--name", "no", answer="n\n")
    assert r.returncode == 2 and "nothing was spent" in r.stderr, (r.stdout, r.stderr)
    assert "estimate (nothing spent yet)" in r.stderr and "start the run?" in r.stdout
    assert server.stats()["received"] == 0 and runs(llmcorr_home) == []

    r = at_terminal(workdir, *RUN, "--name", "yes", answer="y\n")
    assert r.returncode == 0, r.stderr
    assert server.stats()["received"] == ROWS and runs(llmcorr_home) == ["yes"]


def test_run_with_yes_at_a_terminal_does_not_ask(workdir: Path, server: QuotaServer) -> None:
    r = at_terminal(workdir, *RUN, "--yes")  # nothing typed: a question would wait until the timeout
    assert r.returncode == 0, r.stderr
    assert "start the run?" not in r.stdout and server.stats()["received"] == ROWS


def test_run_in_a_script_prints_the_estimate_and_runs_without_asking(workdir: Path, server: QuotaServer) -> None:
    r = in_script(workdir, *RUN[:-1])
    assert r.returncode == 0, r.stderr
    assert "estimate:" in r.stderr and "start the run?" not in r.stdout
    assert server.stats()["received"] == ROWS
    r = in_script(workdir, *RUN, "--yes", "--no-cache")
    assert r.returncode == 0, r.stderr
    assert server.stats()["received"] == 2 * ROWS


def test_correct_asks_the_same_and_yes_skips_it(workdir: Path, server: QuotaServer, llmcorr_home: Path) -> None:
    r = at_terminal(workdir, *CORRECT, answer="n\n")
    assert r.returncode == 2 and "estimate (nothing spent yet)" in r.stderr, (r.stdout, r.stderr)
    assert server.stats()["received"] == 0
    r = at_terminal(workdir, *CORRECT, "--yes")
    assert r.returncode == 0, r.stderr
    assert server.stats()["received"] == 4


def test_demo_uses_an_endpoint_only_when_told(workdir: Path, server: QuotaServer, llmcorr_home: Path) -> None:
    r = in_script(workdir, "demo", "--limit", "2", "--endpoint", "q", "--yes", "-q")
    assert r.returncode == 0, r.stderr
    with Store(store_path(llmcorr_home)) as store:
        (record,) = store.list_runs()
        unsent = store.row_status_counts(record.id).get("not sent (gate)", 0)
    assert server.stats()["received"] == 4 - unsent  # 2 validation rows for the gate + the test rows it chose


@pytest.mark.model
def test_demo_does_not_follow_the_default_endpoint(workdir: Path, server: QuotaServer, llmcorr_home: Path) -> None:
    r = in_script(workdir, "demo", "--limit", "2", "--shots", "1", "-q")
    assert r.returncode == 0, r.stderr
    assert server.stats()["received"] == 0  # the embedded model answered: nothing spent on the remote endpoint
    with Store(store_path(llmcorr_home)) as store:
        (record,) = store.list_runs()
    assert [e["kind"] for e in record.spec["options"]["endpoint_configs"]] == ["local"]
