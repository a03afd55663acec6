"""How a run ends, as a user at the `llmcorr` command sees it (issue 12): failed rows (exit 1, `completed, N failed`,
the error's type, message and user line), Ctrl-C (one line, the rows kept, the resume command; a second Ctrl-C
exits at once), `--version`, `runs list` at 80 columns, plain progress lines when stderr is not a terminal, an
unreachable OTLP collector, `runs compare` labels of correct runs and the report's timestamps, metric names and
explanations. Real `llmcorr` subprocesses, the real store, flows in plain Python (no model is loaded) and the quota
emulator on 127.0.0.1."""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from html import unescape
from pathlib import Path

import pandas as pd
import pytest

from bench.quota_server import DEFINE_PROMPTY as PROMPTY
from bench.quota_server import QuotaServer, QuotaServerConfig
from llmcorr._version import __version__
from llmcorr.store import Store

from .conftest import quota_toml, run_cli, start_cli, store_path, wait_for_rows

FLOW = """
import json

import helpers


def pick(word: str) -> str:
    if word.startswith("b"):
        raise ValueError(f"no {word} here")  # raise: pick
    return word.upper()


def checked(word: str) -> str:
    return helpers.check(word)


def parsed(word: str) -> str:
    return json.loads(word)  # raise: parsed
"""

HELPERS = """
def check(word: str) -> str:
    if len(word) > 4:
        raise LookupError(f"{word} is too long")  # raise: helper
    return word
"""


def line_of(text: str, marker: str) -> int:
    """The 1-based line of `text` that holds `marker` (exactly one does)."""
    lines = [i for i, line in enumerate(text.splitlines(), start=1) if marker in line]
    assert len(lines) == 1, (marker, lines)
    return lines[0]


def write_words(path: Path, words: list[str]) -> Path:
    pd.DataFrame({"word": words}).to_csv(path, index=False)
    return path


def show(name: str) -> dict:
    r = run_cli("runs", "show", name, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def listed(*args: object) -> list[str]:
    r = run_cli("runs", "list", "--json", *args)
    assert r.returncode == 0, r.stderr
    return [run["name"] for run in json.loads(r.stdout)]


@pytest.fixture
def flowdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with the flows (module `myflow`, which imports `helpers`); no llmcorr.toml."""
    (tmp_path / "myflow.py").write_text(FLOW)
    (tmp_path / "helpers.py").write_text(HELPERS)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# 1. failed rows


def test_a_run_with_failed_rows_exits_1_and_shows_completed_n_failed(flowdir: Path) -> None:
    words = write_words(flowdir / "words.csv", ["acid", "base", "salt", "bark"])
    clean = write_words(flowdir / "clean.csv", ["acid", "salt"])
    ok = run_cli("run", "myflow:pick", "--data", clean, "--name", "clean", "-q")
    assert ok.returncode == 0, ok.stderr

    r = run_cli("run", "myflow:pick", "--data", words, "--name", "picky")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert re.search(r"^status\s+completed, 2 failed\s*$", r.stdout, re.M), r.stdout
    assert "2 of 4 rows failed" in r.stderr and "`llmcorr runs logs picky --row 2`" in r.stderr, r.stderr
    assert "`llmcorr runs resume picky`" in r.stderr

    shown = show("picky")
    assert shown["status"] == "completed" and shown["rows_failed"] == 2 and shown["rows_done"] == 4
    assert shown["status_text"] == "completed, 2 failed"
    assert show("clean")["status_text"] == "completed"
    table = run_cli("runs", "show", "picky").stdout
    assert "completed, 2 failed" in table, table

    lines = run_cli("runs", "list").stdout.splitlines()
    assert any("picky" in line and "completed, 2 failed" in line for line in lines), lines
    assert any("clean" in line and "completed" in line and "failed" not in line for line in lines), lines
    listed_json = {run["name"]: run for run in json.loads(run_cli("runs", "list", "--json").stdout)}
    assert listed_json["picky"]["status_text"] == "completed, 2 failed"
    assert listed("--status", "failed") == ["picky"]
    assert sorted(listed("--status", "completed")) == ["clean", "picky"]
    failed_table = run_cli("runs", "list", "--status", "failed").stdout
    assert "picky" in failed_table and "clean" not in failed_table


def test_the_quiet_run_with_failed_rows_also_exits_1(flowdir: Path) -> None:
    words = write_words(flowdir / "words.csv", ["base"])
    r = run_cli("run", "myflow:pick", "--data", words, "--name", "quiet", "-q")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert show("quiet")["status_text"] == "completed, 1 failed"


# 2. a flow row's error: type, message, the innermost frame of the user's code


def stored_errors(home: Path, name: str) -> dict[int, str | None]:
    with Store(store_path(home)) as store:
        run_id = store.get_run(name).id
        return {r.row_index: r.error for r in store.rows(run_id)}


def row_log(name: str, row: int) -> str:
    r = run_cli("runs", "logs", name, "--row", row)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_a_flow_rows_error_records_type_message_and_the_raising_line(flowdir: Path, llmcorr_home: Path) -> None:
    words = write_words(flowdir / "words.csv", ["acid", "base"])
    line = line_of(FLOW, "# raise: pick")
    r = run_cli("run", "myflow:pick", "--data", words, "--name", "picky", "-q")
    expected = f"ValueError: no base here (myflow.py:{line})"
    assert stored_errors(llmcorr_home, "picky") == {0: None, 1: expected}
    logged = row_log("picky", 2)
    assert expected in logged, logged
    assert "error" not in row_log("picky", 1)
    assert r.returncode == 1, r.stderr


def test_the_raising_line_is_in_the_users_helper_module(flowdir: Path, llmcorr_home: Path) -> None:
    words = write_words(flowdir / "words.csv", ["acid", "bases"])
    line = line_of(HELPERS, "# raise: helper")
    r = run_cli("run", "myflow:checked", "--data", words, "--name", "helped", "-q")
    expected = f"LookupError: bases is too long (helpers.py:{line})"
    assert stored_errors(llmcorr_home, "helped")[1] == expected
    assert expected in row_log("helped", 2)
    assert r.returncode == 1, r.stderr


def test_a_library_frame_is_passed_over_for_the_users_line(flowdir: Path, llmcorr_home: Path) -> None:
    """json.loads raises inside the standard library: the line shown is the flow's call of it."""
    words = write_words(flowdir / "words.csv", ["acid"])
    line = line_of(FLOW, "# raise: parsed")
    r = run_cli("run", "myflow:parsed", "--data", words, "--name", "parsed", "-q")
    error = stored_errors(llmcorr_home, "parsed")[0] or ""
    assert error.startswith("JSONDecodeError: Expecting value") and error.endswith(f"(myflow.py:{line})"), error
    assert f"(myflow.py:{line})" in row_log("parsed", 1)
    assert r.returncode == 1, r.stderr


# 3. Ctrl-C

ROWS = 40


@pytest.fixture
def slow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[QuotaServer]:
    """The quota emulator answering after 0.1 s, and a working directory where the default endpoint is it, two
    requests at a time: a prompt run over ROWS words takes about 2 s."""
    with QuotaServer(QuotaServerConfig(rpm=600_000, tpm=10**9, base_latency_s=0.1)) as srv:
        (tmp_path / "llmcorr.toml").write_text(quota_toml(srv.base_url, 600_000) + "max_concurrency = 2\n")
        (tmp_path / "define.prompty").write_text(PROMPTY)
        words = [f"w{i}" for i in range(ROWS)]
        pd.DataFrame({"word": words}).to_json(tmp_path / "words.jsonl", orient="records", lines=True)
        monkeypatch.chdir(tmp_path)
        yield srv


RUN = ("run", "define.prompty", "-d", "words.jsonl", "--no-cache", "-q", "--name")


def test_ctrl_c_prints_the_rows_kept_and_the_resume_command_then_resume_finishes(
    slow: QuotaServer, llmcorr_home: Path
) -> None:
    proc = start_cli(*RUN, "stopped")
    wait_for_rows(llmcorr_home, "stopped", 4, proc, timeout=60)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cancelled:"), err
    kept = re.search(rf"\b(\d+) of {ROWS} rows kept\b", lines[0])
    assert kept is not None and "`llmcorr runs resume stopped`" in lines[0], lines[0]

    at_stop = show("stopped")
    assert at_stop["status"] == "cancelled"
    assert int(kept.group(1)) == at_stop["rows_done"] - at_stop["rows_failed"]
    assert 4 <= at_stop["rows_done"] < ROWS and at_stop["rows_failed"] == 0
    assert slow.stats()["received"] == at_stop["rows_done"]  # the requests in flight were answered and kept

    r = run_cli("runs", "resume", "stopped", "-q", timeout=120)
    assert r.returncode == 0, r.stderr
    done = show("stopped")
    assert done["status_text"] == "completed" and done["rows_done"] == ROWS
    assert slow.stats()["received"] == ROWS  # the kept rows were not asked again


def test_a_second_ctrl_c_exits_at_once_and_the_run_still_resumes(slow: QuotaServer, llmcorr_home: Path) -> None:
    proc = start_cli(*RUN, "twice")
    wait_for_rows(llmcorr_home, "twice", 2, proc, timeout=60)
    slow.config.base_latency_s = 60.0  # from now on a request takes a minute: stopping gently would wait for it
    sent = slow.stats()["received"]
    deadline = time.monotonic() + 30
    while slow.stats()["received"] < sent + 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # the two slow requests are in flight
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.monotonic() - signalled < 10  # not after the minute the requests in flight take
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("cancelled:") and "`llmcorr runs resume twice`" in last, err
    assert re.search(rf"\b\d+ of {ROWS} rows kept\b", last), last

    stopped = show("twice")
    assert stopped["status"] == "interrupted" and 2 <= stopped["rows_done"] < ROWS
    slow.config.base_latency_s = 0.01
    r = run_cli("runs", "resume", "twice", "-q", timeout=120)
    assert r.returncode == 0, r.stderr
    done = show("twice")
    assert done["status_text"] == "completed" and done["rows_done"] == ROWS


def test_ctrl_c_sends_nothing_more_while_rows_wait_for_their_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under an RPM quota most rows wait in the scheduler for their turn, not at the endpoint: the first Ctrl-C must
    send none of them (they are left for a resume), only answer the requests already sent."""
    with QuotaServer(QuotaServerConfig(rpm=600_000, tpm=10**9, base_latency_s=0.05)) as srv:
        (tmp_path / "llmcorr.toml").write_text(quota_toml(srv.base_url, 120))  # 2 requests a second
        (tmp_path / "define.prompty").write_text(PROMPTY)
        pd.DataFrame({"word": [f"w{i}" for i in range(ROWS)]}).to_json(
            tmp_path / "words.jsonl", orient="records", lines=True
        )
        monkeypatch.chdir(tmp_path)
        proc = start_cli(*RUN, "paced")
        deadline = time.monotonic() + 60
        while srv.stats()["received"] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        time.sleep(1.0)  # had it gone on sending, the server would see more by now
        received = srv.stats()["received"]
    assert proc.returncode == 130, err
    stopped = show("paced")
    assert stopped["status"] == "cancelled"
    assert received == stopped["rows_done"] < 10, (received, stopped["rows_done"])  # not the ROWS - 3 still waiting


# 4. --version


def test_version() -> None:
    r = run_cli("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"llmcorr {__version__}"


# 5. runs list at 80 columns


def test_runs_list_keeps_whole_names_at_80_columns(flowdir: Path) -> None:
    ok, bad = write_words(flowdir / "ok.csv", ["acid"]), write_words(flowdir / "bad.csv", ["acid", "base"])
    names = [f"experiment-with-a-long-name-{i:02d}" for i in range(3)]
    assert all(len(name) == 30 for name in names)
    for name, data in zip(names, (ok, bad, ok), strict=True):
        assert run_cli("run", "myflow:pick", "--data", data, "--name", name, "-q").returncode in (0, 1)
    assert run_cli("runs", "tag", names[0], "a-tag-that-takes-room").returncode == 0

    r = run_cli("runs", "list", env={"COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), [len(line) for line in lines]
    for name in names:
        assert sum(name in line for line in lines) == 1, r.stdout  # whole, on one line
    assert any(names[1] in line and "completed, 1 failed" in line for line in lines), r.stdout


# 6. progress when stderr is not a terminal

NAP = """
import time

def nap(word: str) -> str:
    time.sleep(0.005)
    return word
"""


def test_progress_is_plain_lines_when_stderr_is_not_a_terminal(flowdir: Path) -> None:
    (flowdir / "slowflow.py").write_text(NAP)
    words = write_words(flowdir / "words.csv", [f"w{i}" for i in range(40)])
    r = run_cli("run", "slowflow:nap", "--data", words, "--name", "plain")
    assert r.returncode == 0, r.stderr
    assert "━" not in r.stderr and "\x1b[" not in r.stderr and "\r" not in r.stderr, repr(r.stderr)
    assert not re.search(r"\b\d+:\d\d\b", r.stderr), r.stderr  # no 0:00 clock-style ETA
    progress = [line for line in r.stderr.splitlines() if re.match(r"^\S.*: \d+/40 rows \(\d+%\)", line)]
    done = [int(re.search(r": (\d+)/40 rows", line).group(1)) for line in progress]  # type: ignore[union-attr]
    assert len(progress) >= 2 and done == sorted(done) and done[-1] == 40, r.stderr
    assert re.search(r": 40/40 rows \(100%\), .*\bin \d+ s$", progress[-1]), progress[-1]
    assert all("in " not in line.rpartition(", ")[2] for line in progress[:-1])  # only the last says how long


# 7. an unreachable OTLP collector


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_otlp_collector_costs_one_warning_line(flowdir: Path) -> None:
    words = write_words(flowdir / "words.csv", ["acid", "salt"])
    url = f"http://127.0.0.1:{closed_port()}"
    r = run_cli("run", "myflow:pick", "--data", words, "--name", "traced", "--otlp", url, "-q", timeout=120)
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "OTLP collector" in line]
    assert len(warnings) == 1 and url in warnings[0], r.stderr
    for noise in ("Transient error", "Traceback", "Failed to export", "retrying"):
        assert noise not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == warnings  # nothing else
    assert show("traced")["status_text"] == "completed"


# 8 and 9. correct runs: `runs compare` and the report


@pytest.fixture
def correct_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cancer_table: pd.DataFrame) -> Path:
    cancer_table.to_csv(tmp_path / "preds.csv", index=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def correct(workdir: Path, server: QuotaServer, name: str, *args: object) -> None:
    """A 4-row correct run of the breast-cancer predictions against `server` (every answer: malignant)."""
    (workdir / "llmcorr.toml").write_text(quota_toml(server.base_url, 600_000))
    common = ("-p", "preds.csv", "--task", "is malignant", "--limit", 4, "-q", "-y", "--name", name)
    r = run_cli("correct", *common, *args, timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)


@pytest.fixture
def server() -> Iterator[QuotaServer]:
    with QuotaServer(QuotaServerConfig(rpm=600_000, tpm=10**9)) as srv:
        yield srv


def test_compare_of_a_gated_and_an_ungated_correct_run_reads_cleanly(correct_dir: Path, server: QuotaServer) -> None:
    correct(correct_dir, server, "gated", "--gate-rows", 4)
    correct(correct_dir, server, "plain", "--no-gate")
    r = run_cli("runs", "compare", "gated", "plain")
    assert r.returncode == 0, r.stderr
    table = r.stdout
    assert not re.search(r"\bnan\b", table, re.I), table
    assert "flips: flips" not in table, table
    for raw in ("gate.policy", "mcnemar.", "ungated.", "gate.validation"):
        assert raw not in table, table  # keys as people read them
    labels = {line.split("  ")[0].strip() for line in table.splitlines()}
    assert {"gate: policy", "flips: changed", "flips: McNemar p", "test rows"} <= labels, labels
    policy = next(line for line in table.splitlines() if line.strip().startswith("gate: policy"))
    assert policy.split()[2:] == [show("gated")["metrics"]["gate"]["policy"]]  # the ungated run's cell is empty


def visible_text(html: str) -> str:
    """What a reader sees of the report: no scripts, styles, charts or tags."""
    html = re.sub(r"<(script|style|svg)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def report(name: str, workdir: Path) -> str:
    out = workdir / f"{name}.html"
    r = run_cli("report", name, "-o", out)
    assert r.returncode == 0, r.stderr
    return visible_text(out.read_text())


def test_the_report_formats_timestamps_and_metric_names_for_people(correct_dir: Path, server: QuotaServer) -> None:
    correct(correct_dir, server, "gated", "--gate-rows", 4, "--send-all")  # every test row: the ungated metrics too
    text = report("gated", correct_dir)
    record = show("gated")
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", text), text  # no raw ISO timestamps
    assert record["created_utc"] not in text
    created = datetime.fromisoformat(record["created_utc"]).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    assert created in text, text
    assert "Without the gate, on the test split: ROC-AUC " in text, text
    assert not re.search(r"\b(roc_auc|mcnemar\.|gate\.policy)", text), text
    assert "gave no explanations" not in text  # no flips, so nothing to explain: no note


def test_the_report_says_when_the_llm_gave_no_explanations(correct_dir: Path, server: QuotaServer) -> None:
    correct(correct_dir, server, "explained", "--no-gate")
    explained = report("explained", correct_dir)
    assert "LLM: “emulated”" in explained and "gave no explanations" not in explained, explained
    with QuotaServer(QuotaServerConfig(rpm=600_000, tpm=10**9, response_text="Prediction: True")) as terse:
        correct(correct_dir, terse, "terse", "--no-gate")
    assert show("terse")["metrics"]["flips"]["changed"] > 0  # flips to show, none explained
    terse_text = report("terse", correct_dir)
    assert "The LLM gave no explanations with its answers" in terse_text, terse_text
    assert "LLM: “" not in terse_text
