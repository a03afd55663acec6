"""A run killed mid-way keeps its committed rows and shows as `interrupted`, never `running`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from llmcorr.store import Store

from .conftest import run_cli, start_cli, store_path, wait_for_rows

pytestmark = pytest.mark.model


def start_run(csv: Path, name: str) -> subprocess.Popen:
    return start_cli("correct", "-p", csv, "--limit", 60, "--name", name, "-q")


def test_sigkill_mid_run(cancer_csv: Path, llmcorr_home: Path) -> None:
    proc = start_run(cancer_csv, "killed")
    wait_for_rows(llmcorr_home, "killed", 2, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    runs = json.loads(run_cli("runs", "list", "--json").stdout)
    run = next(r for r in runs if r["name"] == "killed")
    assert run["status"] == "interrupted" and run["finished_utc"]
    assert 2 <= run["rows_done"] < 60
    with Store(store_path(llmcorr_home)) as store:
        rows = store.rows(run["id"])
        assert len(rows) == run["rows_done"]  # every committed row survived the kill
        assert all(r.response for r in rows)
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_sigterm_cancels_the_run_on_the_way_out(cancer_csv: Path, llmcorr_home: Path) -> None:
    proc = start_run(cancer_csv, "stopped")
    wait_for_rows(llmcorr_home, "stopped", 1, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    with Store(store_path(llmcorr_home)) as store:
        run = store.get_run("stopped")
    assert run.status == "cancelled" and (run.error or "").startswith("stopped by the user; resume with")
