"""LLMCorr end to end with the real embedded model (SmolLM2-135M via llama.cpp) and a real SQLite store."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pandas as pd
import pytest

import llmcorr
from llmcorr.store import Store

from .conftest import run_cli, start_cli, store_path, wait_for_rows

pytestmark = pytest.mark.model


def test_cli_correct_then_runs_list_and_show(cancer_csv: Path, tmp_path: Path, llmcorr_home: Path) -> None:
    out = tmp_path / "out.csv"
    r = run_cli(
        "correct",
        "--predictions",
        cancer_csv,
        "--shots",
        3,
        "--limit",
        4,
        "--output",
        out,
        "--name",
        "cli-run",
        "--task",
        "is a benign tumour",
        "--no-gate",
    )
    assert r.returncode == 0, r.stderr
    assert "accuracy" in r.stdout and "flips: wrong to right" in r.stdout
    table = pd.read_csv(out)
    assert len(table) == 4
    for col in (
        "id",
        "input",
        "prediction",
        "label",
        "corrected_prediction",
        "corrected_label",
        "llm_response",
        "parsed",
        "tokens",
    ):
        assert col in table.columns
    assert (table["tokens"] > 0).all()
    assert table["llm_response"].fillna("").str.len().gt(0).all()

    runs = json.loads(run_cli("runs", "list", "--json").stdout)
    assert [(x["name"], x["status"], x["rows_done"], x["rows_total"]) for x in runs] == [("cli-run", "completed", 4, 4)]
    assert runs[0]["input_tokens"] == table["tokens"].sum() - runs[0]["output_tokens"]
    shown = run_cli("runs", "show", "cli-run")
    assert shown.returncode == 0 and runs[0]["id"] in shown.stdout and "completed" in shown.stdout
    assert run_cli("runs", "show", runs[0]["id"][:5]).returncode == 0

    with Store(store_path(llmcorr_home)) as store:
        rows = store.rows(runs[0]["id"])
    assert [m["role"] for m in rows[0].prompt] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert rows[0].prompt[-1]["content"].startswith("Sample: " + table["input"][0])
    assert all(r.duration_ms > 0 and r.attempts == 1 for r in rows)
    spec = json.loads(run_cli("runs", "show", "cli-run", "--json").stdout)["spec"]
    assert spec["endpoints"][0]["kind"] == "local" and len(spec["data_sha256"]) == 64 and spec["options"]["shots"] == 3


def test_api_regression_on_a_dataframe(diabetes_table: pd.DataFrame) -> None:
    result = llmcorr.correct(
        diabetes_table, limit=2, shots=2, task="the disease progression after one year", name="api-reg", gate=False
    )
    assert result.problem == "regression"
    assert set(result.metrics["base"]) == {"rmse", "mae"} and result.metrics["n"] == 2
    assert len(result.table) == 2 and result.tokens > 0
    unparsed = result.table[~result.table["parsed"]]
    assert (unparsed["corrected_prediction"] == unparsed["prediction"]).all()  # unparsable keeps the base value


def test_api_inside_a_running_event_loop(cancer_table: pd.DataFrame) -> None:
    """As in a Jupyter cell: the sync API is called while an event loop is running."""

    async def cell() -> llmcorr.CorrectionResult:
        return llmcorr.correct(cancer_table, limit=1, shots=1, gate=False)

    result = asyncio.run(cell())
    assert len(result.table) == 1 and result.tokens > 0


def test_demo_prints_the_metrics_table() -> None:
    r = run_cli("demo", "--limit", 3)
    assert r.returncode == 0, r.stderr
    for text in ("base model vs LLMCorr", "ROC-AUC", "accuracy", "flips", "gate", "tokens", "wall time", "runs show"):
        assert text in r.stdout


IRIS_CLASSES = ("setosa", "versicolor", "virginica")


def test_cli_corrects_a_three_class_dataset_then_reports_reruns_and_resumes(tmp_path: Path, llmcorr_home: Path) -> None:
    """Iris, its base model's class and probabilities per class (`demo_predictions("iris")`), corrected by the
    embedded model: answers parsed into classes, accuracy and macro-F1 with intervals, both confusion matrices in the
    report; a rerun served from the cache; a run killed mid-way resumed to the end."""
    from llmcorr.correct.datasets import demo_predictions

    iris = tmp_path / "iris.csv"
    demo_predictions("iris").to_csv(iris, index=False)
    out = tmp_path / "out.csv"
    args = ("correct", "-p", iris, "--task", "the iris species", "--shots", 3)
    r = run_cli(*args, "--limit", 6, "--gate-rows", 6, "--name", "iris", "--output", out)
    assert r.returncode == 0, r.stderr
    assert "problem: multiclass (3 classes: 'setosa', 'versicolor', 'virginica')" in r.stderr
    for text in ("accuracy", "macro-F1", "log-loss", "recall: setosa", "confusion"):
        assert text in r.stdout, text
    table = pd.read_csv(out)
    assert len(table) == 6 and set(table["corrected_prediction"]) <= set(IRIS_CLASSES)
    assert set(table["llm_prediction"]) <= set(IRIS_CLASSES)
    shown = json.loads(run_cli("runs", "show", "iris", "--json").stdout)
    m = shown["metrics"]
    assert list(m["base"]) == ["accuracy", "macro_f1", "log_loss"] and m["n"] == 6
    for side in ("base", "corrected"):
        low, high = m["ci95"][side]["accuracy"]
        assert low <= m[side]["accuracy"] <= high
        assert sum(map(sum, m["confusion"][side])) == 6
    assert m["confusion"]["classes"] == list(IRIS_CLASSES) and m["gate"]["validation_rows"] == 6
    assert shown["spec"]["options"]["problem"] == "multiclass"
    assert shown["spec"]["options"]["classes"]["names"] == list(IRIS_CLASSES)
    with Store(store_path(llmcorr_home)) as store:
        rows = store.rows(shown["id"])
    unsent = [r for r in rows if r.status.startswith("not sent")]  # test rows the gate chose not to send
    assert all(r.status == "not sent (gate)" and r.output == {"not_sent": "gate"} for r in unsent)
    assert len(unsent) == 6 - (m["selection"]["sent"] if m.get("selection") else 6)
    kept = table[table["sent"] != "sent"]
    assert len(kept) == len(unsent) and (kept["corrected_prediction"] == kept["prediction"]).all()
    asked = [r for r in rows if r not in unsent]  # the validation rows and the test rows sent
    for row in asked:  # every answer read is one of the classes; an unread one keeps the model's class
        corrected = row.output["corrected_prediction"]
        assert corrected in IRIS_CLASSES and (row.status == "ok" or corrected == row.inputs["prediction"])
    assert "The classes are: setosa, versicolor, virginica." in asked[0].prompt[0]["content"]

    report = run_cli("report", "iris", "-o", tmp_path / "iris.html")
    assert report.returncode == 0, report.stderr
    html = (tmp_path / "iris.html").read_text()
    for side in ("base", "corrected"):
        matrix = html.split(f'id="confusion-{side}"')[1].split("</table>")[0]
        cells = [int(c.split(">")[-1]) for c in matrix.split("</td>")[:-1]]
        assert cells == [n for line in m["confusion"][side] for n in line]

    again = run_cli("runs", "rerun", "iris", "--name", "iris-again", "-q")
    assert again.returncode == 0, again.stderr
    replayed = json.loads(run_cli("runs", "show", "iris-again", "--json").stdout)
    assert replayed["metrics"] == m and replayed["input_tokens"] == 0  # the same answers, from the cache

    proc = start_cli(*args, "--limit", 10, "--no-gate", "--name", "iris-killed", "--no-cache", "-q")
    wait_for_rows(llmcorr_home, "iris-killed", 3, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    resumed = run_cli("runs", "resume", "iris-killed", "-q", "-o", tmp_path / "resumed.csv")
    assert resumed.returncode == 0, resumed.stderr
    finished = json.loads(run_cli("runs", "show", "iris-killed", "--json").stdout)
    assert finished["status"] == "completed" and finished["rows_done"] == 10
    assert finished["metrics"]["n"] == 10 and len(finished["metrics"]["confusion"]["base"]) == 3
    written = pd.read_csv(tmp_path / "resumed.csv")
    assert len(written) == 10 and set(written["corrected_prediction"]) <= set(IRIS_CLASSES)
