"""Selective correction against the quota server on 127.0.0.1, which answers every request "Prediction: True" and
counts every request it receives: the gate chosen on validation decides which test rows are sent (none when it says
"never"; only those under its threshold otherwise), a budget caps every request of the run, validation included,
and says so in the estimate first, and resume and rerun send nothing twice."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

import llmcorr
from bench.quota_server import QuotaServer, QuotaServerConfig
from llmcorr.correct.gate import confidence
from llmcorr.store import Store
from llmcorr.ui import create_app
from tests.conftest import LLMCORR
from tests.servers import Reply, ScriptedServer, ok

from .conftest import quota_toml, store_path


@pytest.fixture
def server() -> Iterator[QuotaServer]:
    with QuotaServer(QuotaServerConfig(rpm=600_000, tpm=10**9)) as srv:
        yield srv


def received(srv: QuotaServer) -> int:
    return int(srv.stats()["received"])


def endpoint(srv: QuotaServer) -> llmcorr.EndpointConfig:
    return llmcorr.EndpointConfig(name="q", kind="openai", base_url=srv.base_url, model="m", max_concurrency=2)


def three_kinds(unsure: tuple[float, int] = (0.45, 1)) -> pd.DataFrame:
    """30 rows a split: confident and right positives (0.95) and negatives (0.05), and unsure rows (`unsure`:
    prediction, label). An LLM that always answers True breaks the confident negatives and fixes unsure positives."""
    rows = []
    for split in ("train", "valid", "test"):
        for i in range(30):
            prediction, label = [(0.95, 1), (0.05, 0), unsure][i % 3]
            rows.append({"id": f"{split}{i}", "input": f"x={i}", "prediction": prediction, "label": label} | {
                "split": split})  # fmt: skip
    return pd.DataFrame(rows)


def test_the_gate_saying_never_sends_no_test_row(server: QuotaServer, llmcorr_home: Path) -> None:
    # unsure rows that are right as they are (0.4 for a 0): answering True only ever breaks a row
    result = llmcorr.correct(three_kinds(unsure=(0.4, 0)), provider=endpoint(server), shots=1)
    m = result.metrics
    assert m.gate is not None and m.gate.policy == "never"
    assert received(server) == 30  # the 30 validation rows the gate learned from; not one test row
    assert (result.table["sent"] == "not sent (gate)").all()
    assert (result.table["corrected_prediction"] == result.table["prediction"]).all()
    assert result.table["llm_response"].isna().all()
    assert m.selection is not None and (m.selection.sent, m.selection.requests_saved) == (0, 30)
    assert m.n == 30 and m.base == m.corrected and m.ungated is None  # metrics over every test row
    with Store(store_path(llmcorr_home)) as store:
        counts = store.row_status_counts(result.run_id)
    assert counts == {"ok": 30, "not sent (gate)": 30}

    run = dashboard(f"/runs/{result.run_id}")  # the dashboard's run page: requests saved beside the metrics
    assert "requests saved" in run and "0 of 30 (not sent: 30 by the gate, 0 by the budget)" in run
    unsent = dashboard(f"/runs/{result.run_id}?show=unsent")
    assert unsent.count("kept: not sent (gate)") == 30
    assert "not sent (gate)" in dashboard(f"/runs/{result.run_id}/rows/1")  # a test row's own page
    assert 'id="requests-saved"' in dashboard(f"/runs/{result.run_id}/report")


def dashboard(path: str) -> str:
    """A page of the dashboard over this test's store, as this machine's browser gets it."""
    app = create_app(llmcorr.Config.load())

    async def get() -> str:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8765") as client:
            response = await client.get(path)
        assert response.status_code == 200, (path, response.text[-500:])
        return response.text

    return asyncio.run(get())


def test_with_a_threshold_only_the_rows_under_it_are_sent_at_the_metric_of_sending_all(server: QuotaServer) -> None:
    selective = llmcorr.correct(three_kinds(), provider=endpoint(server), shots=1)
    assert received(server) == 30 + 10  # validation, then the ten unsure test rows
    gate = selective.metrics.gate
    assert gate is not None and 0 < gate.threshold < 1
    table = selective.table
    sent = table["sent"] == "sent"
    assert (confidence(table.loc[sent, "prediction"]) < gate.threshold).all()
    assert (confidence(table.loc[~sent, "prediction"]) >= gate.threshold).all() and sent.sum() == 10
    assert (table.loc[~sent, "sent"] == "not sent (gate)").all()

    everything = llmcorr.correct(three_kinds(), provider=endpoint(server), shots=1, selective=False, cache=False)
    assert received(server) == 40 + 60  # every validation and test row
    assert everything.metrics.corrected == selective.metrics.corrected  # the same predictions in the end
    assert selective.metrics.corrected is not None and selective.metrics.corrected.accuracy == 1.0
    assert selective.metrics.selection is not None and selective.metrics.selection.requests_saved == 20
    assert everything.metrics.selection is None and everything.metrics.ungated is not None


def cli(cwd: Path, *args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "160"}
    return subprocess.run(
        [LLMCORR, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env=env,
    )


@pytest.fixture
def project(tmp_path: Path, server: QuotaServer) -> Path:
    (tmp_path / "llmcorr.toml").write_text(quota_toml(server.base_url, rpm=None, max_concurrency=1))
    three_kinds().to_csv(tmp_path / "preds.csv", index=False)
    return tmp_path


BUDGET = ("-p", "preds.csv", "--shots", "1", "--budget", "20")


def test_a_budget_of_20_requests_is_estimated_first_then_never_exceeded(
    project: Path, server: QuotaServer, llmcorr_home: Path
) -> None:
    shown = cli(project, "estimate", *BUDGET)
    assert shown.returncode == 0, shown.stderr
    assert "10 of 30 rows, 10 requests" in shown.stdout  # validation: half the budget
    assert "at most 10 of 30 rows fit the budget, 10 requests" in shown.stdout
    assert received(server) == 0

    r = cli(project, "correct", *BUDGET, "-o", "out.csv", "--name", "b", "-y")
    assert r.returncode == 0, r.stderr
    assert "estimate: 20 requests" in r.stderr and "budget of 20 requests" in r.stderr
    assert received(server) <= 20
    out = pd.read_csv(project / "out.csv")
    assert set(out["sent"]) <= {"sent", "not sent (gate)", "not sent (budget)"} and len(out) == 30
    with Store(store_path(llmcorr_home)) as store:
        record = store.get_run("b")
    assert record.estimate is not None and record.estimate["requests"] == 20
    shown_run = cli(project, "runs", "show", "b")
    assert "requests saved" in shown_run.stdout and "not sent (gate)" in shown_run.stdout


def test_a_budget_pays_for_format_retries_only_from_what_is_left(project: Path, server: QuotaServer) -> None:
    server.config.response_text = "maybe"  # never parses: every row asks again with the format
    r = cli(project, "correct", *BUDGET, "--send-all", "-o", "out.csv", "-q")
    assert r.returncode == 0, r.stderr
    assert received(server) == 20  # 10 validation rows, each asked twice; nothing left for a test row
    assert (pd.read_csv(project / "out.csv")["sent"] == "not sent (budget)").all()


def test_resume_and_rerun_of_a_budgeted_run_send_nothing_twice(project: Path, server: QuotaServer) -> None:
    server.config.daily_requests = 15  # stops the run in the middle of its test rows
    r = cli(project, "correct", *BUDGET, "-o", "out.csv", "--name", "b", "-q")
    assert r.returncode == 1 and "exceeded your current quota" in r.stderr, r.stderr
    first = int(server.stats()["admitted"])
    assert first == 15
    server.config.daily_requests = None
    r = cli(project, "runs", "resume", "b", "-q")
    assert r.returncode == 0, r.stderr
    assert int(server.stats()["admitted"]) == 20  # what an uninterrupted run sends: no row sent twice
    resumed = pd.read_csv(project / "out.csv")
    assert (resumed["sent"] == "sent").sum() == 10

    before = received(server)
    r = cli(project, "runs", "rerun", "b", "--name", "again", "-o", "again.csv", "-q")
    assert r.returncode == 0, r.stderr
    assert received(server) == before  # every answer from the cache
    again = pd.read_csv(project / "again.csv")
    pd.testing.assert_series_equal(again["sent"], resumed["sent"])  # the same rows chosen
    pd.testing.assert_series_equal(again["corrected_prediction"], resumed["corrected_prediction"])


def test_a_resume_that_moves_the_gate_decides_the_unsent_rows_again(tmp_path: Path) -> None:
    """The first try at the unsure validation rows fails (the server rejects them), so the gate learns only that
    the LLM breaks the confident rows: "never", and no test row is sent. The resume retries those rows; now the gate
    sees the unsure rows fixed and lets corrections through under its threshold, and the test rows recorded as not
    sent are decided again: the ten unsure ones are sent."""
    unsure = "probability 0.450"
    asked = lambda body: str(body["messages"][-1]["content"])  # noqa: E731  the row asked about, not the shots
    with ScriptedServer(ok("Prediction: True")) as srv:
        srv.route = lambda body: Reply(400, {"error": {"message": "no"}}) if unsure in asked(body) else None
        (tmp_path / "llmcorr.toml").write_text(quota_toml(srv.base_url, rpm=None, max_concurrency=1))
        three_kinds().to_csv(tmp_path / "preds.csv", index=False)
        r = cli(tmp_path, "correct", "-p", "preds.csv", "--shots", "1", "-o", "out.csv", "--name", "g", "-q")
        assert r.returncode == 1, r.stderr  # the ten rejected validation rows failed
        first = pd.read_csv(tmp_path / "out.csv")
        assert (first["sent"] == "not sent (gate)").all()

        srv.route = None
        sent_before = len(srv.requests)
        r = cli(tmp_path, "runs", "resume", "g", "-q")
        assert r.returncode == 0, r.stderr
        assert len(srv.requests) - sent_before == 10 + 10  # the failed validation rows, then the unsure test rows
        resumed = pd.read_csv(tmp_path / "out.csv")
        sent = resumed["sent"] == "sent"
        assert sent.sum() == 10 and (resumed.loc[sent, "prediction"] == 0.45).all()
        assert (resumed.loc[~sent, "sent"] == "not sent (gate)").all()


def animals(unsure_label: str) -> pd.DataFrame:
    """Three classes, 30 rows a split: the model is sure and right on cats and dogs (margin 0.85), and unsure on the
    third kind of row, where it says dog with a margin of 0.05 over owl (`unsure_label`: what those rows are, but
    for the training rows, owls)."""
    kinds = [
        ("cat", "cat", (0.9, 0.05, 0.05)),
        ("dog", "dog", (0.05, 0.9, 0.05)),
        (unsure_label, "dog", (0.05, 0.5, 0.45)),
    ]
    rows = []
    for split in ("train", "valid", "test"):
        for i in range(30):
            label, prediction, (cat, dog, owl) = kinds[i % 3]
            label = "owl" if split == "train" and i % 3 == 2 else label  # owl a class either way
            probabilities = {"prob_cat": cat, "prob_dog": dog, "prob_owl": owl}
            rows.append({"id": f"{split}{i}", "input": f"x={i}", "prediction": prediction, "label": label} | {
                "split": split} | probabilities)  # fmt: skip
    return pd.DataFrame(rows)


def scripted(srv: ScriptedServer) -> llmcorr.EndpointConfig:
    return llmcorr.EndpointConfig(name="s", kind="openai", base_url=srv.base_url, model="m", max_concurrency=2)


def test_multiclass_selection_reads_the_top_two_margin_never_sends_nothing_and_a_threshold_only_rows_under_it(
    llmcorr_home: Path,
) -> None:
    # an LLM that always answers owl: it only breaks rows when the unsure ones are dogs indeed ...
    with ScriptedServer(default=ok("Prediction: owl; Explanation: scripted")) as srv:
        never = llmcorr.correct(animals("dog"), provider=scripted(srv), shots=1, cache=False)
        assert len(srv.requests) == 30  # the validation rows only
    m = never.metrics
    assert never.problem == "multiclass" and m.gate is not None and m.gate.policy == "never"
    assert (never.table["sent"] == "not sent (gate)").all() and never.table["llm_response"].isna().all()
    assert (never.table["corrected_prediction"] == never.table["prediction"]).all()
    assert m.selection is not None and (m.selection.sent, m.selection.requests_saved) == (0, 30)
    assert m.confusion is not None and m.confusion.base == m.confusion.corrected

    # ... and fixes the unsure ones when they are owls: only those (margin 0.05, under the threshold) are sent
    with ScriptedServer(default=ok("Prediction: owl; Explanation: scripted")) as srv:
        some = llmcorr.correct(animals("owl"), provider=scripted(srv), shots=1, cache=False)
        assert len(srv.requests) == 30 + 10
        asked = [r["body"]["messages"][-1]["content"] for r in srv.requests]
    gate, table = some.metrics.gate, some.table
    assert gate is not None and 0.05 < gate.threshold <= 0.85
    sent = table["sent"] == "sent"
    assert sent.sum() == 10 and (table.loc[sent, "prediction"] == "dog").all()
    assert (table.loc[sent, "prob_owl"] == 0.45).all() and (table.loc[~sent, "sent"] == "not sent (gate)").all()
    unsure = "The model predicts dog (dog 0.500, owl 0.450, cat 0.050)"
    assert sum(unsure in a for a in asked) == 10 + 10  # the unsure validation rows, then the unsure test rows
    assert (table.loc[sent, "corrected_prediction"] == "owl").all()
    assert (table.loc[~sent, "corrected_prediction"] == table.loc[~sent, "prediction"]).all()
    m = some.metrics
    assert m.corrected is not None and m.corrected.accuracy == 1.0 and m.confusion is not None
    assert m.confusion.corrected == [[10, 0, 0], [0, 10, 0], [0, 0, 10]]
    assert m.selection is not None and m.selection.requests_saved == 20 and m.ungated is None
