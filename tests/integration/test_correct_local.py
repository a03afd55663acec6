"""LLMCorr end to end with the real embedded model (SmolLM2-135M via llama.cpp) and a real SQLite store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pandas as pd
import pytest

import llmcorr
from llmcorr.store import Store

from .conftest import run_cli, store_path

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
